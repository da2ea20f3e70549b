"""The training budget resolved for a world size: global batch, accumulation, steps, tokens.

A recipe states what must not change between the arms of a study and between clusters: examples per
optimizer step (``train.global_batch_size``) and the token budget (``train.max_tokens``). What a
launch derives from them depends on the number of ranks: ``grad_accum = global_batch_size /
(micro_batch_size x world size)``. :func:`resolve_budget` does that arithmetic in one place, for the
trainer at launch (:func:`apply_budget`), for ``moeaudio inspect --world-size`` and for the study's
comparability check, so all three agree.

Why tokens, and why steps derived up front: the paper fixes a token budget (40B tokens for every
arm), so tokens are the unit a recipe copies from it; the learning-rate schedule (warmup, stable,
decay) needs its length before step 1, so the budget becomes a step count
``ceil(max_tokens / (global_batch_size x tokens_per_example))`` rather than a stop on tokens counted
on the fly (which would end the decay wherever the count happened to cross). Every arm of a study
then runs the same steps over the same examples, so they see the same tokens exactly; the declared
``tokens_per_example`` only sets how many, and the trainer warns when the measured mean differs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from moeaudio.config import Recipe, RecipeError

__all__ = ["Budget", "apply_budget", "resolve_budget"]


@dataclass(frozen=True)
class Budget:
    """What one launch of a recipe trains with, for ``world_size`` ranks."""

    world_size: int
    micro_batch_size: int | None  # None: batches capped by data.max_batch_seconds
    grad_accum: int
    global_batch_size: int | None  # examples per optimizer step (None: capped batches vary)
    max_steps: int
    steps_from: str  # "train.max_tokens" or "train.max_steps"
    max_tokens: float | None  # the budget as stated
    tokens_per_example: float | None
    tokens_per_step: float | None
    total_tokens: float | None  # max_steps x tokens_per_step (>= max_tokens: the last step completes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def resolve_budget(recipe: Recipe, world_size: int) -> Budget:
    """The budget of ``recipe`` launched on ``world_size`` ranks; :class:`RecipeError` naming the keys
    and the world sizes that work when the global batch does not divide."""
    if world_size < 1:
        raise RecipeError(f"world size must be >= 1, got {world_size}")
    t, d = recipe.train, recipe.data
    micro = None if d.max_batch_seconds else d.micro_batch_size
    accum = t.grad_accum
    global_batch = None if micro is None else micro * accum * world_size
    if t.global_batch_size is not None:
        if micro is None:
            raise RecipeError(
                f"train.global_batch_size={t.global_batch_size} counts examples, but data.max_batch_seconds="
                f"{d.max_batch_seconds:g} makes every micro-batch a different count; drop one of them"
            )
        per_pass = micro * world_size
        if t.global_batch_size % micro:
            raise RecipeError(
                f"train.global_batch_size={t.global_batch_size} is not a multiple of data.micro_batch_size "
                f"({micro}) at any world size: make it one (e.g. {micro * max(1, t.global_batch_size // micro)})"
            )
        if t.global_batch_size % per_pass:
            ok = _divisors(t.global_batch_size // micro)
            raise RecipeError(
                f"train.global_batch_size={t.global_batch_size} is not a multiple of data.micro_batch_size "
                f"({micro}) x world size ({world_size}) = {per_pass}: launch on a world size in {ok[:12]} "
                "or change data.micro_batch_size / train.global_batch_size"
            )
        accum = t.global_batch_size // per_pass
        global_batch = t.global_batch_size
    steps, source, per_step, total = t.max_steps, "train.max_steps", None, None
    if t.tokens_per_example is not None and global_batch is not None:
        per_step = global_batch * t.tokens_per_example
    if t.max_tokens is not None:
        assert per_step is not None  # TrainConfig requires global_batch_size and tokens_per_example
        steps, source = math.ceil(t.max_tokens / per_step), "train.max_tokens"
    if per_step is not None:
        total = steps * per_step
    return Budget(
        world_size=world_size,
        micro_batch_size=micro,
        grad_accum=accum,
        global_batch_size=global_batch,
        max_steps=steps,
        steps_from=source,
        max_tokens=t.max_tokens,
        tokens_per_example=t.tokens_per_example,
        tokens_per_step=per_step,
        total_tokens=total,
    )


def apply_budget(recipe: Recipe, world_size: int) -> Budget:
    """:func:`resolve_budget`, written into the recipe the run uses (``train.grad_accum`` and
    ``train.max_steps``), so the schedule, the DeepSpeed config and the saved recipe all carry it."""
    budget = resolve_budget(recipe, world_size)
    if recipe.train.grad_accum != budget.grad_accum:
        recipe.train.grad_accum = budget.grad_accum
    if recipe.train.max_steps != budget.max_steps and not recipe.train.stages:
        recipe.train.max_steps = budget.max_steps
    return budget
