"""Audio decoding, probing and saving on top of soundfile (libsndfile) and soxr.

Why not torchaudio / datasets' decoder: both now route through torchcodec/FFmpeg, which is a
heavy, platform-fragile dependency. libsndfile (>= 1.1) decodes wav/flac/ogg/opus/mp3 itself,
which covers every dataset we prepare, and soxr is a fast high-quality resampler.
Every error names the file, because "Format not recognised" without a path is useless when
preparing 100k clips.

One check for every command (:func:`check_audio_file`: the header, without decoding; and the
samples in :func:`load_audio`): a directory, an empty file, a text file named ``.wav``, a header
with no samples, a WAV cut short of what its header declares, and non-finite (NaN/Inf) samples are
each an :class:`AudioDecodeError` naming the file, never garbage passed on to the model. Non-finite
samples can instead be replaced by silence with a warning (``nonfinite="repair"``), by choice.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from moeaudio.errors import MoeaudioError
from moeaudio.io_utils import atomic_path

__all__ = [
    "AudioDecodeError",
    "AudioInfo",
    "NonFiniteAudioError",
    "NonFiniteAudioWarning",
    "audio_info",
    "check_audio_file",
    "check_finite",
    "decode_audio_bytes",
    "load_audio",
    "resample",
    "save_audio",
    "split_windows",
]


class AudioDecodeError(MoeaudioError, RuntimeError):
    """The file (or byte blob) could not be decoded; the message names it and the reason."""


class NonFiniteAudioError(AudioDecodeError):
    """The samples hold NaN or Inf; the message names the file, how many and where the first is."""


class NonFiniteAudioWarning(UserWarning):
    """Non-finite samples were replaced by silence (``nonfinite="repair"``)."""


NonFinite = Literal["error", "repair"]


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


def check_finite(wav: np.ndarray, name: str, nonfinite: NonFinite = "error") -> np.ndarray:
    """``wav`` itself when every sample is finite; else raise :class:`NonFiniteAudioError` naming
    ``name`` (``nonfinite="error"``) or return a copy with those samples set to 0 and warn."""
    finite = np.isfinite(wav)
    if finite.all():
        return wav
    bad = int(wav.size - int(finite.sum()))
    first = int(np.argmin(finite.reshape(finite.shape[0], -1).all(axis=1)))
    what = f"{bad} non-finite (NaN/Inf) sample(s) of {wav.size}, the first at sample {first}"
    if nonfinite == "repair":
        warnings.warn(f"{name}: {what} replaced by silence", NonFiniteAudioWarning, stacklevel=2)
        return np.where(finite, wav, 0.0).astype(wav.dtype)
    if nonfinite != "error":
        raise ValueError(f"nonfinite must be 'error' or 'repair' (got {nonfinite!r})")
    raise NonFiniteAudioError(
        f"{name}: {what}; the file is corrupt or was written from a failed computation. Re-export it, "
        "or replace them by silence with --repair-audio (data.nonfinite_audio=repair for train)"
    )


def load_audio(
    path: str | os.PathLike[str],
    target_sr: int | None = 16000,
    *,
    mono: bool = True,
    nonfinite: NonFinite = "error",
) -> np.ndarray:
    """Decode ``path`` to float32 in [-1, 1]: mono (channel mean) at ``target_sr`` (None keeps the native rate).

    Returns shape ``(n,)`` when ``mono`` else ``(n, channels)``. Raises
    :class:`AudioDecodeError` naming the file when it is missing, not a readable audio file, holds
    no samples, is cut short of its header, or (unless ``nonfinite="repair"``) holds NaN/Inf.
    """
    p = os.fspath(path)
    check_audio_file(p)
    try:
        wav, sr = sf.read(p, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError variants
        raise AudioDecodeError(f"{p}: cannot decode audio ({e}); supported: {_supported()}") from e
    if wav.shape[0] == 0:
        raise AudioDecodeError(f"{p}: no audio samples decoded (the file holds a header only)")
    return _finish(check_finite(wav, p, nonfinite), sr, target_sr, mono)


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
    out = _finish(check_finite(wav, name), sr, target_sr, mono)
    return out, (target_sr if target_sr is not None else int(sr))


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read only the header: duration (s), sample rate, channels. Raises :class:`AudioDecodeError`."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise AudioDecodeError(f"{p}: audio file does not exist")
    if os.path.isdir(p):
        raise AudioDecodeError(f"{p}: is a directory, not an audio file")
    if os.path.getsize(p) == 0:
        raise AudioDecodeError(f"{p}: empty file (0 bytes), not audio")
    try:
        info = sf.info(p)
    except Exception as e:
        raise AudioDecodeError(
            f"{p}: unreadable audio header ({_reason(e)}): not an audio file libsndfile can read; "
            f"is it really audio? Supported: {_supported()}"
        ) from e
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


def check_audio_file(path: str | os.PathLike[str]) -> AudioInfo:
    """The header of an audio file that is there, is audio, holds samples and is complete.

    Reads the header only (no decoding), so it is cheap enough to run on every item of a manifest
    before any work starts. Raises :class:`AudioDecodeError` naming the file and what is wrong.
    """
    p = os.fspath(path)
    info = audio_info(p)
    if info.frames <= 0 or info.sample_rate <= 0:
        raise AudioDecodeError(f"{p}: holds no audio samples (a header only); re-export or remove it")
    declared = _wav_declared_bytes(p)
    if declared is not None:
        data_start, data_bytes = declared
        present = max(0, os.path.getsize(p) - data_start)
        if present + 1 < data_bytes:  # + 1: a data chunk of odd size is padded
            per_second = (_wav_block_align(p) or 1) * info.sample_rate
            raise AudioDecodeError(
                f"{p}: truncated: its header declares {data_bytes / per_second:.3f} s of audio but the "
                f"file holds {present / per_second:.3f} s ({present} of {data_bytes} bytes); re-export "
                "or re-download it"
            )
    return info


def _wav_chunks(path: str) -> dict[bytes, tuple[int, int]]:
    """``{chunk id: (data offset, declared size)}`` of a RIFF/WAVE file; empty for anything else.

    Stops at the ``data`` chunk (its declared size is what truncation is measured against).
    """
    chunks: dict[bytes, tuple[int, int]] = {}
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return chunks
        pos = 12
        while True:
            f.seek(pos)
            hdr = f.read(8)
            if len(hdr) < 8:
                return chunks
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            chunks[cid] = (pos + 8, size)
            if cid == b"data":
                return chunks
            pos += 8 + size + (size & 1)


def _wav_declared_bytes(path: str) -> tuple[int, int] | None:
    """(offset, declared size) of a WAV file's sample data; None when unknown (not WAV, streamed)."""
    try:
        data = _wav_chunks(path).get(b"data")
    except OSError:
        return None
    if data is None or data[1] in (0, 0xFFFFFFFF):  # 0 / max: written by a streaming encoder
        return None
    return data


def _wav_block_align(path: str) -> int | None:
    """Bytes per frame from a WAV file's ``fmt`` chunk."""
    try:
        fmt = _wav_chunks(path).get(b"fmt ")
        if fmt is None:
            return None
        with open(path, "rb") as f:
            f.seek(fmt[0] + 12)
            raw = f.read(2)
        return struct.unpack("<H", raw)[0] if len(raw) == 2 else None
    except OSError:
        return None


def _reason(exc: Exception) -> str:
    """libsndfile's reason without its "Error opening '<path>': " prefix (the path is said once)."""
    text = str(exc)
    return text.split("': ", 1)[1] if text.startswith("Error opening '") and "': " in text else text


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


def split_windows(
    wave: np.ndarray,
    sample_rate: int,
    window_s: float = 30.0,
    search_s: float = 3.0,
    frame_s: float = 0.02,
    quiet_ratio: float = 0.1,
    min_window_s: float = 0.5,
) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges covering ``wave``, each at most ``window_s`` long.

    Each cut goes to the centre of the lowest-energy ``frame_s`` frame within ``search_s`` before
    the fixed boundary if that frame's RMS is below ``quiet_ratio`` x the recording's median frame
    RMS (or digital silence); otherwise the cut is at the boundary. A last window shorter than
    ``min_window_s`` is avoided by cutting earlier, so every window is long enough to encode.
    """
    n = len(wave)
    size = int(round(window_s * sample_rate))
    if size <= 0:
        raise ValueError(f"window must be positive (got {window_s} s)")
    if n <= size:
        return [(0, n)]
    frame = max(1, int(round(frame_s * sample_rate)))
    n_frames = n // frame
    rms = np.sqrt(
        np.mean(np.square(wave[: n_frames * frame].astype(np.float64)).reshape(n_frames, frame), axis=1)
    )
    threshold = max(quiet_ratio * float(np.median(rms)), 1e-4)
    search = min(int(round(search_s * sample_rate)), size // 2)
    min_len = min(int(round(min_window_s * sample_rate)), size // 4)
    windows: list[tuple[int, int]] = []
    start = 0
    while n - start > size:
        boundary = start + size
        if n - boundary < min_len:  # keep the final window encodable
            boundary = n - min_len
        lo = max(start + 1, boundary - search) // frame
        hi = boundary // frame  # frames fully before the boundary
        cut = boundary
        if hi > lo:
            best = lo + int(np.argmin(rms[lo:hi]))
            if rms[best] < threshold:
                cut = best * frame + frame // 2
        windows.append((start, cut))
        start = cut
    windows.append((start, n))
    return windows


def _supported() -> str:
    return "wav, flac, ogg/vorbis/opus" + (", mp3" if "MP3" in sf.available_formats() else "")
