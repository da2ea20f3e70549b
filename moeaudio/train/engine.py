"""The DeepSpeed engine a recipe trains with, built in one place (:func:`build_engine`).

Training (:mod:`moeaudio.train.trainer`) and ``moeaudio bench train`` (:mod:`moeaudio.bench.train_step`)
both build their engine here, so the benchmark measures the engine training runs: the same parameter
groups (one per part, each with its LR multiplier; norms and biases without weight decay), the fused
AdamW, the recipe's LR schedule, the DeepSpeed config and, under ZeRO-3, the MoE block registered as a
leaf module (an expert that gets no tokens on one rank must not hang the others).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moeaudio.config import Recipe, RecipeError
from moeaudio.model.moe import MoELayer
from moeaudio.runtime.device import use_cuda
from moeaudio.train.schedule import lr_multiplier

__all__ = [
    "Engine",
    "build_engine",
    "build_optimizer",
    "deepspeed_config",
    "param_groups",
    "seed_everything",
    "skip_lone_allreduce",
]

PARTS = ("encoder", "frontend", "router", "adapter", "llm")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def param_groups(model, recipe: Recipe) -> list[dict[str, Any]]:
    """One group per part (encoder, frontend, router, adapter, llm), each with its LR multiplier.

    Norms and biases get no weight decay. Multipliers come from ``train.lr_multipliers``
    (e.g. ``{router: 0.1}``); parts without one use the peak LR.
    """
    mult = recipe.train.lr_multipliers
    unknown = set(mult) - set(PARTS)
    if unknown:
        raise RecipeError(
            f"train.lr_multipliers: unknown part(s) {sorted(unknown)}; use encoder, frontend, router, adapter, llm"
        )
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = name.split(".", 1)[0]
        part = {"stacker": "frontend"}.get(part, part)
        if part == "adapter" and ".router." in f".{name}.":
            part = "router"
        no_decay = p.ndim < 2
        groups.setdefault((part, no_decay), []).append(p)
    return [
        {
            "params": params,
            "name": f"{part}{'-no_decay' if no_decay else ''}",
            "lr": recipe.train.lr * mult.get(part, 1.0),
            "weight_decay": 0.0 if no_decay else recipe.train.weight_decay,
        }
        for (part, no_decay), params in sorted(groups.items())
    ]


def build_optimizer(model, recipe: Recipe) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Fused AdamW over :func:`param_groups` and the recipe's LR schedule (what the engine steps, and
    what ``bench train``'s plain torch loop steps without DeepSpeed)."""
    # fused: one kernel per step instead of a loop over tensors (docs/benchmarks.md)
    optimizer = torch.optim.AdamW(
        param_groups(model, recipe), lr=recipe.train.lr, betas=tuple(recipe.train.betas), fused=True
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(recipe.train))


def deepspeed_config(recipe: Recipe, world_size: int) -> dict[str, Any]:
    t = recipe.train
    bf16 = t.precision == "bf16" or (t.precision == "auto" and use_cuda())
    zero: dict[str, Any] = {"stage": t.zero_stage}
    if t.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if t.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    return {
        "train_micro_batch_size_per_gpu": recipe.data.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "train_batch_size": recipe.data.micro_batch_size * t.grad_accum * world_size,
        "gradient_clipping": t.clip_grad,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }


def skip_lone_allreduce(engine, recipe: Recipe, world_size: int) -> None:
    """One rank without ZeRO: no gradient all-reduce after backward.

    DeepSpeed still flattens every gradient into a buffer, "reduces" it over the one rank and copies
    it back, for gradients that come out bit for bit the same (its share of a step: docs/benchmarks.md).
    ZeRO stages reduce inside their optimizer and are left alone.
    """
    if world_size == 1 and recipe.train.zero_stage == 0:
        engine.enable_backward_allreduce = False


@dataclass
class Engine:
    """What :func:`build_engine` returns: the DeepSpeed engine (``engine.module`` is the model) and
    the LR scheduler it steps."""

    engine: Any  # deepspeed.DeepSpeedEngine
    scheduler: Any


def build_engine(model: torch.nn.Module, recipe: Recipe, world: int) -> Engine:
    """The DeepSpeed engine ``recipe`` trains ``model`` with on ``world`` ranks (see the module
    docstring). Call it after the process group is up (:func:`~moeaudio.train.distributed.init_distributed`)."""
    import deepspeed  # lazy: init_distributed picks the accelerator before deepspeed is imported

    if recipe.train.zero_stage == 3 and recipe.adapter.kind == "moe":
        from deepspeed.utils import set_z3_leaf_modules

        set_z3_leaf_modules(model, [MoELayer])  # an expert idle on one rank must not hang ZeRO-3
    optimizer, scheduler = build_optimizer(model, recipe)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(recipe, world)
    )
    skip_lone_allreduce(engine, recipe, world)
    return Engine(engine, scheduler)
