"""Every task of a manifest scored at once: what training passes in as its final validation.

The trainer does not import this module: ``moeaudio.train.launch`` hands :func:`validate` to it as a
callback, so the training loop stays testable on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from moeaudio.config import Recipe
from moeaudio.eval.generation import generate_all
from moeaudio.eval.handlers import handler_for, score_task
from moeaudio.eval.tasks import task_for_manifest
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.runtime.batching import Example
from moeaudio.runtime.examples import load_examples

__all__ = ["evaluate_examples", "render_report", "validate"]


def evaluate_examples(
    model: AudioLLM, examples: list[Example], recipe: Recipe, progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Per-task results (with predictions) for already-loaded examples, grouped by their task."""
    by_task: dict[str, list[Example]] = {}
    for e in examples:
        by_task.setdefault(e.meta["task"], []).append(e)
    report = {}
    model.eval()
    with torch.no_grad():
        for task, items in sorted(by_task.items()):
            if recipe.eval.max_items:
                items = items[: recipe.eval.max_items]
            spec = task_for_manifest(task, [e.meta for e in items])
            preds, rate = generate_all(
                model,
                items,
                recipe.eval.batch_size,
                recipe.eval.max_new_tokens or spec.max_new_tokens,  # as `moeaudio eval` decodes it
                recipe.eval.num_beams,
                progress,
            )
            result = score_task(task, items, preds, spec)
            result["items_per_s"] = rate
            answers = result.pop("answers")
            result["predictions"] = [
                {"id": e.meta["id"], "target": e.target, "prediction": p, "answer": a}
                for e, p, a in zip(items, preds, answers, strict=True)
            ]
            report[task] = result
    return report


def validate(model: AudioLLM, manifest: Path, recipe: Recipe, progress: bool = True) -> dict[str, Any]:
    """Score every task in ``manifest`` (the recipe's filters apply)."""
    return evaluate_examples(
        model, load_examples(model, manifest, recipe, progress=progress), recipe, progress
    )


def render_report(report: dict[str, Any], title: str = "evaluation") -> Table:
    """One row per task: its headline metric with chance beside it."""
    table = Table("task", "kind", "n", "metric", "value", "chance", title=title)
    for task, result in report.items():
        handler = handler_for(result["kind"], result.get("scorer"))
        name, value = handler.headline(result["metrics"])
        chance = "-" if result["chance"] is None else f"{result['chance']:.3f}"
        extra = handler.headline_extra(result["metrics"])
        table.add_row(task, result["kind"], str(result["n"]), name, f"{value:.3f}{extra}", chance)
    return table
