"""Tests for the built-in synthetic corpus (``tiny`` size: ~150 clips, a few seconds per build)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from moeaudio.data import synth
from moeaudio.data.manifest import read_manifest
from moeaudio.data.synth import SPLITS, SYNTH_TASKS, make_synth_corpus
from moeaudio.data.tts import Voice

ROW_KEYS = [
    "id", "audio", "duration", "sample_rate", "domain", "task", "instruction", "target", "choices", "answer",
    "lang", "speaker", "meta",
]  # fmt: skip
EXPECTED_PAIRS = {(domain, task) for _, task, domain in synth._JOBS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_a")
    summary = make_synth_corpus(out, seed=0, size="tiny", progress=False)
    assert summary.n_clips == sum(len(_rows(out, s)) for s in SPLITS)
    return out


def _rows(root: Path, split: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_domain_and_task_in_every_split(corpus: Path) -> None:
    mcq_domains = {"speech", "music", "sound"}
    assert {d for d, t in EXPECTED_PAIRS if t == "mcq"} == mcq_domains
    for split in SPLITS:
        pairs = {(r["domain"], r["task"]) for r in _rows(corpus, split)}
        assert pairs == EXPECTED_PAIRS, split
        assert {r["domain"] for r in _rows(corpus, split)} == {"speech", "music", "sound", "mixed"}


def test_rows_parse_and_audio_matches_declaration(corpus: Path) -> None:
    for split in SPLITS:
        manifest = corpus / f"{split}.jsonl"
        assert len(read_manifest(manifest)) == len(_rows(corpus, split))  # the project validator accepts it
        for row in _rows(corpus, split):
            assert list(row) == ROW_KEYS
            path = manifest.parent / row["audio"]
            assert path.is_file() and not Path(row["audio"]).is_absolute()
            assert path.parts[-3:-1] == (split, row["domain"])
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert row["sample_rate"] == 16000
            assert abs(info.frames / info.samplerate - row["duration"]) < 1e-4
            assert 1.0 <= row["duration"] <= 4.0
            assert row["instruction"] and isinstance(row["meta"], dict)


def test_targets_are_honest_labels(corpus: Path) -> None:
    for split in SPLITS:
        for row in _rows(corpus, split):
            task, meta = row["task"], row["meta"]
            labels = SYNTH_TASKS[task]["labels"]
            if labels is not None:
                assert row["target"] in labels, row["id"]
            if task == "mcq":
                assert len(row["choices"]) == 4 and len(set(row["choices"])) == 4
                assert row["target"] in row["choices"]
                assert row["choices"]["ABCD".index(row["answer"])] == row["target"]
                assert {"category", "difficulty"} <= set(meta)
                for choice in row["choices"]:
                    assert choice in row["instruction"]
            else:
                assert row["choices"] is None and row["answer"] is None
            if task == "asr":
                assert row["target"] == meta["text"]
            if task == "gender":
                assert row["target"] == meta["gender"] == Voice(variant=meta["variant"]).gender
            if task == "speaking_rate":
                lo, hi = synth.RATE_WPM[row["target"]]
                assert lo <= meta["wpm"] <= hi
            if task in ("instrument", "chord", "tempo"):
                assert row["target"] == meta[task]
            if task == "chord":  # the chord task's roots; its notes are the quality's intervals above them
                assert meta["root_midi"] in synth.CHORD_TASK_ROOTS
                intervals = synth.CHORD_QUALITIES[row["target"]]
                assert meta["midi_notes"] == [meta["root_midi"] + i for i in intervals]
            if task == "sound":
                assert row["target"] == meta["event"]
            if row["domain"] == "mixed":
                assert meta["snr_db"] in synth.SNRS_DB and meta["background"] in ("music", "noise")
            has_voice = row["domain"] in ("speech", "mixed")
            assert (row["lang"] == "en") == has_voice and (row["speaker"] is not None) == has_voice


def test_no_held_out_speaker_in_train(corpus: Path) -> None:
    variants = {s: {r["meta"]["variant"] for r in _rows(corpus, s) if r["speaker"]} for s in SPLITS}
    assert variants["train"] and variants["test"]
    assert not variants["test"] & variants["train"]
    assert not variants["valid"] & variants["train"]
    pools = {
        s: set(synth.SPEAKER_VARIANTS[s]["male"]) | set(synth.SPEAKER_VARIANTS[s]["female"]) for s in SPLITS
    }
    assert not pools["test"] & pools["train"] and not pools["valid"] & pools["train"]
    for split, used in variants.items():
        assert used <= pools[split]


def test_every_class_present_in_train(corpus: Path) -> None:
    rows = _rows(corpus, "train")
    for task, spec in SYNTH_TASKS.items():
        if spec["labels"] is None:
            continue
        counts = {
            label: sum(r["target"] == label for r in rows if r["task"] == task) for label in spec["labels"]
        }
        assert min(counts.values()) >= 1, (task, counts)
        assert max(counts.values()) <= 2 * min(counts.values()) + 1, (task, counts)
    categories = {r["meta"]["category"] for r in rows if r["task"] == "mcq"}
    assert categories == {c for cs in synth._MCQ_CATEGORIES.values() for c in cs}


def test_summary_files(corpus: Path) -> None:
    summary = json.loads((corpus / "summary.json").read_text())
    for split in SPLITS:
        n = sum(sum(tasks.values()) for tasks in summary["counts"][split].values())
        assert n == summary["clips"][split] == len(_rows(corpus, split))
    assert summary["total_hours"] > 0
    assert "| speech | asr |" in (corpus / "summary.md").read_text()


def test_same_seed_is_byte_identical_even_with_two_workers(corpus: Path, tmp_path: Path) -> None:
    make_synth_corpus(tmp_path, seed=0, size="tiny", progress=False, workers=2)
    first, second = _all_files(corpus), _all_files(tmp_path)
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)


def test_different_seed_gives_different_audio(corpus: Path, tmp_path: Path) -> None:
    # A handful of items is enough (a whole second corpus would double the test time).
    specs = [s for s in synth._plan(1, "tiny") if s.index == 0 and s.split == "train"]
    changed = 0
    for spec in specs:
        row = synth._build_item((str(tmp_path), 1, spec))
        changed += (tmp_path / row["audio"]).read_bytes() != (corpus / row["audio"]).read_bytes()
    assert changed == len(specs)


def test_unknown_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown size"):
        make_synth_corpus(tmp_path, size="huge", progress=False)


def test_spoken_form_reads_digit_strings_as_a_list() -> None:
    assert synth.spoken_form("four eight six", "digits") == "four, eight, six"
    assert synth.spoken_form("turn the volume up", "command") == "turn the volume up"
    assert synth.spoken_form("the big cat likes the dog", "sentence") == "the big cat likes the dog"


def test_speech_rows_record_the_word_gap(corpus: Path) -> None:
    rows = [r for r in _rows(corpus, "train") if r["domain"] == "speech"]
    assert rows and all(r["meta"]["word_gap_ms"] == 10 * synth.WORD_GAP for r in rows)
