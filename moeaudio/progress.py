"""The one progress bar of moeaudio: rich, on stderr, off when stderr is not a terminal.

Why one: long work (feature extraction, generation, routing capture, gradient probes, the
corpus) must show the same bar everywhere, and must never write into stdout, which carries
``--json`` results and piped transcripts. In CI logs and pipes a live bar is noise, so it is off
there; ``train`` prints plain log lines instead (see ``train/report.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """``with progress_bar("encoding audio", n) as advance: ... advance(k)``; a no-op when disabled."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda _n: None
        return
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
