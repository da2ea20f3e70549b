"""Open-vocabulary speech: eSpeak reading WordNet 3.0's example sentences (the ``speech_open_asr`` job).

Why: the other ASR jobs draw from a few dozen words, which a model can learn as a closed set; a
pretrained LLM behind the adapter should be tested on words it knows as text but has never heard from
this corpus. ``wordnet_sentences.txt`` (next to this module, shipped in the wheel) holds ~30,000 short
sentences extracted from WordNet 3.0 by ``scripts/extract_wordnet_sentences.py``: lower case, letters,
spaces, apostrophes and commas only, 4-12 words (licence and provenance: ``WORDNET_LICENSE.txt``).

Held-out sentences: each sentence's split is fixed by a stable hash of its text (SHA-256; 90 % train,
5 % valid, 5 % test), so no valid or test clip says a sentence a train clip says, whatever the seed.
Held-out voices come from :data:`~moeaudio.data.synth.speech.SPEAKER_VARIANTS`, as for every speech job:
valid and test use eSpeak variants that train never uses; the accents, rates and pitches are those of
:data:`OPEN_ASR_VOICES`.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib.resources import files
from typing import Any

import numpy as np

from moeaudio.data.synth.items import _Made, _Spec
from moeaudio.data.synth.speech import VoiceRange, _speak
from moeaudio.data.synth.spoken_qa import stable_split

SENTENCE_FILE = "wordnet_sentences.txt"
#: Percent of the sentences per split (by a stable hash of the sentence).
SENTENCE_SPLIT_PERCENT: dict[str, int] = {"train": 90, "valid": 5, "test": 5}
#: Longest clip (s): 12 words at the slowest rate with the word gap and padding stay well under it.
OPEN_ASR_MAX_S = 12.0
#: Voices of the open-vocabulary speech: eight of eSpeak's English accents (the other speech jobs use
#: two), a wider speaking rate and pitch. Why: a model meant for voices it has never heard (real
#: people) must not learn one accent's vowels; the held-out variants of every split still apply.
OPEN_ASR_VOICES = VoiceRange(
    bases=(
        ("en-us", "en-us"),
        ("en", "en-gb"),
        ("en-us-nyc", "en-us-nyc"),
        ("en-gb-x-rp", "en-gb-rp"),
        ("en-gb-scotland", "en-gb-scotland"),
        ("en-gb-x-gbclan", "en-gb-lancashire"),
        ("en-gb-x-gbcwmd", "en-gb-west-midlands"),
        ("en-029", "en-caribbean"),
    ),
    wpm=(110, 260),
    pitch=(20, 81),
)


@lru_cache(maxsize=1)
def load_sentences() -> tuple[str, ...]:
    """Every sentence of the shipped file, in file order (sorted)."""
    text = files("moeaudio.data.synth").joinpath(SENTENCE_FILE).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


@cache
def sentence_pool(split: str) -> tuple[str, ...]:
    """The sentences of ``split`` (stable-hash split of the sentence text)."""
    return tuple(s for s in load_sentences() if stable_split(s, SENTENCE_SPLIT_PERCENT) == split)


def _make_open_asr(rng: np.random.Generator, spec: _Spec) -> _Made:
    """One WordNet sentence of the item's split read by a voice of that split; the target is the sentence."""
    pool = sentence_pool(spec.split)

    def draw(r: np.random.Generator) -> tuple[str, dict[str, Any]]:
        return pool[int(r.integers(len(pool)))], {"text_kind": "wordnet", "vocab": "open"}

    audio, text, _, meta = _speak(
        rng, spec.split, "sentence", text_fn=draw, max_s=OPEN_ASR_MAX_S, voices=OPEN_ASR_VOICES
    )
    return _Made(audio, text, meta, speaker=meta["voice"], lang="en")
