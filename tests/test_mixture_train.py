"""Training on a weighted mixture under a token budget: the steps derived from train.max_tokens, the
accumulation from train.global_batch_size, both sources in the batches, the resolved recipe saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe


@pytest.fixture(scope="module")
def split_corpus(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny corpus's train split cut in two sources (speech / everything else), beside it."""
    out = tmp_path_factory.mktemp("mixture")
    lines = (tiny_corpus / "train.jsonl").read_text().splitlines()
    speech = [line for line in lines if json.loads(line)["domain"] == "speech"]
    other = [line for line in lines if json.loads(line)["domain"] != "speech"]
    for name, part in (("speech", speech), ("other", other)):
        rows = []
        for line in part:  # audio paths stay relative to the original corpus
            rec = json.loads(line)
            rec["audio"] = str((tiny_corpus / rec["audio"]).resolve())
            rows.append(json.dumps(rec))
        (out / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    return out


def test_budget_and_mixture_drive_training(
    split_corpus: Path, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_training
) -> None:
    from moeaudio.train.launch import train_recipe

    monkeypatch.setenv("MOEAUDIO_DUMP_LOADS", "1")  # every step's item ids
    mixture = (
        f"data.mixture=[{{name: speech, manifest: {split_corpus / 'speech.jsonl'}, weight: 1}},"
        f" {{name: other, manifest: {split_corpus / 'other.jsonl'}, weight: 3}}]"
    )
    recipe = tiny_recipe(
        tiny_corpus, tmp_path / "run", "moe", mixture, "data.micro_batch_size=4",
        "train.global_batch_size=8", "train.tokens_per_example=50", "train.max_tokens=1000", "train.max_steps=99",
    )  # fmt: skip
    result = train_recipe(recipe, evaluate=False)
    state = json.loads((result.checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 3  # ceil(1000 / (8 x 50)): the budget, not max_steps=99, stops the run
    saved = yaml.safe_load((result.checkpoint / "recipe.yaml").read_text())["train"]
    assert (saved["grad_accum"], saved["max_steps"]) == (2, 3)  # 8 = 4 x 2 x 1 rank
    dumped = [
        json.loads(line) for line in (tmp_path / "run" / "expert_loads.rank0.jsonl").read_text().splitlines()
    ]
    ids = [i for step in dumped for i in step["ids"]]
    assert len(ids) == 3 * 8
    speech = {json.loads(line)["id"] for line in (split_corpus / "speech.jsonl").read_text().splitlines()}
    assert any(i in speech for i in ids) and any(i not in speech for i in ids)
    assert all(len({i in speech for i in step["ids"][k : k + 4]}) == 1 for step in dumped for k in (0, 4))
