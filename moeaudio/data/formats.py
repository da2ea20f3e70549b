"""Converters between the moeaudio manifest and other toolkits' jsonl formats.

Why: we want to train/evaluate the same prepared data with SLAM-LLM, ms-swift / LLaMA-Factory
and NeMo baselines without re-running preparation, and to import their manifests.

Formats (one JSON object per line; ``.json`` files holding a list are also read, and written
when the destination ends in ``.json``):

* ``moeaudio`` - :mod:`moeaudio.data.manifest` (lossless).
* ``slam`` - SLAM-LLM: ``{"key", "source", "target", "prompt"}`` (``source`` = audio path).
* ``swift`` / ``llamafactory`` - chat format:
  ``{"messages": [{"role": "user", "content": "<audio>PROMPT"}, {"role": "assistant",
  "content": TARGET}], "audios": [path], "id": ID}`` (optional leading ``system`` message;
  ``id`` is an extra column both toolkits ignore).
* ``nemo`` - NeMo ASR: ``{"audio_filepath", "duration", "text"}`` (+ ``lang`` when known).

Paths: readers return items whose ``audio`` is absolute (a relative path in the source file is
taken relative to that file's directory, NeMo's convention). Writers emit paths relative to the
destination file for ``moeaudio`` and absolute for the external formats (their loaders resolve
relative paths against the working directory), overridable with ``relative=``.

Non-moeaudio formats are lossy: fields they cannot carry (domain, meta, choices) are dropped;
multiple-choice options are folded into the prompt text via :func:`moeaudio.data.tasks.item_prompt`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import (
    Item,
    ManifestError,
    manifest_relpath,
    read_manifest,
    validate_record,
    write_manifest,
)
from moeaudio.data.tasks import TASK_INSTRUCTIONS, item_prompt
from moeaudio.errors import UsageError
from moeaudio.io_utils import atomic_write_text, check_output_file, read_user_text

__all__ = ["FORMATS", "Format", "convert", "detect_format", "read_items", "write_items"]

AUDIO_TOKEN = "<audio>"


@dataclass(frozen=True)
class Format:
    """A manifest dialect: how to turn one record into an Item and back."""

    name: str
    description: str
    from_record: Callable[[dict[str, Any], int, str], Item]  # (record, index, default_task)
    to_record: Callable[[Item, str], dict[str, Any]]  # (item, audio path string)
    relative_by_default: bool = False


# ---------------------------------------------------------------- record converters
def _slam_from(rec: dict[str, Any], idx: int, task: str) -> Item:
    prompt = rec.get("prompt")
    return Item(
        id=str(rec.get("key", idx)),
        audio=str(rec["source"]),
        task=task,
        instruction=prompt if prompt else None,
        target=str(rec.get("target", "")),
    )


def _slam_to(item: Item, audio: str) -> dict[str, Any]:
    return {
        "key": item.id,
        "source": audio,
        "target": item.target,
        "prompt": item_prompt(item),
    }


def _chat_from(rec: dict[str, Any], idx: int, task: str) -> Item:
    msgs = rec.get("messages") or rec.get("conversations")
    if not isinstance(msgs, list):
        raise ValueError("expected a 'messages' list")
    audios = rec.get("audios") or []
    if isinstance(audios, str):
        audios = [audios]
    if len(audios) != 1:
        raise ValueError(f"expected exactly one entry in 'audios' (got {len(audios)})")

    def role(m: dict[str, Any]) -> str:
        r = m.get("role", m.get("from", ""))
        return {"human": "user", "gpt": "assistant"}.get(r, r)

    def content(m: dict[str, Any]) -> str:
        return str(m.get("content", m.get("value", "")))

    user = next((content(m) for m in msgs if role(m) == "user"), "")
    answer = next((content(m) for m in msgs if role(m) == "assistant"), "")
    system = next((content(m) for m in msgs if role(m) == "system"), None)
    prompt = user.replace(AUDIO_TOKEN, "", 1).strip()
    meta = {"system": system} if system else {}
    return Item(
        id=str(rec.get("id", idx)),
        audio=str(audios[0]),
        task=str(rec.get("task", task)),
        instruction=prompt or None,
        target=answer,
        meta=meta,
    )


def _chat_to(item: Item, audio: str) -> dict[str, Any]:
    msgs: list[dict[str, str]] = []
    if item.meta.get("system"):
        msgs.append({"role": "system", "content": str(item.meta["system"])})
    msgs.append({"role": "user", "content": AUDIO_TOKEN + item_prompt(item)})
    msgs.append({"role": "assistant", "content": item.target})
    # "id" is not part of the schema; ms-swift and LLaMA-Factory drop unknown columns, and keeping
    # it lets predictions be joined back to the manifest.
    return {"id": item.id, "messages": msgs, "audios": [audio]}


def _nemo_from(rec: dict[str, Any], idx: int, task: str) -> Item:
    dur = rec.get("duration")
    meta = {k: v for k, v in rec.items() if k not in {"audio_filepath", "duration", "text", "lang", "id"}}
    return Item(
        id=str(rec.get("id", idx)),
        audio=str(rec["audio_filepath"]),
        duration=float(dur) if dur is not None else None,
        task=task,
        instruction=TASK_INSTRUCTIONS.get(task),
        target=str(rec.get("text", "")),
        lang=rec.get("lang"),
        meta=meta,
    )


def _nemo_to(item: Item, audio: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"audio_filepath": audio, "duration": item.duration, "text": item.target}
    if item.lang:
        rec["lang"] = item.lang
    return rec


def _native_from(
    rec: dict[str, Any], idx: int, task: str
) -> Item:  # pragma: no cover - native uses read_manifest
    raise NotImplementedError


FORMATS: dict[str, Format] = {
    "moeaudio": Format("moeaudio", "moeaudio manifest (lossless)", _native_from, lambda i, a: {}, True),
    "slam": Format("slam", "SLAM-LLM jsonl: key, source, target, prompt", _slam_from, _slam_to),
    "swift": Format("swift", "ms-swift messages + audios (<audio> placeholder)", _chat_from, _chat_to),
    "llamafactory": Format(
        "llamafactory", "LLaMA-Factory sharegpt/openai messages + audios", _chat_from, _chat_to
    ),
    "nemo": Format("nemo", "NeMo ASR manifest: audio_filepath, duration, text", _nemo_from, _nemo_to),
}


def _get_format(name: str) -> Format:
    if name not in FORMATS:
        raise UsageError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[name]


def _iter_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number or list index, record) pairs from a jsonl or a .json list; every record must be
    a JSON object (:class:`ManifestError` naming the file and line otherwise)."""
    text = read_user_text(path, "manifest")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            where = f"{path}:{e.lineno}" if isinstance(e, json.JSONDecodeError) else str(path)
            raise ManifestError(f"{where}: invalid JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
        records = [(i + 1, r) for i, r in enumerate(data)]
        unit = "entry"
    else:
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((lineno, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ManifestError(
                        f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})"
                    ) from None
                except RecursionError:
                    raise ManifestError(f"{path}:{lineno}: invalid JSON (nested too deeply)") from None
        unit = "line"
    for n, rec in records:
        if not isinstance(rec, dict):
            raise ManifestError(f"{path}:{n}: {unit} {n} must be a JSON object (got {type(rec).__name__})")
    return records


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guess the format from the first record's keys (swift and llamafactory are identical: 'swift')."""
    recs = _iter_records(Path(path))
    if not recs:
        raise UsageError(f"{path}: empty file, cannot detect its format")
    keys = set(recs[0][1])
    if "messages" in keys or "conversations" in keys:
        return "swift"
    if "audio_filepath" in keys:
        return "nemo"
    if "source" in keys and "key" in keys:
        return "slam"
    if {"id", "audio", "task"} <= keys:
        return "moeaudio"
    raise UsageError(f"{path}: cannot detect format from keys {sorted(keys)}; pass it explicitly")


def _abs_audio(audio: str, base: Path) -> str:
    return audio if os.path.isabs(audio) else os.path.normpath(os.path.join(os.path.abspath(base), audio))


def read_items(path: str | os.PathLike[str], fmt: str = "auto", *, task: str = "asr") -> list[Item]:
    """Read a file in ``fmt`` into Items with absolute audio paths.

    ``task`` is assigned to formats that do not record one (slam, nemo, chat).
    """
    p = Path(path)
    fmt = detect_format(p) if fmt == "auto" else fmt
    spec = _get_format(fmt)
    if fmt == "moeaudio":
        return [replace(it, audio=os.fspath(it.resolve_audio(p.absolute()))) for it in read_manifest(p)]
    items: list[Item] = []
    for lineno, rec in _iter_records(p):
        try:
            item = spec.from_record(rec, lineno - 1, task)
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise ManifestError(f"{p}:{lineno}: not a valid {fmt} record ({what})") from None
        item.audio = _abs_audio(item.audio, p.parent)
        problems = validate_record(item.to_dict())  # the values, as a manifest line would be checked
        if problems:
            raise ManifestError(f"{p}:{lineno}: not a valid {fmt} record ({'; '.join(problems)})")
        items.append(item)
    return items


def write_items(
    path: str | os.PathLike[str],
    items: list[Item],
    fmt: str,
    *,
    relative: bool | None = None,
    audio_root: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``items`` in ``fmt`` atomically.

    Relative ``item.audio`` values are first resolved against ``audio_root`` (default: cwd);
    then written relative to the output file if ``relative`` (default: only for moeaudio),
    else absolute.
    """
    p = Path(path)
    spec = _get_format(fmt)
    rel = spec.relative_by_default if relative is None else relative
    root = Path(audio_root) if audio_root is not None else Path.cwd()

    def audio_str(item: Item) -> str:
        a = _abs_audio(item.audio, root)
        return manifest_relpath(a, p.parent) if rel else a

    if fmt == "moeaudio":
        return write_manifest(p, [replace(it, audio=audio_str(it)) for it in items])
    recs = [spec.to_record(it, audio_str(it)) for it in items]
    if p.suffix == ".json":
        return atomic_write_text(p, json.dumps(recs, ensure_ascii=False, indent=2) + "\n")
    return atomic_write_text(p, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    src_format: str = "auto",
    dst_format: str = "moeaudio",
    *,
    task: str = "asr",
    relative: bool | None = None,
) -> int:
    """Convert ``src`` (in ``src_format``, or auto-detected) to ``dst`` in ``dst_format``; returns item count."""
    items = read_items(src, src_format, task=task)
    check_output_file(dst, "DST")
    try:
        write_items(dst, items, dst_format, relative=relative)
    except OSError as e:
        raise UsageError(f"{dst}: cannot write ({e.strerror or e})") from None
    return len(items)
