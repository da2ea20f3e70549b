"""A run that crashes after steps past its last checkpoint, then resumes: every step is logged once.

The fault: the crashed run had logged steps 4-5 after its checkpoint at step 3; the resumed run
logs 4-5 again, and ``metrics.jsonl`` and TensorBoard showed them twice. Now the logs are cut back
to the resumed step first (metrics.jsonl rewritten, TensorBoard's ``purge_step``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_recipe
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import SessionLog

from moeaudio.train.launch import train_recipe
from moeaudio.train.report import Reporter


class Crash(Exception):
    """Stands for the process dying after a step was logged."""


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _tb_steps(run: Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run / "tensorboard"))  # reads every event file, honouring purges
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_crash_then_resume_logs_each_step_once(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOEAUDIO_QUIET", raising=False)
    run = tmp_path / "run"
    overrides = ["train.max_steps=8", "train.save_every=3", "train.report_to=[jsonl,tensorboard]"]
    real_log = Reporter.log

    def log_then_crash(self, record, progress):
        real_log(self, record, progress)
        if record["step"] == 5:  # two steps past the checkpoint at step 3
            self.tb.flush()  # what the crashed run had on disk
            raise Crash

    monkeypatch.setattr(Reporter, "log", log_then_crash)
    with pytest.raises(Crash):
        train_recipe(tiny_recipe(tiny_corpus, run, "moe", *overrides), evaluate=False)
    assert _steps(run) == [1, 2, 3, 4, 5]
    assert [s for s, _ in _tb_steps(run)] == [1, 2, 3, 4, 5]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000003"
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 1.')  # a line torn by the crash

    monkeypatch.setattr(Reporter, "log", real_log)
    result = train_recipe(tiny_recipe(tiny_corpus, run, "moe", *overrides), resume=True, evaluate=False)
    assert result.steps == 8
    assert _steps(run) == list(range(1, 9))  # 4 and 5 once, as logged again; the torn line gone
    metrics = {
        r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    }
    tb = _tb_steps(run)
    assert [s for s, _ in tb] == list(range(1, 9))
    assert all(v == pytest.approx(metrics[s], rel=1e-6) for s, v in tb)  # the resumed run's values
    files = sorted((run / "tensorboard").glob("events.out.tfevents.*"), key=lambda f: f.stat().st_mtime)
    assert len(files) == 2  # the crashed run's file is kept; the new one supersedes it from step 4 on
    starts = [
        e.step for e in EventFileLoader(str(files[1])).Load() if e.session_log.status == SessionLog.START
    ]
    assert starts == [4]  # the purge marker: readers drop the earlier file's events of step >= 4


def test_fresh_start_after_a_crash_before_any_checkpoint(tmp_path: Path) -> None:
    """No checkpoint to resume: a new run starts at step 0 and drops the crashed run's records."""
    from moeaudio.config import load_recipe

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2)))
    reporter = Reporter(load_recipe("tiny/moe", [f"train.output_dir={run}"]), run)
    assert reporter.cut_back(0) == 2
    assert (run / "metrics.jsonl").read_text() == ""
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    assert reporter.cut_back(2) == 1 and _steps(run) == [1, 2]
    assert reporter.cut_back(2) == 0  # nothing after step 2: the file is left alone
