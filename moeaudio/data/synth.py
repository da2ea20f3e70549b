"""The built-in offline corpus: synthetic speech, music, environmental sound and mixtures.

Why it exists: the paper's claim is that speech, music and environmental sound pull a dense adapter in
different directions. Testing that (and every recipe, test and tutorial) needs a corpus with all three
domains, honest labels and closed label sets that a tiny LLM can learn, available without network
access or licences. Everything here is generated from code:

* speech: eSpeak NG (:mod:`moeaudio.data.tts`) with many voices (two English accents x voice variants,
  pitch and rate varied) saying commands, digit strings and short sentences from a fixed word list;
* music: one generator per instrument (additive, FM, Karplus-Strong) playing chords of a known quality
  at a known tempo;
* sound: one generator per event class (rain, wind, engine, siren, ...);
* mixed: speech over music or noise at a set SNR;
* MMAU-style multiple-choice questions over the three single-domain kinds of audio.

Labels are honest by construction: they are the parameters the audio was made from (the variant's
gender line, the words-per-minute we set, the chord intervals we played), never a guess about the audio.

Determinism: every item draws from its own ``Generator(PCG64(SeedSequence(seed, spawn_key=...)))``
keyed by (split, job, index), so the bytes of an item do not depend on the order items are made in, on
the number of worker processes, or on the other sizes. The same seed gives byte-identical wavs and
manifests; the splits use independent streams.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from moeaudio.data.manifest import validate_record
from moeaudio.data.tasks import format_choices
from moeaudio.data.tts import Voice, synthesize
from moeaudio.io_utils import atomic_path, atomic_write_text

__all__ = [
    "INSTRUMENTS",
    "CHORD_QUALITIES",
    "SOUND_CLASSES",
    "INTENTS",
    "SIZES",
    "SPLITS",
    "SYNTH_TASKS",
    "SPEAKER_VARIANTS",
    "SynthSummary",
    "make_synth_corpus",
]

SR = 16000
SPLITS: tuple[str, ...] = ("train", "valid", "test")
_MIN_S, _MAX_S = 1.0, 4.0

# --------------------------------------------------------------------------------------------------------
# Vocabulary and label sets
# --------------------------------------------------------------------------------------------------------

#: Intent label -> phrasings. Labels are lower case with spaces (the project's label convention) so they
#: double as readable multiple-choice options.
INTENTS: dict[str, tuple[str, ...]] = {
    "lights on": ("turn on the light", "switch the light on", "lights on please"),
    "lights off": ("turn off the light", "switch the light off", "lights off please"),
    "play music": ("play the music", "start the music", "play some music"),
    "stop music": ("stop the music", "pause the music"),
    "stop alarm": ("stop the alarm", "turn off the alarm", "cancel the alarm"),
    "set alarm": ("set an alarm", "wake me up at seven"),
    "open door": ("open the door", "unlock the door"),
    "close door": ("close the door", "lock the door"),
    "volume up": ("turn the volume up", "make it louder"),
    "volume down": ("turn the volume down", "make it quieter"),
    "weather": ("what is the weather", "will it rain today"),
    "call": ("call my mother", "make a phone call"),
}

DIGITS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_ADJECTIVES = ("red", "blue", "green", "big", "small", "old", "new", "happy")
_NOUNS = ("cat", "dog", "bird", "car", "ball", "house", "tree", "fish", "book", "cup")
_VERBS = ("sees", "likes", "finds", "wants", "has")
_VERBS_1P = ("see", "like", "find", "want", "have")

#: Voice variants per split and gender. Test and valid speakers never appear in train (speaker-disjoint
#: evaluation of ASR/gender). Variants whose voice file overrides the speed (Andrea, anika, Alicia)
#: are left out so the words-per-minute we set, and hence the ``speaking_rate`` label, stays true;
#: whisper/robot/novelty variants are left out because their gender label would be misleading.
SPEAKER_VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "male": ("m1", "m2", "m3", "m4", "m5", "m8", "adam", "Andy", "paul", "robert", "ian", "edward"),
        "female": ("f1", "f2", "f3", "Annie", "steph", "steph2", "aunty"),
    },
    "valid": {"male": ("m6", "max"), "female": ("f4", "belinda")},
    "test": {"male": ("m7", "john"), "female": ("f5", "linda", "steph3")},
}
#: eSpeak base voices: "en-us" (American) and "en" (eSpeak's British English; "en-gb" is not a voice
#: name it accepts).
BASE_VOICES: dict[str, str] = {"en-us": "en-us", "en": "en-gb"}

#: Pause eSpeak adds between words, in units of 10 ms, at every rate. Why: eSpeak's run-together
#: words are what Whisper mishears most ("the big cat likes the dog" -> "the bid can't like spadog");
#: on a dev sample (seeds 1-3, 48 texts, not the test's seed) Whisper tiny.en's WER went from 0.33
#: with no gap to 0.21 with 60 ms and digit strings read as a list (see ``spoken_form``).
WORD_GAP = 6

#: Words per minute handed to eSpeak per speaking-rate class; the gaps keep the classes separable.
#: (The constant ``WORD_GAP`` makes every class a little slower than its setting, in the same order.)
RATE_WPM: dict[str, tuple[int, int]] = {"slow": (105, 125), "normal": (160, 185), "fast": (240, 280)}

INSTRUMENTS: tuple[str, ...] = ("piano", "guitar", "organ", "flute", "synth", "bell")
CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "diminished": (0, 3, 6),
    "augmented": (0, 4, 8),
    "dominant seventh": (0, 4, 7, 10),
}
#: Roots of the ``chord`` task's clips: C3, F3, G3 and C4 (pitch classes C, F and G, the I, IV and V
#: chords of C major). Why not any root: telling a chord's quality means reading its intervals wherever
#: its root lies; with 13 roots (12 pitch classes) that is 60 (quality, root) patterns of ~3 training
#: clips each, and the quickstart (900 steps, pitch stream on) stayed at chance on them (0.16), while
#: with these roots it reached 0.50-0.62. Music elsewhere (the background under speech, the
#: multiple-choice questions) keeps any root from C3 to C4.
CHORD_TASK_ROOTS: tuple[int, ...] = (48, 53, 55, 60)

#: Beats per minute per tempo class (one note or chord per beat).
TEMPO_BPM: dict[str, tuple[int, int]] = {"slow": (55, 75), "medium": (95, 120), "fast": (160, 200)}

SOUND_CLASSES: tuple[str, ...] = (
    "rain",
    "wind",
    "engine",
    "siren",
    "knock",
    "bell",
    "bark",
    "footsteps",
    "clock",
    "bubbles",
)
NOISE_TYPES: tuple[str, ...] = ("white", "pink", "brown", "rain", "wind")
SNRS_DB: tuple[int, ...] = (0, 5, 10)

_MCQ_SUFFIX = "Answer with the text of the correct option."

#: Per task: instruction, closed label set (None: open), the domain(s) it appears in and chance accuracy.
SYNTH_TASKS: dict[str, dict[str, Any]] = {
    "asr": {
        "instruction": "Transcribe the speech.",
        "labels": None,
        "domain": "speech",
        "domains": ("speech", "mixed"),
    },
    "intent": {
        "instruction": "What does the speaker want? Answer with the intent only.",
        "labels": tuple(INTENTS),
        "domain": "speech",
        "domains": ("speech",),
    },
    "gender": {
        "instruction": "Is the speaker male or female? Answer with one word.",
        "labels": ("male", "female"),
        "domain": "speech",
        "domains": ("speech",),
    },
    "speaking_rate": {
        "instruction": "Is the speaking rate slow, normal or fast? Answer with one word.",
        "labels": tuple(RATE_WPM),
        "domain": "speech",
        "domains": ("speech",),
    },
    "instrument": {
        "instruction": "Which instrument is playing? Answer with one word.",
        "labels": INSTRUMENTS,
        "domain": "music",
        "domains": ("music",),
    },
    "chord": {
        "instruction": "What is the quality of the chord: major, minor, diminished, augmented or dominant seventh?",
        "labels": tuple(CHORD_QUALITIES),
        "domain": "music",
        "domains": ("music",),
    },
    "tempo": {
        "instruction": "Is the tempo slow, medium or fast? Answer with one word.",
        "labels": tuple(TEMPO_BPM),
        "domain": "music",
        "domains": ("music",),
    },
    "sound": {
        "instruction": "What sound is this? Answer with the sound class only.",
        "labels": SOUND_CLASSES,
        "domain": "sound",
        "domains": ("sound",),
    },
    "background": {
        "instruction": "What is heard behind the voice, music or noise? Answer with one word.",
        "labels": ("music", "noise"),
        "domain": "mixed",
        "domains": ("mixed",),
    },
    "mcq": {
        "instruction": "<question>\n<A. .. D. options>\n" + _MCQ_SUFFIX,
        "labels": None,
        "n_choices": 4,
        "domain": "mixed",
        "domains": ("speech", "music", "sound"),
    },
}
for _spec in SYNTH_TASKS.values():
    _spec["chance"] = (
        1.0 / len(_spec["labels"]) if _spec["labels"] else (0.25 if "n_choices" in _spec else None)
    )

#: Generation jobs: (job name, task, domain). A job is one row of the size table.
_JOBS: tuple[tuple[str, str, str], ...] = (
    ("speech_asr", "asr", "speech"),
    ("speech_intent", "intent", "speech"),
    ("speech_gender", "gender", "speech"),
    ("speech_rate", "speaking_rate", "speech"),
    ("music_instrument", "instrument", "music"),
    ("music_chord", "chord", "music"),
    ("music_tempo", "tempo", "music"),
    ("sound_event", "sound", "sound"),
    ("mixed_asr", "asr", "mixed"),
    ("mixed_background", "background", "mixed"),
    ("mcq_speech", "mcq", "speech"),
    ("mcq_music", "mcq", "music"),
    ("mcq_sound", "mcq", "sound"),
)
_JOB_INDEX = {name: (task, domain) for name, task, domain in _JOBS}

#: Clips per job: train gets 80 % of the number; valid and test each get max(2, 10 %, HELD_OUT_MIN).
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(zip([j[0] for j in _JOBS], (16, 16, 8, 8, 10, 10, 8, 14, 8, 8, 15, 15, 15), strict=True)),
    "small": dict(
        zip([j[0] for j in _JOBS], (80, 50, 40, 40, 50, 50, 40, 60, 30, 30, 45, 45, 45), strict=True)
    ),
    "default": dict(
        zip(
            [j[0] for j in _JOBS], (400, 250, 200, 200, 250, 250, 200, 300, 150, 150, 50, 50, 50), strict=True
        )
    ),
}

#: Held-out clips per job and split, at least. Why 50 for the default size: with 15-25 items a
#: task's accuracy has a standard error of ~0.1, too coarse to say "above chance"; with 50, ~0.07.
HELD_OUT_MIN: dict[str, int] = {"tiny": 0, "small": 0, "default": 50}

# --------------------------------------------------------------------------------------------------------
# Small DSP helpers (numpy only; FFT-domain filters are zero-phase and fast for clips of a few seconds)
# --------------------------------------------------------------------------------------------------------


def _t(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


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


# --------------------------------------------------------------------------------------------------------
# Speech
# --------------------------------------------------------------------------------------------------------


def _text(rng: np.random.Generator, kind: str) -> tuple[str, dict[str, Any]]:
    """A transcript of one of three kinds: an intent command, a 3-5 digit string or a short sentence."""
    if kind == "command":
        intent = str(rng.choice(list(INTENTS)))
        return str(rng.choice(INTENTS[intent])), {"text_kind": kind, "intent": intent}
    if kind == "digits":
        words = [str(w) for w in rng.choice(DIGITS, size=int(rng.integers(3, 6)))]
        return " ".join(words), {"text_kind": kind, "n_digits": len(words)}
    adj, verb, verb1 = (str(rng.choice(v)) for v in (_ADJECTIVES, _VERBS, _VERBS_1P))
    n1, n2 = (str(x) for x in rng.choice(_NOUNS, size=2, replace=False))
    template = int(rng.integers(0, 4))
    text = (
        f"the {adj} {n1} {verb} the {n2}",
        f"a {n1} {verb} the {adj} {n2}",
        f"the {n1} is {adj}",
        f"i {verb1} the {adj} {n1}",
    )[template]
    nouns = [n1, n2] if template < 2 else [n1]
    return text, {"text_kind": kind, "nouns": nouns}


def spoken_form(text: str, kind: str) -> str:
    """What eSpeak is asked to say for a transcript: digit strings are read as a list ("four, eight, six")
    so each digit gets its own short pause, as people read them; the transcript itself is unchanged."""
    return ", ".join(text.split()) if kind == "digits" else text


def _pick_voice(
    rng: np.random.Generator, split: str, gender: str | None = None, rate: str | None = None
) -> tuple[Voice, dict[str, Any]]:
    """A split-local voice: accent, variant of the requested (or a random) gender, pitch and wpm."""
    gender = gender or str(rng.choice(["male", "female"]))
    variant = str(rng.choice(SPEAKER_VARIANTS[split][gender]))
    base = str(rng.choice(list(BASE_VOICES)))
    wpm = int(rng.integers(*RATE_WPM[rate])) if rate else int(rng.integers(120, 240))
    voice = Voice(name=base, variant=variant, rate=wpm, pitch=int(rng.integers(30, 71)), word_gap=WORD_GAP)
    if voice.gender != gender:  # SPEAKER_VARIANTS must agree with the variant files; never mislabel.
        raise RuntimeError(f"variant {variant!r} is {voice.gender}, listed as {gender}")
    meta = {"voice": voice.espeak_name, "accent": BASE_VOICES[base], "variant": variant, "gender": voice.gender,
            "wpm": wpm, "word_gap_ms": 10 * WORD_GAP, "pitch": voice.pitch}  # fmt: skip
    return voice, meta


def _pad_speech(rng: np.random.Generator, speech: np.ndarray) -> np.ndarray:
    """Random lead/tail silence, then pad the tail so the clip is at least 1 s."""
    lead = np.zeros(int(rng.uniform(0.05, 0.3) * SR), dtype=np.float32)
    tail = np.zeros(int(rng.uniform(0.05, 0.3) * SR), dtype=np.float32)
    x = np.concatenate([lead, speech, tail])
    if len(x) < int(_MIN_S * SR):
        x = np.concatenate([x, np.zeros(int(_MIN_S * SR) - len(x), dtype=np.float32)])
    return x


def _speak(
    rng: np.random.Generator, split: str, kind: str, gender: str | None = None, rate: str | None = None
) -> tuple[np.ndarray, str, Voice, dict[str, Any]]:
    """Synthesise a padded utterance of ``kind`` that fits in 1-4 s (re-drawing the text if too long)."""
    voice, vmeta = _pick_voice(rng, split, gender, rate)
    for _ in range(8):
        text, tmeta = _text(rng, kind)
        speech, _ = synthesize(spoken_form(text, kind), voice, sample_rate=SR)
        audio = _pad_speech(rng, speech)
        if len(audio) <= int(_MAX_S * SR):
            return audio, text, voice, {**vmeta, **tmeta, "text": text}
    raise RuntimeError(f"could not fit an utterance in {_MAX_S} s with voice {voice}")


# --------------------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """What to make: a job row of the size table, the split and the index within (split, job)."""

    split: str
    job: str
    index: int
    label: str | None  # balanced class label assigned by the planner (None: drawn per item)


@dataclass
class _Made:
    audio: np.ndarray
    target: str
    meta: dict[str, Any]
    instruction: str | None = None
    choices: list[str] | None = None
    answer: str | None = None
    speaker: str | None = None
    lang: str | None = None


def _item_rng(seed: int, split: str, job: str, index: int) -> np.random.Generator:
    """An independent stream per item; the key uses stable CRCs, not Python's salted ``hash``."""
    key = (SPLITS.index(split), zlib.crc32(job.encode()), index)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _speech_kind(rng: np.random.Generator) -> str:
    return str(rng.choice(["command", "digits", "sentence"], p=[0.4, 0.3, 0.3]))


def _make_speech(rng: np.random.Generator, spec: _Spec, task: str) -> _Made:
    if task == "intent":
        voice, vmeta = _pick_voice(rng, spec.split)
        for _ in range(8):
            text = str(rng.choice(INTENTS[spec.label]))
            audio = _pad_speech(rng, synthesize(text, voice, sample_rate=SR)[0])
            if len(audio) <= int(_MAX_S * SR):
                break
        meta = {**vmeta, "text": text, "text_kind": "command", "intent": spec.label}
        return _Made(audio, spec.label, meta, speaker=vmeta["voice"], lang="en")
    gender = spec.label if task == "gender" else None
    rate = spec.label if task == "speaking_rate" else None
    audio, text, voice, meta = _speak(rng, spec.split, _speech_kind(rng), gender, rate)
    if rate is not None:
        meta["speaking_rate"] = rate
    target = text if task == "asr" else spec.label
    return _Made(audio, target, meta, speaker=meta["voice"], lang="en")


def _make_music(rng: np.random.Generator, spec: _Spec, task: str) -> _Made:
    instrument = spec.label if task == "instrument" else str(rng.choice(INSTRUMENTS))
    quality = spec.label if task == "chord" else str(rng.choice(list(CHORD_QUALITIES)))
    tempo = spec.label if task == "tempo" else str(rng.choice(list(TEMPO_BPM)))
    duration = rng.uniform(3.0, 4.0) if task == "tempo" else rng.uniform(2.0, 4.0)
    roots = CHORD_TASK_ROOTS if task == "chord" else None
    audio, meta = _render_music(rng, instrument, quality, tempo, duration, roots)
    return _Made(audio, spec.label, meta)


def _make_sound(rng: np.random.Generator, spec: _Spec) -> _Made:
    audio, meta = _render_sound(rng, spec.label, rng.uniform(1.5, 4.0))
    return _Made(audio, spec.label, meta)


def _make_mixed(rng: np.random.Generator, spec: _Spec, task: str) -> _Made:
    """Speech over music or noise at a set SNR (speech active RMS over background RMS)."""
    background = spec.label if task == "background" else str(rng.choice(["music", "noise"]))
    speech, text, voice, meta = _speak(rng, spec.split, _speech_kind(rng))
    n = len(speech)
    speech = speech / (np.max(np.abs(speech)) + 1e-9)
    if background == "music":
        bg, bmeta = _render_music(rng, str(rng.choice(INSTRUMENTS)), str(rng.choice(list(CHORD_QUALITIES))),
                                  str(rng.choice(list(TEMPO_BPM))), n / SR)  # fmt: skip
        bg = np.pad(bg, (0, max(0, n - len(bg))))[:n]
        bmeta = {"background_" + k: v for k, v in bmeta.items()}
    else:
        kind = str(rng.choice(NOISE_TYPES))
        bg, bmeta = _render_noise(rng, kind, n), {"background_noise": kind}
    snr = int(rng.choice(SNRS_DB))
    bg = _fade(bg, 0.02)
    bg_rms = float(np.sqrt(np.mean(bg**2))) + 1e-12
    mix = speech + bg * (_active_rms(speech) / bg_rms) * 10 ** (-snr / 20.0)
    meta = {
        **meta,
        "background": background,
        "snr_db": snr,
        "snr_ref": "speech active RMS / background RMS",
        **bmeta,
    }
    target = text if task == "asr" else background
    return _Made(mix, target, meta, speaker=meta["voice"], lang="en")


def _four_choices(rng: np.random.Generator, answer: str, pool: list[str]) -> list[str]:
    """The answer plus three distinct distractors from ``pool``, shuffled."""
    distract = [str(x) for x in rng.choice([p for p in pool if p != answer], size=3, replace=False)]
    opts = [answer, *distract]
    return [opts[i] for i in rng.permutation(4)]


@dataclass(frozen=True)
class _Question:
    """One multiple-choice question; ``answer`` is the text of the correct choice."""

    text: str
    choices: list[str]
    answer: str
    difficulty: str


def _ask(rng: np.random.Generator, text: str, answer: str, pool: list[str], difficulty: str) -> _Question:
    return _Question(text, _four_choices(rng, answer, pool), answer, difficulty)


def _mcq_speech(rng: np.random.Generator, spec: _Spec, category: str) -> tuple[_Made, _Question]:
    """Questions about what was said; the answer comes from the text we synthesised."""
    kind = {"intent": "command", "digit_count": "digits", "keyword": "sentence"}[category]
    audio, _, _, meta = _speak(rng, spec.split, kind)
    made = _Made(audio, "", meta, speaker=meta["voice"], lang="en")
    if category == "intent":
        return made, _ask(rng, "What did the speaker ask for?", meta["intent"], list(INTENTS), "easy")
    if category == "digit_count":
        pool = ["2", "3", "4", "5", "6"]
        return made, _ask(rng, "How many digits did the speaker say?", str(meta["n_digits"]), pool, "medium")
    answer = str(rng.choice(meta["nouns"]))
    pool = [w for w in _NOUNS if w not in meta["nouns"]] + [answer]  # no distractor was said too
    return made, _ask(rng, "Which of these words did the speaker say?", answer, pool, "medium")


def _mcq_music(rng: np.random.Generator, spec: _Spec, category: str) -> tuple[_Made, _Question]:
    """Questions about the instrument, chord quality or chord size we rendered."""
    instrument, quality = str(rng.choice(INSTRUMENTS)), str(rng.choice(list(CHORD_QUALITIES)))
    tempo = str(rng.choice(list(TEMPO_BPM)))
    audio, meta = _render_music(rng, instrument, quality, tempo, rng.uniform(2.0, 4.0))
    made = _Made(audio, "", meta)
    if category == "instrument":
        return made, _ask(rng, "Which instrument is playing?", instrument, list(INSTRUMENTS), "easy")
    if category == "chord":
        text = "What is the quality of the chord being played?"
        return made, _ask(rng, text, quality, list(CHORD_QUALITIES), "hard")
    text, answer = "How many different notes make up the chord?", str(len(CHORD_QUALITIES[quality]))
    return made, _ask(rng, text, answer, ["2", "3", "4", "5"], "medium")


#: Coarse source type per sound class, for the "what produced this sound" question (bell/bubbles omitted).
_SOURCE_TYPE = {"bark": "an animal", "engine": "a machine", "siren": "a machine", "clock": "a machine",
                "rain": "the weather", "wind": "the weather", "knock": "a person", "footsteps": "a person"}  # fmt: skip


def _mcq_sound(rng: np.random.Generator, spec: _Spec, category: str) -> tuple[_Made, _Question]:
    """Questions about the event class, the number of knocks or the kind of source."""
    if category == "event":
        label = str(rng.choice(SOUND_CLASSES))
        audio, meta = _render_sound(rng, label, rng.uniform(1.5, 4.0))
        return _Made(audio, "", meta), _ask(rng, "What sound is this?", label, list(SOUND_CLASSES), "easy")
    if category == "knock_count":
        audio, meta = _render_sound(rng, "knock", rng.uniform(2.0, 4.0))
        text = "How many times does someone knock?"
        return _Made(audio, "", meta), _ask(rng, text, str(meta["count"]), ["2", "3", "4", "5"], "hard")
    label = str(rng.choice(list(_SOURCE_TYPE)))
    audio, meta = _render_sound(rng, label, rng.uniform(1.5, 4.0))
    pool = sorted(set(_SOURCE_TYPE.values()))  # exactly four source types
    text = "What most likely produced this sound?"
    return _Made(audio, "", meta), _ask(rng, text, _SOURCE_TYPE[label], pool, "medium")


_MCQ_CATEGORIES: dict[str, tuple[str, ...]] = {
    "speech": ("intent", "digit_count", "keyword"),
    "music": ("instrument", "chord", "note_count"),
    "sound": ("event", "knock_count", "source_type"),
}
_MCQ_FN = {"speech": _mcq_speech, "music": _mcq_music, "sound": _mcq_sound}


def _make_mcq(rng: np.random.Generator, spec: _Spec, domain: str) -> _Made:
    """MMAU-style item: question + lettered options in the instruction, answer letter, answer text as target.

    ``answer`` is the option letter because that is the project's manifest convention
    (:mod:`moeaudio.data.manifest` rejects anything else); ``target`` is the text of the correct option.
    """
    made, q = _MCQ_FN[domain](rng, spec, spec.label)
    made.instruction = f"{q.text}\n{format_choices(q.choices)}\n{_MCQ_SUFFIX}"
    made.choices = q.choices
    made.answer = "ABCD"[q.choices.index(q.answer)]
    made.target = q.answer
    made.meta = {"category": spec.label, "difficulty": q.difficulty, "question": q.text, **made.meta}
    return made


def _make(rng: np.random.Generator, spec: _Spec) -> _Made:
    task, domain = _JOB_INDEX[spec.job]
    if task == "mcq":
        return _make_mcq(rng, spec, domain)
    if domain == "speech":
        return _make_speech(rng, spec, task)
    if domain == "music":
        return _make_music(rng, spec, task)
    if domain == "sound":
        return _make_sound(rng, spec)
    return _make_mixed(rng, spec, task)


def _item_id(spec: _Spec) -> str:
    return f"synth-{spec.split}-{spec.job}-{spec.index:05d}"


def _build_item(args: tuple[str, int, _Spec]) -> dict[str, Any]:
    """Make, normalise and write one clip; return its manifest row. Runs in worker processes."""
    out, seed, spec = args
    rng = _item_rng(seed, spec.split, spec.job, spec.index)
    made = _make(rng, spec)
    audio = _normalize(np.asarray(made.audio, dtype=np.float64), rng)
    task, domain = _JOB_INDEX[spec.job]
    rel = f"audio/{spec.split}/{domain}/{_item_id(spec)}.wav"
    path = Path(out) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=False) as tmp:
        sf.write(tmp, audio, SR, format="WAV", subtype="PCM_16")
    row = {
        "id": _item_id(spec),
        "audio": rel,
        "duration": round(len(audio) / SR, 6),
        "sample_rate": SR,
        "domain": domain,
        "task": task,
        "instruction": made.instruction or SYNTH_TASKS[task]["instruction"],
        "target": made.target,
        "choices": made.choices,
        "answer": made.answer,
        "lang": made.lang,
        "speaker": made.speaker,
        "meta": {"job": spec.job, **_json_safe(made.meta)},
    }
    return row


def _json_safe(meta: dict[str, Any]) -> dict[str, Any]:
    """Round floats so manifests are compact and free of platform-dependent last digits."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, float | np.floating):
            out[k] = round(float(v), 4)
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------------------
# Planning, parallel generation, summary
# --------------------------------------------------------------------------------------------------------


def _split_counts(total: int, size: str) -> dict[str, int]:
    """Train gets ``total`` minus 2 x 10 %; valid and test each get at least ``HELD_OUT_MIN[size]``.

    The held-out floor only adds clips (train is unchanged, and every item has its own random
    stream), so a larger floor extends valid/test without touching what is trained on.
    """
    held = max(2, round(0.1 * total))
    held_out = max(held, HELD_OUT_MIN[size])
    return {"train": total - 2 * held, "valid": held_out, "test": held_out}


def _job_labels(job: str) -> tuple[str, ...] | None:
    task, domain = _JOB_INDEX[job]
    if task == "mcq":
        return _MCQ_CATEGORIES[domain]
    return SYNTH_TASKS[task]["labels"]


_PLAN_INDEX = 2**32 - 1  # stream key for the planner's label order; never an item index


def _plan(seed: int, size: str) -> list[_Spec]:
    """All item specs, in manifest order. Class labels go round-robin over a per-(split, job) shuffled
    label order, so every class is present as soon as a split has as many items as classes."""
    specs: list[_Spec] = []
    for split in SPLITS:
        for job, total in SIZES[size].items():
            labels = _job_labels(job)
            order = list(labels) if labels else []
            if order:
                perm = _item_rng(seed, split, job, _PLAN_INDEX).permutation(len(order))
                order = [order[i] for i in perm]
            for i in range(_split_counts(total, size)[split]):
                specs.append(_Spec(split, job, i, order[i % len(order)] if order else None))
    return specs


@dataclass
class SynthSummary:
    """What :func:`make_synth_corpus` produced (``counts[split][domain][task]`` = clips)."""

    out: Path
    seed: int
    size: str
    n_clips: int
    hours: float
    seconds: float  # wall-clock generation time (not written to summary.json: it would break determinism)
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    hours_per_split: dict[str, float] = field(default_factory=dict)
    manifests: dict[str, Path] = field(default_factory=dict)


def _iter_rows(out: Path, seed: int, specs: list[_Spec], workers: int) -> Iterator[dict[str, Any]]:
    """Rows in completion order; a spawn pool keeps eSpeak's global state out of the parent's fork."""
    args = [(str(out), seed, s) for s in specs]
    if workers <= 1:
        yield from map(_build_item, args)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_build_item, args, chunksize=8)


def _summarize(rows_by_split: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    counts: dict[str, dict[str, dict[str, int]]] = {}
    hours: dict[str, float] = {}
    for split, rows in rows_by_split.items():
        c: dict[str, dict[str, int]] = {}
        for r in rows:
            c.setdefault(r["domain"], {}).setdefault(r["task"], 0)
            c[r["domain"]][r["task"]] += 1
        counts[split] = {d: dict(sorted(t.items())) for d, t in sorted(c.items())}
        hours[split] = round(sum(r["duration"] for r in rows) / 3600.0, 4)
    return {"counts": counts, "hours": hours}


def _summary_rows(counts: dict[str, dict[str, dict[str, int]]]) -> list[tuple[str, str, list[int]]]:
    keys = sorted({(d, t) for s in counts.values() for d, ts in s.items() for t in ts})
    return [(d, t, [counts[s].get(d, {}).get(t, 0) for s in SPLITS]) for d, t in keys]


def _summary_md(summary: dict[str, Any]) -> str:
    lines = [
        f"# Synthetic corpus (size={summary['size']}, seed={summary['seed']})",
        "",
        "| domain | task | " + " | ".join(SPLITS) + " | total | chance |",
        "|---|---|" + "---:|" * (len(SPLITS) + 2),
    ]
    for d, t, ns in _summary_rows(summary["counts"]):
        ch = SYNTH_TASKS[t]["chance"]
        lines.append(
            f"| {d} | {t} | "
            + " | ".join(map(str, ns))
            + f" | {sum(ns)} | {'-' if ch is None else f'{ch:.3f}'} |"
        )
    n = [summary["clips"][s] for s in SPLITS]
    lines.append("| **all** | | " + " | ".join(map(str, n)) + f" | {sum(n)} | |")
    lines.append(
        "| hours | | "
        + " | ".join(f"{summary['hours'][s]:.3f}" for s in SPLITS)
        + f" | {summary['total_hours']:.3f} | |"
    )
    return "\n".join(lines) + "\n"


def _print_table(summary: dict[str, Any], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"synth corpus size={summary['size']} seed={summary['seed']} ({seconds:.1f} s)")
    for col in ("domain", "task", *SPLITS, "total", "chance"):
        table.add_column(col, justify="left" if col in ("domain", "task") else "right")
    for d, t, ns in _summary_rows(summary["counts"]):
        ch = SYNTH_TASKS[t]["chance"]
        table.add_row(d, t, *map(str, ns), str(sum(ns)), "-" if ch is None else f"{ch:.3f}")
    n = [summary["clips"][s] for s in SPLITS]
    table.add_row("all", "", *map(str, n), str(sum(n)), "", style="bold")
    table.add_row(
        "hours", "", *(f"{summary['hours'][s]:.3f}" for s in SPLITS), f"{summary['total_hours']:.3f}", ""
    )
    Console().print(table)


def _default_workers(size: str) -> int:
    # tiny: process start-up (~1 s per spawned worker) costs more than it saves.
    return 1 if size == "tiny" else max(1, min(2, os.cpu_count() or 1))


def make_synth_corpus(
    out: Path, seed: int = 0, size: str = "default", progress: bool = True, *, workers: int | None = None
) -> SynthSummary:
    """Generate the corpus into ``out`` and return its summary.

    Writes ``out/audio/<split>/<domain>/*.wav`` (16 kHz mono PCM_16), ``out/{train,valid,test}.jsonl``
    (audio paths relative to ``out``), ``out/summary.json`` and ``out/summary.md``. The manifests are
    written last and atomically, so a manifest never points at a clip that is missing. ``progress=False``
    is silent (no bar, no table). ``workers`` defaults to 2 processes (1 for ``tiny``); the output bytes
    do not depend on it.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs = _plan(seed, size)
    order = {_item_id(s): i for i, s in enumerate(specs)}
    rows: list[dict[str, Any]] = []
    stream = _iter_rows(out, seed, specs, workers or _default_workers(size))
    if progress:
        from rich.progress import track

        stream = track(stream, total=len(specs), description=f"synth {size}")
    for row in stream:
        problems = validate_record(row)
        if problems:
            raise RuntimeError(f"synth item {row['id']} is not a valid manifest record: {problems}")
        rows.append(row)
    rows.sort(key=lambda r: order[r["id"]])
    by_split = {s: [r for r in rows if r["id"].startswith(f"synth-{s}-")] for s in SPLITS}
    manifests: dict[str, Path] = {}
    for split, split_rows in by_split.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split_rows)
        manifests[split] = atomic_write_text(out / f"{split}.jsonl", text)
    stats = _summarize(by_split)
    summary = {
        "size": size,
        "seed": seed,
        "sample_rate": SR,
        "clips": {s: len(by_split[s]) for s in SPLITS},
        "total_clips": len(rows),
        "hours": stats["hours"],
        "total_hours": round(sum(stats["hours"].values()), 4),
        "counts": stats["counts"],
        "speakers": {s: sorted({r["speaker"] for r in by_split[s] if r["speaker"]}) for s in SPLITS},
        "chance": {t: spec["chance"] for t, spec in SYNTH_TASKS.items()},
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", _summary_md(summary))
    seconds = time.perf_counter() - start
    if progress:
        _print_table(summary, seconds)
    return SynthSummary(
        out=out,
        seed=seed,
        size=size,
        n_clips=len(rows),
        hours=summary["total_hours"],
        seconds=seconds,
        counts=stats["counts"],
        hours_per_split=stats["hours"],
        manifests=manifests,
    )
