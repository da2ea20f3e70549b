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


def test_logged_load_spread_is_the_runs_not_this_ranks(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``load_spread`` is computed from the load ``end_step`` returns (summed over ranks), not from
    this rank's counters: under ``--nproc`` rank 0 logged its own share. One rank here, so the other
    ranks are imitated: the run's load that end_step returns is replaced by one where every token went
    to expert 0 (spread = the number of experts), while this rank's own counters stay balanced-ish."""
    import torch

    recipe = tiny_recipe(tiny_corpus, tmp_path / "run", "moe", "train.max_steps=2", "data.feature_cache=null")
    session, state = trainer.setup(recipe)
    seen: dict[str, Any] = {}
    real_end_step = trainer.end_step

    def with_other_ranks(model):
        seen["local"] = [r.tokens_per_expert.tolist() for r in session.routers]
        loads = real_end_step(model)
        run = {k: torch.zeros_like(v) for k, v in loads.items()}
        for k, v in loads.items():
            run[k][0] = 3 * v.sum()  # three ranks' tokens, all on expert 0
        return run

    monkeypatch.setattr(trainer, "end_step", with_other_ranks)
    record = trainer.train_step(session, state)
    experts = recipe.adapter.num_experts
    own = trainer.load_spread(seen["local"])["load_spread"]
    assert 1.0 <= own < experts - 0.5  # this rank's counters: not collapsed
    assert record["load_spread"] == pytest.approx(experts)  # what is logged: the run's
