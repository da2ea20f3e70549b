"""`moeaudio train` as a plain function: recipe -> (local ranks or) one training run, with the
validation and conflict probe of the layers below passed in to the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moeaudio.analyze.run import conflict_probe, domain_examples
from moeaudio.config import Recipe, load_recipe
from moeaudio.errors import UsageError
from moeaudio.eval.validation import validate
from moeaudio.io_utils import check_output_dir
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.runtime.batching import Example
from moeaudio.train.distributed import launch_local
from moeaudio.train.options import TrainOptions
from moeaudio.train.trainer import TrainResult, run_train

__all__ = ["conflict_cosines", "train_main", "train_recipe"]


def conflict_cosines(model: AudioLLM, examples: list[Example], recipe: Recipe) -> dict[str, float]:
    """Per-domain gradient cosines of the adapter (the paper's conflict figure), for the training log."""
    by_domain = domain_examples(examples)
    if len(by_domain) < 2:
        return {}
    result = conflict_probe(model, by_domain, num_batches=2, batch_size=recipe.data.micro_batch_size, seed=0)
    domains = sorted(result["cosine"])
    return {
        f"conflict/{a}-{b}": float(result["cosine"][a][b])
        for i, a in enumerate(domains)
        for b in domains[i + 1 :]
    }


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
    """Load the recipe, then train in this process or start ``--nproc`` local ranks."""
    recipe = load_recipe(opts.recipe, opts.overrides or [])
    if opts.nproc < 1:
        raise UsageError(f"--nproc must be >= 1 (got {opts.nproc})")
    check_output_dir(
        opts.output_dir or recipe.train.output_dir, "--output-dir" if opts.output_dir else "train.output_dir"
    )
    if opts.nproc > 1:
        code = launch_local(opts.launcher_args(), opts.nproc)
        if code:
            raise SystemExit(code)
        return None
    return train_recipe(
        recipe, opts.output_dir, opts.resume, evaluate=not opts.no_eval, overwrite=opts.overwrite
    )
