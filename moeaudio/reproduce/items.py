"""Per-item scores of a study column, read from the eval files a run wrote.

Why: a column's verdict must include test-set sampling (:func:`moeaudio.reproduce.stats.paired_item_bootstrap`),
so it needs each test item's score, not only the task's mean. ``moeaudio eval`` writes one line per
item beside its result file (``<task>.predictions.jsonl``): ``correct`` for classification and
multiple choice, ``word_errors`` and ``ref_words`` for ASR, and the item's ``domain``. A column's metric
maps to a per-item ``(numerator, denominator)`` whose sums give the column's number:

* ``accuracy`` (or no metric on an accuracy task): ``(correct, 1)``;
* ``by_domain.<d>.accuracy``: the same, over the items of domain ``d``;
* ``wer``: ``(word errors, reference words)``.

Other metrics (UAR, macro-F1, CER, CIDEr) are not sums over items; their columns keep the seed-level
statistics, and so do eval files written before the per-item fields existed (None is returned).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["item_scores", "predictions_path"]


def predictions_path(result_file: Path) -> Path:
    """``eval/mcq.json`` -> ``eval/mcq.predictions.jsonl`` (the file :mod:`moeaudio.eval.evaluate` writes)."""
    stem = result_file.with_suffix("") if result_file.suffix == ".json" else result_file
    return stem.parent / f"{stem.name}.predictions.jsonl"


def _metric_of(result_file: Path, metric: str | None) -> str | None:
    if metric:
        return metric
    try:
        return str(json.loads(result_file.read_text())["metric"])
    except (OSError, ValueError, KeyError):
        return None


def item_scores(result_file: str | Path, metric: str | None = None) -> dict[str, tuple[float, float]] | None:
    """``{item id: (numerator, denominator)}`` of one column in one run, or None where the column's
    metric is not a sum over items or the predictions file lacks the per-item fields."""
    result_file = Path(result_file)
    metric = _metric_of(result_file, metric)
    path = predictions_path(result_file)
    if metric is None or not path.exists():
        return None
    parts = metric.split(".")
    domain = parts[1] if len(parts) == 3 and parts[0] == "by_domain" and parts[2] == "accuracy" else None
    if metric not in ("accuracy", "wer") and domain is None:
        return None
    out: dict[str, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if metric == "wer":
            if "word_errors" not in row or "ref_words" not in row:
                return None
            out[row["id"]] = (float(row["word_errors"]), float(row["ref_words"]))
            continue
        if "correct" not in row or (domain is not None and "domain" not in row):
            return None
        if domain is None or row["domain"] == domain:
            out[row["id"]] = (float(bool(row["correct"])), 1.0)
    return out or None
