"""IEMOCAP -> ``emotion`` (and optionally ``gender``) manifests.

Layout (``IEMOCAP_full_release``)::

    <src>/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
    <src>/Session{1..5}/dialog/transcriptions/<dialog>.txt     # optional
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
    <src>/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav

Only ``*.txt`` directly inside ``EmoEvaluation`` are read (its Categorical/Attribute/
Self-evaluation sub-folders hold per-annotator votes); hidden ``._*`` files are ignored.
The speaking actor is the gender letter of the utterance suffix (``..._F000`` -> female actor of
that session); speaker id ``Ses01F``.

Default: the common 4-class setup ang/hap/neu/sad, other labels skipped (not reported: dropping
them is the protocol, not a data problem). ``merge_excited=True`` maps ``exc`` -> happy (the
popular 5531-utterance setup). Session ``test_session`` (5) -> test, ``valid_session`` (None)
-> valid, the rest -> train.

Options: ``classes`` (default ``("ang", "hap", "neu", "sad")``), ``merge_excited`` (False),
``tasks`` (``("emotion",)``), ``test_session`` (5), ``valid_session`` (None), plus the common
options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moeaudio.data.sources.base import Candidate, PrepareReport, emit_tasks, run_finalize, source_dir
from moeaudio.errors import MissingDataError

NAME = "iemocap"
LABELS = {
    "ang": "angry", "hap": "happy", "exc": "excited", "neu": "neutral", "sad": "sad", "fru": "frustrated",
    "sur": "surprised", "fea": "fearful", "dis": "disgust", "oth": "other",
}  # fmt: skip
_EVAL_RE = re.compile(r"^\[(\d+\.?\d*)\s*-\s*(\d+\.?\d*)\]\s+(Ses\d{2}[FM]_\S+)\s+(\w+)\s+\[([^\]]*)\]")
_TRANS_RE = re.compile(r"^(Ses\d{2}[FM]_\S+)\s+\[[^\]]*\]:\s*(.*)$")


def _transcripts(session_dir: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    for f in sorted((session_dir / "dialog" / "transcriptions").glob("*.txt")):
        if f.name.startswith("."):
            continue
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _TRANS_RE.match(line.strip())
            if m:
                texts[m[1]] = m[2].strip()
    return texts


def prepare(
    src: Path,
    out: Path,
    *,
    classes: Sequence[str] = ("ang", "hap", "neu", "sad"),
    merge_excited: bool = False,
    tasks: Sequence[str] = ("emotion",),
    test_session: int = 5,
    valid_session: int | None = None,
    **options: Any,
) -> PrepareReport:
    """One item per evaluated utterance whose (merged) label is in ``classes``."""
    root = source_dir(src, "IEMOCAP_full_release")
    sessions = sorted(d for d in root.glob("Session*") if d.is_dir())
    if not sessions:
        raise MissingDataError(f"{root}: no Session1..Session5 directories found")
    keep = set(classes)
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for sdir in sessions:
        sess_n = int(re.sub(r"\D", "", sdir.name) or 0)
        split = "test" if sess_n == test_session else "valid" if sess_n == valid_session else "train"
        texts = _transcripts(sdir)
        for ev in sorted((sdir / "dialog" / "EmoEvaluation").glob("*.txt")):
            if ev.name.startswith("."):
                continue
            dialog = ev.stem
            for line in ev.read_text(encoding="utf-8", errors="replace").splitlines():
                m = _EVAL_RE.match(line.strip())
                if not m:
                    continue
                start, end, utt, label, vad = m.groups()
                if merge_excited and label == "exc":
                    label = "hap"
                if label not in keep:
                    continue
                gender_letter = utt.rsplit("_", 1)[-1][:1]
                gender = "female" if gender_letter == "F" else "male"
                try:
                    v, a, d = (float(x) for x in vad.split(","))
                    vad_meta: dict[str, Any] = {"valence": v, "arousal": a, "dominance": d}
                except ValueError:
                    vad_meta = {}
                meta = {
                    "label": m[4],
                    "session": sess_n,
                    "dialog": dialog,
                    "improvised": "_impro" in dialog,
                    "start": float(start),
                    "end": float(end),
                    "gender": gender,
                    **vad_meta,
                }
                if utt in texts:
                    meta["text"] = texts[utt]
                emit_tasks(
                    cands,
                    split,
                    f"{NAME}/{utt}",
                    str(sdir / "sentences" / "wav" / dialog / f"{utt}.wav"),
                    tasks,
                    {"emotion": LABELS.get(label, label), "gender": gender},
                    lang="en",
                    speaker=f"{utt[:5]}{gender_letter}",
                    meta=meta,
                )
    return run_finalize(NAME, src, out, cands, skipped, options)
