"""One owner of a run directory's layout: training writes it, every other command reads it.

Layout (``RUN`` is ``train.output_dir`` or ``--output-dir``)::

    RUN/checkpoints/step-000200/   one checkpoint (its own layout: moeaudio.runtime.checkpoint)
    RUN/checkpoints/.tmp-step-*/   a checkpoint being written (renamed into place when complete)
    RUN/checkpoints/latest         the name of the checkpoint to continue from / evaluate
    RUN/metrics.jsonl, loss.png, validation.json, tensorboard/   what a training run logs
    RUN/done.json                  written last by `moeaudio reproduce` when the run is trained and evaluated

Why one class: the ``latest`` pointer used to be read three ways and the ``step-*`` folders listed in
four places (sorted as text in one, as numbers in another: ``step-1000000`` sorts before
``step-999999`` as text). Here the steps are always sorted by number, the pointer is read and
written in one place, and the rules of claiming a directory for a new run live beside them.

Claiming (:meth:`RunDir.claim`) is where a run takes the directory; a lock against a second
process training into the same directory belongs there too (taken before anything is deleted).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moeaudio.errors import CheckpointError, RunDirectoryError, UsageError
from moeaudio.io_utils import FileLock, atomic_write_text

__all__ = ["CHECKPOINTS", "DONE", "LATEST", "RUN_LOGS", "RunDir", "newest_checkpoint"]

CHECKPOINTS = "checkpoints"
LATEST = "latest"
DONE = "done.json"
#: What a training run writes beside its checkpoints (removed with them by ``--overwrite``).
RUN_LOGS = ("metrics.jsonl", "loss.png", "validation.json")
#: A complete checkpoint has this file (written before the folder is renamed into place).
_STATE = "trainer_state.json"
_STEP = re.compile(r"^step-(\d+)$")


def _no_barrier() -> None:
    pass


class RunDir:
    """``RUN/``: its checkpoints (numbered, the ``latest`` pointer), logs and done marker."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir:
        """The run a checkpoint ``RUN/checkpoints/step-N`` belongs to."""
        return cls(Path(checkpoint).parent.parent)

    # ------------------------------------------------------------------------- layout

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def pointer(self) -> Path:
        return self.checkpoints / LATEST

    @property
    def done_path(self) -> Path:
        return self.path / DONE

    def step_dir(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:06d}"

    def temp_step_dir(self, step: int) -> Path:
        return self.checkpoints / f".tmp-step-{step:06d}"

    @staticmethod
    def step_of(checkpoint: str | Path) -> int | None:
        """``step-000200`` -> 200; None for any other name."""
        m = _STEP.match(Path(checkpoint).name)
        return int(m[1]) if m else None

    # ------------------------------------------------------------------------- checkpoints

    def steps(self, complete: bool = False) -> list[Path]:
        """The ``step-N`` folders, sorted by N; ``complete``: only those holding a trainer state."""
        if not self.checkpoints.is_dir():
            return []
        found = [
            (n, p) for p in self.checkpoints.iterdir() if (n := self.step_of(p)) is not None and p.is_dir()
        ]
        return [p for _, p in sorted(found) if not complete or (p / _STATE).is_file()]

    def latest_name(self) -> str | None:
        """What ``checkpoints/latest`` says, unchecked (None: no pointer, or an empty one)."""
        return (self.pointer.read_text(errors="replace").strip() or None) if self.pointer.is_file() else None

    def latest(self) -> Path | None:
        """The checkpoint ``checkpoints/latest`` names, else (no pointer) the highest complete step;
        None when the run has none. A pointer naming a checkpoint that is missing or incomplete is a
        :class:`CheckpointError` saying so, never silently replaced by another step."""
        if not self.pointer.is_file():
            steps = self.steps(complete=True)
            return steps[-1] if steps else None
        name = self.latest_name() or ""
        candidate = self.checkpoints / name
        if name and "/" not in name and (candidate / _STATE).is_file():
            return candidate
        present = [p.name for p in self.steps(complete=True)]
        state = "is incomplete (no trainer_state.json)" if candidate.is_dir() and name else "does not exist"
        fix = (
            f"pass --checkpoint {self.checkpoints / present[-1]} to use the newest one there, or write its "
            f"name into {self.pointer}"
            if present
            else "the run has no complete checkpoint left: train it again"
        )
        raise CheckpointError(
            f"{self.pointer} names {name or '(nothing)'!s}, which {state}; checkpoints present: "
            f"{', '.join(present) or 'none'}. Not picking another step silently: {fix}"
        )

    def point_latest(self, checkpoint: Path) -> None:
        """Make ``checkpoints/latest`` name ``checkpoint`` (atomically: a crash leaves the old name)."""
        atomic_write_text(self.pointer, checkpoint.name)

    def prune(self, keep_last: int, final: Path) -> None:
        """Keep the newest ``keep_last`` checkpoints up to ``final`` (always ``final`` itself); a step
        after ``final`` (from another run in this directory) is never deleted."""
        own = self.step_of(final)
        if keep_last <= 0 or own is None:
            return
        older = [p for p in self.steps() if (self.step_of(p) or 0) <= own]
        for old in older[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------------- claiming

    def claim(
        self, resume: bool, overwrite: bool, rank: int = 0, barrier: Callable[[], None] = _no_barrier
    ) -> None:
        """Make sure training into this directory loses nothing: a directory that already holds
        checkpoints is continued (``resume``), emptied of them and of the run's logs (``overwrite``),
        or refused with a message naming both ways out and ``--output-dir``.

        ``barrier`` synchronises the ranks of a multi-process run (every rank looks before rank 0
        deletes). First, rank 0 takes the directory's lock (:meth:`lock`), held until the run ends
        (:meth:`release`) or its process dies: a second run into a directory a live run holds is
        refused naming that run's pid; a lock left by a killed run is taken over.
        """
        if resume and overwrite:
            raise UsageError("--resume continues the run and --overwrite deletes it: give one of them")
        if rank == 0:
            self.lock().acquire(once=True)
        existing = [p.name for p in self.steps()]
        if resume or not (existing or self.pointer.exists()):
            return
        if not overwrite:
            raise RunDirectoryError(
                f"{self.path} already holds checkpoints ({', '.join(existing) or 'a latest pointer'}) of an "
                "earlier run; training into it again would mix the two runs. Continue that run with --resume, "
                "train into a new directory with --output-dir DIR, or delete its checkpoints with --overwrite"
            )
        barrier()
        if rank == 0:
            shutil.rmtree(self.checkpoints)
            for name in RUN_LOGS:
                (self.path / name).unlink(missing_ok=True)
            shutil.rmtree(self.path / "tensorboard", ignore_errors=True)
        barrier()

    def lock(self) -> FileLock:
        """The lock of this run directory (``RUN/.moeaudio.lock``): one training run at a time."""
        return FileLock(
            self.path,
            "training",
            hint="or train into another directory with --output-dir DIR",
            directory=True,
        )

    def release(self) -> None:
        """Give back the lock :meth:`claim` took (the end of the run)."""
        self.lock().release()

    # ------------------------------------------------------------------------- done marker

    def read_done(self) -> dict[str, Any] | None:
        """The done record (``done.json``), or None when there is none."""
        return json.loads(self.done_path.read_text()) if self.done_path.exists() else None

    def write_done(self, record: dict[str, Any]) -> Path:
        """``done.json``, written atomically (a killed process never leaves half a marker)."""
        return atomic_write_text(self.done_path, json.dumps(record, indent=1))


def newest_checkpoint(runs_dir: str | Path = "runs") -> Path | None:
    """The newest checkpoint under a runs directory (commands without --checkpoint): each run's
    :meth:`RunDir.latest`, the most recently written of those."""
    runs = sorted({p.parent.parent for p in Path(runs_dir).glob(f"**/{CHECKPOINTS}/step-*")})
    found = [c for run in runs if (c := RunDir(run).latest()) is not None]
    return max(found, key=lambda p: (p / _STATE).stat().st_mtime) if found else None
