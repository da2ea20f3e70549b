"""`moeaudio inspect --json` reproduces the paper's parameter budget (PAPER.md, "Parameter budget")."""

from __future__ import annotations

import json

import pytest

# LayerNorm parameters (weight + bias) of the adapters at paper scale: d_in 2560, d_out 2048.
LN_IN, LN_OUT = 2 * 2560, 2 * 2048  # input LN, final LN
ROUTER = 2560 * 8  # W_g: 2560 x 8, no bias


def _inspect(recipe: str) -> dict:
    from typer.testing import CliRunner

    from moeaudio.cli import app

    result = CliRunner().invoke(app, ["inspect", recipe, "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # one JSON object and nothing else on stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def dense() -> dict:
    return _inspect("recipes/paper/table1_dense.yaml")


@pytest.fixture(scope="module")
def moe() -> dict:
    return _inspect("recipes/paper/table1_moe.yaml")


@pytest.fixture(scope="module")
def sequential() -> dict:
    return _inspect("recipes/paper/table1_moe_sequential.yaml")


def test_dense_baseline(dense: dict) -> None:
    b = dense["adapter_params_breakdown"]
    # LN -> Linear(2560->20480) -> act -> Linear(20480->2048) -> LN
    assert b["linear_weights"] == 20480 * (2560 + 2048) == 94_371_840
    assert b["active_linear_weights"] == 94_371_840
    assert b["norm"] == LN_IN + LN_OUT == 9_216
    assert (b["router"], b["bias"]) == (0, 0)
    assert dense["adapter_params_total"] == 94_371_840 + 9_216 == 94_381_056
    assert dense["adapter_params_active"] == 94_381_056  # dense: all active
    assert dense["adapter_kind"] == "dense"
    assert (dense["adapter_in_dim"], dense["adapter_out_dim"]) == (2560, 2048)
    # Front end: LN(5120) -> Linear(5120->2560, bias) -> SiLU -> LN(2560), outside the adapter.
    assert dense["frontend_params"] == 2 * 5120 + 5120 * 2560 + 2560 + 2 * 2560 == 13_125_120
    assert dense["audio_tokens_per_second"] == 12.5


def test_moe_parallel_matches_the_paper_table(moe: dict) -> None:
    b = moe["adapter_params_breakdown"]
    # 8 * 1280 * (2560 + 2048) + 10240 * (2560 + 2048)
    assert b["linear_weights"] == 8 * 1280 * 4608 + 10240 * 4608 == 94_371_840
    # (4 * 1280 + 10240) * (2560 + 2048)
    assert b["active_linear_weights"] == (4 * 1280 + 10240) * 4608 == 70_778_880
    assert b["router"] == ROUTER == 20_480
    assert b["norm"] == LN_IN + LN_OUT == 9_216
    assert b["bias"] == 0
    assert moe["adapter_params_total"] == 94_371_840 + 20_480 + 9_216 == 94_401_536
    # The router and the norms serve every token: counted active.
    assert moe["adapter_params_active"] == 70_778_880 + 20_480 + 9_216 == 70_808_576
    # Equal total adapter budget with the dense baseline (same linear weights).
    assert moe["adapter_params_total"] - 20_480 == 94_381_056


def test_moe_sequential(sequential: dict) -> None:
    b = sequential["adapter_params_breakdown"]
    # experts 8 x (2560->1280->2560), then LN -> Linear(2560->10240) -> act -> Linear(->2048)
    assert b["linear_weights"] == 8 * 1280 * 5120 + 10240 * 4608 == 99_614_720
    assert b["active_linear_weights"] == 4 * 1280 * 5120 + 10240 * 4608 == 73_400_320
    assert b["router"] == ROUTER
    assert b["norm"] == LN_IN + 2 * 2560 + LN_OUT == 14_336  # + the aggregation block's LN
    assert sequential["adapter_params_total"] == 99_614_720 + 20_480 + 14_336 == 99_649_536
    assert sequential["adapter_params_active"] == 73_400_320 + 20_480 + 14_336 == 73_435_136


def test_flops_per_token(dense: dict, moe: dict) -> None:
    assert dense["adapter_flops_per_audio_token"] == 2 * 94_371_840
    # 2 * (active weights + router) + the gate-weighted combine of 4 expert outputs of width 2048
    assert moe["adapter_flops_per_audio_token"] == 2 * (70_778_880 + 20_480) + 2 * 4 * 2048


def test_offline_hub_ids_are_unknown_not_downloaded(moe: dict) -> None:
    # openai/whisper-large-v3 and Qwen/Qwen3-1.7B are not in the local cache: sized as unknown.
    assert moe["encoder_params"] is None
    assert moe["llm_params"] is None
    assert moe["trainable"] == {"encoder": False, "adapter": True, "llm": True}


def test_overrides_change_the_count() -> None:
    from typer.testing import CliRunner

    from moeaudio.cli import app

    result = CliRunner().invoke(
        app, ["inspect", "recipes/paper/table1_moe.yaml", "adapter.top_k=2", "--json"]
    )
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["adapter_params_breakdown"]["active_linear_weights"] == (2 * 1280 + 10240) * 4608
    assert s["adapter_params_total"] == 94_401_536
