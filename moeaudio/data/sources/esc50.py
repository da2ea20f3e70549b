"""ESC-50 (environmental sound classification, 50 classes, 5 folds) -> ``sound`` manifests.

Layout (the GitHub release ``ESC-50-master``)::

    <src>/meta/esc50.csv     # filename,fold,target,category,esc10,src_file,take
    <src>/audio/<fold>-<src_file>-<take>-<target>.wav   # 5 s, 44.1 kHz mono

Split: fold ``test_fold`` (default 5) -> ``test``, the other folds -> ``train``. For 5-fold
cross-validation call once per fold with ``test_fold=k`` into different ``out`` dirs.
Targets are the category with ``_`` -> space (``chirping_birds`` -> ``chirping birds``).

Options: ``test_fold`` (1-5, default 5), ``esc10`` (default False: only the ESC-10 subset when
True), plus the common options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import Item
from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize, source_dir
from moeaudio.data.tasks import TASK_INSTRUCTIONS
from moeaudio.errors import MissingDataError

NAME = "esc50"


def prepare(
    src: Path, out: Path, *, test_fold: int = 5, esc10: bool = False, **options: Any
) -> PrepareReport:
    """One ``sound`` item per row of ``meta/esc50.csv``."""
    root = source_dir(src, "ESC-50-master")
    meta_csv = root / "meta" / "esc50.csv"
    if not meta_csv.is_file():
        raise MissingDataError(
            f"{meta_csv}: not found; expected the ESC-50 release layout meta/esc50.csv + audio/"
        )
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    with open(meta_csv, encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), start=2):
            try:
                fold = int(row["fold"])
                is_esc10 = str(row.get("esc10", "")).strip().lower() == "true"
                category = row["category"].strip()
                filename = row["filename"].strip()
            except (KeyError, ValueError, AttributeError) as e:
                skipped.append((f"{meta_csv}:{lineno}", f"malformed row ({e})"))
                continue
            if esc10 and not is_esc10:
                continue
            cands.append(
                Candidate(
                    "test" if fold == test_fold else "train",
                    Item(
                        id=f"{NAME}/{Path(filename).stem}",
                        audio=str(root / "audio" / filename),
                        domain="sound",
                        task="sound",
                        instruction=TASK_INSTRUCTIONS["sound"],
                        target=category.replace("_", " "),
                        meta={
                            "label": category,
                            "class_id": int(row.get("target", -1)),
                            "fold": fold,
                            "esc10": is_esc10,
                            "src_file": row.get("src_file"),
                        },
                    ),
                )
            )
    return run_finalize(NAME, src, out, cands, skipped, options)
