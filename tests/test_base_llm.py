"""Text columns on the base LLM: one checkpoint per study for arms that share their LLM, loadable."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from moeaudio.config import load_recipe
from moeaudio.reproduce.base_llm import base_llm_checkpoint
from moeaudio.runtime.checkpoint import WEIGHTS, open_checkpoint


def test_arms_share_one_base_checkpoint(tmp_path: Path) -> None:
    dense, moe = load_recipe("tiny/dense"), load_recipe("tiny/moe")
    a = base_llm_checkpoint(dense, tmp_path)
    assert base_llm_checkpoint(moe, tmp_path) == a  # same LLM, encoder and seed: written once
    assert open_checkpoint(a).recipe.llm == dense.llm  # a checkpoint eval reads like any other
    weights = load_file(str(a / WEIGHTS))
    assert any(k.startswith("llm.") for k in weights)
    other = base_llm_checkpoint(load_recipe("tiny/dense", ["train.seed=1"]), tmp_path)
    assert other != a
    again = base_llm_checkpoint(dense, tmp_path / "elsewhere")  # the same weights from the same seed
    for key, value in load_file(str(again / WEIGHTS)).items():
        if key.startswith("llm."):
            assert (value == weights[key]).all(), key
