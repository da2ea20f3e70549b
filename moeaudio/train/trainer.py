"""The training loop: the DeepSpeed engine drives every step; this module only feeds it.

:func:`run_train` is three steps around a small state object: :func:`setup` (process group, run
directory, data (:mod:`moeaudio.runtime.train_data`), model, engine (:func:`~moeaudio.train.engine.build_engine`),
sampler, resume), :func:`train_step` (one optimizer step over
``grad_accum`` micro-batches, plus what is logged) and :func:`save` (an atomic checkpoint).
What the layers above know how to do is passed in, not imported: ``validate`` scores the final
model on the valid split, ``conflict_probe`` measures per-domain gradient cosines every
``train.conflict_every`` steps (``moeaudio.train.launch`` wires the standard ones).

What stops a run rather than letting it write garbage: a run directory that already holds
checkpoints (unless ``resume`` or ``overwrite``), a checkpoint that fails its checks on resume, a
loss term that goes NaN/Inf (stopped before the optimizer step; the last checkpoint is left as it
was) and NaN/Inf weights at a save. Sustained routing collapse only warns.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moeaudio.config import Recipe
from moeaudio.data.loader import BucketBatchSampler
from moeaudio.data.mixture import MixtureBatchSampler
from moeaudio.errors import (
    CheckpointError,
    TrainingDivergedError,
)
from moeaudio.model.audio_llm import AudioLLM, build_audio_llm
from moeaudio.model.moe import Router, end_step
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.budget import apply_budget
from moeaudio.runtime.checkpoint import WEIGHTS, check_shapes, load_trainer_state, verify_checkpoint
from moeaudio.runtime.examples import manifest_path
from moeaudio.runtime.run_dir import RunDir
from moeaudio.runtime.train_data import TrainData, check_train_data
from moeaudio.runtime.train_data import train_examples as train_data_examples
from moeaudio.runtime.vocabulary import recipe_tokenizer, saved_tokenizer
from moeaudio.train.checkpoint import load_deepspeed_state, load_stage_weights, save_checkpoint
from moeaudio.train.distributed import barrier, init_distributed
from moeaudio.train.engine import build_engine, seed_everything
from moeaudio.train.report import Reporter

#: ``validate(model, manifest, recipe, progress) -> {task: result}`` (``eval.validation.validate``).
Validator = Callable[[AudioLLM, Path, Recipe, bool], dict[str, Any]]
#: ``conflict_probe(model, train_examples, recipe) -> {"conflict/a-b": cosine}``.
ConflictProbe = Callable[[AudioLLM, list[Example], Recipe], dict[str, float]]


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    steps: int
    history: list[dict[str, float]]
    wall_seconds: float
    validation: dict[str, Any] | None = None  # {task: result} of the final validation (rank 0)


def _rng_state() -> dict[str, str]:
    def enc(obj) -> str:
        buf = io.BytesIO()
        np.save(
            buf, np.asarray(obj, dtype=np.uint8) if isinstance(obj, torch.Tensor) else obj, allow_pickle=False
        )
        return base64.b64encode(buf.getvalue()).decode()

    np_state = np.random.get_state()
    return {
        "torch": enc(torch.get_rng_state().numpy()),
        "numpy_keys": enc(np_state[1]),
        "numpy_pos": str(np_state[2]),
        "python": json.dumps(random.getstate()[1]),
    }


def _set_rng_state(state: dict[str, str]) -> None:
    def dec(text: str) -> np.ndarray:
        return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)

    torch.set_rng_state(torch.from_numpy(dec(state["torch"]).astype(np.uint8)))
    np.random.set_state(("MT19937", dec(state["numpy_keys"]), int(state["numpy_pos"]), 0, 0.0))
    random.setstate((3, tuple(json.loads(state["python"])), None))


@dataclass
class TrainState:
    """What changes from step to step, and what a checkpoint restores."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    collapse_streak: int = 0  # consecutive steps with load_spread at or above the collapse threshold


@dataclass
class Session:
    """What :func:`setup` builds once and every step uses."""

    recipe: Recipe
    run_dir: Path
    rank: int
    world: int
    quiet: bool
    reporter: Reporter
    model: AudioLLM
    engine: Any  # deepspeed.DeepSpeedEngine
    scheduler: Any
    train_examples: list[Example]
    batches: Iterator[Any]
    routers: list[Router]
    # MOEAUDIO_DUMP_LOADS: this rank's per-step expert counts and item ids, for debugging
    dump_loads: Path | None


def _resume_point(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint ``--resume`` continues from and its trainer state, both checked: ``latest``
    names a checkpoint that is there, every file it was written with is there and whole, and
    ``trainer_state.json`` holds what resume needs."""
    ckpt = RunDir(run_dir).latest()
    if ckpt is None:
        raise CheckpointError(f"--resume: no complete checkpoint under {run_dir}/checkpoints")
    verify_checkpoint(ckpt, files=None)
    return ckpt, load_trainer_state(ckpt)


def setup(
    recipe: Recipe,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    check_valid: bool = False,
    init_weights: Path | None = None,
) -> tuple[Session, TrainState]:
    """Process group, corpus, model, examples, DeepSpeed engine, sampler; restore state on resume.

    Everything the run will read is checked before the model is built: the run directory, the
    checkpoint to resume, the train manifest (and with ``check_valid`` the valid one) and its audio.
    """
    rank, _local_rank, world = init_distributed()
    run_dir = Path(output_dir or recipe.train.output_dir)
    if output_dir:  # a new recipe (the one checkpoints save): the caller's is left as it was
        recipe = recipe.model_copy(
            update={"train": recipe.train.model_copy(update={"output_dir": str(run_dir)})}
        )
    # what this launch derives from the world size (grad_accum under train.global_batch_size, the steps
    # under train.max_tokens) goes into the session's own recipe, which the checkpoints save
    recipe = recipe.model_copy(deep=True)
    budget = apply_budget(recipe, world)
    RunDir(run_dir).claim(resume, overwrite, rank, barrier)
    quiet = rank != 0 or os.environ.get("MOEAUDIO_QUIET") == "1"
    reporter = Reporter(recipe, run_dir, writes=rank == 0, prints=not quiet)
    if recipe.train.global_batch_size is not None:
        reporter.note(
            f"budget: {budget.global_batch_size} examples per step = {budget.micro_batch_size} x "
            f"{budget.grad_accum} accumulated x {world} rank(s); {budget.max_steps:,} steps ({budget.steps_from})"
        )

    ckpt, saved = _resume_point(run_dir) if resume else (None, {})
    data = check_train_data(recipe, rank, barrier, check_valid=check_valid, quiet=quiet)
    seed_everything(recipe.train.seed)
    # a resumed llm.vocab=corpus run keeps the tokenizer it started with, whatever the corpus says now
    resumed = ckpt is not None and recipe.llm.vocab == "corpus"
    model = build_audio_llm(recipe, tokenizer=saved_tokenizer(ckpt) if resumed else recipe_tokenizer(recipe))
    if ckpt is not None:  # before DeepSpeed partitions the parameters (ZeRO-3)
        check_shapes(ckpt / WEIGHTS, model, "the recipe being resumed")
    elif init_weights is not None:  # a stage starts from the previous stage's final weights
        load_stage_weights(model, init_weights)
    reporter.start(model, saved.get("step", 0))  # logs cut back to the step the run starts at
    train_examples, lengths = train_data_examples(data, model, recipe, rank, world, barrier, quiet)
    if data.streaming:
        reporter.note(
            f"data: {len(train_examples)} training items, streamed (data.loading={recipe.data.loading})"
        )
    built = build_engine(model, recipe, world)
    engine, scheduler = built.engine, built.scheduler
    cap = recipe.data.max_batch_seconds
    sampler = (
        _sampler(data, lengths, recipe, rank, world)
        if data.sources
        else BucketBatchSampler(
            lengths,
            recipe.data.micro_batch_size,
            seed=recipe.train.seed,
            bucket=recipe.data.bucket_by_length,
            rank=rank,
            world_size=world,
            max_batch_length=None if cap is None else cap * 1000,  # lengths in ms when capped
        )
    )
    state = TrainState()
    if resume:
        load_deepspeed_state(engine, ckpt)  # weights-only: nothing in the shards is run
        state = TrainState(saved["step"], saved.get("history", []))
        sampler.set_consumed(saved["batches_consumed"])
        try:
            _set_rng_state(saved["rng"][str(rank)] if str(rank) in saved["rng"] else saved["rng"]["0"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{ckpt / 'trainer_state.json'}: key 'rng' is corrupt ({type(e).__name__}: {e}); resume from "
                "another checkpoint of the run"
            ) from None
        reporter.note(f"resumed from {ckpt} at step {state.step}")

    # Worker processes build batches (feature extraction when the encoder is not cached) ahead of
    # the step; the sampler's order, not the workers, decides what is served, so resume is exact.
    loader = torch.utils.data.DataLoader(
        train_examples,
        batch_sampler=sampler,
        collate_fn=Collator(model),
        num_workers=recipe.data.num_workers,
        # its own generator: the loader's worker seed must not be drawn from the global RNG,
        # which would shift dropout masks after a resume restores that RNG
        generator=torch.Generator().manual_seed(recipe.train.seed),
    )
    engine.train()
    routers = [m for m in model.modules() if isinstance(m, Router)]
    for router in routers:  # count tokens per expert (for load_spread) even without bias balancing
        router.count_tokens = True
    dump_loads = run_dir / f"expert_loads.rank{rank}.jsonl" if os.environ.get("MOEAUDIO_DUMP_LOADS") else None
    if data.streaming and recipe.train.conflict_every:  # the probe draws from a fixed spread-out sample
        n = len(train_examples)
        train_examples = [
            train_examples[int(i)] for i in np.unique(np.linspace(0, n - 1, min(n, 512)).astype(int))
        ]
    session = Session(
        recipe, run_dir, rank, world, quiet, reporter, model, engine, scheduler, train_examples,
        iter(loader), routers, dump_loads,
    )  # fmt: skip
    return session, state


def _sampler(data: TrainData, lengths, recipe: Recipe, rank: int, world: int) -> MixtureBatchSampler:
    """``data.mixture``: each global micro-batch from one source, drawn by weight (moeaudio.data.mixture)."""
    bounds = np.cumsum(data.sizes)[:-1]
    cap = recipe.data.max_batch_seconds
    return MixtureBatchSampler(
        [part.tolist() for part in np.split(np.asarray(lengths), bounds)],
        data.weights,
        recipe.data.micro_batch_size,
        seed=recipe.train.seed,
        bucket=recipe.data.bucket_by_length,
        rank=rank,
        world_size=world,
        max_batch_length=None if cap is None else cap * 1000,
    )


TOKEN_CHECK_STEPS = 20  # steps whose mean tokens per example is held against train.tokens_per_example
TOKEN_TOLERANCE = 0.2


def watch_tokens(s: Session, state: TrainState) -> None:
    """Once, after :data:`TOKEN_CHECK_STEPS` steps: warn when the measured tokens per example differ from
    ``train.tokens_per_example`` by more than 20 %: the token budget's steps were derived from it."""
    declared = s.recipe.train.tokens_per_example
    if declared is None or s.recipe.train.max_tokens is None or state.step != TOKEN_CHECK_STEPS:
        return
    measured = float(np.mean([r["tokens_per_example"] for r in state.history[-TOKEN_CHECK_STEPS:]]))
    if abs(measured - declared) > TOKEN_TOLERANCE * declared:
        s.reporter.warn(
            f"train.tokens_per_example={declared:g}, but the first {TOKEN_CHECK_STEPS} steps averaged "
            f"{measured:.0f} tokens per example: train.max_tokens={s.recipe.train.max_tokens:g} is "
            f"{measured / declared:.2f}x what the derived {s.recipe.train.max_steps:,} steps will train; "
            f"set train.tokens_per_example={measured:.0f} and restart"
        )


def train_step(
    s: Session, state: TrainState, conflict_probe: ConflictProbe | None = None
) -> dict[str, float]:
    """One optimizer step over ``grad_accum`` micro-batches; returns the logged record."""
    recipe = s.recipe
    t0, tokens, sums, ids, examples = time.time(), 0, {}, [], 0
    for _ in range(recipe.train.grad_accum):
        batch = next(s.batches).to(s.engine.device)
        examples += len(batch.meta)
        ids.extend(m.get("id") for m in batch.meta)
        out = s.engine(batch)
        check_finite_loss(s, out, state.step + 1)  # before backward: no NaN reaches the weights
        s.engine.backward(out["loss"])
        s.engine.step()
        tokens += int(batch.attention_mask.sum())
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) / recipe.train.grad_accum
    local_loads = [r.tokens_per_expert.tolist() for r in s.routers]  # this rank's (MOEAUDIO_DUMP_LOADS)
    # all ranks: sum the loads over ranks, move the biases (bias_balancing), reset the counts
    global_loads = [load.tolist() for load in end_step(s.model).values()]
    state.step += 1
    record = {
        "step": state.step,
        "lr": s.scheduler.get_last_lr()[0],
        "tokens_per_s": tokens * s.world / (time.time() - t0),
        "tokens_per_example": tokens / max(examples, 1),
    }
    record.update(sums)
    if s.dump_loads is not None:
        s.dump_loads.parent.mkdir(parents=True, exist_ok=True)
        with open(s.dump_loads, "a") as f:
            f.write(json.dumps({"step": state.step, "counts": local_loads, "ids": ids}) + "\n")
    record.update(load_spread(global_loads))  # the run's balance, not rank 0's share of it
    watch_collapse(s, state, record)
    watch_tokens(s, state)
    # Conflict probe: rank 0 only (other ranks wait in the next step's collective); not under ZeRO-3,
    # whose partitioned parameters the probe cannot differentiate directly.
    probing = (
        conflict_probe is not None
        and s.model.objective == "ntp"  # the probe differentiates the next-token loss (lm_loss)
        and recipe.train.conflict_every
        and state.step % recipe.train.conflict_every == 0
    )
    if probing and s.rank == 0 and recipe.train.zero_stage != 3:
        record.update(conflict_probe(s.engine.module, s.train_examples, recipe))
        for router in s.routers:  # the probe's forwards are not training load
            router.tokens_per_expert.zero_()
    state.history.append(record)
    return record


LOSS_TERMS = ("lm_loss", "ctc_loss", "aux_loss", "z_loss")


def check_finite_loss(s: Session, out: dict[str, torch.Tensor], step: int) -> None:
    """Stop with :class:`TrainingDivergedError` when a loss term is NaN/Inf, naming the step and the
    term(s), before anything is applied. With several ranks the flags are all-reduced, so every rank
    stops together (one rank alone would leave the others waiting in the gradient all-reduce)."""
    names = [k for k in out if k != "loss"] + ["loss"]
    flags = torch.stack([~torch.isfinite(out[k].detach()).all() for k in names]).float()
    if s.world > 1:
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    if not bool(flags.any()):
        return
    bad = [k for k, f in zip(names, flags.tolist(), strict=True) if f and k != "loss"] or ["loss"]
    bad.sort(key=lambda k: LOSS_TERMS.index(k) if k in LOSS_TERMS else len(LOSS_TERMS))
    values = {k: float(out[k].detach().float().mean()) for k in names}
    finite = [
        f"{k} {values[k]:.4g}" for k in names if k not in bad and k != "loss" and math.isfinite(values[k])
    ]
    last = RunDir(s.run_dir).latest_name()
    state_note = (
        f"the last good checkpoint, {last}, is left as it was (continue from it with --resume)"
        if last
        else "no checkpoint had been written yet"
    )
    raise TrainingDivergedError(
        f"step {step}: {' and '.join(bad)} went {_nan_or_inf(values[bad[0]])}"
        + (f" ({', '.join(finite)} finite)" if finite else "")
        + f"; training stopped before this step's update, so no NaN weights were applied or saved, and {state_note}. "
        f"Lower train.lr (now {s.recipe.train.lr:g}) or raise train.warmup_steps (now {s.recipe.train.warmup_steps})"
    )


def _nan_or_inf(value: float) -> str:
    return "NaN" if math.isnan(value) else "infinite"


def collapse_threshold(recipe: Recipe) -> float:
    """``train.collapse_load_spread``, else 0.9 x the largest possible spread (num_experts / top_k)."""
    if recipe.train.collapse_load_spread is not None:
        return recipe.train.collapse_load_spread
    return 0.9 * recipe.adapter.num_experts / max(1, recipe.adapter.top_k)


def watch_collapse(s: Session, state: TrainState, record: dict[str, float]) -> None:
    """Warn (log line and progress bar) when ``load_spread`` stays at or above the collapse threshold
    for ``train.collapse_steps`` consecutive steps; once per episode."""
    steps = s.recipe.train.collapse_steps
    if "load_spread" not in record or steps <= 0:
        return
    threshold = collapse_threshold(s.recipe)
    state.collapse_streak = state.collapse_streak + 1 if record["load_spread"] >= threshold else 0
    if state.collapse_streak == steps:
        a = s.recipe.adapter
        s.reporter.warn(
            f"routing collapse: load_spread (max/mean tokens per expert) has been >= {threshold:.2f} for {steps} "
            f"steps (steps {state.step - steps + 1}-{state.step}; now {record['load_spread']:.2f}, the largest "
            f"possible is {a.num_experts / max(1, a.top_k):.2f}): most tokens go to the same experts. Raise "
            "adapter.aux_loss_coef, or set adapter.bias_balancing=true",
            status="[bold red]routing collapse[/]",
        )


def save(s: Session, state: TrainState) -> Path:
    """An atomic checkpoint of the current step (every rank takes part)."""
    trainer_state = {
        "step": state.step,
        "seed": s.recipe.train.seed,
        "batches_consumed": state.step * s.recipe.train.grad_accum,
        "world_size": s.world,
        "rng": _gather_rng(s.world),
        "history": state.history,
    }
    state.checkpoint = save_checkpoint(
        s.engine, s.model, s.run_dir, state.step, trainer_state, s.rank, s.recipe.train.keep_last
    )
    return state.checkpoint


def _release_run_dir(train: Callable[..., TrainResult]) -> Callable[..., TrainResult]:
    """``train`` that gives back the run directory's lock (taken by rank 0 in :meth:`RunDir.claim`)
    however the run ends: a run that fails in this process (an API user's, a test's) leaves no lock
    that would refuse the next process, nor a record that reads as a killed run."""

    @functools.wraps(train)
    def run(recipe: Recipe, output_dir: str | Path | None = None, *args: Any, **kwargs: Any) -> TrainResult:
        try:
            return train(recipe, output_dir, *args, **kwargs)
        finally:
            RunDir(output_dir or recipe.train.output_dir).release()  # a no-op where not held

    return run


@_release_run_dir
def run_train(
    recipe: Recipe,
    output_dir: str | Path | None = None,
    resume: bool = False,
    validate: Validator | None = None,
    conflict_probe: ConflictProbe | None = None,
    overwrite: bool = False,
    init_weights: Path | None = None,
) -> TrainResult:
    """Train the recipe's model with DeepSpeed; write checkpoints, metrics, TensorBoard and a loss PNG,
    then (rank 0, with ``validate``) the validation table. ``overwrite`` deletes the checkpoints a
    run directory already holds (without it, or ``resume``, such a directory is refused).
    ``init_weights``: a checkpoint whose weights a fresh run starts from (the previous stage's,
    :mod:`moeaudio.train.stages`)."""
    start_time = time.time()
    s, state = setup(recipe, output_dir, resume, overwrite, validate is not None, init_weights)
    t = s.recipe.train  # the launch's own: steps and accumulation resolved for its world size
    with s.reporter.progress(t.max_steps, state.step) as progress:
        while state.step < t.max_steps:
            s.reporter.log(train_step(s, state, conflict_probe), progress)
            if state.step == t.max_steps or (t.save_every and state.step % t.save_every == 0):
                save(s, state)
    s.reporter.finish(state.history)
    checkpoint = state.checkpoint or RunDir(s.run_dir).latest()
    result = TrainResult(s.run_dir, checkpoint, state.step, state.history, time.time() - start_time)
    if validate is not None and s.rank == 0 and t.max_steps > 0:
        s.model.eval()
        report = validate(s.model, manifest_path(recipe, "valid"), recipe, not s.quiet)
        result.validation = report
        s.reporter.final_table(report, result)
    s.reporter.close()
    return result


def _gather_rng(world: int) -> dict[str, dict[str, str]]:
    mine = _rng_state()
    if world == 1:
        return {"0": mine}
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, mine)
    return {str(i): s for i, s in enumerate(gathered)}


def load_spread(loads: list[list[float]]) -> dict[str, float]:
    """Max load / mean load over the step (1.0 = perfectly balanced), averaged over MoE layers;
    ``loads``: tokens per expert of each layer, summed over ranks."""
    if not loads:
        return {}
    counts = [torch.tensor(c, dtype=torch.float32) for c in loads]
    spreads = [float(c.max() / c.mean().clamp_min(1e-9)) for c in counts]
    return {"load_spread": sum(spreads) / len(spreads)}
