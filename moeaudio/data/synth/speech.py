"""Speech: the texts (intent commands, digit strings, short sentences from a fixed word list), the
voices (two English accents x eSpeak NG voice variants, pitch and rate varied) and speaking them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from moeaudio.data.synth.dsp import SR
from moeaudio.data.synth.labels import INTENTS, RATE_WPM
from moeaudio.data.tts import Voice, synthesize

_MIN_S, _MAX_S = 1.0, 4.0

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


@dataclass(frozen=True)
class VoiceRange:
    """Where a job's voices are drawn from: base voices (eSpeak name -> accent label), words per minute
    and pitch (eSpeak's 0-99). The default is what every job has always drawn."""

    bases: tuple[tuple[str, str], ...] = tuple(BASE_VOICES.items())
    wpm: tuple[int, int] = (120, 240)
    pitch: tuple[int, int] = (30, 71)


DEFAULT_VOICES = VoiceRange()


def _pick_voice(
    rng: np.random.Generator,
    split: str,
    gender: str | None = None,
    rate: str | None = None,
    voices: VoiceRange = DEFAULT_VOICES,
) -> tuple[Voice, dict[str, Any]]:
    """A split-local voice: accent, variant of the requested (or a random) gender, pitch and wpm."""
    gender = gender or str(rng.choice(["male", "female"]))
    variant = str(rng.choice(SPEAKER_VARIANTS[split][gender]))
    accents = dict(voices.bases)
    base = str(rng.choice(list(accents)))
    wpm = int(rng.integers(*RATE_WPM[rate])) if rate else int(rng.integers(*voices.wpm))
    voice = Voice(
        name=base, variant=variant, rate=wpm, pitch=int(rng.integers(*voices.pitch)), word_gap=WORD_GAP
    )
    if voice.gender != gender:  # SPEAKER_VARIANTS must agree with the variant files; never mislabel.
        raise RuntimeError(f"variant {variant!r} is {voice.gender}, listed as {gender}")
    meta = {"voice": voice.espeak_name, "accent": accents[base], "variant": variant, "gender": voice.gender,
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


#: Draws a transcript and its meta from an item's stream (the default is :func:`_text` of ``kind``).
TextFn = Callable[[np.random.Generator], tuple[str, dict[str, Any]]]


def _speak(
    rng: np.random.Generator,
    split: str,
    kind: str,
    gender: str | None = None,
    rate: str | None = None,
    *,
    text_fn: TextFn | None = None,
    max_s: float = _MAX_S,
    voices: VoiceRange = DEFAULT_VOICES,
) -> tuple[np.ndarray, str, Voice, dict[str, Any]]:
    """Synthesise a padded utterance of ``kind`` that fits in 1-``max_s`` s (re-drawing the text if too long).

    ``text_fn`` replaces the built-in texts (the spoken questions and WordNet sentences of the ``smol``
    jobs); the utterance is then the text itself (``kind`` other than ``digits``). Without it, the random
    draws are exactly those the corpus has always made.
    """
    voice, vmeta = _pick_voice(rng, split, gender, rate, voices)
    for _ in range(8):
        text, tmeta = text_fn(rng) if text_fn else _text(rng, kind)
        speech, _ = synthesize(spoken_form(text, kind), voice, sample_rate=SR)
        audio = _pad_speech(rng, speech)
        if len(audio) <= int(max_s * SR):
            return audio, text, voice, {**vmeta, **tmeta, "text": text}
    raise RuntimeError(f"could not fit an utterance in {max_s} s with voice {voice}")


def _speech_kind(rng: np.random.Generator) -> str:
    return str(rng.choice(["command", "digits", "sentence"], p=[0.4, 0.3, 0.3]))
