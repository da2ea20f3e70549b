"""RunDir: the one owner of a run directory's layout (steps by number, the latest pointer, claiming,
pruning, the done marker), and checkpoints checked and parsed once (open_checkpoint -> load_model)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from moeaudio.errors import CheckpointError, RunDirectoryError, UsageError
from moeaudio.runtime import checkpoint as checkpoint_module
from moeaudio.runtime.checkpoint import Checkpoint, load_model, open_checkpoint, resolve_checkpoint
from moeaudio.runtime.run_dir import RunDir, newest_checkpoint


def _step(run: RunDir, step: int, complete: bool = True) -> Path:
    path = run.step_dir(step)
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"step": step}))
    return path


def test_steps_sort_by_number_not_text(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for step in (1_000_000, 999_999, 20, 3):
        _step(run, step)
    _step(run, 5, complete=False)
    (run.checkpoints / "step-notanumber").mkdir()
    (run.checkpoints / ".tmp-step-000007").mkdir()
    assert [RunDir.step_of(p) for p in run.steps()] == [3, 5, 20, 999_999, 1_000_000]
    assert [RunDir.step_of(p) for p in run.steps(complete=True)] == [3, 20, 999_999, 1_000_000]
    # no pointer: the highest complete step (as text, step-999999 would win)
    assert run.latest() == run.step_dir(1_000_000)


def test_latest_follows_the_pointer_and_refuses_a_broken_one(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.latest() is None and run.latest_name() is None
    first, second = _step(run, 1), _step(run, 2)
    run.point_latest(first)
    assert run.latest_name() == "step-000001" and run.latest() == first
    (run.pointer).write_text("step-000009\n")
    with pytest.raises(
        CheckpointError, match=r"names step-000009, which does not exist.*step-000001, step-000002"
    ):
        run.latest()
    assert run.latest_name() == "step-000009"  # unchecked, for messages
    run.point_latest(second)
    assert resolve_checkpoint(tmp_path) == second  # a run directory means its latest checkpoint
    assert RunDir.of_checkpoint(second).path == tmp_path


def test_claim_refuses_resumes_or_overwrites(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.claim(resume=False, overwrite=False)  # empty: nothing to lose
    run.point_latest(_step(run, 4))
    (run.path / "metrics.jsonl").write_text("{}\n")
    (run.path / "tensorboard").mkdir()
    with pytest.raises(RunDirectoryError, match=r"step-000004.*--resume.*--output-dir.*--overwrite"):
        run.claim(resume=False, overwrite=False)
    with pytest.raises(UsageError, match="give one of them"):
        run.claim(resume=True, overwrite=True)
    run.claim(resume=True, overwrite=False)
    assert run.latest() == run.step_dir(4)
    calls: list[str] = []
    run.claim(resume=False, overwrite=True, barrier=lambda: calls.append("barrier"))
    assert calls == ["barrier", "barrier"]  # every rank looks before rank 0 deletes
    assert not run.checkpoints.exists() and not (run.path / "metrics.jsonl").exists()
    assert not (run.path / "tensorboard").exists()


def test_prune_keeps_the_newest_up_to_the_one_just_saved(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for step in (1, 2, 3, 10, 50):
        _step(run, step)
    run.prune(keep_last=2, final=run.step_dir(10))
    assert [RunDir.step_of(p) for p in run.steps()] == [3, 10, 50]  # 50 is another run's: kept


def test_done_marker_round_trip(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_done() is None
    run.write_done({"values": {"acc": 0.5}})
    assert run.read_done() == {"values": {"acc": 0.5}}
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left beside it


def test_newest_checkpoint_over_runs(tmp_path: Path) -> None:
    older, newer = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    _step(older, 5)
    latest = _step(newer, 1)
    os.utime(latest / "trainer_state.json", (2e9, 2e9))
    assert newest_checkpoint(tmp_path) == latest
    assert newest_checkpoint(tmp_path / "none") is None


def test_open_checkpoint_then_load_model_checks_and_parses_once(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {"verify": 0, "recipe": 0}
    real_verify, real_load = checkpoint_module.verify_checkpoint, checkpoint_module.load_recipe

    def verify(*args, **kwargs):
        counts["verify"] += 1
        return real_verify(*args, **kwargs)

    def load(*args, **kwargs):
        counts["recipe"] += 1
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "verify_checkpoint", verify)
    monkeypatch.setattr(checkpoint_module, "load_recipe", load)
    opened = open_checkpoint(resolve_checkpoint(tiny_checkpoint))
    assert isinstance(opened, Checkpoint) and opened.recipe.adapter.kind == "moe"
    model = load_model(opened)
    assert counts == {"verify": 1, "recipe": 1}
    assert model.recipe.adapter.kind == "moe" and not model.training
    load_model(opened.path)  # a bare directory is checked and parsed
    assert counts == {"verify": 2, "recipe": 2}
