"""Training with DeepSpeed on CPU: ZeRO 0/2/3 learn, a 2-process ZeRO-3 run with an idle expert,
exact resume, checkpoint reload without DeepSpeed, atomic saves, LR schedules and per-part LRs.

One tiny run per ZeRO stage is shared by several tests (module fixture ``stage_run``): 10 steps on
the ASR items of the tiny corpus (16 clips, 4 per micro-batch, so 4 batches per epoch and the
resume point at step 6 lies inside the second epoch), with attention dropout (the RNG matters),
aux-loss-free bias balancing (the router biases matter) and a router LR multiplier.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_recipe

from moeaudio.config import TrainConfig
from moeaudio.errors import CheckpointError
from moeaudio.runtime.checkpoint import latest_checkpoint, load_model, load_trainer_state
from moeaudio.train.engine import param_groups
from moeaudio.train.launch import train_recipe
from moeaudio.train.schedule import lr_multiplier

STEPS, SAVE_EVERY, ROUTER_MULT = 10, 6, 0.5
BASE = [
    "data.tasks=[asr]",
    "data.micro_batch_size=4",
    f"train.max_steps={STEPS}",
    f"train.save_every={SAVE_EVERY}",
    "train.keep_last=3",
    "train.warmup_steps=2",
    f"train.lr_multipliers.router={ROUTER_MULT}",
    "adapter.bias_balancing=true",
    "adapter.bias_update_rate=0.01",
    "llm.tiny.attention_dropout=0.1",
]


pytestmark = pytest.mark.usefixtures("quiet_training")  # conftest: no reporter output


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature_cache")


def recipe_for(corpus: Path, run_dir: Path, cache: Path, *overrides: str):
    return tiny_recipe(corpus, run_dir, "moe", *BASE, f"data.feature_cache={cache}", *overrides)


@dataclass
class Run:
    result: Any  # TrainResult
    model: torch.nn.Module  # the in-training model (ZeRO-3: still partitioned, fetched by hooks)
    engine: Any
    batches: list[list[int]]  # micro-batches the sampler served, in order


def train(recipe, resume: bool = False) -> Run:
    """run_train, keeping hold of the model, the engine and the sampler's batches."""
    import deepspeed

    import moeaudio.train.trainer as trainer

    seen: dict[str, Any] = {"batches": []}
    real_build, real_init, real_sampler = (
        trainer.build_audio_llm,
        deepspeed.initialize,
        trainer.BucketBatchSampler,
    )

    def build(*args, **kwargs):
        seen["model"] = real_build(*args, **kwargs)
        return seen["model"]

    def initialize(*args, **kwargs):
        out = real_init(*args, **kwargs)
        seen["engine"] = out[0]
        return out

    class RecordingSampler(real_sampler):
        def __iter__(self):
            for batch in super().__iter__():
                seen["batches"].append(batch)
                yield batch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "build_audio_llm", build)
        mp.setattr(deepspeed, "initialize", initialize)
        mp.setattr(trainer, "BucketBatchSampler", RecordingSampler)
        result = train_recipe(recipe, resume=resume, evaluate=False)
    return Run(result, seen["model"], seen["engine"], seen["batches"])


@pytest.fixture(scope="module")
def stage_run(tiny_corpus: Path, feature_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    runs: dict[int, Run] = {}

    def get(stage: int) -> Run:
        if stage not in runs:
            run_dir = tmp_path_factory.mktemp(f"zero{stage}")
            runs[stage] = train(recipe_for(tiny_corpus, run_dir, feature_cache, f"train.zero_stage={stage}"))
        return runs[stage]

    return get


def losses(history: list[dict[str, float]], key: str = "loss") -> list[float]:
    return [r[key] for r in history]


# ----------------------------------------------------------------------------- 1. ZeRO 0/2/3 learn


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_zero_stage_trains_and_loss_falls(stage_run, stage: int):
    run = stage_run(stage)
    history = run.result.history
    assert run.result.steps == STEPS and [r["step"] for r in history] == list(range(1, STEPS + 1))
    loss = losses(history)
    assert all(math.isfinite(v) for v in loss)
    first, last = sum(loss[:3]) / 3, sum(loss[-3:]) / 3
    assert last < first - 0.3, f"ZeRO-{stage}: loss did not fall: {loss}"
    assert run.result.checkpoint.name == f"step-{STEPS:06d}"
    # the aux-loss-free biases moved (they are trained state that must survive checkpoints)
    biases = [b for n, b in run.model.named_buffers() if n.endswith("expert_bias")]
    assert biases and all(b.abs().sum() > 0 for b in biases)


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_stages_agree_with_stage_0(stage_run, stage: int):
    """One process, same seed: partitioning changes where tensors live, not the maths."""
    ref, run = stage_run(0).result.history, stage_run(stage).result.history
    for key in ("loss", "lm_loss", "aux_loss", "lr"):
        assert losses(run, key) == pytest.approx(losses(ref, key), rel=1e-4, abs=1e-6), key


# ----------------------------------------------------------------------------- 6. per-part LRs


def test_param_groups_per_part_multipliers(tiny_corpus: Path, tmp_path: Path):
    from moeaudio.model.audio_llm import build_audio_llm

    recipe = tiny_recipe(
        tiny_corpus, tmp_path, "moe", "train.lr=0.01", "train.lr_multipliers={router: 0.1, llm: 0.5}"
    )
    model = build_audio_llm(recipe)
    groups = {g["name"]: g for g in param_groups(model, recipe)}
    assert groups["router"]["lr"] == pytest.approx(0.001)
    assert groups["llm"]["lr"] == pytest.approx(0.005)
    assert groups["adapter"]["lr"] == pytest.approx(0.01)  # no multiplier: the peak LR
    assert set(groups) == {"adapter", "adapter-no_decay", "llm", "llm-no_decay", "router"}  # encoder frozen
    router_ids = {id(p) for n, p in model.named_parameters() if ".router." in n}
    assert {id(p) for p in groups["router"]["params"]} == router_ids
    assert not any(id(p) in router_ids for g in groups.values() if g["name"] != "router" for p in g["params"])
    assert all(g["weight_decay"] == 0.0 for name, g in groups.items() if name.endswith("-no_decay"))
    # every trainable parameter in exactly one group; the frozen encoder in none
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="routr"):
        param_groups(model, tiny_recipe(tiny_corpus, tmp_path, "moe", "train.lr_multipliers.routr=0.1"))


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_router_lr_multiplier_reaches_deepspeed_optimizer(stage_run, stage: int):
    run = stage_run(stage)
    recipe = run.model.recipe
    groups = {g["name"]: g for g in run.engine.optimizer.param_groups}
    assert {"router", "adapter", "llm"} <= set(groups)
    final = lr_multiplier(recipe.train)(STEPS)
    for name, mult in (("router", ROUTER_MULT), ("adapter", 1.0), ("llm", 1.0)):
        assert groups[name]["initial_lr"] == pytest.approx(recipe.train.lr * mult), name
        assert groups[name]["lr"] == pytest.approx(recipe.train.lr * mult * final), name


# ----------------------------------------------------------------------------- 6. schedules


def test_wsd_schedule_shape():
    cfg = TrainConfig(max_steps=100, warmup_steps=10, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.1)
    f = lr_multiplier(cfg)
    assert [f(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])  # linear warmup
    assert all(f(s) == 1.0 for s in range(10, 81))  # stable until the last 20% of steps
    assert f(90) == pytest.approx(0.55)  # linear decay: halfway
    assert f(100) == pytest.approx(0.1) and f(150) == pytest.approx(0.1)  # floor, never below
    decay = [f(s) for s in range(80, 101)]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert lr_multiplier(cfg.model_copy(update={"warmup_steps": 0}))(0) == 1.0


def test_cosine_schedule_shape():
    cfg = TrainConfig(max_steps=110, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    f = lr_multiplier(cfg)
    assert [f(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)  # half-way through the cosine: (1 + floor) / 2
    assert f(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    after = [f(s) for s in range(10, 111)]
    assert all(a > b for a, b in zip(after, after[1:], strict=False))
    const = lr_multiplier(cfg.model_copy(update={"schedule": "constant"}))
    assert const(0) == pytest.approx(0.1) and const(9) == 1.0 and const(10_000) == 1.0


# ----------------------------------------------------------------------------- 4. reload without DeepSpeed


def _outputs(model, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(batch)
        embeds, _ = model.embed(batch)
        logits = model.llm(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
    return {"loss": out["loss"], "lm_loss": out["lm_loss"], "embeds": embeds, "logits": logits}


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_consolidated_checkpoint_reloads_without_deepspeed(stage_run, stage: int):
    from moeaudio.runtime.batching import Collator
    from moeaudio.runtime.examples import load_examples, manifest_path

    run = stage_run(stage)
    reloaded = load_model(run.result.checkpoint)
    assert not any(hasattr(p, "ds_id") for p in reloaded.parameters())  # plain torch, no ZeRO hooks
    recipe = reloaded.recipe
    examples = load_examples(reloaded, manifest_path(recipe, "train"), recipe, progress=False)[:4]
    batch = Collator(reloaded)(examples)
    run.model.eval()
    try:
        trained, loaded = _outputs(run.model, batch), _outputs(reloaded, batch)
    finally:
        run.model.train()
    for key in trained:
        torch.testing.assert_close(loaded[key], trained[key], rtol=1e-5, atol=1e-5, msg=key)
    # the router biases came back too (they are buffers, not parameters)
    bias = dict(reloaded.named_buffers())
    for name, buf in run.model.named_buffers():
        if name.endswith("expert_bias"):
            torch.testing.assert_close(bias[name], buf)
            assert buf.abs().sum() > 0


# ----------------------------------------------------------------------------- 3. exact resume


def _interrupted_copy(run_dir: Path, new_dir: Path, step: int) -> None:
    """A run that crashed right after its step-`step` checkpoint (a prefix of the full run)."""
    src = run_dir / "checkpoints" / f"step-{step:06d}"
    dst = new_dir / "checkpoints" / src.name
    shutil.copytree(src, dst)
    (new_dir / "checkpoints" / "latest").write_text(src.name)


def _cli_overrides(corpus: Path, run_dir: Path, cache: Path, *overrides: str) -> list[str]:
    """``recipe_for`` as command-line overrides of ``tiny/moe``."""
    return [
        f"data.root={corpus}",
        f"train.output_dir={run_dir}",
        "data.synth_if_missing=false",
        *BASE,
        f"data.feature_cache={cache}",
        *overrides,
    ]


# set in this process by init_distributed (world size 1); a child must not reuse the port
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


REPO = Path(__file__).resolve().parent.parent


def _stop(launcher: subprocess.Popen, marker: str) -> None:
    """Stop a launcher and its ranks. The elastic agent starts each rank in a session of its own, so
    killing the launcher's process group would leave them running: SIGTERM first (the agent forwards
    it), then SIGKILL whatever still names ``marker`` (the test's directory) on its command line."""
    import time

    if launcher.poll() is None:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
    time.sleep(1)
    for pid in _processes_naming(marker):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _run_cli(
    args: list[str], cwd: Path, timeout: float, expect_ok: bool = True, **env: str
) -> subprocess.CompletedProcess:
    """Run ``moeaudio`` (this checkout's) in a fresh process group; a hang is killed (all ranks) and fails."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from moeaudio.cli import app; app()", *args],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
        | {"MOEAUDIO_QUIET": "1", "PYTHONPATH": pythonpath, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc, str(cwd))
        output, _ = proc.communicate()
        pytest.fail(f"`moeaudio {' '.join(args[:2])}` hung (killed after {timeout} s):\n{output[-3000:]}")
    if expect_ok:
        assert proc.returncode == 0, output[-3000:]
    return subprocess.CompletedProcess(args, proc.returncode, output)


@pytest.mark.parametrize(
    ("stage", "fresh_process"),
    [(0, False), pytest.param(0, True, marks=pytest.mark.slow), (3, False)],
    ids=["zero0", "zero0-fresh-process", "zero3"],
)
def test_resume_matches_uninterrupted_run(
    stage_run, tiny_corpus, feature_cache, tmp_path, stage: int, fresh_process: bool
):
    """Interrupt after the step-6 checkpoint, resume to step 10: same losses, LRs, balance, weights.

    Covers the sampler position (across an epoch boundary), optimizer and scheduler state, RNG
    (attention dropout) and the router biases. ``fresh_process`` resumes with ``moeaudio train
    --resume`` in a new interpreter, as a user does after a crash: process-wide state (caches,
    lazily initialised helpers) must not change the trajectory either.
    """
    from safetensors.torch import load_file

    full = stage_run(stage)
    _interrupted_copy(full.result.run_dir, tmp_path, SAVE_EVERY)
    state = load_trainer_state(tmp_path / "checkpoints" / f"step-{SAVE_EVERY:06d}")
    assert state["step"] == SAVE_EVERY and state["batches_consumed"] == SAVE_EVERY
    if fresh_process:
        args = _cli_overrides(tiny_corpus, tmp_path, feature_cache, f"train.zero_stage={stage}")
        _run_cli(["train", "tiny/moe", *args, "--resume", "--no-eval"], cwd=tmp_path, timeout=240)
        checkpoint = latest_checkpoint(tmp_path)
        hist = load_trainer_state(checkpoint)["history"]
    else:
        recipe = recipe_for(tiny_corpus, tmp_path, feature_cache, f"train.zero_stage={stage}")
        resumed = train(recipe, resume=True)
        checkpoint, hist = resumed.result.checkpoint, resumed.result.history
        # sampler: the resumed run is served exactly the batches the full run saw after step 6
        # (4 batches per epoch, so this also crosses an epoch boundary)
        assert resumed.batches == full.batches[SAVE_EVERY:STEPS]
        assert full.batches[:4] != full.batches[4:8]  # reshuffled per epoch, so order matters

    ref = full.result.history
    assert checkpoint.name == f"step-{STEPS:06d}"
    assert [r["step"] for r in hist] == list(range(1, STEPS + 1))
    assert hist[:SAVE_EVERY] == ref[:SAVE_EVERY]  # restored from the checkpoint
    for key in ("loss", "lm_loss", "aux_loss", "load_spread", "lr"):  # optimizer, scheduler, RNG, biases
        got, want = losses(hist[SAVE_EVERY:], key), losses(ref[SAVE_EVERY:], key)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), key

    # final weights, router biases and RNG states are the same as without the interruption
    a = load_file(str(checkpoint / "model.safetensors"))
    b = load_file(str(full.result.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert any(k.endswith("expert_bias") and b[k].abs().sum() > 0 for k in b)
    assert load_trainer_state(checkpoint)["rng"] == load_trainer_state(full.result.checkpoint)["rng"]


def test_first_forward_leaves_global_rng_alone(tiny_corpus, tmp_path):
    """Seeded training must not depend on what ran earlier in the process: lazily initialised
    helpers (e.g. the MoE dispatch backend probe) must not draw from the global RNG, or the
    first run of a process, and every resumed run, sees different dropout masks."""
    from moeaudio.model.audio_llm import build_audio_llm
    from moeaudio.model.dispatch import _grouped_probe
    from moeaudio.runtime.batching import Collator
    from moeaudio.runtime.examples import load_examples, manifest_path

    recipe = tiny_recipe(tiny_corpus, tmp_path, "moe", "data.tasks=[asr]")
    model = build_audio_llm(recipe).eval()
    batch = Collator(model)(load_examples(model, manifest_path(recipe, "train"), recipe, progress=False)[:2])
    _grouped_probe.cache_clear()  # as in a fresh process
    before = torch.get_rng_state()
    with torch.no_grad():
        model(batch)
    assert torch.equal(torch.get_rng_state(), before)


def test_resume_without_checkpoint_fails(tiny_corpus, feature_cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        train_recipe(recipe_for(tiny_corpus, tmp_path, feature_cache), resume=True, evaluate=False)


# ----------------------------------------------------------------------------- 5. atomic saves


def test_crash_mid_save_keeps_previous_checkpoint(tiny_corpus, feature_cache, tmp_path, monkeypatch):
    import moeaudio.train.checkpoint as checkpoint

    real_save = checkpoint.save_file
    calls = []

    def crashing_save(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:  # the second checkpoint: leave a torn file behind, then die
            Path(filename).write_bytes(b"\x00" * 100)
            raise RuntimeError("simulated crash mid-save")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", crashing_save)
    recipe = recipe_for(tiny_corpus, tmp_path, feature_cache, "train.max_steps=2", "train.save_every=1")
    with pytest.raises(CheckpointError, match="simulated crash mid-save"):
        train_recipe(recipe, evaluate=False)

    root = tmp_path / "checkpoints"
    assert (root / "latest").read_text().strip() == "step-000001"
    assert not (root / "step-000002").exists()
    assert not list(root.glob(".tmp-*"))  # the torn write never became visible and was removed
    previous = latest_checkpoint(tmp_path)
    assert previous == root / "step-000001"
    assert load_trainer_state(previous)["step"] == 1
    load_model(previous)  # complete and loadable

    # the run resumes from the intact checkpoint and the leftover temp dir is cleaned up
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    result = train_recipe(recipe, resume=True, evaluate=False)
    assert result.steps == 2 and result.checkpoint == root / "step-000002"
    assert (root / "latest").read_text().strip() == "step-000002"
    assert not list(root.glob(".tmp-*"))


# ----------------------------------------------------------------------------- 2. two processes


@pytest.mark.slow
def test_two_process_zero3_with_an_idle_expert(tiny_corpus, feature_cache, tmp_path):
    """gloo, 2 ranks, ZeRO-3, top-1 of 8 experts on one clip per rank: some expert gets no token on
    one rank while it gets tokens on the other. A hang (ranks disagreeing on which ZeRO-3
    parameters to gather) fails the test through the timeout instead of blocking CI."""
    run_dir = tmp_path / "run"
    overrides = [
        f"data.root={tiny_corpus}",
        f"train.output_dir={run_dir}",
        "data.synth_if_missing=false",
        f"data.feature_cache={feature_cache}",
        "data.tasks=[asr]",
        "data.micro_batch_size=1",
        "train.max_steps=3",
        "train.zero_stage=3",
        "adapter.num_experts=8",
        "adapter.top_k=1",
        "adapter.bias_balancing=true",
        "adapter.balance_scope=global_batch",
    ]
    _run_cli(
        ["train", "tiny/moe", *overrides, "--nproc", "2", "--no-eval"], tmp_path, 240, MOEAUDIO_DUMP_LOADS="1"
    )

    dumps = {}
    for rank in (0, 1):
        lines = (run_dir / f"expert_loads.rank{rank}.jsonl").read_text().splitlines()
        dumps[rank] = {r["step"]: r["counts"][0] for r in map(json.loads, lines)}  # one MoE layer
        assert sorted(dumps[rank]) == [1, 2, 3]
    idle = [
        (step, rank, e)
        for step in (1, 2, 3)
        for rank in (0, 1)
        for e in range(8)
        if dumps[rank][step][e] == 0 and dumps[1 - rank][step][e] > 0
    ]
    assert idle, f"no expert was idle on one rank only: {dumps}"

    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name == "step-000003"
    state = load_trainer_state(ckpt)
    assert state["world_size"] == 2 and sorted(state["rng"]) == ["0", "1"]
    model = load_model(ckpt)
    biases = [b for n, b in model.named_buffers() if n.endswith("expert_bias")]
    assert biases and biases[0].abs().sum() > 0  # balanced on the global (all-reduced) load


def test_nproc_failed_rank_stops_the_job_at_once(tiny_corpus, feature_cache, tmp_path):
    """Rank 1 of a 2-rank run dies before joining the process group (a test-only switch); rank 0 would
    wait for it in the rendezvous for the process-group timeout (30 minutes) if the launcher only waited
    on each rank in turn. Under the elastic agent the job stops within seconds, names the failed rank and
    shows its error, and exits with the rank's exit code."""
    import time

    from moeaudio.train.distributed import CRASH_RANK_ENV

    overrides = [
        f"data.root={tiny_corpus}",
        f"train.output_dir={tmp_path / 'run'}",
        "data.synth_if_missing=false",
        f"data.feature_cache={feature_cache}",
        "data.tasks=[asr]",
        "train.max_steps=2",
    ]
    start = time.monotonic()
    proc = _run_cli(
        ["train", "tiny/moe", *overrides, "--nproc", "2", "--no-eval"], tmp_path, 180, expect_ok=False,
        **{CRASH_RANK_ENV: "1"},
    )  # fmt: skip
    elapsed = time.monotonic() - start
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    assert elapsed < 60, f"the job took {elapsed:.0f} s to stop after rank 1 died"
    assert "error: rank 1 of 2" in out and "simulated crash of rank 1" in out, out[-3000:]
    assert "Traceback" in out  # the rank's own traceback is shown
    assert not (tmp_path / "run" / "checkpoints").exists()


def _processes_naming(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the ranks")
def test_nproc_signal_reaches_every_rank(tiny_corpus, feature_cache, tmp_path):
    """SIGTERM to `train --nproc 2` stops both ranks (the elastic agent forwards it) within seconds."""
    import time

    run_dir = tmp_path / "signalled-run"
    overrides = [
        f"data.root={tiny_corpus}", f"train.output_dir={run_dir}", "data.synth_if_missing=false",
        f"data.feature_cache={feature_cache}", "data.tasks=[asr]", "train.max_steps=100000",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["MOEAUDIO_QUIET"] = "0"  # rank 0 writes metrics.jsonl from the first step: training has started
    log = open(tmp_path / "launcher.log", "w+")  # a file, not a pipe nobody reads while the ranks write
    launcher = subprocess.Popen(
        [sys.executable, "-c", "from moeaudio.cli import app; app()", "train", "tiny/moe", *overrides,
         "--nproc", "2", "--no-eval"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while (
            not (run_dir / "metrics.jsonl").exists()
            and time.monotonic() < deadline
            and launcher.poll() is None
        ):
            time.sleep(0.5)
        ranks = [p for p in _processes_naming(str(run_dir)) if p != launcher.pid]
        assert (run_dir / "metrics.jsonl").exists() and len(ranks) == 2, launcher.poll()
        launcher.send_signal(signal.SIGTERM)  # the launcher only, not its process group
        launcher.wait(timeout=60)
        time.sleep(1)
        log.seek(0)
        output = log.read()
        assert launcher.returncode == 128 + signal.SIGTERM, output[-3000:]
        assert "stopped by signal SIGTERM" in output
        assert not [p for p in ranks if p in _processes_naming(str(run_dir))], "a rank outlived the launcher"
    finally:
        _stop(launcher, str(tmp_path))
        log.close()


def test_conflict_probe_logged_during_training(tiny_corpus, feature_cache, tmp_path):
    """train.conflict_every=N logs per-domain adapter gradient cosines into the metrics."""
    recipe = tiny_recipe(
        tiny_corpus,
        tmp_path / "run",
        "moe",
        "data.tasks=[gender, instrument, sound]",
        f"data.feature_cache={feature_cache}",
        "train.max_steps=2",
        "train.conflict_every=2",
    )
    history = train_recipe(recipe, evaluate=False).history
    assert not any(k.startswith("conflict/") for k in history[0])
    pairs = {k: v for k, v in history[1].items() if k.startswith("conflict/")}
    assert set(pairs) == {"conflict/music-sound", "conflict/music-speech", "conflict/sound-speech"}
    assert all(-1.0 <= v <= 1.0 for v in pairs.values())


def test_skipping_the_lone_allreduce_changes_nothing(
    stage_run, tiny_corpus, feature_cache, tmp_path, monkeypatch
):
    """One rank, ZeRO 0: without DeepSpeed's gradient all-reduce (a flatten, a reduce over one rank
    and a copy back) the run is bit for bit the run with it."""
    from safetensors.torch import load_file

    import moeaudio.train.engine as engine

    skipped = stage_run(0)
    assert skipped.engine.enable_backward_allreduce is False
    monkeypatch.setattr(engine, "skip_lone_allreduce", lambda *args: None)
    reduced = train(recipe_for(tiny_corpus, tmp_path, feature_cache, "train.zero_stage=0"))
    assert reduced.engine.enable_backward_allreduce is True
    for key in ("loss", "lm_loss", "aux_loss", "lr"):
        assert losses(reduced.result.history, key) == losses(skipped.result.history, key), key
    a = load_file(str(reduced.result.checkpoint / "model.safetensors"))
    b = load_file(str(skipped.result.checkpoint / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
