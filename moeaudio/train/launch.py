"""`moeaudio train` as a plain function: recipe -> (local ranks or) one training run, with the
validation and conflict probe of the layers below passed in to the trainer."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from moeaudio.analyze.measure import domain_examples, training_conflict
from moeaudio.config import Recipe, load_recipe
from moeaudio.errors import UsageError
from moeaudio.eval.handlers import handler_for
from moeaudio.eval.validation import validate
from moeaudio.io_utils import check_output_dir
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.options import print_json
from moeaudio.runtime.batching import Example
from moeaudio.runtime.checkpoint import load_trainer_state
from moeaudio.runtime.run_dir import RunDir
from moeaudio.train.distributed import launch_local
from moeaudio.train.options import TrainOptions
from moeaudio.train.trainer import TrainResult, run_train

__all__ = ["conflict_cosines", "train_json_summary", "train_main", "train_recipe"]


def conflict_cosines(model: AudioLLM, examples: list[Example], recipe: Recipe) -> dict[str, float]:
    """Per-domain gradient cosines of the adapter for the training log (every ``train.conflict_every``
    steps): the paper's figure (``conflict/a-b``), and per part, shared path and routed experts apart,
    with the same-domain noise floor (``conflict_by_part/...``; :func:`moeaudio.analyze.measure.training_conflict`)."""
    by_domain = domain_examples(examples)
    if len(by_domain) < 2:
        return {}
    return training_conflict(model, by_domain, batch_size=recipe.data.micro_batch_size, seed=0)


def train_recipe(
    recipe: Recipe,
    output_dir: str | Path | None = None,
    resume: bool = False,
    evaluate: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train with the standard callbacks: validation on the recipe's valid split, conflict probe."""
    validation: Any = validate if evaluate else None
    return run_train(
        recipe, output_dir, resume, validate=validation, conflict_probe=conflict_cosines, overwrite=overwrite
    )


def train_main(opts: TrainOptions) -> TrainResult | None:
    """Load the recipe, then train in this process or start ``--nproc`` local ranks (a failed rank
    raises :class:`~moeaudio.train.distributed.RankFailedError` at once). With ``--json`` everything
    but one JSON object (:func:`train_json_summary`) goes to stderr; the launcher, or rank 0 of an
    external launcher, prints it."""
    recipe = load_recipe(opts.recipe, opts.overrides or [])
    if opts.nproc < 1:
        raise UsageError(f"--nproc must be >= 1 (got {opts.nproc})")
    check_output_dir(
        opts.output_dir or recipe.train.output_dir, "--output-dir" if opts.output_dir else "train.output_dir"
    )
    start = time.time()
    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        if opts.nproc > 1:
            with RunDir(opts.output_dir or recipe.train.output_dir).lock():
                pass  # a directory a live run holds is refused here, before any rank starts (rank 0 locks it)
            launch_local(opts.launcher_args(), opts.nproc)
            result = _result_from_run(Path(opts.output_dir or recipe.train.output_dir), time.time() - start)
        else:
            result = train_recipe(
                recipe, opts.output_dir, opts.resume, evaluate=not opts.no_eval, overwrite=opts.overwrite
            )
    if opts.as_json and not opts.nproc_rank and os.environ.get("RANK", "0") == "0":
        print_json(train_json_summary(result))
    return result


def _result_from_run(run_dir: Path, wall_seconds: float) -> TrainResult:
    """What the ranks of ``--nproc`` left in the run directory, as a :class:`TrainResult`."""
    checkpoint = RunDir(run_dir).latest()
    state = load_trainer_state(checkpoint, ("step",)) if checkpoint else {}
    validation = run_dir / "validation.json"
    report = json.loads(validation.read_text()) if validation.exists() else None
    history = state.get("history", [])
    return TrainResult(run_dir, checkpoint, state.get("step", 0), history, wall_seconds, report)


def train_json_summary(result: TrainResult) -> dict[str, Any]:
    """The one object `train --json` prints: where the run is, its last logged step, the validation headlines."""
    validation = None
    if result.validation:
        validation = {}
        for task, r in result.validation.items():
            name, value = handler_for(r["kind"], r.get("scorer")).headline(r["metrics"])
            validation[task] = {
                "kind": r["kind"],
                "n": r["n"],
                "metric": name,
                "value": value,
                "chance": r["chance"],
            }
    return {
        "run_dir": str(result.run_dir),
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "steps": result.steps,
        "wall_seconds": round(result.wall_seconds, 1),
        "final": result.history[-1] if result.history else None,
        "validation": validation,
    }
