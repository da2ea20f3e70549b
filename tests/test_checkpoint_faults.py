"""A failure in the middle of a checkpoint save, ours or DeepSpeed's own, of any exception type.

The fault: a disk that filled during DeepSpeed's ``save_checkpoint`` surfaced as torch's
``RuntimeError: [enforce fail at inline_container.cc:672] unexpected pos`` traceback and left the
partial ``.tmp-step-*`` folder behind. Now every failure inside a save ends in one line naming the
folder and the free space, the temporary folder is removed, ``latest`` still names the previous
checkpoint, and that checkpoint is intact and resumable.

Provoked for real: writers that raise half-way through a file (DeepSpeed's ``torch.save``, our
safetensors writer), and, where the test may mount one (root), a tmpfs too small for a second
checkpoint, so the disk fills inside DeepSpeed's own save.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import moeaudio.train.checkpoint as checkpoint
from moeaudio.cli import app
from moeaudio.runtime.checkpoint import load_model
from moeaudio.runtime.run_dir import RunDir

runner = CliRunner()
STEP2_TMP = ".tmp-step-000002"


def _train(corpus: Path, run: Path, *extra: str):
    args = [
        "train", "tiny/moe", f"data.root={corpus}", "data.synth_if_missing=false", "data.tasks=[asr]",
        "train.max_steps=2", "train.save_every=1", "--output-dir", str(run), "--no-eval", *extra,
    ]  # fmt: skip
    return runner.invoke(app, args, env={"COLUMNS": "400", "MOEAUDIO_QUIET": "1"})


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output[-3000:]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.replace("\n", "").split("error: ")[1:]]
    assert len(errors) == 1, result.output
    return errors[0]


def _previous_intact(run: Path) -> None:
    root = RunDir(run).checkpoints
    assert (root / "latest").read_text().strip() == "step-000001"
    assert not (root / "step-000002").exists() and not list(root.glob(".tmp-*"))
    load_model(RunDir(run).latest())  # complete and loadable


def _raise_half_way(exc: BaseException, where: str):
    """A torch.save that writes half of step 2's first DeepSpeed file, then raises ``exc``."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if where in str(f):
            Path(f).write_bytes(b"PK\x03\x04" + b"\x00" * 4096)  # a zip file cut short
            raise exc
        return real(obj, f, *args, **kwargs)

    return save


FAULTS = {
    # what a full disk looks like inside torch's zip writer, on a disk that still has room (so: not "full")
    "engine-runtime-error": (
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1088 vs 1024"),
        r"cannot write checkpoint step-000002 under .*checkpoints \(.* free on its disk when the write failed, "
        r".* now\): RuntimeError: \[enforce fail at inline_container\.cc:672\] \. unexpected pos 1088 vs 1024",
    ),
    "engine-enospc": (
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        r"no space left on the device while writing checkpoint step-000002 under .*checkpoints \(.* free",
    ),
    "engine-permission": (
        PermissionError(errno.EACCES, os.strerror(errno.EACCES)),
        r"cannot write checkpoint step-000002 .*PermissionError: \[Errno 13\] Permission denied",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_engine_save_fails_half_way(fault: str, tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    exc, message = FAULTS[fault]
    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", _raise_half_way(exc, STEP2_TMP))  # DeepSpeed's checkpoint engine
    line = _one_error_line(_train(tiny_corpus, run))
    assert re.search(message, line), line
    assert "the partial .tmp-step-000002 was removed" in line
    assert "the previous checkpoint step-000001 is intact and checkpoints/latest still names it" in line
    assert "--resume" in line
    _previous_intact(run)

    monkeypatch.undo()  # the cause fixed: the run continues from step 1
    assert _train(tiny_corpus, run, "--resume").exit_code == 0
    assert (RunDir(run).checkpoints / "latest").read_text().strip() == "step-000002"


def test_our_writer_fails_with_its_own_error_type(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """safetensors raises its own exception class (not an OSError) when the write fails."""
    from safetensors import SafetensorError

    real = checkpoint.save_file

    def save_file(tensors, filename, metadata=None):
        if STEP2_TMP in str(filename):
            Path(filename).write_bytes(b"\x00" * 64)
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    line = _one_error_line(_train(tiny_corpus, tmp_path / "run"))
    assert re.search(
        r"cannot write checkpoint step-000002 .*SafetensorError: Error while serializing", line
    ), line
    _previous_intact(tmp_path / "run")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 100 MB tmpfs: one tiny checkpoint (about 72 MB, 41 MB of it DeepSpeed's file) fits, a second
    does not, so the disk fills inside DeepSpeed's own save of step 2."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", str(disk)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_disk_fills_inside_deepspeeds_save(tiny_corpus: Path, small_disk: Path, monkeypatch) -> None:
    from deepspeed.runtime.engine import DeepSpeedEngine

    run = small_disk / "run"
    real = DeepSpeedEngine.save_checkpoint
    raised: list[BaseException] = []

    def save_checkpoint(self, *args, **kwargs):  # DeepSpeed's own save, watched: what did it raise?
        try:
            return real(self, *args, **kwargs)
        except BaseException as e:
            raised.append(e)
            raise

    monkeypatch.setattr(DeepSpeedEngine, "save_checkpoint", save_checkpoint)
    line = _one_error_line(_train(tiny_corpus, run))
    assert len(raised) == 1, "the disk did not fill inside DeepSpeed's save"
    assert re.search(
        r"no space left on the device while writing checkpoint step-000002 under .*checkpoints", line
    )
    assert re.search(
        r"\(\d+(\.\d)? [kM]?B free on its disk when the write failed, \d+(\.\d)? MB now\)", line
    ), line
    assert "the partial .tmp-step-000002 was removed" in line
    _previous_intact(run)
