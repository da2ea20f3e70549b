"""The ``smol`` size's jobs: spoken questions (``speech_qa``) and open-vocabulary speech (``speech_open_asr``).

Fast: a handful of items per job through the per-item builder (the same code the corpus runs), plus the
question bank and the sentence file, which need no audio. That the other sizes stay byte-identical was
checked by hand against the previous code (every file of ``tiny``, and ``default``); here we only assert
that they have no clips of the new jobs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from moeaudio.data import synth
from moeaudio.data.manifest import item_from_dict, validate_record
from moeaudio.data.options import PrepareOptions
from moeaudio.data.synth import spoken_qa
from moeaudio.data.synth.corpus import _item_rng
from moeaudio.data.synth.open_asr import SENTENCE_SPLIT_PERCENT
from moeaudio.data.tasks import TASK_REGISTRY, format_choices, item_prompt, split_choices

REPO = Path(__file__).resolve().parent.parent
NEW_JOBS = {name for name, _, _ in synth._LLM_JOBS}
HELD_OUT = ("valid", "test")


def _specs(job: str, per_split: int = 3, seed: int = 0) -> list[synth._Spec]:
    specs = synth._plan(seed, "smol", jobs=[job])
    return [s for s in specs if s.index < per_split]


def _build(out: Path, job: str, seed: int = 0, per_split: int = 3) -> list[dict[str, Any]]:
    return [synth._build_item((str(out), seed, spec)) for spec in _specs(job, per_split, seed)]


@pytest.fixture(scope="module")
def qa_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("qa")
    return out, _build(out, "speech_qa", per_split=4)


@pytest.fixture(scope="module")
def asr_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _build(tmp_path_factory.mktemp("open_asr"), "speech_open_asr", per_split=4)


# ---------------------------------------------------------------------------------------------- sizes


def test_only_smol_has_the_new_jobs() -> None:
    for size in ("tiny", "small", "default"):
        assert not NEW_JOBS & set(synth.SIZES[size]), size
        assert not {s.job for s in synth._plan(0, size)} & NEW_JOBS, size
    smol, default = synth.SIZES["smol"], synth.SIZES["default"]
    assert {job: n for job, n in smol.items() if job not in NEW_JOBS} == default
    counts = {job: synth._split_counts(smol[job], "smol", job) for job in NEW_JOBS}
    assert 1400 <= counts["speech_qa"]["train"] <= 1600
    assert min(counts["speech_qa"]["valid"], counts["speech_qa"]["test"]) >= 150
    assert counts["speech_open_asr"] == {"train": 12000, "valid": 250, "test": 250}
    for job in default:  # the existing jobs keep the default's held-out floor
        assert synth._split_counts(smol[job], "smol") == synth._split_counts(default[job], "default")


def test_task_registry_and_cli_help_know_the_new_task() -> None:
    info = TASK_REGISTRY["spoken_qa"]
    assert (info.kind, info.domain, info.preparers) == ("mcq", "speech", ("synth",))
    assert synth.ALL_TASKS["spoken_qa"]["chance"] == 0.25
    assert "spoken_qa" not in synth.SYNTH_TASKS  # SYNTH_TASKS: what every size (and the quickstart) has
    size = {f.name: f for f in dataclasses.fields(PrepareOptions)}["size"]
    assert "smol" in size.metadata["help"]


def test_jobs_subset_is_byte_identical_to_the_full_plan(tmp_path: Path) -> None:
    summary = synth.make_synth_corpus(
        tmp_path / "a", seed=0, size="tiny", progress=False, jobs=["music_tempo"]
    )
    rows = [r for split in synth.SPLITS for r in _read(summary.manifests[split])]
    assert rows and {r["meta"]["job"] for r in rows} == {"music_tempo"}
    full = [s for s in synth._plan(0, "tiny") if s.job == "music_tempo"]
    assert len(full) == len(rows)
    for spec, row in zip(full, rows, strict=True):
        again = synth._build_item((str(tmp_path / "b"), 0, spec))
        assert again == row
        assert (tmp_path / "b" / row["audio"]).read_bytes() == (tmp_path / "a" / row["audio"]).read_bytes()
    with pytest.raises(ValueError, match="no job"):
        synth.make_synth_corpus(tmp_path / "c", size="tiny", progress=False, jobs=["speech_qa"])


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------- spoken questions


def test_question_bank_is_large_varied_and_well_formed() -> None:
    bank = synth.question_bank()
    texts = [q.text for q in bank]
    assert len(texts) == len(set(texts)) >= 500
    assert len({q.template for q in bank}) >= 20 and len({q.family for q in bank}) >= 10
    for q in bank:
        assert q.text[0].isupper() and q.text.endswith("?"), q.text
        assert len(set(q.distractors) - set(q.answers)) >= 3, q.text
        assert not set(q.answers) & set(q.distractors), q.text


def test_held_out_questions_are_never_trained_on() -> None:
    pools = {s: {q.text for qs in spoken_qa.split_pool(s).values() for q in qs} for s in synth.SPLITS}
    assert all(len(pools[s]) >= 50 for s in HELD_OUT)
    assert not pools["train"] & pools["valid"] and not pools["train"] & pools["test"]
    assert not pools["valid"] & pools["test"]
    assert sum(map(len, pools.values())) == len(synth.question_bank())


def test_answer_positions_are_balanced_in_every_split() -> None:
    for split in synth.SPLITS:
        specs = [s for s in synth._plan(0, "smol", jobs=["speech_qa"]) if s.split == split]
        letters = Counter(s.label for s in specs)
        assert set(letters) == set("ABCD") and max(letters.values()) - min(letters.values()) <= 1, letters
    for position in range(4):
        _, answer, choices = spoken_qa.draw_question(
            _item_rng(0, "test", "speech_qa", position), "test", position
        )
        assert choices.index(answer) == position


def test_unplaced_answer_position_is_uniform() -> None:
    letters: Counter[str] = Counter()
    for i in range(2000):
        _, answer, choices = spoken_qa.draw_question(_item_rng(0, "train", "speech_qa", i), "train")
        assert len(set(choices)) == 4 and answer in choices
        letters["ABCD"[choices.index(answer)]] += 1
    assert set(letters) == set("ABCD")
    assert all(0.21 <= n / 2000 <= 0.29 for n in letters.values()), letters


def test_spoken_question_is_deterministic(qa_rows: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    out, rows = qa_rows
    again = _build(tmp_path, "speech_qa", per_split=4)
    assert again == rows  # text, choices, target, answer, meta
    for row in rows:
        assert (tmp_path / row["audio"]).read_bytes() == (out / row["audio"]).read_bytes()
    other = _build(tmp_path / "seed1", "speech_qa", seed=1, per_split=4)
    assert [r["meta"]["spoken_text"] for r in other] != [r["meta"]["spoken_text"] for r in rows]


def test_spoken_question_text_and_audio_forms_agree(qa_rows: tuple[Path, list[dict[str, Any]]]) -> None:
    _, rows = qa_rows
    assert {r["id"].split("-")[1] for r in rows} == set(synth.SPLITS)
    spec_label = {synth._item_id(s): s.label for s in _specs("speech_qa", per_split=4)}
    for row in rows:
        meta, choices = row["meta"], row["choices"]
        assert not validate_record(row)
        assert (row["task"], row["domain"], row["lang"]) == ("spoken_qa", "speech", "en")
        assert len(choices) == 4 and len(set(choices)) == 4
        assert row["target"] in choices and choices["ABCD".index(row["answer"])] == row["target"]
        assert row["answer"] == spec_label[row["id"]]  # the planner's balanced letter
        spoken = meta["spoken_text"]
        assert spoken == meta["text"]  # what eSpeak was asked to say
        assert meta["text_prompt"] == f"{spoken}\n{format_choices(choices)}"
        assert split_choices(meta["text_prompt"]) == (spoken, choices)  # how VoiceBench prompts parse
        # the audio item shows the same options, in the same order, and asks for the option's text
        prompt = item_prompt(item_from_dict(row))
        assert prompt == row["instruction"] and format_choices(choices) in prompt
        assert "spoken question" in prompt and "text of the correct option" in prompt
        assert spoken not in prompt  # the question itself is only in the audio
        pool = {q.text for qs in spoken_qa.split_pool(row["id"].split("-")[1]).values() for q in qs}
        assert spoken in pool
        assert 1.0 <= row["duration"] <= spoken_qa.SPOKEN_QA_MAX_S


# ------------------------------------------------------------------------------- open-vocabulary speech


def test_sentence_file_loads_and_is_clean() -> None:
    sentences = synth.load_sentences()
    assert len(sentences) >= 5000
    assert list(sentences) == sorted(set(sentences))
    pattern = re.compile(r"[a-z']+(,? [a-z']+)*")
    for s in sentences:
        assert pattern.fullmatch(s), s
        assert 4 <= len(s.split()) <= 12, s
    licence = (REPO / "moeaudio" / "data" / "synth" / "WORDNET_LICENSE.txt").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in licence
    assert "wordnet-base" in licence and "extract_wordnet_sentences.py" in licence


def test_held_out_sentences_are_never_trained_on() -> None:
    pools = {s: set(synth.sentence_pool(s)) for s in synth.SPLITS}
    assert not pools["train"] & pools["valid"] and not pools["train"] & pools["test"]
    assert not pools["valid"] & pools["test"]
    total = len(synth.load_sentences())
    assert sum(map(len, pools.values())) == total
    for split, percent in SENTENCE_SPLIT_PERCENT.items():
        assert abs(len(pools[split]) / total - percent / 100) < 0.01, split


def test_open_vocabulary_items(asr_rows: list[dict[str, Any]], tmp_path: Path) -> None:
    variants = {s: set(synth.SPEAKER_VARIANTS[s]["male"]) | set(synth.SPEAKER_VARIANTS[s]["female"])
                for s in synth.SPLITS}  # fmt: skip
    for row in asr_rows:
        split = row["id"].split("-")[1]
        assert not validate_record(row)
        assert (row["task"], row["domain"], row["meta"]["vocab"]) == ("asr", "speech", "open")
        assert row["target"] == row["meta"]["text"] and row["target"] in synth.sentence_pool(split)
        assert row["instruction"] == synth.SYNTH_TASKS["asr"]["instruction"]
        assert row["choices"] is None and row["answer"] is None
        assert row["meta"]["variant"] in variants[split]  # held-out splits use held-out voices
    assert _build(tmp_path, "speech_open_asr", per_split=4) == asr_rows


def test_sentence_and_licence_files_ship_in_the_wheel(tmp_path: Path) -> None:
    """Built like tests/test_recipes.py builds its wheel (offline, from a copy of the sources, ~1 s)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("moeaudio", "recipes"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = "import sys; from setuptools.build_meta import build_wheel; print(build_wheel(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)], cwd=src, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheel = zipfile.ZipFile(tmp_path / proc.stdout.strip().splitlines()[-1])
    for name in ("wordnet_sentences.txt", "WORDNET_LICENSE.txt"):
        shipped = wheel.read(f"moeaudio/data/synth/{name}")
        assert shipped == (REPO / "moeaudio" / "data" / "synth" / name).read_bytes(), name
