"""Atomic file writes shared by data preparation, checkpointing and evaluation outputs.

Why atomic: manifests, reports and checkpoints are read by other processes (training jobs,
evaluators, a second preparer run). A crash or Ctrl-C in the middle of a plain ``open(...,
"w")`` leaves a truncated file that *looks* valid (e.g. a jsonl with half the lines). Writing
to a temporary file in the same directory and then ``os.replace``-ing it over the target makes
the update all-or-nothing on POSIX and Windows, because a rename within one filesystem is
atomic. The temp file lives in the *same* directory so the rename never crosses filesystems.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from moeaudio.errors import BusyError, MissingDataError, UsageError

try:  # POSIX; elsewhere FileLock does not lock (see its docstring)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FileLock",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_chunks",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "iter_user_lines",
    "lock_file_for",
    "read_user_text",
    "save_figure",
]


def _current_umask() -> int:
    # os.umask can only be read by setting it; restore immediately.
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success.

    The temp name keeps the target's extension (``.x.wav.tmpab12.wav``) so writers that pick
    a format from the suffix (soundfile, torch.save wrappers, pandas) behave as for ``path``.
    On an exception the temp file is removed and ``path`` is left untouched. Parent
    directories are created. The final file gets normal ``0o666 & ~umask`` permissions rather
    than ``mkstemp``'s private ``0o600`` so shared outputs stay readable by teammates.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync and tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


_BOM = b"\xef\xbb\xbf"


def _user_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a file a user gave us: a missing file or a directory is an error naming it."""
    p = Path(path)
    if not p.exists():
        raise MissingDataError(f"{p}: {what} not found")
    if p.is_dir():
        raise UsageError(f"{p}: is a directory, not a {what}")
    return p


def _not_utf8(p: Path, line: int, data: bytes, start: int, what: str) -> UsageError:
    """The one message for a byte that is not UTF-8, from the whole-file and the line-at-a-time reader:
    ``data`` (a file or its line ``line``, a byte-order mark dropped) has the bad byte at ``start``;
    the column counts bytes from the start of its line."""
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return UsageError(
        f"{p}:{line}: not UTF-8 text (byte 0x{data[start]:02x} at column {column}); save the {what} as UTF-8"
    )


def read_user_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """The text of a UTF-8 file a user gave us (a leading byte-order mark dropped).

    A missing file, a directory and bytes that are not UTF-8 are :class:`~moeaudio.errors.MoeaudioError` errors
    naming the file (and the line and column of the first bad byte), never a bare ``OSError`` or
    ``UnicodeDecodeError``. For a file that may be large, :func:`iter_user_lines` reads a line at a time.
    """
    raw = _user_file(path, what).read_bytes().removeprefix(_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise _not_utf8(Path(path), line, raw, e.start, what) from None


def iter_user_lines(path: str | os.PathLike[str], what: str = "file") -> Iterator[tuple[int, str]]:
    """``(line number, text without its line break)`` of a UTF-8 file a user gave us, read a line at a
    time so a file of millions of lines is never held whole; the errors of :func:`read_user_text`.

    Lines end at ``\\n`` only (as :func:`read_user_text`'s line numbers count them; ``\\r\\n`` works
    too): a U+2028 or a form feed inside a JSON string is text, not a line break. A missing file or a
    directory is reported here, before the first line is read; a bad byte when its line is reached.
    """
    return _decoded_lines(_user_file(path, what), what)


def _decoded_lines(p: Path, what: str) -> Iterator[tuple[int, str]]:
    """The generator behind :func:`iter_user_lines` (the file is open only while it is iterated)."""
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            data = raw.removeprefix(_BOM) if lineno == 1 else raw
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(p, lineno, data, e.start, what) from None
            yield lineno, text.removesuffix("\n").removesuffix("\r")


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is a file (so ``path`` can never be created)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_file(path: str | os.PathLike[str] | None, what: str) -> None:
    """A file a command will write (``what``: the option naming it) can be written there: it is not
    a directory and no file stands where one of its folders must be. :class:`UsageError` otherwise."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {p} is a directory; give a file name")
    if (blocker := _blocking_file(p)) is not None:
        raise UsageError(f"{what} {p}: {blocker} is a file, so no folder can be made there")


def check_output_dir(path: str | os.PathLike[str] | None, what: str) -> None:
    """A directory a command will write into (``what``: the option or key naming it) can be there."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} {p} is a file; give a directory")
    if (blocker := _blocking_file(p)) is not None:
        raise UsageError(f"{what} {p}: {blocker} is a file, so no folder can be made there")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (all-or-nothing); returns ``Path(path)``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; newline translation is disabled for reproducibility."""
    return atomic_write_chunks(path, (text,), encoding)


def atomic_write_chunks(path: str | os.PathLike[str], chunks: Iterable[str], encoding: str = "utf-8") -> Path:
    """Write the strings of ``chunks``, in order, to ``path`` atomically, as they arrive: a file of
    millions of lines is never held whole. An exception from ``chunks`` (a bad record found at the end)
    leaves ``path`` as it was and no temp file behind. No newline translation, as in :func:`atomic_write_text`.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as fh:
        for chunk in chunks:
            fh.write(chunk)
    return Path(path)


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (headless: CI, DataLoader workers, SSH),
    imported on first use so commands that draw nothing never load matplotlib."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike[str], *, dpi: int = 120, tight: bool = True) -> Path:
    """Write a matplotlib figure as a PNG atomically, then close it if pyplot manages it.

    Every PNG the project writes (analysis plots, loss curve, confusion matrix) goes through here,
    so an interrupted write never leaves a truncated image over a previous one. Figures built with
    the object API (``Figure()``, no pyplot manager) are left alone, so callers that avoid
    pyplot's global state keep doing so.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight" if tight else None)
    if getattr(fig.canvas, "manager", None) is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------------------- locks

LOCK_NAME = ".moeaudio.lock"  # inside a locked directory
_held: dict[str, list[Any]] = {}  # lock file -> [open file, count]: re-entrant within one process
_held_guard = threading.Lock()


def lock_file_for(target: str | os.PathLike[str], directory: bool | None = None) -> Path:
    """Where the lock of ``target`` lives: ``DIR/.moeaudio.lock`` for a directory, ``.NAME.lock`` beside a
    file. ``directory`` says which ``target`` is (None: guess: an existing directory, or a path without
    a suffix; callers that know should say, so the place does not change once the directory exists)."""
    p = Path(target)
    if directory is None:
        directory = p.is_dir() or (not p.exists() and not p.suffix)
    if directory:
        return p / LOCK_NAME
    return p.parent / f".{p.name}.lock"


class FileLock:
    """One writer at a time for a run directory or an output file, across processes.

    Why ``flock`` on an open file rather than an ``O_EXCL`` lock file: the kernel drops a ``flock`` the
    moment its holder dies, SIGKILL and OOM-kill included, so a crashed run never leaves a lock that
    blocks the next one, and there is no guessing whether a recorded pid is still the same process
    (pids are reused; an ``O_EXCL`` file of a dead run must be judged stale from its pid, which cannot be
    checked from another host). The file stays in place and holds the holder's pid, host, start time
    and command, for the message a refused writer prints; a clean release empties it, so content found
    by the next holder means the last one died holding it (it is taken over with a warning naming it).

    Re-entrant within one process (a second ``acquire`` of the same lock counts up). The lock is
    advisory: it keeps moeaudio commands apart, not other programs. On NFS, Linux maps ``flock`` onto
    POSIX byte-range locks, which the server arbitrates. Where ``fcntl`` is missing (Windows) it does
    not lock.
    """

    def __init__(
        self, target: str | os.PathLike[str], what: str, hint: str = "", directory: bool | None = None
    ):
        self.target = Path(target)
        self.path = lock_file_for(target, directory)
        self.what = what  # e.g. "training", "eval --output"
        self.hint = hint  # the way out besides waiting, e.g. "or give another --output"
        self.taken_over: dict[str, Any] | None = None  # the record a dead holder left

    def read_holder(self) -> dict[str, Any] | None:
        """The record the current (or last, unreleased) holder wrote; None when empty or unreadable."""
        try:
            return json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None

    def acquire(self, once: bool = False) -> FileLock:
        """Take the lock or raise :class:`~moeaudio.errors.BusyError` naming the live holder.
        ``once``: a lock this process already holds is not counted again (one release frees it)."""
        key = str(self.path.absolute())
        with _held_guard:
            if key in _held:
                _held[key][1] += 0 if once else 1
                return self
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.close()
                    raise self._busy() from None
            fh.seek(0)
            left = fh.read().strip()
            if left:  # a holder died without releasing (killed): say whose lock is taken over
                with contextlib.suppress(ValueError):
                    self.taken_over = json.loads(left)
                self._warn_taken_over()
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(_me(self.what)) + "\n")
            fh.flush()
            _held[key] = [fh, 1]
        return self

    def release(self) -> None:
        """Give the lock back (the last of a process's nested acquisitions); empties the record."""
        key = str(self.path.absolute())
        with _held_guard:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[key]
            fh = entry[0]
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.flush()
            fh.close()  # closing drops the flock

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _busy(self) -> BusyError:
        holder = None
        for _ in range(50):  # the holder writes its record right after locking: give it a moment
            holder = self.read_holder()
            if holder:
                break
            threading.Event().wait(0.01)
        if holder:
            who = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
            if holder.get("parent"):
                who += f", launched by pid {holder['parent']}"
            who += f": {holder.get('command')}"
            stop = f"stop it (kill {holder.get('pid')})"
        else:
            who, stop = "a process that has not said which", "stop it"
        return BusyError(
            f"{self.target} is in use by a running {holder.get('what', self.what) if holder else self.what} "
            f"({who}); wait for it to finish, {stop}{', ' + self.hint if self.hint else ''}"
            f" (lock file {self.path})"
        )

    def _warn_taken_over(self) -> None:
        old = self.taken_over or {}
        warnings.warn(
            f"{self.target}: took over the lock of a {old.get('what', 'run')} that ended without releasing it "
            f"(pid {old.get('pid')} on {old.get('host')}, since {old.get('since')}; killed or crashed)",
            stacklevel=3,
        )


def _me(what: str) -> dict[str, Any]:
    """The record a lock holder writes: who it is, for a refused writer's message."""
    return {
        "what": what,
        "pid": os.getpid(),
        # a rank of `train --nproc` names its launcher (what a user would stop)
        "parent": os.getppid() if os.environ.get("MOEAUDIO_LAUNCHER_PID") == str(os.getppid()) else None,
        "host": socket.gethostname(),
        "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "python",
    }
