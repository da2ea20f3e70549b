"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset) -> ``emotion``/``gender``.

Layout (GitHub/LFS release ``CheyneyComputerScience/CREMA-D``)::

    <src>/AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav    e.g. 1001_DFA_ANG_XX.wav
    <src>/VideoDemographics.csv     # optional: ActorID,Age,Sex,Race,Ethnicity

Emotion codes: ANG angry, DIS disgust, FEA fearful, HAP happy, NEU neutral, SAD sad. Level:
LO/MD/HI/XX (XX = unspecified). ``1076_MTI_SAD_XX.wav`` is empty in the release; it is
skipped and listed in the report.

No official split; default is speaker-independent: actors sorted by id, last 10 % -> test,
previous 10 % -> valid (``valid_ratio``/``test_ratio``).

Options: ``tasks`` (default ``("emotion",)``; ``"gender"`` needs VideoDemographics.csv),
``valid_ratio`` (0.1), ``test_ratio`` (0.1), plus the common options of
:mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import csv
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
from moeaudio.errors import MissingDataError

NAME = "cremad"
EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before",
    "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}  # fmt: skip
_NAME_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$")


def _demographics(root: Path) -> dict[str, dict[str, str]]:
    path = root / "VideoDemographics.csv"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return {row["ActorID"].strip(): row for row in csv.DictReader(fh) if row.get("ActorID")}


def prepare(
    src: Path,
    out: Path,
    *,
    tasks: Sequence[str] = ("emotion",),
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
    **options: Any,
) -> PrepareReport:
    """One item per clip and task; emotion from the filename, gender from the demographics csv."""
    root = source_dir(src, "CREMA-D")
    audio_dir = root / "AudioWAV"
    if not audio_dir.is_dir():
        raise MissingDataError(
            f"{audio_dir}: not found; expected CREMA-D's AudioWAV/<actor>_<sent>_<emo>_<lvl>.wav"
        )
    demo = _demographics(root)
    skipped: list[tuple[str, str]] = []
    parsed: list[tuple[Path, tuple[str, ...]]] = []
    for f in sorted(audio_dir.glob("*.wav")):
        m = _NAME_RE.match(f.name)
        if not m or m[3] not in EMOTIONS:
            skipped.append((str(f), "name is not <actor>_<SENT>_<ANG|DIS|FEA|HAP|NEU|SAD>_<LVL>.wav"))
            continue
        parsed.append((f, m.groups()))
    splits = block_split((g[0] for _, g in parsed), valid_ratio, test_ratio)
    cands: list[Candidate] = []
    for f, (actor, sent, emo, level) in parsed:
        sex = (demo.get(actor, {}).get("Sex") or "").strip().lower()
        gender = sex if sex in ("male", "female") else None
        meta: dict[str, Any] = {
            "label": emo,
            "sentence": sent,
            "text": SENTENCES.get(sent),
            "level": LEVELS.get(level, level),
        }
        if gender:
            meta["gender"] = gender
        if actor in demo:
            meta.update({k.lower(): v for k, v in demo[actor].items() if k in ("Age", "Race", "Ethnicity")})
        emit_tasks(
            cands,
            splits[actor],
            f"{NAME}/{f.stem}",
            str(f),
            tasks,
            {"emotion": EMOTIONS[emo], "gender": gender},
            lang="en",
            speaker=actor,
            meta=meta,
        )
    return run_finalize(NAME, src, out, cands, skipped, options)
