"""A manifest read lazily: a byte-offset index of its lines, so item i is one seek and one line.

The index holds, per kept item, the byte offset of its line (8 bytes), its line number (4 bytes)
and its duration in seconds (4 bytes), plus an 8-byte hash of its id while it is built (duplicate
ids are still an error): a million-clip manifest costs ~16 MB, against ~1 KB per item for parsed
:class:`~moeaudio.data.manifest.Item` objects and far more for loaded audio. The JSONL stays the
source of truth (no conversion step, no second copy of the corpus), each rank and each DataLoader
worker opens it itself, and the sampler only ever needs the durations.

Building the index checks the manifest as :func:`~moeaudio.data.manifest.check_manifest` does
(every line valid, every task known, the kept items' audio there, readable and long enough,
missing durations read from the headers), in chunks, so memory stays flat while it reads.

Why not a dataset format of the field (Arrow through Hugging Face ``datasets``, WebDataset tars,
lhotse Shar): a manifest row is a few hundred bytes of text, so an Arrow copy would save little
and add a conversion step that must be kept in step with the JSONL; the big data, the audio and
the encoder states, stays in its own files (the states in safetensors shards, memory-mapped,
:mod:`moeaudio.data.feature_cache`). A ``datasets`` corpus comes in as before, through
``moeaudio prepare hf``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from moeaudio.data.manifest import (
    Item,
    ManifestError,
    _raise_collected,
    check_items,
    check_manifest,
    item_from_dict,
    unknown_task_problem,
    validate_record,
)
from moeaudio.errors import MissingDataError

__all__ = ["ManifestIndex"]

CHUNK = 2048  # items whose audio is checked together (memory while building stays flat)


def _id_hash(item_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "little", signed=True)


class ManifestIndex:
    """Items of one manifest, read on demand (``index[i]``); picklable for DataLoader workers."""

    def __init__(self, path: str | os.PathLike[str], offsets, linenos, durations):
        self.path = Path(path)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.linenos = np.asarray(linenos, dtype=np.int32)
        self.durations = np.asarray(durations, dtype=np.float32)
        self._fh = None

    @classmethod
    def build(
        cls,
        path: str | os.PathLike[str],
        *,
        known_tasks: Iterable[str] = (),
        select: Callable[[Item], bool] | None = None,
        min_seconds: float = 0.0,
        audio: bool = True,
    ) -> ManifestIndex:
        """One pass over the manifest: check every line, keep the items ``select`` keeps."""
        p = os.fspath(path)
        if not os.path.exists(p):
            raise MissingDataError(f"{p}: manifest not found")
        if os.path.isdir(p):
            raise ManifestError(
                f"{p}: is a directory; pass the manifest file inside it (e.g. {p}/train.jsonl)"
            )
        known = list(known_tasks or ())
        offsets: list[int] = []
        linenos: list[int] = []
        durations: list[float] = []
        ids: list[int] = []
        errors: list[str] = []
        chunk: list[tuple[int, Item]] = []

        def check_chunk() -> None:
            if audio:
                check_items(p, chunk, min_seconds=min_seconds)
            durations.extend(float(item.duration or 0.0) for _, item in chunk)
            chunk.clear()

        with open(p, "rb") as fh:
            offset = 0
            for lineno, raw in enumerate(fh, start=1):
                start, offset = offset, offset + len(raw)
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw, start = raw[3:], start + 3
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ManifestError(
                        f"{p}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                        "a manifest is UTF-8 JSON lines: save it as UTF-8"
                    ) from None
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    errors.append(f"{p}:{lineno}: invalid JSON; each line must be one JSON object")
                    continue
                problems = validate_record(rec)
                if not problems and (problem := unknown_task_problem(rec["task"], known)) is not None:
                    problems = [problem]
                if problems:
                    errors.extend(f"{p}:{lineno}: {msg}" for msg in problems)
                    continue
                ids.append(_id_hash(rec["id"]))
                item = item_from_dict(rec)
                if select is not None and not select(item):
                    continue
                offsets.append(start)
                linenos.append(lineno)
                chunk.append((lineno, item))
                if len(chunk) >= CHUNK and not errors:
                    check_chunk()
        hashes = np.asarray(ids, dtype=np.int64)
        if errors or len(np.unique(hashes)) < len(hashes):
            # the manifest reader's own messages (every problem, duplicates naming both lines): it
            # parses the whole file, but only for a manifest that is going to be refused anyway
            check_manifest(p, known_tasks=known, audio=False)
            _raise_collected(errors)
        check_chunk()
        return cls(p, offsets, linenos, durations)

    def __len__(self) -> int:
        return len(self.offsets)

    def subset(self, keep: np.ndarray) -> ManifestIndex:
        """The items where ``keep`` (a boolean mask over this index) is true."""
        return ManifestIndex(self.path, self.offsets[keep], self.linenos[keep], self.durations[keep])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fh": None}

    def line(self, i: int) -> dict[str, Any]:
        if self._fh is None:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - kept open for the index's life
        self._fh.seek(int(self.offsets[i]))
        return json.loads(self._fh.readline().decode("utf-8"))

    def __getitem__(self, i: int) -> Item:
        item = item_from_dict(self.line(i))
        if item.duration is None:
            item.duration = float(self.durations[i])
        return item

    def audio_path(self, item: Item) -> Path:
        return item.resolve_audio(self.path)
