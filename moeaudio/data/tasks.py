"""Task vocabulary shared by the data preparers and the evaluation layer.

Why one module: preparers write ``instruction`` into every manifest line, and the evaluator
must score predictions against the *same* label strings (e.g. ``"throat clearing"`` vs
``"throatclearing"``). Keeping instructions, label sets and task->domain defaults in one
place keeps the two sides from drifting apart.

Label strings are the exact ``target`` strings the preparers write (lower case, spaces instead
of underscores) so a classifier-style evaluator can compare ``normalize(pred) in labels``.
"""

from __future__ import annotations

import re
import string
from typing import Any

__all__ = [
    "TASKS",
    "TASK_INSTRUCTIONS",
    "TASK_LABELS",
    "TASK_DOMAINS",
    "DATASET_LABELS",
    "CHOICE_LETTERS",
    "answer_letter",
    "build_prompt",
    "item_prompt",
    "split_choices",
    "format_choices",
]

#: Instruction text per task; preparers copy it into ``Item.instruction``.
TASK_INSTRUCTIONS: dict[str, str] = {
    "asr": "Transcribe the audio.",
    "emotion": "What emotion does the speaker express? Answer with one word.",
    "gender": "Is the speaker male or female? Answer with one word.",
    "sound": "What sound event is heard in the audio? Answer with the sound class only.",
    "genre": "What is the genre of this music? Answer with one word.",
    "instrument": "Which instrument family is playing? Answer with the instrument name only.",
    "vocalsound": (
        "Which vocal sound does the person make: laughter, sigh, cough, throat clearing, sneeze or sniff? "
        "Answer with the sound only."
    ),
    "mcq": "Answer the question about the audio by choosing one of the options. Reply with the option letter.",
}

TASKS: tuple[str, ...] = tuple(TASK_INSTRUCTIONS)

# ESC-50 categories as released (meta/esc50.csv ``category``), underscores -> spaces.
_ESC50 = [
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea waves", "crackling fire", "crickets", "chirping birds", "water drops", "wind",
    "pouring water", "toilet flush", "thunderstorm", "crying baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing teeth", "snoring",
    "drinking sipping", "mouse click", "keyboard typing", "door wood knock", "door wood creaks",
    "can opening", "washing machine", "vacuum cleaner", "clock alarm", "clock tick",
    "glass breaking", "helicopter", "chainsaw", "siren", "car horn", "engine", "train",
    "church bells", "airplane", "fireworks", "hand saw",
]  # fmt: skip

#: Label set per dataset and task (the closed set an evaluator should score against).
DATASET_LABELS: dict[str, dict[str, list[str]]] = {
    "ravdess": {
        "emotion": ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"],
        "gender": ["male", "female"],
    },
    "cremad": {
        "emotion": ["angry", "disgust", "fearful", "happy", "neutral", "sad"],
        "gender": ["male", "female"],
    },
    "iemocap": {"emotion": ["angry", "happy", "neutral", "sad"], "gender": ["male", "female"]},
    "esc50": {"sound": _ESC50},
    "gtzan": {
        "genre": ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
    },
    "vocalsound": {"vocalsound": ["laughter", "sigh", "cough", "throat clearing", "sneeze", "sniff"]},
    "nsynth": {
        "instrument": [
            "bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
            "synth lead", "vocal",
        ]
    },
}  # fmt: skip

#: Union of the label sets per classification task (asr/mcq are open / per-item).
TASK_LABELS: dict[str, list[str]] = {
    "emotion": [
        "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "frustrated",
        "excited", "other",
    ],
    "gender": ["male", "female"],
    "sound": _ESC50,
    "genre": DATASET_LABELS["gtzan"]["genre"],
    "instrument": DATASET_LABELS["nsynth"]["instrument"],
    "vocalsound": DATASET_LABELS["vocalsound"]["vocalsound"],
}  # fmt: skip

#: Default ``Item.domain`` when a manifest line omits it.
TASK_DOMAINS: dict[str, str] = {
    "asr": "speech",
    "emotion": "speech",
    "gender": "speech",
    "sound": "sound",
    "genre": "music",
    "instrument": "music",
    # VocalSound = non-speech human vocalisations; benchmarks (AIR-Bench) file it under sound.
    "vocalsound": "sound",
    "mcq": "mixed",
}

CHOICE_LETTERS = string.ascii_uppercase


def format_choices(choices: list[str]) -> str:
    """Render choices as ``A. foo`` lines, the convention ``Item.answer`` letters refer to."""
    return "\n".join(f"{CHOICE_LETTERS[i]}. {c}" for i, c in enumerate(choices))


def build_prompt(task: str, instruction: str | None, choices: list[str] | None = None) -> str:
    """The user-turn text for an item: its instruction (or the task default) plus lettered choices.

    Used by the format exporters and (ideally) by the model/eval collators so every consumer
    shows the model the same text for a given manifest line. Pass ``choices=None`` for items
    whose options are spoken in the audio (``item.meta["choices_in_audio"]``, VoiceBench) so
    the text does not leak them; :func:`item_prompt` does that check.
    """
    text = instruction or TASK_INSTRUCTIONS.get(task, "")
    if choices and format_choices(choices) not in text:  # some manifests list the options already
        hint = "Answer with the text of the correct option."
        text = f"{text}\n{format_choices(choices)}\n{hint}" if text else f"{format_choices(choices)}\n{hint}"
    return text


def answer_letter(answer: str, choices: list[str], *, prefer: str = "letter") -> str | None:
    """Map a reference answer to its choice letter.

    Accepts a letter (``"B"``, ``"(B)"``, ``"B. text"``) or the choice text itself
    (case/whitespace-insensitive). ``prefer`` decides ambiguous cases such as choices
    ``["B", "A"]`` with answer ``"A"``: ``"letter"`` (references that are letters, VoiceBench)
    or ``"text"`` (references that are choice texts, MMAU). Returns None when nothing matches,
    so callers can report the item instead of guessing.
    """
    ans = answer.strip()
    letters = CHOICE_LETTERS[: len(choices)]

    def by_text() -> str | None:
        for i, c in enumerate(choices):
            if _norm(c) == _norm(ans):
                return letters[i]
        return None

    def by_letter() -> str | None:
        m = re.match(r"^\(?([A-Z])(?:[.):]|\s|$)", ans)
        return m[1] if m and m[1] in letters else None

    first, second = (by_text, by_letter) if prefer == "text" else (by_letter, by_text)
    return first() or second()


def _norm(s: str) -> str:
    return " ".join(s.lower().split()).rstrip(".")


def split_choices(text: str) -> tuple[str, list[str]] | None:
    """Split ``"Question? A. x B. y ..."`` (also ``A)``, ``(A)``, ``A:``, one per line or inline).

    Returns ``(question, choices)`` or None if fewer than two consecutive lettered options are
    found. The *last* ``A`` marker followed by a ``B`` marker starts the options, so an "A." inside
    the question (e.g. "vitamin A.") does not split it.
    """

    def markers(letter: str, start: int) -> list[re.Match[str]]:
        pat = re.compile(rf"(?:^|(?<=\s))\(?{letter}[.):]\s+")
        return list(pat.finditer(text, start))

    for a in reversed(markers("A", 0)):
        bounds = [a]
        pos = a.end()
        for letter in CHOICE_LETTERS[1:]:
            nxt = markers(letter, pos)
            if not nxt:
                break
            bounds.append(nxt[0])
            pos = nxt[0].end()
        if len(bounds) < 2:
            continue
        choices = []
        for i, m in enumerate(bounds):
            end = bounds[i + 1].start() if i + 1 < len(bounds) else len(text)
            choices.append(text[m.end() : end].strip().rstrip(",;").strip())
        if all(choices):
            return text[: a.start()].strip(), choices
    return None


def item_prompt(item: Any) -> str:
    """:func:`build_prompt` for a manifest Item, hiding choices that are spoken in the audio."""
    show = item.choices if not (item.meta or {}).get("choices_in_audio") else None
    return build_prompt(item.task, item.instruction, show)
