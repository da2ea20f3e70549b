"""Task vocabulary shared by the data preparers and the evaluation layer.

Why one module: preparers write ``instruction`` into every manifest line, and the evaluator
must score predictions against the *same* label strings (e.g. ``"throat clearing"`` vs
``"throatclearing"``). Keeping instructions, label sets and task->domain defaults in one
place keeps the two sides from drifting apart.

Label strings are the exact ``target`` strings the preparers write (lower case, spaces instead
of underscores) so a classifier-style evaluator can compare ``normalize(pred) in labels``.

The task registry (:data:`TASK_REGISTRY`, :func:`get_task_info`) is the one place consumers such as
the evaluator look a task up: its kind, default instruction, closed label set(s), domain and the
``moeaudio prepare`` commands that produce it. This module declares the tasks of the dataset
preparers (from the tables below); a corpus that generates its own data, like the built-in synthetic
one (:mod:`moeaudio.data.synth.labels`), adds its tasks with :func:`register_task`. Why merge rather
than overwrite: one task name (``sound``) can come from several corpora, and the evaluator needs all of
their label sets and preparers.
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = [
    "TASKS",
    "TASK_REGISTRY",
    "TASK_PREPARERS",
    "TaskInfo",
    "TaskKind",
    "get_task_info",
    "register_task",
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
    "scalar_label",
    "LABEL_META_KEYS",
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

#: Preparers (``moeaudio prepare NAME``) whose manifests carry each task. The synthetic corpus adds
#: ``synth`` to the tasks it generates when it registers them.
TASK_PREPARERS: dict[str, tuple[str, ...]] = {
    "asr": ("librispeech", "commonvoice"),
    "emotion": ("ravdess", "cremad", "iemocap"),
    "gender": ("ravdess", "cremad", "iemocap", "vocalsound"),
    "sound": ("esc50",),
    "genre": ("gtzan",),
    "vocalsound": ("vocalsound",),
    "mmau": ("mmau",),
    "mmsu": ("voicebench",),
    "openbookqa": ("voicebench",),
    "caption": ("jsonl", "csv", "hf"),
}

# --------------------------------------------------------------------------------------------------------
# Task registry
# --------------------------------------------------------------------------------------------------------

TaskKind = Literal["asr", "classification", "mcq", "caption"]


@dataclass(frozen=True)
class TaskInfo:
    """What a task name means, whichever corpus or dataset its items come from.

    ``instruction`` is the default prompt (for items without their own). ``labels`` is the closed label
    set the task is scored against by default (None: open text or per-item choices); ``label_sets`` is
    every known closed set, most preferred first, from which an evaluator picks the smallest one that
    holds all targets of the items it scores. ``preparers`` are ``moeaudio prepare`` names.
    """

    name: str
    kind: TaskKind
    instruction: str
    labels: tuple[str, ...] | None = None
    domain: str = "mixed"
    preparers: tuple[str, ...] = ()
    label_sets: tuple[tuple[str, ...], ...] = ()


def _declared_tasks() -> dict[str, TaskInfo]:
    """This module's own tasks: the dataset preparers' (from the tables above) and the benchmarks'."""
    tasks: dict[str, TaskInfo] = {}
    for name, instruction in TASK_INSTRUCTIONS.items():
        union = TASK_LABELS.get(name)
        per_dataset = [tuple(sets[name]) for sets in DATASET_LABELS.values() if name in sets]
        kind: TaskKind = "asr" if name == "asr" else "mcq" if name == "mcq" else "classification"
        tasks[name] = TaskInfo(
            name=name,
            kind=kind,
            instruction=instruction,
            labels=tuple(union) if union else None,
            domain=TASK_DOMAINS[name],
            preparers=TASK_PREPARERS.get(name, ()),
            label_sets=(*per_dataset, tuple(union)) if union else tuple(per_dataset),
        )
    # Benchmarks scored on their own: ``mcq`` items of one source (the evaluator selects them).
    for name in ("mmau", "mmsu", "openbookqa"):
        tasks[name] = TaskInfo(name, "mcq", TASK_INSTRUCTIONS["mcq"], preparers=TASK_PREPARERS[name])
    tasks["caption"] = TaskInfo(
        "caption", "caption", "Describe the audio in one sentence.", preparers=TASK_PREPARERS["caption"]
    )
    return tasks


_DECLARED: dict[str, TaskInfo] = _declared_tasks()
_PROVIDED: dict[str, list[TaskInfo]] = {}  # task -> what each registering corpus provides, in order
_MERGED: dict[str, TaskInfo] = {}

#: Modules that register the built-in corpora's tasks when imported. Imported on the registry's first
#: use, not by this module at import: the corpora import this module (for ``register_task``), and the
#: data layer must not depend on one corpus's generators to describe its own tasks.
_BUILTIN_CORPORA: tuple[str, ...] = ("moeaudio.data.synth.labels",)


def _merge(name: str) -> TaskInfo:
    """One task's entry: the corpora that provide it (in registration order), then the declaration.

    The declaration's instruction and domain win (they are what preparers write and what manifests
    default to; a corpus writes its own instruction into its items anyway). The corpora's label sets
    come first, so a corpus's closed set is the default ``labels`` rather than the union of the
    datasets'; preparers accumulate, the corpora's first.
    """
    provided = _PROVIDED.get(name, [])
    declared = _DECLARED.get(name)
    entries = [*provided, *([declared] if declared else [])]
    kinds = {e.kind for e in entries}
    if len(kinds) > 1:
        raise ValueError(f"task {name!r} is registered with different kinds: {sorted(kinds)}")
    base = declared or provided[0]
    corpus_labels = next((e.labels for e in provided if e.labels), None)
    return TaskInfo(
        name=name,
        kind=base.kind,
        instruction=base.instruction,
        labels=corpus_labels or (declared.labels if declared else None),
        domain=base.domain,
        preparers=tuple(dict.fromkeys(p for e in entries for p in e.preparers)),
        label_sets=tuple(dict.fromkeys(s for e in entries for s in e.label_sets)),
    )


def _rebuild() -> None:
    """Refill ``_MERGED`` in place (views of it stay valid): the corpora's tasks first, then the rest."""
    names = list(dict.fromkeys([*_PROVIDED, *_DECLARED]))
    merged = {name: _merge(name) for name in names}
    _MERGED.clear()
    _MERGED.update(merged)


def register_task(info: TaskInfo) -> None:
    """Register a task a corpus provides (its preparers, closed label set, instruction and domain).

    Registering a name this module already declares, or one another corpus registered, merges the two
    (see :func:`_merge`); registering the same ``info`` twice is a no-op.
    """
    if info.labels is not None and not info.label_sets:
        info = replace(info, label_sets=(info.labels,))
    provided = _PROVIDED.setdefault(info.name, [])
    if info not in provided:
        provided.append(info)
        _rebuild()


def _ensure_builtin() -> None:
    """Import the built-in corpora (once; later calls are dict look-ups) so their tasks are registered."""
    for module in _BUILTIN_CORPORA:
        importlib.import_module(module)


class _Registry(Mapping[str, TaskInfo]):
    """Read-only view of every registered task; complete on any access (built-in corpora included)."""

    def __getitem__(self, name: str) -> TaskInfo:
        _ensure_builtin()
        return _MERGED[name]

    def __iter__(self) -> Iterator[str]:
        _ensure_builtin()
        return iter(_MERGED)

    def __len__(self) -> int:
        _ensure_builtin()
        return len(_MERGED)

    def __repr__(self) -> str:
        return f"TASK_REGISTRY({', '.join(self)})"


#: Every known task: ``{name: TaskInfo}``, the built-in corpus's tasks first.
TASK_REGISTRY: Mapping[str, TaskInfo] = _Registry()


def get_task_info(name: str) -> TaskInfo:
    """The registry entry for ``name`` (KeyError naming the known tasks if there is none)."""
    try:
        return TASK_REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASK_REGISTRY)}") from None


def _item_field(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else getattr(item, key, None)


def task_kind(task: str, items: Iterable[Any] = ()) -> TaskKind:
    """How items whose manifest ``task`` field is ``task`` are scored.

    A registered task has its kind; an unknown name is ``asr`` (``asr``/``transcription``),
    ``caption`` (name contains "caption") or ``classification``. Items with ``choices`` are multiple
    choice whatever the task is called; items of an unknown task with ``meta.captions`` are captions.
    """
    items = list(items)
    info = TASK_REGISTRY.get(task)
    if info is not None:
        kind: TaskKind = info.kind
    else:
        kind = (
            "asr"
            if task in ("transcription", "asr")
            else "caption"
            if "caption" in task
            else "classification"
        )
    if kind != "mcq" and any(_item_field(i, "choices") for i in items):
        return "mcq"
    if (
        kind == "classification"
        and info is None
        and any((_item_field(i, "meta") or {}).get("captions") for i in items)
    ):
        return "caption"
    return kind


_rebuild()

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


#: ``meta`` keys that hold one label per item (the multiple-choice breakdowns read them): a preparer whose
#: source can store them as lists flattens them with :func:`scalar_label`.
LABEL_META_KEYS: tuple[str, ...] = ("category", "sub_category", "sub-category", "difficulty", "dataset")


def scalar_label(value: Any, sep: str = "; ") -> Any:
    """One label from a field that some releases store as a list.

    In MMAU's test-mini metadata ``category`` is ``"Reasoning"`` in most items and ``["Reasoning"]`` in
    some (13 of the first 120); taken as is, a per-category breakdown shows ``['Reasoning']`` as a
    category of its own. A list (or tuple, nested or not) becomes its one distinct non-empty element,
    or its distinct elements joined by ``sep`` (``"Reasoning; Counting"``); an empty list, ``None`` or
    a blank string becomes None; strings are stripped; other scalars are returned unchanged.
    """
    if isinstance(value, (list, tuple)):
        parts: list[str] = []
        stack = list(reversed(value))
        while stack:  # depth first, in order
            element = stack.pop()
            if isinstance(element, (list, tuple)):
                stack.extend(reversed(element))
                continue
            flat = scalar_label(element, sep)
            if flat is not None and str(flat) not in parts:
                parts.append(str(flat))
        return sep.join(parts) if parts else None
    if isinstance(value, str):
        return value.strip() or None
    return value


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
