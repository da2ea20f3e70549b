"""MMAU-style multiple-choice questions over the three single-domain kinds of audio.

Every answer is read off the parameters the audio was made from (the text we synthesised, the chord
we rendered, the number of knocks we placed), never guessed from the audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moeaudio.data.synth.items import _Made, _Spec
from moeaudio.data.synth.labels import (
    _MCQ_SUFFIX,
    CHORD_QUALITIES,
    INSTRUMENTS,
    INTENTS,
    SOUND_CLASSES,
    TEMPO_BPM,
)
from moeaudio.data.synth.music import _render_music
from moeaudio.data.synth.sounds import _render_sound
from moeaudio.data.synth.speech import _NOUNS, _speak
from moeaudio.data.tasks import format_choices


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
