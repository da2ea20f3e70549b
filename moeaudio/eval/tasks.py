"""The evaluation task registry: what `moeaudio eval --task NAME` scores, and how.

Each :class:`EvalTask` fixes the kind of task (``asr`` / ``classification`` / ``mcq`` / ``caption``),
which manifest items belong to it, its closed label set (classification), the default prompt,
decoding settings, how an answer is extracted from free generated text, the headline metric, and
which ``moeaudio prepare ...`` command produces its data. Keeping this in one table keeps the CLI,
the runner (training's final validation) and the error messages consistent.

Label sets come from the data modules, never from the targets present in one manifest: a test split
with 2 of 12 intents would otherwise report chance as 50 % instead of 8 %.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from moeaudio.data.synth import SYNTH_TASKS
from moeaudio.data.tasks import CHOICE_LETTERS, DATASET_LABELS, TASK_INSTRUCTIONS, TASK_LABELS

__all__ = [
    "EVAL_TASKS",
    "EvalTask",
    "TaskKind",
    "closed_label_set",
    "extract_choice",
    "get_task",
    "prepare_hint",
    "task_for_manifest",
]

TaskKind = Literal["asr", "classification", "mcq", "caption"]

#: Preparers per manifest task (``moeaudio prepare NAME``); synth tasks add ``synth``.
_PREPARERS: dict[str, tuple[str, ...]] = {
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

_DEFAULT_TOKENS: dict[str, int] = {"asr": 128, "classification": 16, "mcq": 32, "caption": 64}


@dataclass(frozen=True)
class EvalTask:
    """One evaluable task.

    ``manifest_task`` is the ``task`` field its items carry (benchmarks such as MMAU are ``mcq`` items
    narrowed by ``select``). ``prompt`` is only used for items without their own instruction: the
    model is evaluated with the instruction it was trained with. ``manifests`` are extra manifest
    names (under ``data.root``) tried after ``test.jsonl`` / ``valid.jsonl``.
    """

    name: str
    kind: TaskKind
    manifest_task: str
    prompt: str
    metric: str
    labels: tuple[str, ...] | None = None
    max_new_tokens: int = 16
    num_beams: int = 1
    preparers: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    letter_answers: bool = True  # mcq: map a bare option letter ("B", "(B)") to its text before scoring
    item_filter: Callable[[Any], bool] | None = field(default=None, compare=False, repr=False)

    def selects(self, item: Any) -> bool:
        """Whether a manifest :class:`~moeaudio.data.manifest.Item` (or its dict) belongs to this task."""
        task = item["task"] if isinstance(item, dict) else item.task
        if task != self.manifest_task:
            return False
        return self.item_filter is None or bool(self.item_filter(item))

    def extract(
        self, prediction: str, labels: Sequence[str] | None = None, choices: Sequence[str] | None = None
    ):
        """The answer the metric scores: a label (or None) for classification, text otherwise."""
        from moeaudio.eval.metrics import match_label

        if self.kind == "classification":
            return match_label(prediction, list(labels or self.labels or ()))
        if self.kind == "mcq" and choices and self.letter_answers:
            return extract_choice(prediction, choices)
        return prediction

    def prepare_commands(self, out: str = "OUT") -> list[str]:
        """``moeaudio prepare`` command lines that produce this task's data (synth needs no source)."""
        return [
            f"moeaudio prepare {p} {out}" if p == "synth" else f"moeaudio prepare {p} SRC {out}"
            for p in self.preparers
        ]


def _field(item: Any, key: str) -> Any:
    if isinstance(item, dict):
        return item.get(key)
    return getattr(item, key, None)


def _meta(item: Any) -> dict[str, Any]:
    return _field(item, "meta") or {}


def _is_mmau(item: Any) -> bool:
    return str(_field(item, "id") or "").startswith("mmau/")


def _subset(name: str) -> Callable[[Any], bool]:
    return lambda item: _meta(item).get("subset") == name


def _build_registry() -> dict[str, EvalTask]:
    tasks: dict[str, EvalTask] = {}
    for name, spec in SYNTH_TASKS.items():
        kind: TaskKind = "asr" if name == "asr" else "mcq" if name == "mcq" else "classification"
        preparers = ("synth", *_PREPARERS.get(name, ()))
        tasks[name] = EvalTask(
            name=name,
            kind=kind,
            manifest_task=name,
            prompt=TASK_INSTRUCTIONS.get(name) or spec["instruction"],
            metric={"asr": "wer", "mcq": "accuracy"}.get(kind, "accuracy"),
            labels=tuple(spec["labels"]) if spec["labels"] else None,
            max_new_tokens=_DEFAULT_TOKENS[kind],
            preparers=preparers,
        )
    for name, labels in TASK_LABELS.items():
        if name in tasks:
            continue
        tasks[name] = EvalTask(
            name=name,
            kind="classification",
            manifest_task=name,
            prompt=TASK_INSTRUCTIONS[name],
            metric="accuracy",
            labels=tuple(labels),
            max_new_tokens=_DEFAULT_TOKENS["classification"],
            preparers=_PREPARERS.get(name, ("jsonl", "csv", "hf")),
        )
    tasks["mmau"] = EvalTask(
        name="mmau",
        kind="mcq",
        manifest_task="mcq",
        prompt=TASK_INSTRUCTIONS["mcq"],
        metric="accuracy",
        max_new_tokens=_DEFAULT_TOKENS["mcq"],
        preparers=_PREPARERS["mmau"],
        manifests=("test-mini.jsonl", "test.jsonl"),
        letter_answers=False,  # the official MMAU rule has no letter handling
        item_filter=_is_mmau,
    )
    for subset in ("mmsu", "openbookqa"):
        tasks[subset] = EvalTask(
            name=subset,
            kind="mcq",
            manifest_task="mcq",
            prompt=TASK_INSTRUCTIONS["mcq"],
            metric="accuracy",
            max_new_tokens=_DEFAULT_TOKENS["mcq"],
            preparers=_PREPARERS[subset],
            manifests=(f"{subset}.jsonl",),
            item_filter=_subset(subset),
        )
    tasks["caption"] = EvalTask(
        name="caption",
        kind="caption",
        manifest_task="caption",
        prompt="Describe the audio in one sentence.",
        metric="cider_d",
        max_new_tokens=_DEFAULT_TOKENS["caption"],
        preparers=_PREPARERS["caption"],
    )
    return tasks


#: Every task `moeaudio eval --task` accepts.
EVAL_TASKS: dict[str, EvalTask] = _build_registry()


def get_task(name: str) -> EvalTask:
    """The registered task, or a generic one for a task name only a custom manifest knows.

    Unknown names become classification tasks (label set from the targets) unless they look like
    ASR/captioning; this keeps `eval --manifest my.jsonl --task my_task` usable.
    """
    if name in EVAL_TASKS:
        return EVAL_TASKS[name]
    kind: TaskKind = (
        "asr" if name in ("transcription", "asr") else "caption" if "caption" in name else "classification"
    )
    return EvalTask(
        name=name,
        kind=kind,
        manifest_task=name,
        prompt=TASK_INSTRUCTIONS.get(name, ""),
        metric={"asr": "wer", "caption": "cider_d"}.get(kind, "accuracy"),
        max_new_tokens=_DEFAULT_TOKENS[kind],
        preparers=("jsonl", "csv", "hf"),
    )


def task_for_manifest(task: str, items: Iterable[Any] = ()) -> EvalTask:
    """The task used to score items whose manifest ``task`` field is ``task`` (training validation).

    Items with ``choices`` are multiple choice whatever the task is called; caption items are
    recognised by the task name or by ``meta.captions``.
    """
    items = list(items)
    spec = get_task(task)
    if spec.kind != "mcq" and any(_field(i, "choices") for i in items):
        return replace(EVAL_TASKS["mcq"], name=task, manifest_task=task)
    if (
        spec.kind == "classification"
        and task not in EVAL_TASKS
        and any(_meta(i).get("captions") for i in items)
    ):
        return replace(EVAL_TASKS["caption"], name=task, manifest_task=task)
    return spec


def closed_label_set(task: str, targets: Iterable[str]) -> list[str]:
    """The closed label set to score ``task`` against, given the targets of the items being scored.

    Order of preference: the synthetic corpus's labels (``SYNTH_TASKS``) when they contain every
    target; else the smallest known label set (per-dataset sets of :data:`DATASET_LABELS`, then the
    task union :data:`TASK_LABELS`) containing every target; else the sorted targets themselves.
    """
    wanted = set(targets)
    candidates: list[list[str]] = []
    synth = SYNTH_TASKS.get(task, {}).get("labels")
    if synth:
        candidates.append(list(synth))
    for sets in DATASET_LABELS.values():
        if task in sets:
            candidates.append(list(sets[task]))
    if task in TASK_LABELS:
        candidates.append(list(TASK_LABELS[task]))
    fitting = [c for c in candidates if wanted <= set(c)]
    if fitting:
        return list(dict.fromkeys(min(fitting, key=len)))  # min keeps the first of equal sizes (synth)
    return sorted(wanted)


_LETTER_PATTERNS = (
    re.compile(r"^\(?([A-Za-z])\)?[.):]?$"),  # "B", "(B)", "B.", "b"
    re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.):])\s"),  # "(B) dog", "B. dog", "B) dog"
    re.compile(
        r"^(?:the\s+)?(?:correct\s+)?(?:answer|option)(?:\s+is)?\s*:?\s*\(?([A-Z])\)?(?:[.):,\s]|$)", re.I
    ),
)


def extract_choice(prediction: str | None, choices: Sequence[str]) -> str | None:
    """Map an answer given as an option letter ("B", "(B)", "B. dog", "Answer: B") to the option text.

    Anything else (e.g. the option text itself, or "A dog barks") is returned unchanged for the MMAU
    rule to match; a letter that is not one of the options is also returned unchanged (and is wrong).
    """
    if prediction is None:
        return None
    text = prediction.strip()
    for pattern in _LETTER_PATTERNS:
        m = pattern.match(text)
        if m:
            letter = next(g for g in m.groups() if g).upper()
            index = CHOICE_LETTERS.find(letter)
            return choices[index] if 0 <= index < len(choices) else prediction
    return prediction


def prepare_hint(spec: EvalTask, root: str) -> str:
    """The `moeaudio prepare ...` command(s) that write data for ``spec`` into ``root`` (for errors)."""
    cmds = spec.prepare_commands(root)
    return " or ".join(f"`{c}`" for c in cmds) if cmds else "`moeaudio prepare jsonl SRC OUT`"
