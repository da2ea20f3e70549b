"""Audio decoding, probing and saving on top of soundfile (libsndfile) and soxr.

Why not torchaudio / datasets' decoder: both now route through torchcodec/FFmpeg, which is a
heavy, platform-fragile dependency. libsndfile (>= 1.1) decodes wav/flac/ogg/opus/mp3 itself,
which covers every dataset we prepare, and soxr is a fast high-quality resampler.
Every error names the file, because "Format not recognised" without a path is useless when
preparing 100k clips.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from moeaudio.errors import MoeaudioError
from moeaudio.io_utils import atomic_path

__all__ = [
    "AudioDecodeError",
    "AudioInfo",
    "audio_info",
    "decode_audio_bytes",
    "load_audio",
    "resample",
    "save_audio",
]


class AudioDecodeError(MoeaudioError, RuntimeError):
    """The file (or byte blob) could not be decoded; the message names it and the reason."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about an audio file (no samples decoded)."""

    duration: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str


def _to_mono(wav: np.ndarray) -> np.ndarray:
    # (frames, channels) -> (frames,). Mean, not channel 0, so a hard-panned source is kept.
    return wav.mean(axis=1) if wav.ndim == 2 else wav


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample float32 audio (``(n,)`` or ``(n, ch)``) with soxr HQ; no-op when rates match."""
    if orig_sr == target_sr or wav.shape[0] == 0:
        return wav.astype(np.float32, copy=False)
    return np.asarray(soxr.resample(wav, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def _finish(wav: np.ndarray, sr: int, target_sr: int | None, mono: bool) -> np.ndarray:
    if mono:
        wav = _to_mono(wav)
    if target_sr is not None:
        wav = resample(np.ascontiguousarray(wav), sr, target_sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def load_audio(
    path: str | os.PathLike[str], target_sr: int | None = 16000, *, mono: bool = True
) -> np.ndarray:
    """Decode ``path`` to float32 in [-1, 1]: mono (channel mean) at ``target_sr`` (None keeps the native rate).

    Returns shape ``(n,)`` when ``mono`` else ``(n, channels)``. Raises
    :class:`AudioDecodeError` naming the file when it is missing or undecodable.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise AudioDecodeError(f"{p}: audio file does not exist")
    try:
        wav, sr = sf.read(p, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError variants
        raise AudioDecodeError(f"{p}: cannot decode audio ({e}); supported: {_supported()}") from e
    return _finish(wav, sr, target_sr, mono)


def decode_audio_bytes(
    data: bytes, target_sr: int | None = None, *, mono: bool = True, name: str = "<bytes>"
) -> tuple[np.ndarray, int]:
    """Decode an in-memory encoded file (e.g. a parquet ``audio.bytes`` cell); returns ``(wav, sr)``.

    ``name`` is used in error messages (pass the row id or original path).
    """
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioDecodeError(f"{name}: cannot decode audio bytes ({e})") from e
    out = _finish(wav, sr, target_sr, mono)
    return out, (target_sr if target_sr is not None else int(sr))


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read only the header: duration (s), sample rate, channels. Raises :class:`AudioDecodeError`."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise AudioDecodeError(f"{p}: audio file does not exist")
    try:
        info = sf.info(p)
    except Exception as e:
        raise AudioDecodeError(f"{p}: cannot read audio header ({e}); supported: {_supported()}") from e
    sr = int(info.samplerate)
    frames = int(info.frames)
    return AudioInfo(
        duration=frames / sr if sr else 0.0,
        sample_rate=sr,
        channels=int(info.channels),
        frames=frames,
        format=str(info.format),
        subtype=str(info.subtype),
    )


def save_audio(path: str | os.PathLike[str], wav: np.ndarray, sr: int, *, subtype: str | None = None) -> Path:
    """Write ``wav`` (``(n,)`` or ``(n, ch)`` float) atomically; format from the extension (wav/flac/ogg/mp3).

    Default subtype is libsndfile's per-format default (PCM_16 for wav/flac).
    """
    target = Path(path)
    fmt = target.suffix.lstrip(".").upper()
    fmt = {"OGA": "OGG", "OPUS": "OGG"}.get(fmt, fmt)
    if fmt not in sf.available_formats():
        raise ValueError(f"{target}: unsupported audio extension; use one of .wav .flac .ogg .mp3")
    if subtype is None and target.suffix.lower() == ".opus":
        subtype = "OPUS"
    with atomic_path(target) as tmp:
        sf.write(tmp, np.asarray(wav), int(sr), format=fmt, subtype=subtype)
    return target


def _supported() -> str:
    return "wav, flac, ogg/vorbis/opus" + (", mp3" if "MP3" in sf.available_formats() else "")
