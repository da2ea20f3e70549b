"""GTZAN music genre collection -> ``genre`` manifests.

Layout (Kaggle "GTZAN Dataset - Music Genre Classification" or the original marsyas tarball)::

    <src>/[Data/]genres_original/<genre>/<genre>.000NN.wav     # Kaggle, 30 s, 22.05 kHz
    <src>/genres/<genre>/<genre>.000NN.au                      # original marsyas release

``jazz.00054.wav`` is corrupt in the Kaggle copy; it is skipped and listed in the report.

GTZAN has no official split. Default: per genre, by track number, the last ``test_ratio`` ->
``test``, the preceding ``valid_ratio`` -> ``valid``, the rest -> ``train``. Contiguous blocks
(instead of random) because GTZAN tracks of the same artist sit next to each other, so blocks
leak less. Use ``split_files={"train": "train_filtered.txt", ...}`` (lines like
``blues/blues.00000.wav``, e.g. the fault-filtered split of Kereliuk et al.) to override.

Options: ``valid_ratio`` (0.1), ``test_ratio`` (0.1), ``split_files`` (dict split -> list file),
plus the common options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import Item
from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize
from moeaudio.data.tasks import TASK_INSTRUCTIONS
from moeaudio.errors import MissingDataError

NAME = "gtzan"
_NAME_RE = re.compile(r"^(?P<genre>[a-z]+)\.(?P<num>\d{5})\.(?:wav|au)$")


def _genre_root(src: Path) -> Path:
    for rel in ("Data/genres_original", "genres_original", "genres", "."):
        cand = src / rel
        if cand.is_dir() and (any(cand.glob("*/*.*.wav")) or any(cand.glob("*/*.*.au"))):
            return cand
    raise MissingDataError(
        f"{src}: no <genre>/<genre>.000NN.wav files under Data/genres_original, genres_original or genres"
    )


def prepare(
    src: Path,
    out: Path,
    *,
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
    split_files: dict[str, str | Path] | None = None,
    **options: Any,
) -> PrepareReport:
    """One ``genre`` item per track (domain music)."""
    root = _genre_root(Path(src))
    explicit: dict[str, str] = {}
    for split, list_file in (split_files or {}).items():
        for line in Path(list_file).read_text(encoding="utf-8").splitlines():
            if line.strip():
                explicit[Path(line.strip()).name] = split
    by_genre: dict[str, list[tuple[int, Path]]] = {}
    skipped: list[tuple[str, str]] = []
    for f in sorted(p for p in root.glob("*/*") if p.is_file()):
        m = _NAME_RE.match(f.name)
        if not m or m["genre"] != f.parent.name:
            if f.suffix in (".wav", ".au"):
                skipped.append((str(f), "name does not follow <genre>/<genre>.000NN.wav"))
            continue
        by_genre.setdefault(m["genre"], []).append((int(m["num"]), f))
    cands: list[Candidate] = []
    for genre, tracks in sorted(by_genre.items()):
        tracks.sort()
        n = len(tracks)
        n_test, n_valid = round(n * test_ratio), round(n * valid_ratio)
        for i, (num, f) in enumerate(tracks):
            if explicit:
                split = explicit.get(f.name)
                if split is None:
                    continue
            else:
                split = "test" if i >= n - n_test else "valid" if i >= n - n_test - n_valid else "train"
            cands.append(
                Candidate(
                    split,
                    Item(
                        id=f"{NAME}/{genre}.{num:05d}",
                        audio=str(f),
                        domain="music",
                        task="genre",
                        instruction=TASK_INSTRUCTIONS["genre"],
                        target=genre,
                        meta={"track": num},
                    ),
                )
            )
    return run_finalize(NAME, src, out, cands, skipped, options)
