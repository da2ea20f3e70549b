"""LibriSpeech (OpenSLR 12) -> ASR manifests, one per released subset.

Layout (as extracted from the OpenSLR tarballs)::

    <src>/LibriSpeech/                # or <src> itself
        SPEAKERS.TXT                  # optional: "ID | SEX | SUBSET | MINUTES | NAME", ';' comments
        <split>/<spk>/<chap>/<spk>-<chap>.trans.txt   # "<spk>-<chap>-<utt> TRANSCRIPT" per line
        <split>/<spk>/<chap>/<spk>-<chap>-<utt>.flac

``<split>`` is e.g. ``train-clean-100``, ``dev-clean``, ``test-other``; the manifest keeps that
name (``out/dev-clean.jsonl``) because results are conventionally reported per subset.

Options: ``splits`` (list of subset names; default every subset dir found), ``lowercase``
(default False: keep the released upper-case text), plus the common options of
:mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import Item
from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize, source_dir
from moeaudio.data.tasks import TASK_INSTRUCTIONS
from moeaudio.errors import MissingDataError

NAME = "librispeech"


def _speakers(root: Path) -> dict[str, str]:
    path = root / "SPEAKERS.TXT"
    genders: dict[str, str] = {}
    if not path.is_file():
        return genders
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[1] in ("M", "F"):
            genders[parts[0]] = "male" if parts[1] == "M" else "female"
    return genders


def prepare(
    src: Path, out: Path, *, splits: Sequence[str] | None = None, lowercase: bool = False, **options: Any
) -> PrepareReport:
    """Parse every ``*.trans.txt`` under the selected subsets into ``asr`` items (domain speech, lang en)."""
    root = source_dir(src, "LibriSpeech")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*/*/*.trans.txt")))
    wanted = list(splits) if splits is not None else found
    missing = [s for s in wanted if s not in found]
    if missing:
        raise MissingDataError(f"{root}: subset(s) {missing} not found; available: {found}")
    genders = _speakers(root)
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for split in wanted:
        for trans in sorted((root / split).glob("*/*/*.trans.txt")):
            for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                utt, _, text = line.strip().partition(" ")
                parts = utt.split("-")
                if not text or len(parts) != 3:
                    skipped.append((f"{trans}:{lineno}", "expected '<spk>-<chap>-<utt> TRANSCRIPT'"))
                    continue
                spk, chap = parts[0], parts[1]
                meta = {"chapter": chap, "subset": split}
                if spk in genders:
                    meta["gender"] = genders[spk]
                cands.append(
                    Candidate(
                        split,
                        Item(
                            id=f"{NAME}/{utt}",
                            audio=str(trans.parent / f"{utt}.flac"),
                            domain="speech",
                            task="asr",
                            instruction=TASK_INSTRUCTIONS["asr"],
                            target=text.lower() if lowercase else text,
                            lang="en",
                            speaker=spk,
                            meta=meta,
                        ),
                    )
                )
    return run_finalize(NAME, src, out, cands, skipped, options)
