"""One handler per task kind: how predictions are scored, what chance is, what a table shows.

The four kinds (``asr``, ``classification``, ``mcq``, ``caption``) differ in every step after
generation: the metric, the chance level, the text normaliser, the per-item prediction row, the
headline number and the table rows. Keeping each kind's answers together in one class means
adding a kind touches one place, instead of a switch in every step of the evaluator.

A benchmark whose own scorer differs from its kind's default has a handler of its own, chosen by the
task's ``scorer`` (:func:`handler_for`): VoiceBench's MMSU and OpenBookQA are multiple choice scored by
VoiceBench's letter rule (:mod:`moeaudio.eval.voicebench`), MMAU and the other multiple-choice tasks by
MMAU's token match. Every result file names its rule and where it comes from (``scoring_rule``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

from moeaudio.data.tasks import CHOICE_LETTERS, answer_letter, scalar_label
from moeaudio.eval.metrics import (
    caption_metrics,
    classification_metrics,
    mmau_is_correct,
    multiple_choice_metrics,
    wer_cer,
)
from moeaudio.eval.normalize import english_spelling_source, normalize_english, normalizer_for
from moeaudio.eval.tasks import EvalTask, closed_label_set, task_for_manifest
from moeaudio.eval.voicebench import VOICEBENCH_MCQ_SOURCE, voicebench_mcq_score
from moeaudio.runtime.batching import Example

__all__ = ["HANDLERS", "MMAU_RULE_SOURCE", "TaskHandler", "caption_references", "handler_for", "score_task"]

#: The official MMAU scorer whose ``string_match`` rule :func:`~moeaudio.eval.metrics.mmau_is_correct` reproduces.
MMAU_RULE_SOURCE = "https://github.com/Sakshi113/MMAU/blob/main/evaluation.py"

Row = tuple[str, float, float | None]  # (metric name, value, chance or None)


class TaskHandler:
    """Scoring and presentation of one task kind; subclasses override what differs."""

    kind: ClassVar[str]
    scorer: ClassVar[str] = "default"  # which rule within the kind (EvalTask.scorer)
    headline_metric: ClassVar[str] = "accuracy"

    def score(
        self, spec: EvalTask, examples: Sequence[Example], predictions: Sequence[str], seed: int = 0
    ) -> dict[str, Any]:
        """``{kind, n, metrics, chance, answers, ...}``; ``answers`` is what the metric scored per item.

        ``seed`` seeds any random step of the rule (VoiceBench's fallback letter); others ignore it.
        """
        raise NotImplementedError

    def scoring_rule(self, spec: EvalTask) -> dict[str, Any]:
        """Which rule scored the task and where it comes from (written into the result file)."""
        raise NotImplementedError

    def scored(
        self,
        examples: Sequence[Example],
        metrics: dict[str, Any],
        chance: float | None,
        answers: list,
        **extra: Any,
    ) -> dict[str, Any]:
        """The record every ``score`` returns."""
        return {
            "kind": self.kind,
            "scorer": self.scorer,
            "n": len(examples),
            "metrics": metrics,
            "chance": chance,
            **extra,
            "answers": answers,
        }

    def chance_by_metric(self, scored: dict[str, Any], examples: Sequence[Example]) -> dict[str, Any]:
        """Chance level beside each metric (empty where chance is not defined, e.g. WER)."""
        return {}

    def normalizer(self, spec: EvalTask, examples: Sequence[Example]) -> str:
        """Which text normalisation the metric applies, written into the result file."""
        raise NotImplementedError

    def prediction_row(self, item: Any, answer: Any) -> dict[str, Any]:
        """Kind-specific fields of one predictions.jsonl row (beyond id, target, prediction)."""
        return {}

    def headline(self, metrics: dict[str, Any]) -> tuple[str, float]:
        """The one number a task is judged by."""
        return self.headline_metric, metrics[self.headline_metric]

    def table_rows(self, result: dict[str, Any]) -> list[Row]:
        """Rows of the per-task table (``moeaudio eval``)."""
        name, value = self.headline(result["metrics"])
        return [(name, value, result["chance"].get(name))]

    def headline_extra(self, metrics: dict[str, Any]) -> str:
        """A second number shown after the headline in the validation table."""
        return ""


class AsrHandler(TaskHandler):
    kind = "asr"
    headline_metric = "wer"

    def score(self, spec, examples, predictions, seed=0):
        lang = examples[0].meta.get("lang") or "en"
        metrics = wer_cer([e.target for e in examples], predictions, normalizer=normalizer_for(lang))
        return self.scored(examples, metrics, None, list(predictions))

    def scoring_rule(self, spec):
        return {"name": "corpus WER and CER (jiwer) after Whisper's text normaliser"}

    def prediction_row(self, item, answer):
        """Per-item word errors and reference words: their sums over items are the corpus WER's, so
        the studies' item-level statistics recompute WER on any resample of the test set."""
        counts = wer_cer([item.target], [answer], normalizer=normalizer_for(item.lang or "en"))
        errors = counts["substitutions"] + counts["deletions"] + counts["insertions"]
        return {"domain": item.domain, "word_errors": errors, "ref_words": counts["ref_words"]}

    def normalizer(self, spec, examples):
        lang = examples[0].meta.get("lang") or "en"
        if normalizer_for(lang) is normalize_english:
            return f"whisper EnglishTextNormalizer (spelling map: {english_spelling_source()})"
        return "whisper BasicTextNormalizer"

    def table_rows(self, result):
        return [(name, result["metrics"][name], None) for name in ("wer", "cer")]

    def headline_extra(self, metrics):
        return f" (cer {metrics['cer']:.3f})"


class CaptionHandler(TaskHandler):
    kind = "caption"
    headline_metric = "cider_d"

    def score(self, spec, examples, predictions, seed=0):
        metrics = caption_metrics([caption_references(e) for e in examples], predictions)
        return self.scored(examples, metrics, None, list(predictions))

    def scoring_rule(self, spec):
        return {
            "name": "BLEU-4 (sacrebleu), ROUGE-L (rouge-score), CIDEr-D (a port of pycocoevalcap's CiderScorer)",
            "source": "https://github.com/salaniz/pycocoevalcap/blob/master/cider/cider_scorer.py",
        }

    def normalizer(self, spec, examples):
        return "moeaudio.eval.metrics.normalize_caption"

    def table_rows(self, result):
        return [(name, result["metrics"][name], None) for name in ("bleu4", "rouge_l", "cider_d")]


class McqHandler(TaskHandler):
    """Multiple choice under MMAU's rule (option letters mapped to their text first, except for MMAU)."""

    kind = "mcq"
    scorer = "mmau"

    def scoring_rule(self, spec):
        rule = {"name": "MMAU string_match", "source": MMAU_RULE_SOURCE}
        if spec.letter_answers:
            rule["note"] = "an answer given as an option letter is mapped to the option text first (moeaudio)"
        return rule

    def score(self, spec, examples, predictions, seed=0):
        answers = [
            spec.extract(p, choices=e.meta["choices"]) for e, p in zip(examples, predictions, strict=True)
        ]
        items = [
            {
                "prediction": a,
                "answer": e.target,
                "choices": e.meta["choices"],
                "domain": e.meta.get("domain"),
                "category": (e.meta.get("meta") or {}).get("category"),
                "difficulty": (e.meta.get("meta") or {}).get("difficulty"),
            }
            for e, a in zip(examples, answers, strict=True)
        ]
        chance = sum(1 / len(e.meta["choices"]) for e in examples) / len(examples)
        return self.scored(examples, multiple_choice_metrics(items), chance, answers)

    def chance_by_metric(self, scored, examples):
        return {"accuracy": scored["chance"], **_group_chance(examples)}

    def normalizer(self, spec, examples):
        letters = "option letters mapped to option text, then " if spec.letter_answers else ""
        return f"{letters}MMAU string_match (lower-case \\b\\w+\\b token sets)"

    def prediction_row(self, item, answer):
        correct = mmau_is_correct(answer, item.target, item.choices)
        return {"choices": item.choices, "domain": item.domain, "correct": correct}

    def table_rows(self, result):
        rows = super().table_rows(result)
        m, chance = result["metrics"], result["chance"]
        for group in ("by_domain", "by_category", "by_difficulty"):
            for key, vals in (m.get(group) or {}).items():
                name = f"{group.removeprefix('by_')}={key} (n={vals['total']})"
                rows.append((name, vals["accuracy"], chance.get(group, {}).get(key)))
        return rows


class ClassificationHandler(TaskHandler):
    kind = "classification"

    def scoring_rule(self, spec):
        return {"name": "closed label set: moeaudio.eval.metrics.match_label, then accuracy, UAR, macro-F1"}

    def score(self, spec, examples, predictions, seed=0):
        labels = closed_label_set(spec.manifest_task, [e.target for e in examples])
        answers = [spec.extract(p, labels=labels) for p in predictions]
        counts = Counter(e.target for e in examples)
        metrics = classification_metrics([e.target for e in examples], answers, labels)
        majority = max(counts.values()) / len(examples) if examples else None
        return self.scored(examples, metrics, 1 / len(labels), answers, majority=majority, labels=labels)

    def chance_by_metric(self, scored, examples):
        return dict.fromkeys(("accuracy", "uar", "macro_f1"), scored["chance"])

    def normalizer(self, spec, examples):
        return "moeaudio.eval.metrics.match_label (case/punctuation-insensitive label match)"

    def prediction_row(self, item, answer):
        return {"domain": item.domain, "correct": answer == item.target}

    def table_rows(self, result):
        m, chance = result["metrics"], result["chance"]
        return [(name, m[name], chance.get(name)) for name in ("accuracy", "uar", "macro_f1")]


class VoiceBenchMcqHandler(McqHandler):
    """VoiceBench's MCQ rule (MMSU, OpenBookQA): a letter read with VoiceBench's answer templates, a
    seeded random letter where none is read; the fail rate and the accuracy over parsed answers beside
    VoiceBench's accuracy (:mod:`moeaudio.eval.voicebench`)."""

    scorer = "voicebench"

    def score(self, spec, examples, predictions, seed=0):
        out = voicebench_mcq_score(predictions, [reference_letter(e) for e in examples], seed)
        chance = sum(1 / len(e.meta["choices"]) for e in examples) / len(examples)
        return self.scored(examples, out["metrics"], chance, out["items"])

    def scoring_rule(self, spec):
        return {
            "name": "VoiceBench MCQEvaluator (letter from its answer templates; random letter A-D where none)",
            "source": VOICEBENCH_MCQ_SOURCE,
            "fallback": "random.Random(seed).choice(['A', 'B', 'C', 'D']) per unparsed answer, in item order",
        }

    def chance_by_metric(self, scored, examples):
        return dict.fromkeys(("accuracy", "accuracy_parsed", "accuracy_expected"), scored["chance"])

    def normalizer(self, spec, examples):
        return "VoiceBench MCQEvaluator.extract_answer (lower-cased; answer templates, then a leading letter)"

    def prediction_row(self, item, answer):
        return {
            "choices": item.choices,
            "answer": answer["letter"],
            "extracted": answer["extracted"],
            "fallback": answer["fallback"],
            "reference": answer["reference"],
            "correct": answer["correct"],
        }

    def table_rows(self, result):
        m, chance = result["metrics"], result["chance"]
        rows = [
            (name, m[name], chance.get(name)) for name in ("accuracy", "accuracy_parsed", "accuracy_expected")
        ]
        return [*rows, ("fail_rate", m["fail_rate"], None)]

    def headline_extra(self, metrics):
        return f" (fail {metrics['fail_rate']:.3f})"


HANDLERS: dict[str, TaskHandler] = {
    h.kind: h for h in (AsrHandler(), CaptionHandler(), McqHandler(), ClassificationHandler())
}
#: Handlers of benchmarks scored by their own rule: ``(kind, scorer)`` -> handler.
SCORER_HANDLERS: dict[tuple[str, str], TaskHandler] = {("mcq", "voicebench"): VoiceBenchMcqHandler()}


def handler_for(kind: str, scorer: str | None = None) -> TaskHandler:
    """The handler of a task kind, or of a benchmark's own ``scorer`` within it."""
    return SCORER_HANDLERS.get((kind, scorer or ""), HANDLERS[kind])


def reference_letter(example: Example) -> str | None:
    """The reference option letter of a multiple-choice example (``answer``, else from the target)."""
    choices = example.meta["choices"]
    answer = example.meta.get("answer")
    if isinstance(answer, str) and answer in CHOICE_LETTERS[: len(choices)]:
        return answer
    return answer_letter(example.target or "", choices, prefer="text")


def caption_references(example: Example) -> list[str]:
    """All reference captions of an item: ``meta.meta.captions`` (or ``references``) else the target."""
    inner = example.meta.get("meta") or {}
    refs = inner.get("captions") or inner.get("references") or example.meta.get("captions")
    refs = [str(r) for r in refs] if refs else []
    return refs or [example.target or ""]


def _group_chance(examples: Sequence[Example]) -> dict[str, dict[str, float]]:
    """Chance accuracy (mean 1/#choices) per MCQ breakdown group, keyed like the metrics."""
    groups: dict[str, dict[str, list[float]]] = {"by_domain": {}, "by_category": {}, "by_difficulty": {}}
    for e in examples:
        inner = e.meta.get("meta") or {}
        p = 1 / len(e.meta["choices"])
        for name, value in (
            ("by_domain", e.meta.get("domain")),
            ("by_category", inner.get("category")),
            ("by_difficulty", inner.get("difficulty")),
        ):
            value = scalar_label(value)
            if value is not None:
                groups[name].setdefault(str(value), []).append(p)
    return {g: {k: sum(v) / len(v) for k, v in vals.items()} for g, vals in groups.items()}


def score_task(
    task: str, examples: Sequence[Example], predictions: Sequence[str], spec: EvalTask | None = None
) -> dict[str, Any]:
    """Score one task's predictions with its kind's metric; ``spec`` defaults to the task the items
    look like (:func:`~moeaudio.eval.tasks.task_for_manifest`: items with choices are MCQ, ...)."""
    spec = spec or task_for_manifest(task, [e.meta for e in examples])
    return handler_for(spec.kind, spec.scorer).score(spec, examples, predictions)
