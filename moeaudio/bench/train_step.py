"""`moeaudio bench train RECIPE`: what one training step of the recipe costs, four ways side by side.

The arms share one model initialisation, one optimizer recipe (fused AdamW over the trainer's
parameter groups, the recipe's LR schedule and gradient clipping) and the same micro-batches of the
recipe's train manifest (one micro-batch per step, length-bucketed as in training):

* ``cached``: encoder states read from the feature cache (what training does with a frozen encoder
  and ``data.feature_cache``); ``recomputed``: waveforms, the encoder run in every step.
* ``deepspeed``: the DeepSpeed engine (``engine(batch)``, ``engine.backward``, ``engine.step``) with
  the trainer's config; ``plain``: a torch loop over a copy of the same model (forward, backward,
  clip, optimizer step, scheduler step, zero_grad).

Each step's time includes collating its batch (``Collator``, as a DataLoader with
``num_workers=0`` does). Rounds are interleaved (every arm once per round, so a slower phase of a
shared machine hits all arms alike) and the median round is reported: steps/s, audio+text
tokens/s, and the process's resident memory after the arm ran (and its peak over the whole run).
Ratios: cached vs recomputed speed-up, and the DeepSpeed engine's overhead over the plain loop.
"""

from __future__ import annotations

import copy
import resource
import statistics
import time
from typing import Any

import psutil
import torch

from moeaudio.bench.stages import bench_stages, render_bench_stages
from moeaudio.config import Recipe
from moeaudio.data.loader import BucketBatchSampler
from moeaudio.model.audio_llm import build_audio_llm
from moeaudio.runtime.batching import Collator, example_length
from moeaudio.runtime.examples import ensure_corpus, load_examples, manifest_path, recipe_items, select_items
from moeaudio.runtime.vocabulary import recipe_tokenizer
from moeaudio.train.distributed import init_distributed
from moeaudio.train.engine import build_engine, build_optimizer, seed_everything

__all__ = ["bench_train", "render_bench_train"]


class _Plain:
    """The plain torch loop: what the engine's step amounts to without DeepSpeed."""

    def __init__(self, model, recipe: Recipe):
        self.model, self.clip = model, recipe.train.clip_grad
        self.opt, self.sched = build_optimizer(model, recipe)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def step(self, batch) -> None:
        loss = self.model(batch)["loss"]
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)


class _Engine:
    """The engine training builds (:func:`~moeaudio.train.engine.build_engine`), stepped as training does."""

    def __init__(self, model, recipe: Recipe, world: int):
        self.engine = build_engine(model, recipe, world).engine

    def step(self, batch) -> None:
        out = self.engine(batch)
        self.engine.backward(out["loss"])
        self.engine.step()


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def bench_train(recipe: Recipe, steps: int = 8, rounds: int = 3, warmup: int = 2) -> dict[str, Any]:
    """Steps/s, tokens/s and memory of the four arms; see the module docstring. A staged recipe
    (``train.stages``) is measured stage by stage instead (:func:`~moeaudio.bench.stages.bench_stages`)."""
    if recipe.train.stages and recipe.train.active_stage is None:
        return bench_stages(recipe, steps, rounds, warmup)
    _, _, world = init_distributed()
    recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"grad_accum": 1})})
    ensure_corpus(recipe, progress=False)
    manifest = manifest_path(recipe, "train")
    need = recipe.data.micro_batch_size * (steps + warmup)
    items = select_items(recipe, recipe_items(manifest, recipe, "bench train (the recipe's train split)"))
    items = items[: max(need, recipe.data.micro_batch_size)]
    seed_everything(recipe.train.seed)
    model = build_audio_llm(recipe, tokenizer=recipe_tokenizer(recipe))
    twin = copy.deepcopy(model)  # the plain loop's model: the same initial weights
    cache_arm = bool(recipe.encoder.freeze and recipe.data.feature_cache)
    sources = {}
    if cache_arm:
        sources["cached"] = load_examples(model, manifest, recipe, progress=False, items=items)
    waves = recipe.model_copy(update={"data": recipe.data.model_copy(update={"feature_cache": None})})
    sources["recomputed"] = load_examples(model, manifest, waves, progress=False, items=items)
    order = BucketBatchSampler(
        [example_length(e) for e in sources["recomputed"]],
        recipe.data.micro_batch_size,
        seed=recipe.train.seed,
    ).epoch_batches(0)
    batches = [order[i % len(order)] for i in range(steps + warmup)]
    collate = Collator(model)
    runners = {"deepspeed": _Engine(model, recipe, world), "plain": _Plain(twin, recipe)}
    model.train()
    twin.train()
    arms = [(src, eng) for src in sources for eng in runners]
    timings: dict[str, list[float]] = {f"{s}/{e}": [] for s, e in arms}
    tokens: dict[str, int] = {}
    rss: dict[str, float] = {}
    for s, e in arms:  # warm-up: allocator, kernels, DeepSpeed's first-step set-up
        for idx in batches[:warmup]:
            runners[e].step(collate([sources[s][i] for i in idx]))
    timed = batches[warmup:]
    for _ in range(rounds):
        for s, e in arms:
            name = f"{s}/{e}"
            t0, n = time.perf_counter(), 0
            for idx in timed:
                batch = collate([sources[s][i] for i in idx])
                n += int(batch.attention_mask.sum())
                runners[e].step(batch)
            timings[name].append(time.perf_counter() - t0)
            tokens[name] = n
            rss[name] = max(rss.get(name, 0.0), _rss_mb())
    arms_out = {}
    for name, times in timings.items():
        med = statistics.median(times)
        arms_out[name] = {
            "steps_per_s": round(len(timed) / med, 3),
            "tokens_per_s": round(tokens[name] / med, 1),
            "seconds_per_round": [round(t, 3) for t in times],
            "rss_mb": round(rss[name], 1),
        }

    def ratio(a: str, b: str) -> float | None:
        if a not in arms_out or b not in arms_out:
            return None
        return round(arms_out[a]["steps_per_s"] / arms_out[b]["steps_per_s"], 3)

    ratios = {
        "cached_speedup_deepspeed": ratio("cached/deepspeed", "recomputed/deepspeed"),
        "cached_speedup_plain": ratio("cached/plain", "recomputed/plain"),
        "deepspeed_overhead_cached": _overhead(ratio("cached/plain", "cached/deepspeed")),
        "deepspeed_overhead_recomputed": _overhead(ratio("recomputed/plain", "recomputed/deepspeed")),
    }
    return {
        "recipe": recipe.name,
        "micro_batch_size": recipe.data.micro_batch_size,
        "steps": len(timed),
        "rounds": rounds,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "arms": arms_out,
        "ratios": ratios,
        # ru_maxrss (KiB on Linux) and psutil's samples count pages a little differently: the larger
        "peak_rss_mb": round(
            max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, *rss.values()), 1
        ),
    }


def _overhead(plain_over_engine: float | None) -> float | None:
    """The engine's extra time per step relative to the plain loop (0.05 = 5 % slower)."""
    return None if plain_over_engine is None else round(plain_over_engine - 1, 3)


def render_bench_train(result: dict[str, Any]):
    from rich.table import Table

    if result.get("kind") == "stages":
        return render_bench_stages(result)

    table = Table(
        "arm", "steps/s", "tokens/s", "RSS MB",
        title=f"bench train {result['recipe']}: {result['steps']} steps x {result['rounds']} rounds "
        f"(median), micro-batch {result['micro_batch_size']}, {result['threads']} threads",
    )  # fmt: skip
    for name, arm in result["arms"].items():
        table.add_row(name, f"{arm['steps_per_s']:.2f}", f"{arm['tokens_per_s']:.0f}", f"{arm['rss_mb']:.0f}")
    r = result["ratios"]
    lines = []
    if r["cached_speedup_deepspeed"] is not None:
        lines.append(
            f"cached vs recomputed: {r['cached_speedup_deepspeed']:.2f}x (DeepSpeed), {r['cached_speedup_plain']:.2f}x (plain)"
        )
        lines.append(
            f"DeepSpeed overhead over the plain loop: {100 * r['deepspeed_overhead_cached']:+.1f} % (cached)"
        )
    lines.append(f"DeepSpeed overhead, recomputed: {100 * r['deepspeed_overhead_recomputed']:+.1f} %")
    table.caption = "; ".join(lines) + f"; peak RSS {result['peak_rss_mb']:.0f} MB"
    return table
