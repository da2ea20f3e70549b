"""What peers' manifests mean: their task tags, prompts and fields mapped to our task and domain.

Why: SLAM-LLM's own captioning manifests (Clotho, AudioCaps) carry ``"prompt": "<AAC>"`` and
``"task-type": "<AAC>"``; read as a prompt with the default task they became transcription items
whose instruction was "<AAC>". Each peer says what an item is in its own way:

* SLAM-LLM: a task tag in ``task-type``, ``task`` or ``prompt`` (``<AAC>``, ``ASR``, ``hotword``; the
  dataset code uses ``prompt`` as the task name and takes the prompt text from its config), or a
  language tag (``<|de|>``, speech translation on CoVoST 2, with ``gt`` = ``TRANSCRIPT<|de|>TRANSLATION``);
* ms-swift / LLaMA-Factory: only the user turn's text ("Transcribe ...", "Describe the sound ...");
* NeMo: ``taskname`` / ``task`` (``asr``, ``s2t_translation``, ``ast``), ``source_lang`` / ``target_lang``,
  and ``question`` / ``context`` with ``answer`` for instruction data.

:func:`map_task` turns these into ``(task, domain, instruction)`` and says how it decided: from an
explicit tag (not a guess) or guessed from the prompt text, the audio path (a dataset name such as
Clotho or LibriSpeech) or the default task. Callers keep the source's own tag in ``meta`` and report the
guesses (:class:`moeaudio.data.formats.ConversionReport`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moeaudio.data.tasks import TASK_INSTRUCTIONS, split_choices

__all__ = [
    "LANGUAGE_CODES",
    "LANGUAGE_NAMES",
    "PATH_HINTS",
    "PEER_TAGS",
    "TaskDecision",
    "default_instruction",
    "is_task_tag",
    "map_task",
    "parse_language_tag",
]

#: Task tags of the peers (upper-cased, without ``<>``) -> (our task, domain).
PEER_TAGS: dict[str, tuple[str, str]] = {
    "ASR": ("asr", "speech"),
    "TRANSCRIBE": ("asr", "speech"),
    "HOTWORD": ("asr", "speech"),  # SLAM-LLM contextual ASR (the hotword itself stays in meta)
    "AAC": ("caption", "sound"),  # automated audio captioning: Clotho, AudioCaps, WavCaps
    "CAPTION": ("caption", "sound"),
    "MC": ("caption", "music"),  # music captioning (SLAM-LLM mc_musiccaps)
    "ST": ("translation", "speech"),
    "AST": ("translation", "speech"),
    "S2TT": ("translation", "speech"),
    "S2T_TRANSLATION": ("translation", "speech"),  # NeMo Canary
    "TRANSLATE": ("translation", "speech"),
    "SER": ("emotion", "speech"),
    "EMOTION": ("emotion", "speech"),
}

#: Dataset names in an audio path or key -> (task, domain), used only when an item has no task tag.
PATH_HINTS: tuple[tuple[str, tuple[str, str]], ...] = (
    ("musiccaps", ("caption", "music")),
    ("song_describer", ("caption", "music")),
    ("clotho", ("caption", "sound")),
    ("audiocaps", ("caption", "sound")),
    ("wavcaps", ("caption", "sound")),
    ("librispeech", ("asr", "speech")),
    ("common_voice", ("asr", "speech")),
    ("commonvoice", ("asr", "speech")),
    ("aishell", ("asr", "speech")),
    ("gigaspeech", ("asr", "speech")),
    ("wenetspeech", ("asr", "speech")),
    ("tedlium", ("asr", "speech")),
    ("voxpopuli", ("asr", "speech")),
)

#: Prompt text -> task, tried in order on the lower-cased prompt (a guess: the text says what is asked).
_PROMPT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\btranslat"), "translation"),
    (re.compile(r"\btranscri(?:be|ption|pt)\b|speech recognition|\bwhat (?:is|was) (?:said|spoken)\b"
                r"|\bwhat did (?:the |he |she |they )?(?:\w+ )?say\b"), "asr"),
    (re.compile(r"\bcaption|\bdescribe\b.*\b(?:audio|sound|clip|recording|music|song)\b|what do you hear"), "caption"),
    (re.compile(r"\bemotion"), "emotion"),
    (re.compile(r"\bgenre\b"), "genre"),
    (re.compile(r"\bgender\b|\bmale or female\b"), "gender"),
    (re.compile(r"\binstrument"), "instrument"),
)  # fmt: skip

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "ja": "Japanese",
    "zh": "Chinese", "ru": "Russian", "pt": "Portuguese", "nl": "Dutch", "ar": "Arabic", "ko": "Korean",
}  # fmt: skip
#: Language names some peers write (SLAM-LLM's ``audio_language``) -> ISO 639-1 code.
LANGUAGE_CODES: dict[str, str] = {name.lower(): code for code, name in LANGUAGE_NAMES.items()} | {
    "mandarin": "zh"
}

_LANG_TAG = re.compile(r"<\|([a-z]{2,3})\|>")
_TAG = re.compile(r"^\s*<?\s*([A-Za-z][A-Za-z0-9_-]{0,23})\s*>?\s*$")


@dataclass(frozen=True)
class TaskDecision:
    """Our task and domain for one record, the instruction to use, and how they were decided."""

    task: str
    domain: str | None
    instruction: str | None
    how: str  # e.g. "SLAM-LLM tag '<AAC>' (task-type)", "prompt text", "path (clotho)", "default --task"
    guessed: bool


def is_task_tag(text: str | None) -> bool:
    """``<AAC>``, ``ASR``, ``<|de|>``: a tag naming a task or language, not prompt text."""
    if not text:
        return False
    if _LANG_TAG.fullmatch(text.strip()):
        return True
    m = _TAG.match(text)
    return bool(m) and (text.strip().startswith("<") or m[1].isupper())


def parse_language_tag(text: str | None) -> tuple[str, str] | None:
    """``'"She'll be all right."<|de|>'`` -> (the text before the tag, ``"de"``); None without a tag."""
    if not text:
        return None
    m = _LANG_TAG.search(text)
    return (text[: m.start()].strip(), m[1]) if m else None


def default_instruction(task: str, target_lang: str | None = None) -> str | None:
    """The instruction an item of ``task`` gets when its source has only a tag."""
    if task == "translation":
        return f"Translate the speech into {LANGUAGE_NAMES.get(target_lang or '', target_lang or 'English')}."
    if task == "caption":
        return "Describe the audio in one sentence."
    return TASK_INSTRUCTIONS.get(task)


def _tag_task(tag: str) -> tuple[str, str] | None:
    key = tag.strip().strip("<>").strip().upper().replace("-", "_")
    return PEER_TAGS.get(key)


def _prompt_task(prompt: str) -> str | None:
    low = prompt.lower()
    if split_choices(prompt) is not None:
        return "mcq"
    return next((task for pattern, task in _PROMPT_RULES if pattern.search(low)), None)


def _path_task(*names: str | None) -> tuple[str, tuple[str, str]] | None:
    text = " ".join(n for n in names if n).lower()
    return next(((hint, mapped) for hint, mapped in PATH_HINTS if hint in text), None)


def map_task(
    *,
    tags: list[tuple[str, str | None]] = (),  # (field name, value) in order of precedence
    prompt: str | None = None,
    paths: tuple[str | None, ...] = (),
    default: str | None = None,
    peer: str = "",
) -> TaskDecision:
    """Decide our task and domain for a record: an explicit tag, else the prompt text, else a dataset
    name in the audio path, else ``default`` (``--task``), else ``asr``. Only a tag is not a guess.

    ``prompt`` is the record's instruction text (it is kept as the instruction when it is text, not a tag).
    An unknown tag is kept by the caller in ``meta`` and the task falls through to the guesses.
    """
    text = prompt if prompt and not is_task_tag(prompt) else None
    for field, value in tags:
        if value and (mapped := _tag_task(value)):
            task, domain = mapped
            return TaskDecision(
                task,
                domain,
                text or default_instruction(task),
                f"{peer} tag {value!r} ({field})".strip(),
                False,
            )
    if default is not None:  # the user said what the untagged items are
        return TaskDecision(default, None, text or default_instruction(default), "--task", False)
    if text and (task := _prompt_task(text)):
        domain = "music" if task == "caption" and re.search(r"\bmusic|\bsong", text.lower()) else None
        if task == "caption" and domain is None:
            hinted = _path_task(*paths)
            domain = hinted[1][1] if hinted and hinted[1][0] == "caption" else "sound"
        return TaskDecision(task, domain, text, "prompt text", True)
    if hinted := _path_task(*paths):
        hint, (task, domain) = hinted
        return TaskDecision(task, domain, text or default_instruction(task), f"path ({hint})", True)
    return TaskDecision("asr", None, text or default_instruction("asr"), "default (asr)", True)
