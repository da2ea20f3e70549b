"""Task and label vocabularies of the synthetic corpus: what each task asks, its closed label set, and
the generation jobs and sizes.

Why a module of its own: these tables are facts the rest of the project needs without generating any
audio (the evaluator's label sets and chance levels, the size table). Importing it registers the
corpus's tasks in :data:`moeaudio.data.tasks.TASK_REGISTRY`; that is how the evaluator learns them
without importing the synth package itself.

The label tables double as generation parameters (``RATE_WPM`` maps a speaking-rate class to the
words-per-minute range we hand eSpeak, ``CHORD_QUALITIES`` a quality to the intervals we play), which
is what makes the labels honest by construction.
"""

from __future__ import annotations

from typing import Any

from moeaudio.data.tasks import TaskInfo, TaskKind, register_task

SPLITS: tuple[str, ...] = ("train", "valid", "test")

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
#: Tasks only the sizes for a pretrained LLM (``smol``) generate: they need knowledge a small LLM trained
#: from scratch does not have. Kept apart from :data:`SYNTH_TASKS`, which lists the tasks every size has
#: (the quickstart validates each of those). Same keys as there.
LLM_TASKS: dict[str, dict[str, Any]] = {
    "spoken_qa": {
        "instruction": "Answer the spoken question.\n<A. .. D. options>\n" + _MCQ_SUFFIX,
        "labels": None,
        "n_choices": 4,
        "domain": "speech",
        "domains": ("speech",),
    },
}
#: Every task the corpus can generate: :data:`SYNTH_TASKS`, then :data:`LLM_TASKS`.
ALL_TASKS: dict[str, dict[str, Any]] = {**SYNTH_TASKS, **LLM_TASKS}
for _spec in ALL_TASKS.values():
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
#: The jobs of :data:`LLM_TASKS` and the open-vocabulary ASR, generated by the ``smol`` size only:
#: spoken questions (:mod:`~moeaudio.data.synth.spoken_qa`) and WordNet example sentences
#: (:mod:`~moeaudio.data.synth.open_asr`, ``meta.vocab == "open"``). Not in :data:`_JOBS`, whose every
#: job each size generates.
_LLM_JOBS: tuple[tuple[str, str, str], ...] = (
    ("speech_qa", "spoken_qa", "speech"),
    ("speech_open_asr", "asr", "speech"),
)
#: The ``hard`` size's own jobs (:mod:`~moeaudio.data.synth.hard`): the saturated tasks of
#: :data:`_JOBS` (``intent``, ``gender``, ``instrument``, ``sound``, ``mcq``) with harder audio. Same
#: task ids and label sets; only ``hard`` generates them.
HARD_JOBS: tuple[tuple[str, str, str], ...] = (
    ("hard_speech_intent", "intent", "speech"),
    ("hard_speech_gender", "gender", "speech"),
    ("hard_music_instrument", "instrument", "music"),
    ("hard_sound_event", "sound", "sound"),
    ("hard_mcq_speech", "mcq", "speech"),
    ("hard_mcq_music", "mcq", "music"),
    ("hard_mcq_sound", "mcq", "sound"),
)
#: Question categories of the hard multiple-choice jobs (the planner balances them like class labels).
HARD_JOB_LABELS: dict[str, tuple[str, ...]] = {
    "hard_mcq_speech": ("first_noun", "last_digit", "digit_count"),
    "hard_mcq_music": ("first_instrument", "last_instrument", "instrument_count"),
    "hard_mcq_sound": ("first_sound", "last_sound", "sound_count"),
}
_JOB_INDEX = {name: (task, domain) for name, task, domain in (*_JOBS, *_LLM_JOBS, *HARD_JOBS)}

#: Clips per job: train gets 80 % of the number; valid and test each get max(2, 10 %, HELD_OUT_MIN).
#: ``smol`` (for a pretrained LLM such as SmolLM2-135M-Instruct behind the adapter) is ``default`` plus
#: the :data:`_LLM_JOBS`: 1,499 / 188 / 188 spoken questions and 12,000 / 250 / 250 open-vocabulary
#: sentences (train / valid / test). Its clips of the other jobs are byte-identical to ``default``'s
#: (same counts, same held-out floor, per-item streams), so the two sizes differ only by the new jobs.
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
SIZES["smol"] = {**SIZES["default"], "speech_qa": 1875, "speech_open_asr": 12500}
#: Split sizes that do not follow the 80/10/10 rule, per (size, job). ``smol``'s open-vocabulary speech:
#: 12,000 training clips (about 9 h; 2,000 were too few for the adapter to learn to spell the LLM's
#: tokens: its alignment overfitted after ~1.6 epochs), held-out splits kept at the 250 clips each that
#: earlier measurements used. Items are drawn per index, so clips 0-1,999 of train are those of before.
SPLIT_COUNTS: dict[tuple[str, str], dict[str, int]] = {
    ("smol", "speech_open_asr"): {"train": 12000, "valid": 250, "test": 250},
}
#: ``hard``: the studies' corpus. The unsaturated jobs of ``default`` (same clips for the same ids) and
#: :data:`HARD_JOBS` in place of the saturated ones; at least 200 test clips per job
#: (:data:`TEST_MIN`), so one item is half a point and a task's accuracy has a standard error <= 0.035.
SIZES["hard"] = {
    "speech_asr": 400,
    "hard_speech_intent": 400,
    "hard_speech_gender": 250,
    "speech_rate": 200,
    "hard_music_instrument": 400,
    "music_chord": 250,
    "music_tempo": 200,
    "hard_sound_event": 500,
    "mixed_asr": 150,
    "mixed_background": 150,
    "hard_mcq_speech": 300,
    "hard_mcq_music": 300,
    "hard_mcq_sound": 300,
}

#: Held-out clips per job and split, at least. Why 50 for the default size: with 15-25 items a
#: task's accuracy has a standard error of ~0.1, too coarse to say "above chance"; with 50, ~0.07.
HELD_OUT_MIN: dict[str, int] = {"tiny": 0, "small": 0, "default": 50, "smol": 50, "hard": 50}
#: Test clips per job, at least, where more than :data:`HELD_OUT_MIN` (only the test split grows:
#: validation during training stays as cheap as the default's).
TEST_MIN: dict[str, int] = {"hard": 200}


def _register() -> None:
    """Add every synth task to the shared task registry (preparer ``synth``)."""
    for name, spec in ALL_TASKS.items():
        kind: TaskKind = "asr" if name == "asr" else "mcq" if "n_choices" in spec else "classification"
        register_task(
            TaskInfo(
                name=name,
                kind=kind,
                instruction=spec["instruction"],
                labels=tuple(spec["labels"]) if spec["labels"] else None,
                domain=spec["domain"],
                preparers=("synth",),
            )
        )


_register()
