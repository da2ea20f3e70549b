"""VocalSound (Gong et al., ICASSP 2022) -> ``vocalsound`` manifests.

Layout (the 16 kHz release ``vocalsound_16k``)::

    <src>/audio_16k/<spk>_<n>_<label>.wav        e.g. f0003_0_cough.wav (f/m prefix = gender)
    <src>/meta/{tr,val,te}_meta.csv              # optional: one speaker per row, id in column 1
    <src>/datafiles/{tr,val,te}.json             # optional alternative: AST-style
                                                   {"data": [{"wav": ".../f0003_0_cough.wav", ...}]}

Labels: laughter, sigh, cough, throatclearing, sneeze, sniff; targets use the spaced form
``throat clearing``. Splits come from the meta csvs (speaker lists) or datafiles json (file
lists) when present -- these are the official speaker-independent train/valid/test splits --
otherwise a deterministic speaker-level block split (``valid_ratio``/``test_ratio``).

Options: ``tasks`` (``("vocalsound",)``; ``"gender"`` adds an item per clip), ``valid_ratio``
(0.1), ``test_ratio`` (0.1), plus the common options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moeaudio.data.sources.base import (
    Candidate,
    PrepareReport,
    block_split,
    emit_tasks,
    run_finalize,
    source_dir,
)
from moeaudio.errors import MissingDataError, UsageError
from moeaudio.io_utils import read_user_text

NAME = "vocalsound"
LABELS = {
    "laughter": "laughter",
    "sigh": "sigh",
    "cough": "cough",
    "throatclearing": "throat clearing",
    "sneeze": "sneeze",
    "sniff": "sniff",
}
_NAME_RE = re.compile(r"^(?P<spk>[A-Za-z]?\d+)_(?P<n>\d+)_(?P<label>[a-z]+)\.wav$")
_SPLIT_FILES = {"tr": "train", "val": "valid", "te": "test"}


def _official_splits(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(speaker -> split, file name -> split) from meta csvs / datafiles json, if present."""
    by_spk: dict[str, str] = {}
    by_file: dict[str, str] = {}
    for short, split in _SPLIT_FILES.items():
        meta_csv = root / "meta" / f"{short}_meta.csv"
        if meta_csv.is_file():
            with open(meta_csv, encoding="utf-8-sig", newline="") as fh:
                for row in csv.reader(fh):
                    if row and row[0].strip() and not row[0].strip().lower().startswith("spk"):
                        by_spk[row[0].strip()] = split
        data_json = root / "datafiles" / f"{short}.json"
        if data_json.is_file():
            try:
                entries = json.loads(read_user_text(data_json, "VocalSound data file")).get("data", [])
            except (json.JSONDecodeError, AttributeError) as e:
                raise UsageError(f"{data_json}: not a VocalSound data file ({e})") from None
            for entry in entries:
                by_file[Path(entry["wav"]).name] = split
    return by_spk, by_file


def prepare(
    src: Path,
    out: Path,
    *,
    tasks: Sequence[str] = ("vocalsound",),
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
    **options: Any,
) -> PrepareReport:
    """One item per clip and task; label and speaker parsed from the filename."""
    root = source_dir(src, "vocalsound_16k")
    audio_dir = root / "audio_16k"
    if not audio_dir.is_dir():
        raise MissingDataError(
            f"{audio_dir}: not found; expected VocalSound's audio_16k/<spk>_<n>_<label>.wav"
        )
    skipped: list[tuple[str, str]] = []
    parsed: list[tuple[Path, str, str]] = []
    for f in sorted(audio_dir.glob("*.wav")):
        m = _NAME_RE.match(f.name)
        if not m or m["label"] not in LABELS:
            skipped.append((str(f), f"name is not <spk>_<n>_<label>.wav with label in {', '.join(LABELS)}"))
            continue
        parsed.append((f, m["spk"], m["label"]))
    by_spk, by_file = _official_splits(root)
    fallback = block_split((spk for _, spk, _ in parsed), valid_ratio, test_ratio)
    cands: list[Candidate] = []
    for f, spk, label in parsed:
        if by_file:
            split = by_file.get(f.name)
        elif by_spk:
            split = by_spk.get(spk)
        else:
            split = fallback[spk]
        if split is None:
            skipped.append((str(f), "not listed in the official split files"))
            continue
        gender = {"f": "female", "m": "male"}.get(spk[:1].lower())
        meta: dict[str, Any] = {"label": label}
        if gender:
            meta["gender"] = gender
        emit_tasks(
            cands,
            split,
            f"{NAME}/{f.stem}",
            str(f),
            tasks,
            {"vocalsound": LABELS[label], "gender": gender},
            speaker=spk,
            meta=meta,
        )
    return run_finalize(NAME, src, out, cands, skipped, options)
