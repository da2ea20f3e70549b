"""A Hugging Face ``datasets`` dataset on disk -> manifests + wavs.

Layout, either of:

* a ``save_to_disk`` directory (``dataset_dict.json`` + ``<split>/`` or a single split with
  ``state.json``), loaded with :func:`datasets.load_from_disk`;
* parquet files (a Hub snapshot): ``<src>/**/<split>-XXXXX-of-XXXXX.parquet`` or
  ``<src>/<split>/*.parquet``, loaded with ``load_dataset("parquet", data_files=...)``.

The audio column is cast to ``Audio(decode=False)`` so rows carry ``{"bytes", "path"}``
and are decoded with soundfile -- ``datasets``' own decoder needs torchcodec/FFmpeg. Decoded
audio is written to ``out/audio/<split>/<id>.wav`` (reruns reuse existing wavs). Rows with
only a ``path`` (no bytes) reference that file directly (relative paths resolve against
``src``). Scalar columns other than audio/text/id/speaker go to ``meta`` (label columns such as
``category`` also when stored as lists, flattened by :func:`~moeaudio.data.tasks.scalar_label`); a text
column holding a list gives its first element as the target and all of them as ``meta.references``.

Options: ``audio_column`` ("audio"), ``text_column`` ("text"; the target), ``id_column``
(None -> row index), ``speaker_column`` (None), ``task`` ("asr"), ``domain`` (from task),
``instruction`` (from task), ``lang`` (None), ``splits`` (None = all), ``target_sr`` (None =
keep), ``overwrite`` (False), plus the common options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moeaudio.data.audio import AudioDecodeError, decode_audio_bytes, save_audio
from moeaudio.data.manifest import Item
from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize
from moeaudio.data.tasks import LABEL_META_KEYS, TASK_INSTRUCTIONS, scalar_label
from moeaudio.errors import MissingDataError, UnknownNameError

NAME = "hf"


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def _load(src: Path, cache_dir: str) -> dict[str, Any]:
    """{split: Dataset} from a save_to_disk dir or parquet files."""
    import datasets

    if (src / "dataset_dict.json").is_file() or (src / "state.json").is_file():
        ds = datasets.load_from_disk(str(src))
        return dict(ds) if isinstance(ds, datasets.DatasetDict) else {"train": ds}
    files = sorted(src.rglob("*.parquet"))
    if not files:
        raise MissingDataError(f"{src}: neither a save_to_disk directory nor any *.parquet files")
    by_split: dict[str, list[str]] = {}
    for f in files:
        if re.match(r"^[A-Za-z0-9_.]+-\d+-of-\d+\.parquet$", f.name):
            split = f.name.split("-")[0]
        elif f.parent != src:
            split = f.parent.name
        else:
            split = f.stem
        by_split.setdefault(split, []).append(str(f))
    return dict(datasets.load_dataset("parquet", data_files=by_split, cache_dir=cache_dir))


def prepare(
    src: Path,
    out: Path,
    *,
    audio_column: str = "audio",
    text_column: str = "text",
    id_column: str | None = None,
    speaker_column: str | None = None,
    task: str = "asr",
    domain: str | None = None,
    instruction: str | None = None,
    lang: str | None = None,
    splits: Sequence[str] | None = None,
    target_sr: int | None = None,
    overwrite: bool = False,
    **options: Any,
) -> PrepareReport:
    """Write one wav + one item per row of each selected split."""
    from datasets import Audio

    root, out = Path(src), Path(out)
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="moeaudio-hf-cache-") as cache:
        dsets = _load(root, cache)
        wanted = list(splits) if splits is not None else sorted(dsets)
        for split in wanted:
            if split not in dsets:
                raise UnknownNameError(f"{src}: split {split!r} not found; available: {sorted(dsets)}")
            ds = dsets[split]
            for col in (audio_column, text_column):
                if col not in ds.column_names:
                    raise UnknownNameError(
                        f"{src} [{split}]: no column {col!r}; columns are {ds.column_names}"
                    )
            ds = ds.cast_column(audio_column, Audio(decode=False))
            for idx, row in enumerate(ds):
                rid = (
                    str(row[id_column])
                    if id_column and row.get(id_column) not in (None, "")
                    else f"{idx:06d}"
                )
                where = f"{src}[{split}]#{idx}"
                audio = row[audio_column] or {}
                data, apath = audio.get("bytes"), audio.get("path")
                if data:
                    wav_path = out / "audio" / _safe(split) / f"{_safe(rid)}.wav"
                    if overwrite or not wav_path.is_file():
                        try:
                            wav, sr = decode_audio_bytes(data, target_sr, name=where)
                        except AudioDecodeError as e:
                            skipped.append((where, str(e).split(": ", 1)[-1]))
                            continue
                        save_audio(wav_path, wav, sr)
                    audio_file = str(wav_path)
                elif apath:
                    audio_file = apath if os.path.isabs(apath) else str(root / apath)
                else:
                    skipped.append((where, f"column {audio_column!r} has neither bytes nor path"))
                    continue
                text = row.get(text_column)
                if text is None:
                    skipped.append((where, f"column {text_column!r} is empty"))
                    continue
                skip_cols = {audio_column, text_column, id_column, speaker_column}
                meta = {
                    k: scalar_label(v) if isinstance(v, (list, tuple)) else v
                    for k, v in row.items()
                    if k not in skip_cols
                    and (
                        isinstance(v, (str, int, float, bool))
                        or (k in LABEL_META_KEYS and isinstance(v, (list, tuple)))  # a label as a list
                    )
                }
                if isinstance(text, (list, tuple)):  # several references: the first is the target
                    meta["references"] = [str(t) for t in text]
                    text = text[0] if text else ""
                meta["split"] = split
                cands.append(
                    Candidate(
                        split,
                        Item(
                            id=f"{NAME}/{_safe(split)}/{_safe(rid)}",
                            audio=audio_file,
                            domain=domain,
                            task=task,
                            instruction=instruction or TASK_INSTRUCTIONS.get(task),
                            target=str(text),
                            lang=lang,
                            speaker=str(row[speaker_column])
                            if speaker_column and row.get(speaker_column)
                            else None,
                            meta=meta,
                        ),
                    )
                )
    return run_finalize(NAME, src, out, cands, skipped, options)
