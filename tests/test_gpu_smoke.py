"""`moeaudio bench gpu-smoke`: the cut recipes keep the paper's adapters, and a CPU machine is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moeaudio.bench.gpu_smoke import ARMS, gpu_smoke, paper_cut
from moeaudio.errors import UsageError
from moeaudio.inspection import adapter_summary


@pytest.mark.parametrize("name", ARMS)
def test_cut_recipes_keep_the_papers_adapter(name: str, tmp_path: Path) -> None:
    recipe = paper_cut(name, tmp_path, layers=2, micro_batch=8, steps=20)
    assert recipe.encoder.tiny["d_model"] == 1280 and recipe.encoder.tiny["encoder_layers"] == 2
    assert recipe.llm.hidden_size == 2048 and recipe.llm.tiny["num_hidden_layers"] == 2
    assert (recipe.train.zero_stage, recipe.train.precision, recipe.train.max_steps) == (2, "bf16", 20)
    assert recipe.data.feature_cache is None and recipe.data.mixture is None
    summary = adapter_summary(recipe)
    assert summary["adapter_params_breakdown"]["linear_weights"] == 94_371_840  # the paper's total
    if recipe.adapter.kind == "moe":
        assert recipe.adapter.backend == "grouped" and recipe.adapter.aux_loss_norm == "switch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_refuses_without_cuda() -> None:
    with pytest.raises(UsageError, match=r"needs a CUDA GPU .* run it on a GPU machine"):
        gpu_smoke()
