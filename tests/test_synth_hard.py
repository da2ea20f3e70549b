"""The ``hard`` synthetic size (the studies' corpus) and the ``default`` size it must leave unchanged."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from moeaudio.data import synth
from moeaudio.data.manifest import validate_record
from moeaudio.data.synth import SIZES, SPLITS, _build_item, _plan, _split_counts
from moeaudio.data.synth.labels import HARD_JOB_LABELS, HARD_JOBS, SOUND_CLASSES, SYNTH_TASKS

#: Computed with the code before the ``hard`` size existed (commit 98ae68c): the default size's plan
#: (every item's split, job, index and label) and the bytes of the first item of every (split, job),
#: manifest row and wav. A change here changes the quickstart's corpus and table.
DEFAULT_PLAN_SHA256 = "67cbf07aed378065b34524a55f13edf9793c82239a3bb88ac834d98a6f95a18e"
DEFAULT_FIRST_ITEMS_SHA256 = "86e1dbce9a64d8a184fcf44ab878062412bdb7b173c34f335ef02c7deb05f1c0"


def test_default_corpus_is_byte_identical(tmp_path: Path) -> None:
    specs = _plan(0, "default")
    assert len(specs) == 3300
    assert hashlib.sha256(repr(specs).encode()).hexdigest() == DEFAULT_PLAN_SHA256
    first: dict[tuple[str, str], synth._Spec] = {}
    for s in specs:
        first.setdefault((s.split, s.job), s)
    h = hashlib.sha256()
    for key in sorted(first):
        row = _build_item((str(tmp_path), 0, first[key]))
        h.update(json.dumps(row, ensure_ascii=False).encode())
        h.update(hashlib.sha256((tmp_path / row["audio"]).read_bytes()).digest())
    assert h.hexdigest() == DEFAULT_FIRST_ITEMS_SHA256


def test_hard_size_counts() -> None:
    hard = SIZES["hard"]
    assert {name for name, _, _ in HARD_JOBS} <= set(hard)
    assert {"speech_intent", "speech_gender", "music_instrument", "sound_event"}.isdisjoint(hard)
    for job, total in hard.items():
        counts = _split_counts(total, "hard")
        assert counts["test"] >= 200 and counts["valid"] >= 50, job
    specs = _plan(0, "hard")
    tasks = Counter((s.split, synth._JOB_INDEX[s.job][0]) for s in specs)
    assert {t for (split, t) in tasks if split == "test"} == set(SYNTH_TASKS)
    assert all(n >= 200 for (split, _), n in tasks.items() if split == "test")
    # jobs shared with the default size keep the default's train items (same specs, so the same bytes)
    default = {s for s in _plan(0, "default") if s.job in hard}
    assert default <= set(specs)


def _first_per_label(job: str, split: str = "test") -> list[synth._Spec]:
    seen, out = set(), []
    for s in _plan(0, "hard", jobs=[job]):
        if s.split == split and s.label not in seen:
            seen.add(s.label)
            out.append(s)
    return out


@pytest.fixture(scope="module")
def hard_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("hard")
    rows: dict[str, list[dict]] = {}
    for job, _, _ in HARD_JOBS:
        specs = _first_per_label(job)[:6]  # one item per class (at most 6) or question category
        rows[job] = [_build_item((str(out), 0, s)) for s in specs]
    return rows


def test_hard_items_are_valid_and_labelled_by_construction(hard_rows: dict[str, list[dict]]) -> None:
    for job, rows in hard_rows.items():
        for row in rows:
            assert not validate_record(row), (job, validate_record(row))
            assert row["meta"]["job"] == job
            assert row["meta"]["snr_db"] <= 20
    for row in hard_rows["hard_sound_event"]:
        meta = row["meta"]
        assert row["target"] in SOUND_CLASSES and meta["second_event"] != row["target"]
        assert 4.0 <= meta["second_below_db"] <= 10.0
        assert "louder" in row["instruction"]
    for row in hard_rows["hard_music_instrument"]:
        assert row["meta"]["second_instrument"] != row["target"] == row["meta"]["instrument"]


def test_hard_questions_need_more_than_one_step(hard_rows: dict[str, list[dict]]) -> None:
    for job in ("hard_mcq_speech", "hard_mcq_music", "hard_mcq_sound"):
        rows = hard_rows[job]
        assert {r["meta"]["category"] for r in rows} == set(HARD_JOB_LABELS[job])
        for r in rows:
            assert r["choices"]["ABCD".index(r["answer"])] == r["target"] and len(set(r["choices"])) == 4
            meta, cat = r["meta"], r["meta"]["category"]
            heard = meta.get("events") or meta.get("instruments")
            if cat.startswith("first"):
                assert r["target"] == (heard or meta["nouns"])[0]
                assert set((heard or meta["nouns"])[1:]) <= set(r["choices"])  # the others heard are traps
            elif cat.startswith("last") and heard:
                assert r["target"] == heard[-1] and set(heard[:-1]) <= set(r["choices"])
            elif cat == "last_digit":
                assert r["target"] == meta["text"].split()[-1]
            elif cat in ("sound_count", "instrument_count"):
                assert r["target"] == str(len(heard))
            elif cat == "digit_count":
                assert r["target"] == str(len(meta["text"].split()))


def test_unknown_size_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hard"):
        synth.make_synth_corpus(tmp_path, size="harder", progress=False)
    assert "hard" in SIZES and set(SPLITS) == {"train", "valid", "test"}
