"""`train --nproc 2` whose launcher is killed with SIGKILL: the ranks exit, the run directory is freed.

The fault: SIGKILL gives the launcher no chance to forward anything, so its ranks ran on, holding the
run directory, and a second `train` into it went ahead beside them. Now each rank exits when its
launcher dies (PR_SET_PDEATHSIG, a heartbeat as fallback), rank 0 holds the directory's lock for the
run, a second `train` is refused naming it, and the lock of the killed run is taken over.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moeaudio.io_utils import LOCK_NAME
from moeaudio.runtime.run_dir import RunDir

REPO = Path(__file__).resolve().parent.parent
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "MOEAUDIO_LAUNCHER_PID")
RANKS_EXIT_WITHIN_S = 15.0


def _naming(text: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``text``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "stat").read_text().split(") ")[1][0] == "Z":
                continue
            if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return pids


def _held_elsewhere(run: Path) -> bool:
    """The run's lock is held by another process (a non-blocking flock attempt fails)."""
    with open(run / LOCK_NAME, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["MOEAUDIO_QUIET"] = "0"  # rank 0 writes metrics.jsonl from the first step
    return env


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the ranks")
def test_sigkilled_launcher_takes_its_ranks_and_frees_the_directory(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [
        sys.executable, "-m", "moeaudio", "train", "tiny/moe", f"data.root={tiny_corpus}",
        "data.synth_if_missing=false", "data.tasks=[asr]", "train.max_steps=100000",
        "--output-dir", str(run), "--nproc", "2", "--no-eval",
    ]  # fmt: skip
    log = open(tmp_path / "launcher.log", "w+")
    launcher = subprocess.Popen(
        args, cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while (
            not (run / "metrics.jsonl").exists() and time.monotonic() < deadline and launcher.poll() is None
        ):
            time.sleep(0.5)
        ranks = [p for p in _naming(str(run)) if p != launcher.pid]
        log.seek(0)
        assert (run / "metrics.jsonl").exists() and len(ranks) == 2, log.read()[-3000:]
        holder = json.loads((run / LOCK_NAME).read_text())
        assert holder["pid"] in ranks and holder["parent"] == launcher.pid and holder["what"] == "training"

        # a second run into the held directory is refused before any rank starts, naming the holder
        second = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=180)
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        message = second.stdout + second.stderr
        assert f"is in use by a running training (pid {holder['pid']}" in message
        assert f"launched by pid {launcher.pid}" in message and "--output-dir DIR" in message

        launcher.send_signal(signal.SIGKILL)  # nothing forwarded to the ranks
        launcher.wait(10)
        killed = time.monotonic()
        while [p for p in ranks if p in _naming(str(run))] and time.monotonic() - killed < 60:
            time.sleep(0.1)
        elapsed = time.monotonic() - killed
        assert not [p for p in ranks if p in _naming(str(run))], "a rank outlived its SIGKILLed launcher"
        assert elapsed < RANKS_EXIT_WITHIN_S, f"the ranks took {elapsed:.1f} s to exit"
        print(f"ranks gone {elapsed:.2f} s after the SIGKILL")

        # the dead run's lock is taken over (its record named in a warning), the checkpoints untouched
        # (a thread-group leader shows as a zombie while its other threads still exit and hold its files:
        # the kernel drops the lock a moment later)
        while _held_elsewhere(run) and time.monotonic() - killed < RANKS_EXIT_WITHIN_S:
            time.sleep(0.1)
        with pytest.warns(UserWarning, match=rf"took over the lock of a training .*pid {holder['pid']}"):
            RunDir(run).claim(resume=False, overwrite=False)
        RunDir(run).release()
    finally:
        for pid in _naming(str(run)):
            os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
        log.close()


def test_a_run_that_fails_gives_the_directory_back(tmp_path: Path) -> None:
    """A run that stops with an error in this process (here: no training data, found after the claim)
    releases the lock: the next process is neither refused nor told of a killed run."""
    from moeaudio.config import load_recipe
    from moeaudio.errors import MissingDataError
    from moeaudio.train.launch import train_recipe

    run = tmp_path / "run"
    recipe = load_recipe("tiny/moe", [f"data.root={tmp_path / 'empty'}", "data.synth_if_missing=false"])
    with pytest.raises(MissingDataError):
        train_recipe(recipe, run, evaluate=False)
    assert (run / LOCK_NAME).read_text() == ""  # released, its record emptied
    free = subprocess.run(
        [sys.executable, "-c", f"from moeaudio.runtime.run_dir import RunDir; RunDir({str(run)!r}).claim(False, False)"],
        env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert free.returncode == 0 and "took over" not in free.stderr, free.stderr
