"""RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song) -> ``emotion``/``gender``.

Layout (``Audio_Speech_Actors_01-24.zip`` and/or ``Audio_Song_Actors_01-24.zip`` extracted)::

    <src>/[Audio_Speech_Actors_01-24/]Actor_XX/03-01-EE-II-SS-RR-AA.wav   (searched recursively)

Filename fields: modality (01 AV, 02 video, 03 audio-only) - vocal channel (01 speech, 02 song)
- emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
08 surprised) - intensity (01 normal, 02 strong) - statement (01 "Kids are talking by the
door", 02 "Dogs are sitting by the door") - repetition - actor (odd = male, even = female).

No official split; default is speaker-independent by actor: actors 1-20 train, 21-22 valid,
23-24 test (``valid_actors``/``test_actors`` override).

Options: ``tasks`` (default ``("emotion",)``; add ``"gender"`` for a second item per clip),
``include_song`` (default True), ``valid_actors`` ((21, 22)), ``test_actors`` ((23, 24)), plus the
common options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moeaudio.data.sources.base import Candidate, PrepareReport, emit_tasks, run_finalize

NAME = "ravdess"
EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_NAME_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.wav$")


def parse_name(name: str) -> dict[str, Any] | None:
    """Decode a RAVDESS filename into its fields (None if it is not one)."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    modality, channel, emo, intensity, statement, rep, actor = m.groups()
    if emo not in EMOTIONS:
        return None
    actor_n = int(actor)
    return {
        "modality": modality,
        "vocal_channel": "speech" if channel == "01" else "song",
        "emotion": EMOTIONS[emo],
        "intensity": "normal" if intensity == "01" else "strong",
        "statement": STATEMENTS.get(statement, statement),
        "repetition": int(rep),
        "actor": actor_n,
        "gender": "male" if actor_n % 2 == 1 else "female",
    }


def prepare(
    src: Path,
    out: Path,
    *,
    tasks: Sequence[str] = ("emotion",),
    include_song: bool = True,
    valid_actors: Sequence[int] = (21, 22),
    test_actors: Sequence[int] = (23, 24),
    **options: Any,
) -> PrepareReport:
    """One item per clip and task; labels come from the filename codes."""
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for f in sorted(Path(src).rglob("*.wav")):
        if not f.parent.name.startswith("Actor_"):
            continue
        info = parse_name(f.name)
        if info is None:
            skipped.append((str(f), "name is not a RAVDESS code MM-VV-EE-II-SS-RR-AA.wav"))
            continue
        if info["vocal_channel"] == "song" and not include_song:
            continue
        actor = info["actor"]
        split = "test" if actor in test_actors else "valid" if actor in valid_actors else "train"
        emit_tasks(
            cands,
            split,
            f"{NAME}/{f.stem}",
            str(f),
            tasks,
            {"emotion": info["emotion"], "gender": info["gender"]},
            lang="en",
            speaker=f"Actor_{actor:02d}",
            meta=info,
        )
    return run_finalize(NAME, src, out, cands, skipped, options)
