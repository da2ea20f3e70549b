"""Generic csv/tsv -> manifest (registry name ``csv``), with a column mapping.

Same options and semantics as :mod:`moeaudio.data.sources.jsonl` (``columns``, ``task``,
``domain``, ``instruction``, ``lang``, ``split``, ``audio_root`` + common options) plus
``delimiter`` (default ``","``, or tab for ``.tsv``). ``src`` is a file or a directory of
``.csv``/``.tsv`` files (one split per file stem). A ``choices`` column may hold a JSON list or
``|``-separated options.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize
from moeaudio.data.sources.jsonl import _files, records_to_candidates

NAME = "csv"


def prepare(
    src: Path,
    out: Path,
    *,
    columns: Mapping[str, str] | None = None,
    task: str = "asr",
    domain: str | None = None,
    instruction: str | None = None,
    lang: str | None = None,
    split: str | None = None,
    audio_root: str | Path | None = None,
    delimiter: str | None = None,
    **options: Any,
) -> PrepareReport:
    """Map each csv row to an Item through ``columns``."""
    files = _files(Path(src), (".csv", ".tsv"))
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for f in files:
        delim = delimiter or ("\t" if f.suffix == ".tsv" else ",")

        def records(f: Path = f, delim: str = delim) -> Iterable[tuple[str, Mapping[str, Any]]]:
            with open(f, encoding="utf-8-sig", newline="") as fh:
                for lineno, row in enumerate(csv.DictReader(fh, delimiter=delim), start=2):
                    yield (
                        f"{f}:{lineno}",
                        {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k},
                    )

        records_to_candidates(
            records(),
            split=split if split and len(files) == 1 else f.stem,
            base_dir=Path(audio_root) if audio_root else f.parent,
            columns=columns,
            task=task,
            domain=domain,
            instruction=instruction,
            lang=lang,
            id_prefix="",
            cands=cands,
            skipped=skipped,
        )
    return run_finalize(NAME, src, out, cands, skipped, options)
