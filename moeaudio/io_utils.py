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
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from moeaudio.errors import MissingDataError, UsageError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_chunks",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "iter_user_lines",
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
