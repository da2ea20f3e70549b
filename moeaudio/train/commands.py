"""`moeaudio train` (and ``python -m moeaudio.train``): the options in, a run out.

The flags that are recipe settings (``--output-dir`` is ``train.output_dir``) are merged into the
recipe in one place (:func:`moeaudio.config.with_settings`), so everything below reads the recipe
alone. With ``--nproc N`` the ranks are started here (:func:`~moeaudio.train.distributed.launch_local`)
and the result is read back from the run directory; otherwise :func:`~moeaudio.train.launch.train_recipe`
trains in this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

from moeaudio.config import load_recipe, with_settings
from moeaudio.errors import UsageError
from moeaudio.eval.handlers import handler_for
from moeaudio.io_utils import check_output_dir
from moeaudio.options import print_json
from moeaudio.runtime.checkpoint import load_trainer_state
from moeaudio.runtime.run_dir import RunDir
from moeaudio.train.distributed import launch_local
from moeaudio.train.launch import train_recipe
from moeaudio.train.options import TrainOptions
from moeaudio.train.trainer import TrainResult

__all__ = ["train_command", "train_json_summary"]


def train_command(opts: TrainOptions) -> TrainResult | None:
    """Load the recipe, then train in this process or start ``--nproc`` local ranks (a failed rank
    raises :class:`~moeaudio.train.distributed.RankFailedError` at once). With ``--json`` everything
    but one JSON object (:func:`train_json_summary`) goes to stderr; the launcher, or rank 0 of an
    external launcher, prints it."""
    if opts.nproc < 1:
        raise UsageError(f"--nproc must be >= 1 (got {opts.nproc})")
    recipe = with_settings(
        load_recipe(opts.recipe, opts.overrides or []), opts.recipe_settings(), "--output-dir"
    )
    run = RunDir(recipe.train.output_dir)
    check_output_dir(run.path, "--output-dir" if opts.output_dir else "train.output_dir")
    start = time.time()
    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        if opts.nproc > 1:
            with run.lock():
                pass  # a directory a live run holds is refused here, before any rank starts (rank 0 locks it)
            launch_local(opts.launcher_args(), opts.nproc)
            result = _result_from_run(run, time.time() - start)
        else:
            result = train_recipe(
                recipe, None, opts.resume, evaluate=not opts.no_eval, overwrite=opts.overwrite
            )
    if opts.as_json and not opts.nproc_rank and os.environ.get("RANK", "0") == "0":
        print_json(train_json_summary(result))
    return result


def _result_from_run(run: RunDir, wall_seconds: float) -> TrainResult:
    """What the ranks of ``--nproc`` left in the run directory, as a :class:`TrainResult`."""
    checkpoint = run.latest()
    state = load_trainer_state(checkpoint, ("step",)) if checkpoint else {}
    validation = run.path / "validation.json"
    report = json.loads(validation.read_text()) if validation.exists() else None
    history = state.get("history", [])
    return TrainResult(run.path, checkpoint, state.get("step", 0), history, wall_seconds, report)


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
