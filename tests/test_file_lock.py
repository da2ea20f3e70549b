"""FileLock: one writer at a time across processes; a holder killed with SIGKILL frees it at once.

Real processes throughout: a child holds the lock, a second acquirer (this process) is refused with
the child's pid; the child is SIGKILLed and the lock is taken over, with a warning naming it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moeaudio.errors import BusyError
from moeaudio.io_utils import LOCK_NAME, FileLock, lock_file_for

HOLD = """
import sys, time
from moeaudio.io_utils import FileLock
FileLock(sys.argv[1], "training").acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder(target: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_lock_file_places(tmp_path: Path) -> None:
    assert lock_file_for(tmp_path) == tmp_path / LOCK_NAME
    assert lock_file_for(tmp_path / "run") == tmp_path / "run" / LOCK_NAME  # a directory to be made
    assert lock_file_for(tmp_path / "out.json") == tmp_path / ".out.json.lock"


def test_live_holder_refused_then_killed_holder_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    child = _holder(run)
    try:
        with pytest.raises(BusyError) as err:
            FileLock(run, "training", hint="or train into another directory with --output-dir DIR").acquire()
        message = str(err.value)
        assert f"pid {child.pid}" in message and str(run) in message and "running training" in message
        assert "--output-dir DIR" in message and f"kill {child.pid}" in message
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    # the kernel dropped the dead holder's lock: taken over, the dead holder named in a warning
    with pytest.warns(UserWarning, match=rf"took over the lock of a training .*pid {child.pid}"):
        lock = FileLock(run, "training").acquire()
    record = json.loads((run / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["what"] == "training"
    lock.release()
    assert (run / LOCK_NAME).read_text() == ""  # a clean release leaves no record to take over


def test_reentrant_within_a_process_and_released_for_others(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    with FileLock(out, "eval --output"), FileLock(out, "eval --output"):  # nested: counted, not refused
        code = subprocess.run(
            [sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(out)],
            capture_output=True,
            text=True,
        )
        assert code.returncode == 1 and "BusyError" in code.stderr and f"pid {os.getpid()}" in code.stderr
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(out)], capture_output=True
    )
    assert done.returncode == 0 and time.time() - start < 30
