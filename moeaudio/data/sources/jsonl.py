"""Generic jsonl -> manifest, with a column mapping (for in-house or ad-hoc datasets).

Layout: ``src`` is one ``.jsonl`` file (split = ``split`` option or the file stem) or a
directory of them (one split per file, named by stem). Each line is an object with at least an
audio path and a target text, under keys named by ``columns``.

Options:

* ``columns``: ``{item_field: source_key}`` overrides, e.g. ``{"audio": "wav", "target": "text"}``.
  Defaults: ``id<-id``, ``audio<-audio``, ``target<-target`` (falls back to ``text``), and every
  other Item field from the key of the same name when present.
* ``task`` (``"asr"``), ``domain`` (default from the task), ``instruction`` (default from the
  task), ``lang``: values for fields a record does not carry.
* ``split``: split name for a single file (default the file stem).
* ``audio_root``: base for relative audio paths (default the file's directory).
* Unmapped keys go to ``meta``. Label fields stored as lists in some records (``"category": ["x"]``,
  ``"lang": ["en"]``) are flattened with :func:`~moeaudio.data.tasks.scalar_label`; a list ``target``
  keeps its first element as the target and all of them in ``meta.references`` (several references). Plus the common options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import VALID_KEYS, Item
from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize
from moeaudio.data.tasks import LABEL_META_KEYS, TASK_INSTRUCTIONS, scalar_label
from moeaudio.errors import MissingDataError, UsageError
from moeaudio.io_utils import read_user_text

NAME = "jsonl"


def _files(src: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if src.is_file():
        return [src]
    files = sorted(p for p in src.iterdir() if p.suffix in suffixes) if src.is_dir() else []
    if not files:
        raise MissingDataError(f"{src}: no {'/'.join(suffixes)} files found")
    return files


def records_to_candidates(
    records: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    split: str,
    base_dir: Path,
    columns: Mapping[str, str] | None,
    task: str,
    domain: str | None,
    instruction: str | None,
    lang: str | None,
    id_prefix: str,
    cands: list[Candidate],
    skipped: list[tuple[str, str]],
) -> None:
    """Map raw records (``(location, record)``) to Candidates; shared by the jsonl and csv sources."""
    cols = dict(columns or {})
    unknown = [k for k in cols if k not in VALID_KEYS]
    if unknown:
        raise UsageError(f"columns: {unknown} are not Item fields; valid: {', '.join(VALID_KEYS)}")

    def key_for(fieldname: str, rec: Mapping[str, Any]) -> str | None:
        if fieldname in cols:
            return cols[fieldname]
        if fieldname == "target" and "target" not in rec and "text" in rec:
            return "text"
        return fieldname if fieldname in rec else None

    for n, (where, rec) in enumerate(records):
        values: dict[str, Any] = {}
        used: set[str] = set()
        for f in VALID_KEYS:
            k = key_for(f, rec)
            if k is not None and k in rec and rec[k] not in (None, ""):
                values[f] = rec[k]
                used.add(k)
        if "audio" not in values or "target" not in values:
            need = [f"'{cols.get(f, f)}'" for f in ("audio", "target") if f not in values]
            skipped.append((where, f"record has no {' or '.join(need)} (map columns with columns={{...}})"))
            continue
        try:
            item = _item(values, rec, used, n, id_prefix, base_dir, task, domain, instruction, lang)
        except (ValueError, TypeError) as e:  # a value that does not fit its field: skip the record
            skipped.append((where, f"record does not make a valid item ({e})"))
            continue
        cands.append(Candidate(split, item))


def _item(
    values: dict[str, Any],
    rec: Mapping[str, Any],
    used: set[str],
    n: int,
    id_prefix: str,
    base_dir: Path,
    task: str,
    domain: str | None,
    instruction: str | None,
    lang: str | None,
) -> Item:
    """One record's Item; ``ValueError``/``TypeError`` for a value that does not fit its field."""
    meta = values.pop("meta", {}) or {}
    if not isinstance(meta, dict):
        raise TypeError(f"'meta' must be an object (got {type(meta).__name__})")
    meta = dict(meta)
    meta.update({k: v for k, v in rec.items() if k not in used and v not in (None, "")})
    for k in LABEL_META_KEYS:  # label fields stored as lists (MMAU's category: ["Reasoning"])
        if isinstance(meta.get(k), (list, tuple)):
            meta[k] = scalar_label(meta[k])
    for f in ("id", "task", "domain", "instruction", "lang", "speaker", "answer", "duration"):
        if isinstance(values.get(f), (list, tuple)):
            values[f] = scalar_label(values[f])
    if isinstance(values["target"], (list, tuple)):
        references = [str(t) for t in values["target"] if str(t).strip()]
        meta.setdefault("references", references)
        values["target"] = references[0] if references else ""
    audio = str(values.pop("audio"))
    the_task = str(values.pop("task", task))
    choices = values.pop("choices", None)
    if isinstance(choices, str):
        choices = json.loads(choices) if choices.strip().startswith("[") else choices.split("|")
    return Item(
        id=f"{id_prefix}{values.pop('id', n)}",
        audio=os.path.normpath(os.path.join(os.path.abspath(base_dir), audio)),
        task=the_task,
        domain=values.pop("domain", domain),
        instruction=values.pop("instruction", instruction or TASK_INSTRUCTIONS.get(the_task)),
        target=str(values.pop("target")),
        choices=choices,
        lang=values.pop("lang", lang),
        answer=str(values.pop("answer")) if "answer" in values else None,
        speaker=str(values.pop("speaker")) if "speaker" in values else None,
        duration=float(values.pop("duration")) if "duration" in values else None,
        meta=meta,
    )


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
    **options: Any,
) -> PrepareReport:
    """Map each jsonl line to an Item through ``columns``."""
    files = _files(Path(src), (".jsonl", ".json"))
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for f in files:

        def records(f: Path = f) -> Iterable[tuple[str, Mapping[str, Any]]]:
            for lineno, line in enumerate(read_user_text(f, "jsonl file").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    skipped.append((f"{f}:{lineno}", f"invalid JSON ({e.msg})"))
                    continue
                if isinstance(rec, dict):
                    yield f"{f}:{lineno}", rec
                else:
                    skipped.append((f"{f}:{lineno}", "line is not a JSON object"))

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
