"""The evaluation task registry: what `moeaudio eval --task NAME` scores, and how.

Each :class:`EvalTask` fixes the kind of task (``asr`` / ``classification`` / ``mcq`` / ``caption``),
which manifest items belong to it, its closed label set (classification), the default prompt,
decoding settings, how an answer is extracted from free generated text, the headline metric, and
which ``moeaudio prepare ...`` command produces its data. Keeping this in one table keeps the CLI,
the runner (training's final validation) and the error messages consistent.

The facts about each task (kind, default prompt, closed label sets, preparers) come from the data
layer's task registry (:data:`moeaudio.data.tasks.TASK_REGISTRY`, which the synthetic corpus registers
its tasks in); this module adds only how a task is evaluated. Label sets come from that registry, never
from the targets present in one manifest: a test split with 2 of 12 intents would otherwise report
chance as 50 % instead of 8 %.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from moeaudio.data.tasks import (
    CHOICE_LETTERS,
    TASK_INSTRUCTIONS,
    TASK_REGISTRY,
    TaskInfo,
    TaskKind,
    task_kind,
)
from moeaudio.eval.metrics import match_label

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

#: Preparers that turn any custom data into a manifest: suggested for tasks no preparer is known for.
_GENERIC_PREPARERS: tuple[str, ...] = ("jsonl", "csv", "hf")

#: Headline metric per kind; every other kind is scored by accuracy.
_METRICS: dict[str, str] = {"asr": "wer", "caption": "cider_d"}

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
    # the rule that scores it (eval.handlers.handler_for): "default" for the kind's own; for mcq "mmau"
    # (MMAU's token match, the default) or "voicebench" (VoiceBench's letter rule, MMSU and OpenBookQA)
    scorer: str = "default"
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


#: Benchmarks scored as tasks of their own: ``mcq`` items of one source, selected by ``item_filter``,
#: tried in their own manifest files.
_BENCHMARKS: dict[str, dict[str, Any]] = {
    "mmau": {
        "manifest_task": "mcq",
        "manifests": ("test-mini.jsonl", "test.jsonl"),
        "letter_answers": False,  # the official MMAU rule has no letter handling
        "item_filter": _is_mmau,
    },
    # VoiceBench's subsets are scored by VoiceBench's own MCQ rule (moeaudio.eval.voicebench)
    "mmsu": {
        "manifest_task": "mcq",
        "manifests": ("mmsu.jsonl",),
        "item_filter": _subset("mmsu"),
        "scorer": "voicebench",
    },
    "openbookqa": {
        "manifest_task": "mcq",
        "manifests": ("openbookqa.jsonl",),
        "item_filter": _subset("openbookqa"),
        "scorer": "voicebench",
    },
}


def _eval_task(info: TaskInfo) -> EvalTask:
    """How to evaluate a task of the data registry (a benchmark's selection overrides the defaults)."""
    task = EvalTask(
        name=info.name,
        kind=info.kind,
        manifest_task=info.name,
        prompt=info.instruction,
        metric=_METRICS.get(info.kind, "accuracy"),
        labels=info.labels,
        max_new_tokens=_DEFAULT_TOKENS[info.kind],
        preparers=info.preparers or _GENERIC_PREPARERS,
    )
    return replace(task, **_BENCHMARKS.get(info.name, {}))


def _build_registry() -> dict[str, EvalTask]:
    return {name: _eval_task(info) for name, info in TASK_REGISTRY.items()}


def _open_vocabulary(item: Any) -> bool:
    return _meta(item).get("vocab") == "open"


#: Every task `moeaudio eval --task` accepts.
EVAL_TASKS: dict[str, EvalTask] = _build_registry()
# Open-vocabulary transcription alone (the built-in corpus's WordNet sentences, size smol): the
# corpus's closed phrase lists would otherwise hide how a pretrained LLM does on ordinary words.
EVAL_TASKS["asr_open"] = replace(
    EVAL_TASKS["asr"], name="asr_open", item_filter=_open_vocabulary, manifests=("test_open_asr.jsonl",)
)


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
        metric=_METRICS.get(kind, "accuracy"),
        max_new_tokens=_DEFAULT_TOKENS[kind],
        preparers=_GENERIC_PREPARERS,
    )


def task_for_manifest(task: str, items: Iterable[Any] = ()) -> EvalTask:
    """The task used to score items whose manifest ``task`` field is ``task`` (training validation):
    ``get_task(task)`` with the kind the items show (:func:`moeaudio.data.tasks.task_kind`)."""
    spec = get_task(task)
    kind = task_kind(task, items)
    return spec if kind == spec.kind else replace(EVAL_TASKS[kind], name=task, manifest_task=task)


def closed_label_set(task: str, targets: Iterable[str]) -> list[str]:
    """The closed label set to score ``task`` against, given the targets of the items being scored.

    The candidates are the registry's ``label_sets`` for the task, in its order of preference: the
    registering corpora's sets (the synthetic corpus's labels), then the per-dataset sets of
    :data:`~moeaudio.data.tasks.DATASET_LABELS`, then the task union
    :data:`~moeaudio.data.tasks.TASK_LABELS`. The smallest candidate containing every target wins (the
    first of equal sizes); with none, the sorted targets themselves.
    """
    wanted = set(targets)
    info = TASK_REGISTRY.get(task)
    candidates: list[list[str]] = [list(s) for s in info.label_sets] if info else []
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
