"""The ``hard`` size's jobs: the saturated tasks made hard enough to tell two adapters apart.

Why: on the ``default`` corpus both adapters of Table 1 score 1.00 on ``sound`` and ``instrument`` and
0.97-0.99 on ``intent``, so those columns cannot tell any two arms apart. The ``hard`` size keeps the
task ids and label sets (so eval, the studies' columns and chance levels are unchanged) and makes each
item harder in ways a listener would also find harder:

* ``intent`` and ``gender``: the utterance mixed into coloured noise at a low SNR (-5 to +10 dB, speech
  active RMS over noise RMS);
* ``instrument``: the labelled instrument plays its chords while a second, different instrument plays
  another chord 4-10 dB softer (instruments in chords), over noise at 5-20 dB SNR; the label is the
  louder one and the instruction says so;
* ``sound``: the labelled event overlaps a second event of another class 4-10 dB softer (overlapping
  events), over noise at 0-10 dB SNR; the label is the louder one;
* multiple-choice questions that need more than one step: which sound (instrument, noun) came first
  or last (the other ones heard are among the options), how many different sounds (instruments)
  followed each other, what the last digit said was, how many digits were said, over noise.

Labels stay honest: they are the parameters the audio was made from (which generator was mixed on
top, in what order, how many), and every level is set, never guessed. Loudness compares active RMS
(:func:`~moeaudio.data.synth.dsp._active_rms`: pauses do not dilute a sparse event).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moeaudio.data.synth.dsp import SR, _active_rms, _colored_noise, _fade
from moeaudio.data.synth.items import _Made, _Spec
from moeaudio.data.synth.labels import (
    _MCQ_SUFFIX,
    CHORD_QUALITIES,
    HARD_JOB_LABELS,
    HARD_JOBS,
    INSTRUMENTS,
    INTENTS,
    SOUND_CLASSES,
    SYNTH_TASKS,
    TEMPO_BPM,
)
from moeaudio.data.synth.music import _render_music
from moeaudio.data.synth.sounds import _render_sound
from moeaudio.data.synth.speech import _ADJECTIVES, _NOUNS, _VERBS, _pad_speech, _pick_voice, _speak
from moeaudio.data.tasks import format_choices
from moeaudio.data.tts import synthesize

__all__ = ["HARD_JOB_LABELS", "HARD_JOBS", "make_hard"]

SPEECH_SNRS_DB: tuple[int, ...] = (-5, 0, 5, 10)
MUSIC_SNRS_DB: tuple[int, ...] = (5, 10, 15, 20)
SOUND_SNRS_DB: tuple[int, ...] = (0, 5, 10)
MCQ_SNRS_DB: tuple[int, ...] = (5, 10, 15)
#: How much softer the second instrument or event is than the labelled one (dB, active RMS).
SECOND_SOURCE_DB: tuple[float, float] = (4.0, 10.0)
NOISE_COLOURS: dict[str, float] = {"white": 0.0, "pink": 1.0, "brown": 2.0}

_LOUDER_INSTRUMENT = "Two instruments play at once. Which one is louder? Answer with one word."
_LOUDER_SOUND = "Two sounds overlap over noise. Which one is louder? Answer with the sound class only."


# --------------------------------------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------------------------------------


def _scaled(x: np.ndarray, reference: np.ndarray, below_db: float) -> np.ndarray:
    """``x`` scaled so its active RMS is ``below_db`` under ``reference``'s."""
    rx = _active_rms(x)
    return x if rx <= 0 else x * (_active_rms(reference) / rx) * 10 ** (-below_db / 20.0)


def _add_noise(
    rng: np.random.Generator, x: np.ndarray, snrs: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, Any]]:
    """``x`` over coloured noise at an SNR drawn from ``snrs`` (signal active RMS / noise RMS)."""
    colour = str(rng.choice(list(NOISE_COLOURS)))
    snr = int(rng.choice(snrs))
    noise = _fade(_colored_noise(rng, len(x), NOISE_COLOURS[colour]), 0.02)
    noise_rms = float(np.sqrt(np.mean(noise**2))) + 1e-12
    mixed = x + noise * (_active_rms(x) / noise_rms) * 10 ** (-snr / 20.0)
    return mixed, {"noise": colour, "snr_db": snr, "snr_ref": "signal active RMS / noise RMS"}


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x, (0, max(0, n - len(x))))[:n]


# --------------------------------------------------------------------------------------------------------
# Classification jobs
# --------------------------------------------------------------------------------------------------------


def _speech_in_noise(rng: np.random.Generator, spec: _Spec, task: str) -> _Made:
    if task == "intent":
        voice, vmeta = _pick_voice(rng, spec.split)
        text = str(rng.choice(INTENTS[spec.label]))
        speech = _pad_speech(rng, synthesize(text, voice, sample_rate=SR)[0])
        meta: dict[str, Any] = {**vmeta, "text": text, "text_kind": "command", "intent": spec.label}
        speaker = vmeta["voice"]
    else:
        speech, _, _, meta = _speak(rng, spec.split, str(rng.choice(["command", "sentence"])), spec.label)
        speaker = meta["voice"]
    mixed, nmeta = _add_noise(rng, np.asarray(speech, dtype=np.float64), SPEECH_SNRS_DB)
    return _Made(mixed, spec.label, {**meta, **nmeta}, speaker=speaker, lang="en")


def _instrument_pair(rng: np.random.Generator, spec: _Spec) -> _Made:
    """The labelled instrument's chords with a second instrument's other chord softer underneath."""
    lead = spec.label
    second = str(rng.choice([i for i in INSTRUMENTS if i != lead]))
    duration = rng.uniform(2.0, 4.0)
    n = int(duration * SR)
    qualities = list(CHORD_QUALITIES)
    tempo = str(rng.choice(list(TEMPO_BPM)))
    a, ameta = _render_music(rng, lead, str(rng.choice(qualities)), tempo, duration)
    b, bmeta = _render_music(
        rng, second, str(rng.choice(qualities)), str(rng.choice(list(TEMPO_BPM))), duration
    )
    a, b = _fit(a, n), _fit(b, n)
    below = float(rng.uniform(*SECOND_SOURCE_DB))
    mixed, nmeta = _add_noise(rng, a + _scaled(b, a, below), MUSIC_SNRS_DB)
    meta = {
        **ameta,
        "second_instrument": second,
        "second_chord": bmeta["chord"],
        "second_below_db": below,
        **nmeta,
    }
    return _Made(mixed, lead, meta, instruction=_LOUDER_INSTRUMENT)


def _overlapping_sounds(rng: np.random.Generator, spec: _Spec) -> _Made:
    """The labelled event over a second event of another class (softer, starting anywhere), over noise."""
    label = spec.label
    second = str(rng.choice([c for c in SOUND_CLASSES if c != label]))
    duration = rng.uniform(2.0, 4.0)
    n = int(duration * SR)
    a, ameta = _render_sound(rng, label, duration)
    other_s = rng.uniform(1.0, duration)
    b, _ = _render_sound(rng, second, other_s)
    start = int(rng.uniform(0.0, duration - other_s) * SR)
    placed = np.zeros(n)
    placed[start : start + len(b)] = b[: n - start]
    a = _fit(a, n)
    below = float(rng.uniform(*SECOND_SOURCE_DB))
    mixed, nmeta = _add_noise(rng, a + _scaled(placed, a, below), SOUND_SNRS_DB)
    meta = {**ameta, "second_event": second, "second_below_db": below, "second_start_s": start / SR, **nmeta}
    return _Made(mixed, label, meta, instruction=_LOUDER_SOUND)


# --------------------------------------------------------------------------------------------------------
# Multi-step multiple-choice jobs
# --------------------------------------------------------------------------------------------------------


def _options(rng: np.random.Generator, answer: str, heard: list[str], pool: list[str]) -> list[str]:
    """The answer, then the other things heard (the trap of a one-step listener), then others; shuffled."""
    distract = [h for h in dict.fromkeys(heard) if h != answer][:3]
    rest = [p for p in pool if p != answer and p not in distract]
    distract += [str(x) for x in rng.choice(rest, size=3 - len(distract), replace=False)]
    opts = [answer, *distract]
    return [opts[i] for i in rng.permutation(4)]


def _sequence(
    rng: np.random.Generator, parts: list[np.ndarray], gap: tuple[float, float] = (0.1, 0.3)
) -> np.ndarray:
    """Parts one after another with short silences between them."""
    out: list[np.ndarray] = []
    for k, p in enumerate(parts):
        if k:
            out.append(np.zeros(int(rng.uniform(*gap) * SR)))
        out.append(_fade(np.asarray(p, dtype=np.float64) / (np.max(np.abs(p)) + 1e-9), 0.01))
    return np.concatenate(out)


_COUNTS = ["1", "2", "3", "4"]


def _mcq_sound_hard(
    rng: np.random.Generator, category: str
) -> tuple[np.ndarray, dict[str, Any], str, str, list[str]]:
    n_events = int(rng.integers(1, 5)) if category == "sound_count" else int(rng.integers(2, 4))
    events = [str(x) for x in rng.choice(SOUND_CLASSES, size=n_events, replace=False)]
    each = 0.75 if n_events == 4 else rng.uniform(0.8, 1.2)
    audio = _sequence(rng, [_render_sound(rng, e, each)[0] for e in events])
    text, answer, options = _order_question(
        rng, category, events, list(SOUND_CLASSES),
        "How many different sounds are heard, one after another?",
        "Several sounds follow each other. Which sound comes {which}?",
    )  # fmt: skip
    return audio, {"events": events}, text, answer, options


def _mcq_music_hard(
    rng: np.random.Generator, category: str
) -> tuple[np.ndarray, dict[str, Any], str, str, list[str]]:
    n_inst = int(rng.integers(1, 4)) if category == "instrument_count" else int(rng.integers(2, 4))
    instruments = [str(x) for x in rng.choice(INSTRUMENTS, size=n_inst, replace=False)]
    each = rng.uniform(1.0, 1.3)
    parts = [
        _render_music(rng, inst, str(rng.choice(list(CHORD_QUALITIES))), "fast", each)[0]
        for inst in instruments
    ]
    audio = _sequence(rng, parts)
    text, answer, options = _order_question(
        rng, category, instruments, list(INSTRUMENTS),
        "How many different instruments play, one after another?",
        "Instruments play one after another. Which instrument plays {which}?",
    )  # fmt: skip
    return audio, {"instruments": instruments}, text, answer, options


def _order_question(
    rng: np.random.Generator,
    category: str,
    heard: list[str],
    pool: list[str],
    count_text: str,
    which_text: str,
) -> tuple[str, str, list[str]]:
    """A question about a sequence heard: how many (``*_count``), or which came first / last; its
    text, answer and options (distractors from the other items heard, then the pool)."""
    if category.endswith("_count"):
        answer = str(len(heard))
        return count_text, answer, _options(rng, answer, [], _COUNTS)
    which, answer = ("first", heard[0]) if category.startswith("first_") else ("last", heard[-1])
    return which_text.format(which=which), answer, _options(rng, answer, heard, pool)


def _two_noun_sentence(rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    adj, verb = str(rng.choice(_ADJECTIVES)), str(rng.choice(_VERBS))
    n1, n2 = (str(x) for x in rng.choice(_NOUNS, size=2, replace=False))
    return f"the {adj} {n1} {verb} the {n2}", {"text_kind": "sentence", "nouns": [n1, n2]}


def _mcq_speech_hard(
    rng: np.random.Generator, spec: _Spec, category: str
) -> tuple[np.ndarray, dict[str, Any], str, str, list[str]]:
    if category == "first_noun":
        audio, _, _, meta = _speak(rng, spec.split, "sentence", text_fn=_two_noun_sentence)
        answer = meta["nouns"][0]
        text = "Which of these things does the speaker name first?"
        return audio, meta, text, answer, _options(rng, answer, meta["nouns"], list(_NOUNS))
    audio, _, _, meta = _speak(rng, spec.split, "digits")
    digits = meta["text"].split()
    if category == "last_digit":
        answer = digits[-1]
        text = "What is the last digit the speaker says?"
        return audio, meta, text, answer, _options(rng, answer, digits, [str(d) for d in _DIGIT_WORDS])
    answer = str(len(digits))
    text = "How many digits does the speaker say?"
    return audio, meta, text, answer, _options(rng, answer, [], ["2", "3", "4", "5", "6"])


_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _mcq_hard(rng: np.random.Generator, spec: _Spec, domain: str) -> _Made:
    """A multi-step question; ``answer`` is the option letter, ``target`` the option text (as ``mcq``)."""
    category = spec.label
    assert category is not None
    if domain == "sound":
        audio, meta, text, answer, choices = _mcq_sound_hard(rng, category)
        speaker = None
    elif domain == "music":
        audio, meta, text, answer, choices = _mcq_music_hard(rng, category)
        speaker = None
    else:
        audio, meta, text, answer, choices = _mcq_speech_hard(rng, spec, category)
        speaker = meta["voice"]
    mixed, nmeta = _add_noise(rng, np.asarray(audio, dtype=np.float64), MCQ_SNRS_DB)
    made = _Made(
        mixed, answer, {"category": category, "difficulty": "hard", "question": text, **meta, **nmeta}
    )
    made.instruction = f"{text}\n{format_choices(choices)}\n{_MCQ_SUFFIX}"
    made.choices = choices
    made.answer = "ABCD"[choices.index(answer)]
    made.speaker = speaker
    made.lang = "en" if speaker else None
    return made


def make_hard(rng: np.random.Generator, spec: _Spec, task: str, domain: str) -> _Made:
    """One item of a hard job (:data:`HARD_JOBS`)."""
    if task == "mcq":
        return _mcq_hard(rng, spec, domain)
    if task in ("intent", "gender"):
        return _speech_in_noise(rng, spec, task)
    if task == "instrument":
        return _instrument_pair(rng, spec)
    if task == "sound":
        return _overlapping_sounds(rng, spec)
    raise ValueError(f"no hard generator for task {task!r} ({sorted(SYNTH_TASKS)})")
