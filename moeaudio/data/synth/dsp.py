"""Small DSP helpers shared by the generators (numpy only).

FFT-domain filters are zero-phase and fast for clips of a few seconds; everything works at the
corpus's one sample rate, :data:`SR`.
"""

from __future__ import annotations

import numpy as np

SR = 16000


def _t(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _fft_filter(
    x: np.ndarray, lo: float | None = None, hi: float | None = None, order: int = 2
) -> np.ndarray:
    """Zero-phase Butterworth-shaped high/low/band-pass applied in the frequency domain."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / SR)
    f[0] = 1e-3
    gain = np.ones_like(f)
    if lo is not None:
        gain /= np.sqrt(1.0 + (lo / f) ** (2 * order))
    if hi is not None:
        gain /= np.sqrt(1.0 + (f / hi) ** (2 * order))
    return np.fft.irfft(spec * gain, n=len(x))


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    f[0] = f[1] if n > 1 else 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2.0), n=n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _slow_envelope(rng: np.random.Generator, n: int, rate_hz: float, depth: float) -> np.ndarray:
    """Smooth random envelope in [1-depth, 1] varying at about ``rate_hz`` (gusts, swells)."""
    x = _fft_filter(rng.standard_normal(n), hi=rate_hz, order=3)
    x = (x - x.min()) / (np.ptp(x) + 1e-12)
    return 1.0 - depth + depth * x


def _fade(x: np.ndarray, fade_s: float = 0.01) -> np.ndarray:
    """Short linear fade in/out so no generator starts or ends with a click."""
    k = min(int(fade_s * SR), len(x) // 2)
    if k > 0:
        ramp = np.linspace(0.0, 1.0, k)
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def _place(buf: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add ``x`` into ``buf`` at ``start``, cropping at the end."""
    if start >= len(buf):
        return
    m = min(len(x), len(buf) - start)
    buf[start : start + m] += x[:m]


def _normalize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Peak-normalise to a random level (-12..-1 dBFS) so loudness is a nuisance, not a label cue."""
    peak = np.max(np.abs(x))
    if peak < 1e-9:
        return x.astype(np.float32)
    level = 10 ** (rng.uniform(-12.0, -1.0) / 20.0)
    return (x * (level / peak)).astype(np.float32)


def _active_rms(x: np.ndarray) -> float:
    """RMS over the non-silent samples (the reference level for SNR: pauses do not dilute speech)."""
    mask = np.abs(x) > 0.02 * np.max(np.abs(x))
    return float(np.sqrt(np.mean(x[mask] ** 2))) if mask.any() else 0.0
