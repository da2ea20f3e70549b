"""Frozen-encoder outputs computed once and kept on disk.

With a frozen encoder, every epoch and every evaluation would recompute the same states; on a
CPU that is most of the work. Entries are keyed by the audio file's bytes and the encoder's
identity (name + weights stamp), so editing a file or changing the encoder invalidates exactly
the entries concerned. Each entry is written atomically, which makes an interrupted run
resumable: whatever was finished is reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from moeaudio.data.audio import NonFinite, load_audio
from moeaudio.io_utils import atomic_path
from moeaudio.progress import progress_bar


def audio_key(path: Path) -> str:
    """Content hash of an audio file (not its name: copies share an entry, edits do not)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


class FeatureCache:
    """``cache_dir/<encoder identity>/<key[:2]>/<key>.npy`` holding (frames, d_model) float32."""

    def __init__(self, cache_dir: str | Path, encoder_identity: str):
        self.root = Path(cache_dir) / encoder_identity
        self.hits = 0
        self.misses = 0

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        path = self.path_for(key)
        if not path.exists():
            return None
        return torch.from_numpy(np.load(path))

    def put(self, key: str, states: torch.Tensor) -> None:
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, states.detach().cpu().float().numpy())

    def fill(
        self,
        encoder,
        audio_paths: Sequence[Path],
        batch_size: int = 16,
        progress: bool = True,
        nonfinite: NonFinite = "error",
    ) -> list[torch.Tensor]:
        """States for every path, computing only the missing ones (in batches), in input order.

        ``nonfinite`` is :func:`~moeaudio.data.audio.load_audio`'s: NaN/Inf samples are an error,
        or (``"repair"``) replaced by silence."""
        keys = [audio_key(p) for p in audio_paths]
        out: list[torch.Tensor | None] = [self.get(k) for k in keys]
        todo = [i for i, s in enumerate(out) if s is None]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            with progress_bar("encoding audio", len(todo), progress) as advance:
                for start in range(0, len(todo), batch_size):
                    idx = todo[start : start + batch_size]
                    waves = [
                        load_audio(audio_paths[i], encoder.sample_rate, nonfinite=nonfinite) for i in idx
                    ]
                    inputs = encoder.prepare(waves)
                    with torch.no_grad():
                        states = encoder(inputs)  # (batch, frames, d_model)
                    for j, i in enumerate(idx):
                        out[i] = states[j, : int(inputs.lengths[j])].clone()
                        self.put(keys[i], out[i])
                    advance(len(idx))
        return out  # type: ignore[return-value]
