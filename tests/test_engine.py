"""`moeaudio bench train` measures the engine training runs: both build it with build_engine, and the
engines they get for one recipe have the same optimizer groups, LR schedule, ZeRO stage and ZeRO-3
leaf modules (the benchmark used to build its own, without the MoE block as a ZeRO-3 leaf)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_recipe
from deepspeed.utils import z3_leaf_module

import moeaudio.bench.train_step as bench
import moeaudio.train.trainer as trainer
from moeaudio.train import engine as engine_module


def describe(engine, steps: int) -> dict[str, Any]:
    """What an engine trains with, comparable across two engines of the same recipe."""
    groups = [
        {
            "name": g.get("name"),
            "lr": g["initial_lr"],  # the peak LR of the group (bench train has taken a step already)
            "weight_decay": g["weight_decay"],
            "betas": tuple(g["betas"]),
            "numel": sum(p.numel() for p in g["params"]),
        }
        for g in engine.optimizer.param_groups
    ]
    schedule = [round(engine.lr_scheduler.lr_lambdas[0](k), 12) for k in range(steps + 2)]
    leaves = sorted(n for n, m in engine.module.named_modules() if z3_leaf_module(m))
    return {
        "groups": groups,
        "schedule": schedule,
        "zero_stage": engine.zero_optimization_stage(),
        "leaf_modules": leaves,
        "clip": engine.gradient_clipping(),
        "micro_batch": engine.train_micro_batch_size_per_gpu(),
    }


def test_bench_train_and_train_build_the_same_engine(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = tiny_recipe(
        tiny_corpus,
        tmp_path / "run",
        "moe",
        "train.zero_stage=3",
        "train.max_steps=6",
        "train.warmup_steps=2",
        "train.lr_multipliers={router: 0.5}",
        "data.feature_cache=null",
    )
    built: dict[str, Any] = {}

    def recording(name: str):
        def build(model, recipe, world):
            built[name] = engine_module.build_engine(model, recipe, world)
            return built[name]

        return build

    monkeypatch.setattr(trainer, "build_engine", recording("train"))
    monkeypatch.setattr(bench, "build_engine", recording("bench"))
    trainer.setup(recipe)
    bench.bench_train(recipe, steps=1, rounds=1, warmup=0)
    train, measured = (describe(built[k].engine, recipe.train.max_steps) for k in ("train", "bench"))
    assert train == measured
    assert train["zero_stage"] == 3
    assert train["leaf_modules"] and all(n.startswith("adapter") for n in train["leaf_modules"])
    names = {g["name"] for g in train["groups"]}
    assert {"router", "adapter"} <= names
    lrs = {g["name"]: g["lr"] for g in train["groups"]}
    assert lrs["router"] == pytest.approx(0.5 * lrs["adapter"])
    assert train["schedule"][:2] == [0.5, 1.0]  # two warmup steps
