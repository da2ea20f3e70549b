"""A staged recipe's plan (``train.stages``): the recipe each stage runs with, where it writes, and a
row per stage for ``inspect`` and the start of a run. Pure functions of the recipe; the training
itself is :mod:`moeaudio.train.stages`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moeaudio.config import Recipe, StageConfig

__all__ = ["STAGES_DIR", "objective_label", "stage_dir", "stage_recipe", "stage_row", "stage_summary"]

STAGES_DIR = "stages"


def stage_recipe(recipe: Recipe, index: int, output_dir: str | Path | None = None) -> Recipe:
    """The recipe stage ``index`` trains with: the stage's settings over the recipe's own, the stage
    marked active (the model reads its objective and trainable parts from there), its own output folder.
    A new object: ``recipe`` itself is not changed."""
    stage = recipe.train.stages[index]
    train = {"active_stage": index, "max_steps": stage.max_steps}
    for key in ("lr", "warmup_steps", "decay_fraction", "save_every"):
        if getattr(stage, key) is not None:
            train[key] = getattr(stage, key)
    run_dir = Path(output_dir or recipe.train.output_dir)
    train["output_dir"] = str(stage_dir(run_dir, recipe, index))
    data: dict[str, Any] = {"tasks": stage.tasks} if stage.tasks is not None else {}
    if stage.mixture is not None:
        data["mixture"] = stage.mixture
    if stage.micro_batch_size is not None:
        data["micro_batch_size"] = stage.micro_batch_size
    return recipe.model_copy(
        update={
            "train": recipe.train.model_copy(update=train),
            "data": recipe.data.model_copy(update=data),
        }
    )


def stage_dir(run_dir: Path, recipe: Recipe, index: int) -> Path:
    """Where stage ``index`` writes: ``RUN/stages/k-NAME`` (k counted from 1), the last stage ``RUN``."""
    stages = recipe.train.stages
    if index == len(stages) - 1:
        return run_dir
    return run_dir / STAGES_DIR / f"{index + 1}-{stages[index].name}"


def stage_summary(recipe: Recipe) -> list[dict[str, Any]]:
    """One row per stage, for ``inspect``: see :func:`stage_row`."""
    return [stage_row(recipe, i) for i in range(len(recipe.train.stages or []))]


def objective_label(stage: StageConfig) -> str:
    """A stage's loss as people read it: ``ntp + 0.3 ctc_embed`` when it keeps the alignment's CTC."""
    return stage.objective + (f" + {stage.ctc_weight:g} ctc_embed" if stage.ctc_weight else "")


def stage_row(recipe: Recipe, index: int) -> dict[str, Any]:
    """Stage ``index`` as ``inspect`` and the start of the stage show it: name, objective, trains,
    tasks, steps, lr, micro-batch."""
    stage, r = recipe.train.stages[index], stage_recipe(recipe, index)
    return {
        "stage": f"{index + 1}-{stage.name}",
        "objective": objective_label(stage),
        "trains": recipe.trained_parts(stage),
        "tasks": _tasks_label(r),
        "steps": stage.max_steps,
        "lr": r.train.lr,
        "micro_batch_size": r.data.micro_batch_size,
    }


def _tasks_label(recipe: Recipe) -> str | list[str]:
    """The tasks a stage trains on: its data.tasks, "all", or a mixture's sources and weights."""
    if recipe.data.mixture:
        total = sum(m.weight for m in recipe.data.mixture)
        return [
            f"{m.name} {m.weight / total:.0%}: {'+'.join(m.tasks) if m.tasks else 'all'}"
            for m in recipe.data.mixture
        ]
    return recipe.data.tasks or "all"
