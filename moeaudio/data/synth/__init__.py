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
* MMAU-style multiple-choice questions over the three single-domain kinds of audio;
* for a pretrained LLM behind the adapter (size ``smol`` only): spoken questions whose answer needs the
  LLM's knowledge (task ``spoken_qa``, a CPU-scale twin of VoiceBench's MMSU / OpenBookQA: "What is the
  opposite of hot?" spoken, four text options) and open-vocabulary speech (WordNet 3.0's example
  sentences read aloud; task ``asr`` with ``meta.vocab == "open"``).

Sizes (clips per job in :data:`SIZES`; valid and test each get 10 %, at least ``HELD_OUT_MIN``):
``tiny`` (~150 clips, for tests), ``small``, ``default`` (the quickstart's, 3,300 clips) and ``smol``
(``default`` plus 1,499 / 188 / 188 spoken questions and 12,000 / 250 / 250 open-vocabulary sentences for
train / valid / test; its other clips are byte-identical to ``default``'s). Only ``smol`` has the
spoken-question and open-vocabulary jobs, so the other sizes are unchanged by them. Held-out spoken
questions and sentences are disjoint from train's (split by a stable hash of their text), and held-out
voices are too (every speech job: :data:`SPEAKER_VARIANTS`).

Labels are honest by construction: they are the parameters the audio was made from (the variant's
gender line, the words-per-minute we set, the chord intervals we played), never a guess about the audio.

Determinism: every item draws from its own ``Generator(PCG64(SeedSequence(seed, spawn_key=...)))``
keyed by (split, job, index), so the bytes of an item do not depend on the order items are made in, on
the number of worker processes, or on the other sizes. The same seed gives byte-identical wavs and
manifests; the splits use independent streams.

Layout (one job per module): :mod:`~moeaudio.data.synth.labels` (task and label vocabularies, jobs,
sizes; registers the tasks in :data:`moeaudio.data.tasks.TASK_REGISTRY`), :mod:`~moeaudio.data.synth.dsp`
(filters, noise, envelopes, fades, normalisation), :mod:`~moeaudio.data.synth.music`,
:mod:`~moeaudio.data.synth.sounds`, :mod:`~moeaudio.data.synth.speech`, :mod:`~moeaudio.data.synth.mcq`
(the generators), :mod:`~moeaudio.data.synth.spoken_qa` and :mod:`~moeaudio.data.synth.open_asr` (the
``smol`` jobs: question bank, WordNet sentences), :mod:`~moeaudio.data.synth.items` (the item records) and
:mod:`~moeaudio.data.synth.corpus` (per-item streams, planning, writing clips and manifests). This
package re-exports their names, so ``from moeaudio.data.synth import ...`` works as it always did.
"""

# Names outside ``__all__`` are re-exported (``X as X``) for callers and tests that reach past it
# (``synth._plan``, ``synth.RATE_WPM``, ``from moeaudio.data.synth import spoken_form``).
from moeaudio.data.synth.corpus import (
    SNRS_DB as SNRS_DB,
)
from moeaudio.data.synth.corpus import (
    SynthSummary,
    make_synth_corpus,
)
from moeaudio.data.synth.corpus import (
    _build_item as _build_item,
)
from moeaudio.data.synth.corpus import (
    _item_id as _item_id,
)
from moeaudio.data.synth.corpus import (
    _item_rng as _item_rng,
)
from moeaudio.data.synth.corpus import (
    _json_safe as _json_safe,
)
from moeaudio.data.synth.corpus import (
    _make as _make,
)
from moeaudio.data.synth.corpus import (
    _plan as _plan,
)
from moeaudio.data.synth.corpus import (
    _split_counts as _split_counts,
)
from moeaudio.data.synth.dsp import (
    SR as SR,
)
from moeaudio.data.synth.items import (
    _Made as _Made,
)
from moeaudio.data.synth.items import (
    _Spec as _Spec,
)
from moeaudio.data.synth.labels import (
    _JOB_INDEX as _JOB_INDEX,
)
from moeaudio.data.synth.labels import (
    _JOBS as _JOBS,
)
from moeaudio.data.synth.labels import (
    _LLM_JOBS as _LLM_JOBS,
)
from moeaudio.data.synth.labels import (
    ALL_TASKS as ALL_TASKS,
)
from moeaudio.data.synth.labels import (
    CHORD_QUALITIES,
    INSTRUMENTS,
    INTENTS,
    SIZES,
    SOUND_CLASSES,
    SPLITS,
    SYNTH_TASKS,
)
from moeaudio.data.synth.labels import (
    HELD_OUT_MIN as HELD_OUT_MIN,
)
from moeaudio.data.synth.labels import (
    LLM_TASKS as LLM_TASKS,
)
from moeaudio.data.synth.labels import (
    RATE_WPM as RATE_WPM,
)
from moeaudio.data.synth.labels import (
    TEMPO_BPM as TEMPO_BPM,
)
from moeaudio.data.synth.mcq import (
    _MCQ_CATEGORIES as _MCQ_CATEGORIES,
)
from moeaudio.data.synth.music import (
    CHORD_TASK_ROOTS as CHORD_TASK_ROOTS,
)
from moeaudio.data.synth.music import (
    _render_music as _render_music,
)
from moeaudio.data.synth.open_asr import (
    load_sentences as load_sentences,
)
from moeaudio.data.synth.open_asr import (
    sentence_pool as sentence_pool,
)
from moeaudio.data.synth.sounds import (
    NOISE_TYPES as NOISE_TYPES,
)
from moeaudio.data.synth.sounds import (
    _render_noise as _render_noise,
)
from moeaudio.data.synth.sounds import (
    _render_sound as _render_sound,
)
from moeaudio.data.synth.speech import (
    BASE_VOICES as BASE_VOICES,
)
from moeaudio.data.synth.speech import (
    DIGITS as DIGITS,
)
from moeaudio.data.synth.speech import (
    SPEAKER_VARIANTS,
)
from moeaudio.data.synth.speech import (
    WORD_GAP as WORD_GAP,
)
from moeaudio.data.synth.speech import (
    _speak as _speak,
)
from moeaudio.data.synth.speech import (
    _speech_kind as _speech_kind,
)
from moeaudio.data.synth.speech import (
    _text as _text,
)
from moeaudio.data.synth.speech import (
    spoken_form as spoken_form,
)
from moeaudio.data.synth.spoken_qa import (
    question_bank as question_bank,
)

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
