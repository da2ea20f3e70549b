"""Mozilla Common Voice -> ASR manifests.

Layout (one language of a ``cv-corpus-<ver>-<date>`` release)::

    <src>/                       # the language dir, e.g. cv-corpus-17.0/en
        train.tsv dev.tsv test.tsv validated.tsv [other.tsv invalidated.tsv]
        clips/<name>.mp3
        [clip_durations.tsv]

TSV columns used: ``client_id, path, sentence, age, gender, accents|accent, locale``
(unquoted tab-separated; sentences may contain quote characters, so quoting is disabled).
``gender`` values are normalised: ``male``/``male_masculine`` -> ``male``,
``female``/``female_feminine`` -> ``female``; the raw value is kept in ``meta.gender_raw``.

Options: ``splits`` (default ``("train", "dev", "test")``; ``validated`` is a superset of
those, so it is opt-in), ``lang`` (default: the ``locale`` column, else the dir name), plus the
common options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import Item
from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize
from moeaudio.data.tasks import TASK_INSTRUCTIONS
from moeaudio.errors import MissingDataError

NAME = "commonvoice"


def _gender(raw: str) -> str | None:
    raw = (raw or "").strip().lower()
    if raw.startswith("female"):
        return "female"
    if raw.startswith("male"):
        return "male"
    return None


def prepare(
    src: Path,
    out: Path,
    *,
    splits: Sequence[str] = ("train", "dev", "test"),
    lang: str | None = None,
    **options: Any,
) -> PrepareReport:
    """Read ``<split>.tsv`` files; audio is ``clips/<path>``; gender/age/accents go to ``meta``."""
    root = Path(src)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for split in splits:
        tsv = root / f"{split}.tsv"
        if not tsv.is_file():
            raise MissingDataError(f"{tsv}: not found; Common Voice splits are <split>.tsv next to clips/")
        with open(tsv, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            for lineno, row in enumerate(reader, start=2):
                path, sentence = (row.get("path") or "").strip(), (row.get("sentence") or "").strip()
                if not path or not sentence:
                    skipped.append((f"{tsv}:{lineno}", "row without 'path' or 'sentence'"))
                    continue
                meta: dict[str, Any] = {}
                gender = _gender(row.get("gender", ""))
                if gender:
                    meta["gender"] = gender
                if row.get("gender"):
                    meta["gender_raw"] = row["gender"]
                if row.get("age"):
                    meta["age"] = row["age"]
                accents = row.get("accents") or row.get("accent")
                if accents:
                    meta["accents"] = accents
                for key in ("up_votes", "down_votes", "variant", "segment"):
                    if row.get(key):
                        meta[key] = row[key]
                cands.append(
                    Candidate(
                        split,
                        Item(
                            id=f"{NAME}/{Path(path).stem}",
                            audio=str(root / "clips" / path),
                            domain="speech",
                            task="asr",
                            instruction=TASK_INSTRUCTIONS["asr"],
                            target=sentence,
                            lang=lang or row.get("locale") or root.name,
                            speaker=row.get("client_id") or None,
                            meta=meta,
                        ),
                    )
                )
    return run_finalize(NAME, src, out, cands, skipped, options)
