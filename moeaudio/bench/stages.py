"""`moeaudio bench train RECIPE` for a staged recipe: what a step of each stage costs, and how much of
the machine's dense matmul rate it reaches.

Why: a staged recipe's budget is its stages' steps times their step times, and the stages differ by
far: ``ctc_embed`` runs the adapter and one (audio tokens x vocabulary) product, an LLM stage runs
the whole LLM forward and backward. Each stage is measured as training runs it: the stage's recipe
(:func:`~moeaudio.runtime.stage_plan.stage_recipe`), the engine training builds
(:func:`~moeaudio.train.engine.build_engine`), micro-batches of the stage's tasks drawn across the
train split with its micro-batch size, encoder states from the feature cache when the recipe caches.

FLOPs are counted, not estimated: :class:`torch.utils.flop_counter.FlopCounterMode` over one forward
and backward of every timed batch (matmuls, attention), in a pass apart from the timed one. The dense
GEMM rate is a 2048 x 2048 fp32 matmul timed in the same run, so "share of GEMM" compares the stage
with the best this machine does at that moment. Rounds are interleaved (every stage once per round).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from moeaudio.config import Recipe
from moeaudio.data.loader import BucketBatchSampler
from moeaudio.model.audio_llm import build_audio_llm
from moeaudio.runtime.batching import Collator, example_length
from moeaudio.runtime.examples import ensure_corpus, load_examples, manifest_path, recipe_items
from moeaudio.runtime.stage_plan import objective_label, stage_recipe
from moeaudio.runtime.vocabulary import recipe_tokenizer
from moeaudio.train.distributed import init_distributed
from moeaudio.train.engine import build_engine, seed_everything

__all__ = ["bench_stages", "dense_gemm_gflops", "render_bench_stages"]


def dense_gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an (n x n) @ (n x n) fp32 matmul on this machine now (median of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool, allocator
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def _spread(items: list, n: int) -> list:
    """``n`` items spread evenly over the list (a manifest is ordered by job: the first n are one task)."""
    if len(items) <= n:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


class _Stage:
    """One stage's model, engine and batches, ready to be timed."""

    def __init__(self, recipe: Recipe, index: int, steps: int, warmup: int, world: int):
        self.recipe = r = stage_recipe(recipe, index)
        self.stage = r.train.stage
        manifest = manifest_path(r, "train")
        need = r.data.micro_batch_size * (steps + warmup)
        items = _spread(recipe_items(manifest, r, "bench train (the recipe's train split)"), need)
        seed_everything(r.train.seed)
        self.model = build_audio_llm(r, tokenizer=recipe_tokenizer(r))
        self.examples = load_examples(self.model, manifest, r, progress=False, items=items)
        order = BucketBatchSampler(
            [example_length(e) for e in self.examples], r.data.micro_batch_size, seed=r.train.seed
        ).epoch_batches(0)
        self.batches = [order[i % len(order)] for i in range(steps + warmup)]
        self.warmup = warmup
        self.collate = Collator(self.model)
        self.engine = build_engine(self.model, r, world).engine
        self.model.train()
        self.times: list[float] = []
        self.flops = self._count_flops()

    def _count_flops(self) -> int:
        """Matmul and attention FLOPs of one forward and backward of every timed batch (gradients discarded)."""
        counter = FlopCounterMode(display=False)
        with counter:
            for idx in self.batches[self.warmup :]:
                self.model(self.collate([self.examples[i] for i in idx]))["loss"].backward()
        self.model.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    def step(self, idx: list[int]) -> int:
        batch = self.collate([self.examples[i] for i in idx])
        out = self.engine(batch)
        self.engine.backward(out["loss"])
        self.engine.step()
        return int(batch.attention_mask.sum())

    def run_round(self) -> None:
        t0 = time.perf_counter()
        for idx in self.batches[self.warmup :]:
            self.step(idx)
        self.times.append(time.perf_counter() - t0)


def bench_stages(recipe: Recipe, steps: int = 4, rounds: int = 3, warmup: int = 1) -> dict[str, Any]:
    """Per stage: seconds per step, steps/s, GFLOP per step, achieved GFLOP/s and its share of the dense
    GEMM rate, and the stage's projected wall time (its steps at this rate); see the module docstring."""
    _, _, world = init_distributed()
    ensure_corpus(recipe, progress=False)
    stages = [
        _Stage(recipe, i, steps, warmup, world) for i, s in enumerate(recipe.train.stages) if s.max_steps
    ]
    for s in stages:
        for idx in s.batches[: s.warmup]:
            s.step(idx)
    gemm = []
    for _ in range(rounds):
        gemm.append(dense_gemm_gflops())
        for s in stages:
            s.run_round()
    gemm_rate = statistics.median(gemm)
    rows = []
    for s in stages:
        per_step = statistics.median(s.times) / steps
        gflop = s.flops / steps / 1e9
        rows.append(
            {
                "stage": s.stage.name,
                "objective": objective_label(s.stage),
                "micro_batch_size": s.recipe.data.micro_batch_size,
                "seconds_per_step": round(per_step, 4),
                "steps_per_s": round(1 / per_step, 3),
                "gflop_per_step": round(gflop, 2),
                "gflops": round(gflop / per_step, 1),
                "share_of_gemm": round(gflop / per_step / gemm_rate, 3),
                "max_steps": s.stage.max_steps,
                "projected_minutes": round(s.stage.max_steps * per_step / 60, 1),
                "seconds_per_round": [round(t, 3) for t in s.times],
            }
        )
    return {
        "recipe": recipe.name,
        "kind": "stages",
        "steps": steps,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "gemm_gflops": round(gemm_rate, 1),
        "gemm_gflops_rounds": [round(g, 1) for g in gemm],
        "stages": rows,
        "projected_training_minutes": round(sum(r["projected_minutes"] for r in rows), 1),
    }


def render_bench_stages(result: dict[str, Any]):
    from rich.table import Table

    table = Table(
        "stage", "objective", "micro-batch", "s/step", "GFLOP/step", "GFLOP/s", "share of GEMM", "steps",
        "projected min",
        title=f"bench train {result['recipe']} by stage: {result['steps']} steps x {result['rounds']} rounds "
        f"(median), {result['threads']} threads",
    )  # fmt: skip
    for r in result["stages"]:
        table.add_row(
            r["stage"], r["objective"], str(r["micro_batch_size"]), f"{r['seconds_per_step']:.3f}",
            f"{r['gflop_per_step']:.1f}", f"{r['gflops']:.0f}", f"{r['share_of_gemm']:.2f}", str(r["max_steps"]),
            f"{r['projected_minutes']:.1f}",
        )  # fmt: skip
    table.caption = (
        f"dense 2048x2048 fp32 GEMM in the same run: {result['gemm_gflops']:.0f} GFLOP/s; FLOPs counted by "
        f"torch's FlopCounterMode; training steps alone: {result['projected_training_minutes']:.1f} min"
    )
    return table
