"""The paper's evaluation protocol as data: a fixed shot pool, prompt templates, ids recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from moeaudio.data.manifest import Item
from moeaudio.errors import EvalDataError, EvalError
from moeaudio.eval.shots import BenchmarkShots, apply_template, load_shot_pool, pick_shots


def _items(n: int, labels: tuple[str, ...] = ("a", "b", "c")) -> list[Item]:
    return [
        Item(
            id=f"x/{i:03d}",
            audio=f"{i}.wav",
            domain="sound",
            task="sound",
            instruction="What?",
            target=labels[i % len(labels)],
        )  # fmt: skip
        for i in range(n)
    ]


def test_shipped_pool_fixes_mmau_and_draws_voicebench() -> None:
    pool = load_shot_pool("paper").pool.benchmarks
    assert pool["mmau"].ids is not None and len(pool["mmau"].ids) == 6
    assert all(i.startswith("mmau/") for i in pool["mmau"].ids)
    assert pool["mmsu"].ids is None and pool["mmsu"].seed == 0 and pool["mmsu"].text_template
    assert {"mmau", "mmsu", "openbookqa", "emotion", "vocalsound"} <= set(pool)


def test_fixed_ids_in_order_and_missing_ids_named() -> None:
    items = _items(10)
    shots = BenchmarkShots(ids=["x/007", "x/002", "x/009"])
    assert [i.id for i in pick_shots(shots, items, 2, "sound", "m.jsonl")] == ["x/007", "x/002"]
    with pytest.raises(EvalDataError, match=r"x/404.*prepare the benchmark"):
        pick_shots(BenchmarkShots(ids=["x/404"]), items, 1, "sound", "m.jsonl")
    with pytest.raises(EvalDataError, match="lists only 3 ids"):
        pick_shots(shots, items, 4, "sound", "m.jsonl")


def test_seeded_draw_is_fixed_and_covers_labels() -> None:
    items = _items(30)
    a = pick_shots(BenchmarkShots(seed=3), items, 3, "sound", "m", classification=True)
    b = pick_shots(BenchmarkShots(seed=3), list(reversed(items)), 3, "sound", "m", classification=True)
    assert [i.id for i in a] == [i.id for i in b]  # the manifest's order does not matter
    assert sorted(i.target for i in a) == ["a", "b", "c"]


def test_template_fields() -> None:
    item = Item(id="q", audio="q.wav", domain="speech", task="mcq", instruction="Which one?", target="dog",
                choices=["cat", "dog"], meta={"question": "Which animal?", "text_prompt": "Which animal? A. cat B. dog"})  # fmt: skip
    out = apply_template("{question}\n{choices}\nAnswer with the option's text.", item)
    assert out.instruction == "Which animal?\nA. cat\nB. dog\nAnswer with the option's text."
    assert "text_instruction" not in out.meta  # an audio template leaves the text prompt alone
    text = apply_template("Answer.\n{text_prompt}", item, text=True)
    assert (
        text.meta["text_instruction"] == "Answer.\nWhich animal? A. cat B. dog"
    )  # --modality text reads it whole
    with pytest.raises(ValueError, match="the fields are"):
        BenchmarkShots(template="{nope}")


def test_eval_with_the_pool_records_ids_and_leaves_shots_out(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from moeaudio.eval.evaluate import run_eval

    manifest = tiny_checkpoint.parents[2] / "test.jsonl"
    if not manifest.exists():  # the fixture's corpus is data.root of the checkpoint's recipe
        manifest = (
            Path(yaml.safe_load((tiny_checkpoint / "recipe.yaml").read_text())["data"]["root"]) / "test.jsonl"
        )
    mcq = [json.loads(line) for line in manifest.read_text().splitlines() if '"task": "mcq"' in line]
    ids = [mcq[3]["id"], mcq[0]["id"]]
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump({"benchmarks": {
        "mcq": {"source": "benchmark", "ids": ids, "template": "Q: {question}\n{choices}"},
        "sound": {"source": "valid.jsonl", "seed": 0},
    }}))  # fmt: skip
    result = run_eval("mcq", tiny_checkpoint, few_shot=2, shot_pool=str(pool), output=tmp_path / "mcq.json",
                      progress=False, max_items=6)  # fmt: skip
    assert result["decoding"]["few_shot_ids"] == ids and result["decoding"]["shot_pool"] == str(pool)
    rows = [json.loads(line) for line in Path(result["files"]["predictions"]).read_text().splitlines()]
    assert not {r["id"] for r in rows} & set(ids) and len(rows) == 4  # 6 read, the 2 shots left out
    sound = run_eval("sound", tiny_checkpoint, few_shot=2, shot_pool=str(pool), output=tmp_path / "s.json",
                     progress=False, max_items=3)  # fmt: skip
    valid = {json.loads(line)["id"] for line in (manifest.parent / "valid.jsonl").read_text().splitlines()}
    assert len(sound["decoding"]["few_shot_ids"]) == 2 and set(sound["decoding"]["few_shot_ids"]) <= valid
    with pytest.raises(EvalError, match="no entry for task 'intent'"):
        run_eval("intent", tiny_checkpoint, few_shot=1, shot_pool=str(pool), progress=False, max_items=2)
