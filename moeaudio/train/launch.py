"""A recipe -> one training run with the standard callbacks: the validation and conflict probe of the
layers below, passed in to the trainer (the command itself: :mod:`moeaudio.train.commands`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moeaudio.analyze.measure import domain_examples, training_conflict
from moeaudio.config import Recipe
from moeaudio.eval.validation import validate
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.runtime.batching import Example
from moeaudio.train.stages import run_stages
from moeaudio.train.trainer import TrainResult, run_train

__all__ = ["conflict_cosines", "train_recipe"]


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
    """Train with the standard callbacks: validation on the recipe's valid split, conflict probe; a
    recipe with ``train.stages`` trains its stages in order (:mod:`moeaudio.train.stages`)."""
    validation: Any = validate if evaluate else None
    run = run_stages if recipe.train.stages and recipe.train.active_stage is None else run_train
    return run(
        recipe, output_dir, resume, validate=validation, conflict_probe=conflict_cosines, overwrite=overwrite
    )
