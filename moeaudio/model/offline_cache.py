"""Converted offline models, built once into a cache folder and reused.

Why one helper: the offline Whisper (CTranslate2 -> transformers) and the offline SmolLM2
(GGUF -> safetensors) are both slow to convert and must never be half-written: a folder is built
in a temporary sibling and renamed into place only when complete, with a marker file whose
converter version says whether a cached folder can be trusted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["MARKER", "build_once", "cache_root", "is_complete"]

MARKER = "moeaudio_conversion.json"


def cache_root() -> Path:
    """``$MOEAUDIO_CACHE``, else ``~/.cache/moeaudio``."""
    root = os.environ.get("MOEAUDIO_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "moeaudio"


def is_complete(directory: Path, version: int) -> bool:
    marker = directory / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text())["converter_version"] == version
    except (ValueError, KeyError):
        return False


def build_once(target: Path, version: int, build: Callable[[Path], dict[str, Any]]) -> Path:
    """``target`` if a complete build of ``version`` is there; else ``build(tmp)`` into a temporary
    sibling, write the marker (``build``'s return value plus the version) and rename it into place."""
    if is_complete(target, version):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        info = build(tmp)
        (tmp / MARKER).write_text(json.dumps({"converter_version": version, **info}))
        if target.exists() and not is_complete(target, version):
            shutil.rmtree(target)  # a stale or foreign layout: replace it
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_complete(target, version):  # lost a race against nobody valid: re-raise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
