"""Music: one generator per instrument (additive, FM, Karplus-Strong) and the renderer that plays a
chord of a known quality at a known tempo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import soxr

from moeaudio.data.synth.dsp import SR, _fade, _fft_filter, _place, _t
from moeaudio.data.synth.labels import CHORD_QUALITIES, TEMPO_BPM

#: Roots of the ``chord`` task's clips: C3, F3, G3 and C4 (pitch classes C, F and G, the I, IV and V
#: chords of C major). Why not any root: telling a chord's quality means reading its intervals wherever
#: its root lies; with 13 roots (12 pitch classes) that is 60 (quality, root) patterns of ~3 training
#: clips each, and the quickstart (900 steps, pitch stream on) stayed at chance on them (0.16), while
#: with these roots it reached 0.50-0.62. Music elsewhere (the background under speech, the
#: multiple-choice questions) keeps any root from C3 to C4.
CHORD_TASK_ROOTS: tuple[int, ...] = (48, 53, 55, 60)


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


# --------------------------------------------------------------------------------------------------------
# Instruments: one function per timbre, (rng, freq Hz, samples) -> note
# --------------------------------------------------------------------------------------------------------


def _piano(rng: np.random.Generator, freq: float, n: int) -> np.ndarray:
    """Additive piano-like tone: slightly inharmonic (stiff string) partials, faster decay up high, hammer."""
    t = _t(n)
    b = 4e-4
    out = np.zeros(n)
    for k in range(1, 11):
        fk = k * freq * np.sqrt(1 + b * k * k)
        if fk > SR / 2 - 500:
            break
        out += (
            (1.0 / k**1.1)
            * np.exp(-t * (1.2 + 0.7 * k))
            * np.sin(2 * np.pi * fk * t + rng.uniform(0, 2 * np.pi))
        )
    hammer = _fft_filter(rng.standard_normal(n), lo=800, hi=4000) * np.exp(-t * 120.0) * 0.15
    return out * np.minimum(1.0, t / 0.004) + hammer


def _guitar(rng: np.random.Generator, freq: float, n: int) -> np.ndarray:
    """Karplus-Strong plucked string, computed one period per numpy step (y[n] = g*(y[n-P]+y[n-P-1])/2).

    The loop's pitch is ``rate / (P + 0.5)`` for an integer P, which at 16 kHz would be up to ~25 cents
    off; we run it at the rate that makes the pitch exact and resample to 16 kHz, so chord intervals
    (the ``chord`` label) stay in tune.
    """
    period = max(2, int(SR / freq))
    rate = (period + 0.5) * freq
    n_k = int(np.ceil(n * rate / SR)) + 16
    decay = 10 ** (-3.0 * period / (rate * rng.uniform(1.5, 3.0)))
    z = np.zeros(n_k + 1)
    burst = rng.uniform(-1.0, 1.0, period)
    z[1 : 1 + period] = burst - burst.mean()  # zero-mean: no DC offset ringing for seconds
    for start in range(period + 1, n_k + 1, period):
        m = min(period, n_k + 1 - start)
        z[start : start + m] = (
            decay
            * 0.5
            * (z[start - period : start - period + m] + z[start - period - 1 : start - period - 1 + m])
        )
    out = soxr.resample(z[1:], rate, SR, quality="HQ")
    return np.pad(out, (0, max(0, n - len(out))))[:n]


def _organ(rng: np.random.Generator, freq: float, n: int) -> np.ndarray:
    """Drawbar organ: fixed harmonic mix (1, 2, 3, 4, 6, 8), no decay, soft attack and release."""
    t = _t(n)
    out = np.zeros(n)
    for k, a in ((1, 1.0), (2, 0.8), (3, 0.5), (4, 0.45), (6, 0.25), (8, 0.2)):
        if k * freq < SR / 2 - 500:
            out += a * np.sin(2 * np.pi * k * freq * t)
    return _fade(out, 0.02)


def _flute(rng: np.random.Generator, freq: float, n: int) -> np.ndarray:
    """Flute-like: near-sine with weak 2nd/3rd harmonics, 5 Hz vibrato, slow attack and breath noise."""
    t = _t(n)
    vib = 1.0 + 0.006 * np.sin(2 * np.pi * rng.uniform(4.5, 5.5) * t)
    phase = 2 * np.pi * freq * np.cumsum(vib) / SR
    tone = np.sin(phase) + 0.12 * np.sin(2 * phase) + 0.05 * np.sin(3 * phase)
    breath = _fft_filter(rng.standard_normal(n), lo=freq * 0.8, hi=freq * 3) * 0.08
    env = np.minimum(1.0, t / 0.08)
    return _fade((tone + breath) * env, 0.03)


def _synth(rng: np.random.Generator, freq: float, n: int) -> np.ndarray:
    """Band-limited square-wave synth lead (odd harmonics 1/k) with a plucky ADSR."""
    t = _t(n)
    out = np.zeros(n)
    for k in range(1, 60, 2):
        if k * freq > SR / 2 - 500:
            break
        out += np.sin(2 * np.pi * k * freq * t) / k
    env = np.minimum(1.0, t / 0.005) * (0.6 + 0.4 * np.exp(-t * 8.0))
    return _fade(out * env, 0.01)


def _bell_fm(rng: np.random.Generator, freq: float, n: int) -> np.ndarray:
    """FM bell (Chowning): inharmonic modulator ratio 1.4, index decaying with the amplitude."""
    t = _t(n)
    env = np.exp(-t * rng.uniform(1.0, 1.8))
    index = 4.0 * env
    return (
        np.sin(2 * np.pi * freq * t + index * np.sin(2 * np.pi * 1.4 * freq * t))
        * env
        * np.minimum(1.0, t / 0.002)
    )


_INSTRUMENT_FN: dict[str, Callable[[np.random.Generator, float, int], np.ndarray]] = {
    "piano": _piano,
    "guitar": _guitar,
    "organ": _organ,
    "flute": _flute,
    "synth": _synth,
    "bell": _bell_fm,
}
_SUSTAINED = {"organ", "flute", "synth"}  # held for most of a beat; the others ring on and decay


def _render_music(
    rng: np.random.Generator,
    instrument: str,
    quality: str,
    tempo: str,
    duration: float,
    roots: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Play one chord quality on one instrument, one event per beat (block chord or arpeggio), on a
    root drawn from ``roots`` (MIDI; default any from C3 to C4).

    Why one event per beat for both patterns: the tempo label is then the onset rate a listener hears.
    """
    n = int(duration * SR)
    root = int(rng.choice(roots)) if roots else int(rng.integers(48, 61))
    bpm = float(rng.uniform(*TEMPO_BPM[tempo]))
    beat = 60.0 / bpm
    pattern = str(rng.choice(["block", "arpeggio"]))
    notes = [root + i for i in CHORD_QUALITIES[quality]]
    fn = _INSTRUMENT_FN[instrument]
    note_s = 0.9 * beat if instrument in _SUSTAINED else min(2.0 * beat, 2.5)
    buf = np.zeros(n)
    t0 = rng.uniform(0.02, 0.15)
    i = 0
    while t0 + i * beat < duration - 0.15:
        start = int((t0 + i * beat) * SR)
        m = int(note_s * SR)
        if pattern == "block":
            chord = sum(fn(rng, _midi_hz(p), m) for p in notes) / np.sqrt(len(notes))
            _place(buf, _fade(chord, 0.005), start)
        else:
            _place(buf, _fade(fn(rng, _midi_hz(notes[i % len(notes)]), m), 0.005), start)
        i += 1
    meta = {
        "instrument": instrument,
        "chord": quality,
        "root_midi": root,
        "midi_notes": [root + i for i in CHORD_QUALITIES[quality]],
        "tempo": tempo,
        "bpm": round(bpm, 2),
        "pattern": pattern,
        "events": i,
    }
    return _fade(buf), meta
