"""Environmental sounds (one generator per event class: rain, wind, engine, siren, ...) and the
background noises that speech is mixed with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from moeaudio.data.synth.dsp import SR, _colored_noise, _fade, _fft_filter, _place, _slow_envelope, _t

NOISE_TYPES: tuple[str, ...] = ("white", "pink", "brown", "rain", "wind")

# --------------------------------------------------------------------------------------------------------
# Environmental sounds: one function per class, (rng, samples) -> (audio, meta)
# --------------------------------------------------------------------------------------------------------


def _rain(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Dense random droplets (short decaying high sines) over a hiss bed."""
    rate = rng.uniform(150, 500)
    buf = np.zeros(n)
    k = np.arange(int(0.012 * SR))
    for _ in range(int(rate * n / SR)):
        f = rng.uniform(1500, 6000)
        drop = np.sin(2 * np.pi * f * k / SR * (1 + 0.5 * k / len(k))) * np.exp(-k / (0.002 * SR))
        _place(buf, drop * rng.uniform(0.1, 1.0), int(rng.integers(0, n)))
    bed = _fft_filter(rng.standard_normal(n), lo=1000, hi=8000) * 0.15
    return buf + bed, {"drops_per_s": round(rate, 1)}


def _wind(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Low-passed noise with slow gusts, plus a faintly whistling band with its own gust envelope."""
    low = _fft_filter(_colored_noise(rng, n, 1.0), lo=60, hi=rng.uniform(400, 900)) * _slow_envelope(
        rng, n, 0.8, 0.85
    )
    fc = rng.uniform(500, 1200)
    whistle = _fft_filter(rng.standard_normal(n), lo=fc * 0.9, hi=fc * 1.1, order=4) * _slow_envelope(
        rng, n, 0.5, 1.0
    )
    return low + 0.6 * whistle, {"whistle_hz": round(fc, 1)}


def _engine(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Low harmonic hum at the firing rate, amplitude-modulated per firing, slow rpm drift, rumble."""
    t = _t(n)
    fire = rng.uniform(25, 60)
    inst = fire * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t))
    phase = 2 * np.pi * np.cumsum(inst) / SR
    hum = sum(np.sin(k * phase) / k for k in range(1, 16))
    pulses = 0.6 + 0.4 * np.maximum(0.0, np.sin(phase)) ** 4
    rumble = _fft_filter(rng.standard_normal(n), hi=300) * 0.4
    return _fft_filter(hum * pulses, hi=1500) + rumble * pulses, {"firing_hz": round(fire, 1)}


def _siren(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Frequency sweep between ~600 and ~1400 Hz: slow 'wail' or fast 'yelp', with a few harmonics."""
    t = _t(n)
    mode = str(rng.choice(["wail", "yelp"]))
    rate = rng.uniform(0.25, 0.6) if mode == "wail" else rng.uniform(2.5, 5.0)
    lo, hi = rng.uniform(550, 750), rng.uniform(1200, 1600)
    inst = lo + (hi - lo) * 0.5 * (1 - np.cos(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(inst) / SR
    return np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase), {
        "mode": mode,
        "sweep_hz": round(rate, 2),
    }


def _knock(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """2-5 knocks on wood: short damped low bursts (noise + 100-250 Hz mode) in an even pattern."""
    gap = rng.uniform(0.15, 0.3)
    buf = np.zeros(n)
    m = int(0.08 * SR)
    k = _t(m)
    f0 = rng.uniform(100, 250)
    start = rng.uniform(0.05, 0.3)
    # Never more knocks than fit whole in the clip: the count is a label (knock_count questions).
    count = min(int(rng.integers(2, 6)), int((n / SR - start - 0.1) / gap) + 1)
    for i in range(count):
        burst = _fft_filter(rng.standard_normal(m), lo=80, hi=900) * 0.6 + np.sin(2 * np.pi * f0 * k)
        _place(buf, burst * np.exp(-k / 0.012) * rng.uniform(0.7, 1.0), int((start + i * gap) * SR))
    return buf, {"count": count}


_BELL_PARTIALS = (0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011)  # church-bell hum, prime, tierce...


def _bell_sound(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Struck bell: inharmonic partials with partial-dependent decay, struck 1-3 times."""
    t = _t(n)
    f0 = rng.uniform(300, 900)
    strikes = int(rng.integers(1, 4))
    buf = np.zeros(n)
    gap = rng.uniform(0.6, 1.2)
    strikes = min(strikes, int((n / SR - 0.35) / gap) + 1)  # only strikes that ring for >= 0.3 s
    tone = sum(
        np.sin(2 * np.pi * f0 * r * t) * np.exp(-t * (0.8 + 1.5 * r)) / (1 + abs(r - 1))
        for r in _BELL_PARTIALS
        if f0 * r < SR / 2 - 500
    )
    for s in range(strikes):
        _place(buf, tone * np.minimum(1.0, t / 0.002), int((0.05 + s * gap) * SR))
    return buf, {"fundamental_hz": round(f0, 1), "strikes": strikes}


def _bark(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Bark-like bursts: a falling harmonic source plus noise through two formants (synthetic, not a dog)."""
    wanted = int(rng.integers(1, 5))
    buf = np.zeros(n)
    pos = rng.uniform(0.05, 0.3)
    count = 0
    for _ in range(wanted):
        m = int(rng.uniform(0.12, 0.22) * SR)
        if int(pos * SR) + m > n:  # only whole barks, so ``count`` stays true
            break
        count += 1
        t = _t(m)
        f0 = rng.uniform(300, 600) * (1 - 0.35 * t / t[-1])
        src = np.sign(np.sin(2 * np.pi * np.cumsum(f0) / SR)) * 0.5 + rng.standard_normal(m) * 0.5
        f1, f2 = rng.uniform(450, 700), rng.uniform(1200, 1800)
        voiced = _fft_filter(src, lo=f1 * 0.7, hi=f1 * 1.3, order=3) + 0.6 * _fft_filter(
            src, lo=f2 * 0.8, hi=f2 * 1.2, order=3
        )
        env = np.minimum(1.0, t / 0.01) * np.exp(-t / 0.07)
        _place(buf, voiced * env, int(pos * SR))
        pos += m / SR + rng.uniform(0.1, 0.4)
    return buf, {"count": count}


def _footsteps(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Periodic low thumps (heel) followed by a softer scuff (toe), 1.5-2.5 steps per second."""
    rate = rng.uniform(1.5, 2.5)
    buf = np.zeros(n)
    m = int(0.1 * SR)
    k = _t(m)
    t = rng.uniform(0.02, 0.2)
    steps = 0
    while t < n / SR - 0.05:
        heel = _fft_filter(rng.standard_normal(m), lo=40, hi=250) * np.exp(-k / 0.02)
        scuff = _fft_filter(rng.standard_normal(m), lo=1500, hi=5000) * np.exp(-k / 0.01) * 0.05
        _place(buf, heel * rng.uniform(0.7, 1.0), int(t * SR))
        _place(buf, scuff, int((t + 0.05) * SR))
        t += (1.0 / rate) * rng.uniform(0.93, 1.07)
        steps += 1
    return buf, {"steps_per_s": round(rate, 2), "steps": steps}


def _clock(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Mechanical clock: very short high clicks alternating 'tick' and 'tock' pitch, 2-4 per second."""
    rate = rng.uniform(2.0, 4.0)
    buf = np.zeros(n)
    m = int(0.015 * SR)
    k = _t(m)
    fa, fb = rng.uniform(2500, 3500), rng.uniform(1800, 2400)
    t, i = rng.uniform(0.02, 0.2), 0
    while t < n / SR - 0.02:
        f = fa if i % 2 == 0 else fb
        click = (np.sin(2 * np.pi * f * k) + 0.3 * rng.standard_normal(m)) * np.exp(-k / 0.002)
        _place(buf, click, int(t * SR))
        t += 1.0 / rate
        i += 1
    return buf, {"ticks_per_s": round(rate, 2)}


def _bubbles(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Bubbles in water: decaying sines whose pitch rises as they resonate (Minnaert-style), 6-20 per second."""
    rate = rng.uniform(6, 20)
    buf = np.zeros(n)
    for _ in range(max(1, int(rate * n / SR))):
        m = int(rng.uniform(0.02, 0.06) * SR)
        k = _t(m)
        f0 = rng.uniform(400, 1500)
        chirp = np.sin(2 * np.pi * f0 * (k + 0.5 * rng.uniform(3, 8) * k * k)) * np.exp(-k / (0.25 * k[-1]))
        _place(buf, chirp * rng.uniform(0.3, 1.0), int(rng.integers(0, n)))
    return buf, {"bubbles_per_s": round(rate, 1)}


_SOUND_FN: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, dict[str, Any]]]] = {
    "rain": _rain,
    "wind": _wind,
    "engine": _engine,
    "siren": _siren,
    "knock": _knock,
    "bell": _bell_sound,
    "bark": _bark,
    "footsteps": _footsteps,
    "clock": _clock,
    "bubbles": _bubbles,
}


def _render_sound(rng: np.random.Generator, label: str, duration: float) -> tuple[np.ndarray, dict[str, Any]]:
    audio, meta = _SOUND_FN[label](rng, int(duration * SR))
    return _fade(audio), {"event": label, **meta}


def _render_noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Background noise for mixtures: coloured noise or the stationary rain/wind generators."""
    if kind in ("rain", "wind"):
        return _SOUND_FN[kind](rng, n)[0]
    return _colored_noise(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
