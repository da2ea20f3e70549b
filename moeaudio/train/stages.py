"""Staged training: a recipe's ``train.stages`` run in order, each from the previous stage's weights.

Why: a pretrained LLM does not start reading a fresh adapter within a few hundred next-token steps
(it learns the answers' form instead); LLaVA, SALMONN and Qwen-Audio align the projector first,
then tune. Each stage here is an ordinary training run of the recipe with the stage's settings
(:func:`stage_recipe`: objective, trainable parts, tasks, steps, LR) and a fresh optimizer and
schedule, so everything a run has (DeepSpeed, checkpoints, exact ``--resume``, logs) every stage has.

Layout: stage ``k`` of ``n`` writes ``RUN/stages/k-NAME/`` (checkpoints, metrics, loss curve); the last
stage writes ``RUN`` itself, so eval, export and the analyses read a staged run as any other.
``RUN/stages.json`` records each finished stage's steps and wall time (a stage continued by ``--resume``
also its ``resumed_at_step``: its time is then the continuing process's only). ``--resume`` skips the stages
whose final checkpoint is there, continues the one that was interrupted, and starts the next one from
the previous stage's final weights, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from moeaudio.config import Recipe
from moeaudio.io_utils import atomic_write_text
from moeaudio.runtime.checkpoint import finished_checkpoint, latest_checkpoint
from moeaudio.runtime.run_dir import RunDir
from moeaudio.runtime.stage_plan import stage_dir, stage_recipe, stage_row
from moeaudio.train.trainer import TrainResult, run_train

__all__ = ["run_stages"]

STAGES_RECORD = "stages.json"


def run_stages(
    recipe: Recipe,
    output_dir: str | Path | None = None,
    resume: bool = False,
    validate: Any = None,
    conflict_probe: Any = None,
    overwrite: bool = False,
    say: Callable[[str], None] = print,
) -> TrainResult:
    """Train every stage of ``recipe.train.stages`` in order (see the module docstring); the validation
    runs after the last stage. Returns the last stage's result with the whole run's steps and time."""
    run_dir = Path(output_dir or recipe.train.output_dir)
    stages = recipe.train.stages
    start, history, previous, record = time.time(), [], None, []
    result: TrainResult | None = None
    for i, stage in enumerate(stages):
        directory = stage_dir(run_dir, recipe, i)
        label = f"stage {i + 1}/{len(stages)} '{stage.name}'"
        if stage.max_steps == 0:
            say(f"{label}: 0 steps, skipped")
            continue
        # only a resumed run skips finished stages (--overwrite with --resume is refused by the claim)
        done = finished_checkpoint(directory, stage.max_steps) if resume and not overwrite else None
        if done is not None:
            say(f"{label}: finished earlier ({done}), skipped")
            previous = done
            record.append(_stage_row(i, stage.name, stage.max_steps, None, done))
            continue
        r = stage_recipe(recipe, i, run_dir)
        row = stage_row(recipe, i)
        say(
            f"{label}: {row['objective']}, trains {', '.join(row['trains'])}, tasks {row['tasks']}, "
            f"{stage.max_steps} steps at lr {r.train.lr:g}"
            + (f", from {previous}" if previous is not None else "")
        )
        latest = latest_checkpoint(directory) if resume else None
        continuing = latest is not None
        t0 = time.time()
        last = i == len(stages) - 1
        result = run_train(
            r,
            directory,
            resume=continuing,
            validate=validate if last else None,
            conflict_probe=conflict_probe,
            overwrite=overwrite,
            init_weights=None if continuing else previous,
        )
        history.extend(result.history)
        previous = result.checkpoint
        record.append(_stage_row(i, stage.name, result.steps, time.time() - t0, result.checkpoint))
        if continuing:
            record[-1]["resumed_at_step"] = RunDir.step_of(latest)
        if _is_rank0():
            _write_record(run_dir, record)
    if result is None:  # every stage had finished earlier: nothing left to train
        final = previous if previous is not None else run_dir
        return TrainResult(run_dir, final, recipe.train.total_steps, [], time.time() - start)
    result.steps = recipe.train.total_steps
    result.history = history
    result.wall_seconds = time.time() - start
    return result


def _is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _stage_row(index: int, name: str, steps: int, seconds: float | None, checkpoint: Path) -> dict[str, Any]:
    return {
        "stage": f"{index + 1}-{name}",
        "steps": steps,
        "wall_seconds": None if seconds is None else round(seconds, 1),
        "checkpoint": str(checkpoint),
    }


def _write_record(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """``RUN/stages.json``: the stages finished so far (a stage skipped on resume keeps its earlier time)."""
    path = run_dir / STAGES_RECORD
    earlier = {}
    if path.is_file():
        try:
            earlier = {r["stage"]: r for r in json.loads(path.read_text())}
        except (ValueError, KeyError, TypeError):
            earlier = {}
    merged = [
        {**row, "wall_seconds": earlier.get(row["stage"], {}).get("wall_seconds")}
        if row["wall_seconds"] is None
        else row
        for row in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(merged, indent=2) + "\n")
