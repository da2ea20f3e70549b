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


# ----------------------------------------------------------------------------- Tables 2 and 3

IO = 2560 + 2048  # every expert and the shared path read 2560 and write 2048 (reading (b))
SHARED = 10240  # the always-on shared path's hidden width


def _expected(num_experts: int, top_k: int, width: int) -> dict[str, int]:
    """Reading (b) counts from PAPER.md's formulas: E*D*(2560+2048) + 10240*(2560+2048) total,
    (k*D + 10240)*(2560+2048) active; router 2560*E; input and final LayerNorm."""
    linear = num_experts * width * IO + SHARED * IO
    active = (top_k * width + SHARED) * IO
    router = 2560 * num_experts
    return {
        "linear": linear,
        "active_linear": active,
        "router": router,
        "total": linear + router + LN_IN + LN_OUT,
        "active": active + router + LN_IN + LN_OUT,
    }


# recipe: (E, k, expert width D, total linear weights, active linear weights), the last two by hand
PAPER_ARMS = {
    "paper/table1_moe": (8, 4, 1280, 94_371_840, 70_778_880),  # Table 2's default 8 choose 4
    "paper/table2_16c4": (16, 4, 1280, 141_557_760, 70_778_880),
    "paper/table2_8c1": (8, 1, 1280, 94_371_840, 53_084_160),
    "paper/table2_4c2": (4, 2, 1280, 70_778_880, 58_982_400),
    "paper/table2_half_width": (8, 4, 640, 70_778_880, 58_982_400),
    "paper/table2_double_width": (8, 4, 2560, 141_557_760, 94_371_840),
    "paper/table3_no_balance": (8, 4, 1280, 94_371_840, 70_778_880),
}


@pytest.mark.parametrize("recipe", sorted(PAPER_ARMS))
def test_table2_and_table3_arms(recipe: str) -> None:
    num_experts, top_k, width, linear, active = PAPER_ARMS[recipe]
    want = _expected(num_experts, top_k, width)
    assert (want["linear"], want["active_linear"]) == (linear, active)  # the formula = the hand count
    s = _inspect(recipe)
    b = s["adapter_params_breakdown"]
    assert s["adapter_kind"] == "moe"
    assert b["linear_weights"] == linear
    assert b["active_linear_weights"] == active
    assert b["router"] == want["router"]
    assert b["norm"] == LN_IN + LN_OUT and b["bias"] == 0
    assert s["adapter_params_total"] == want["total"]
    assert s["adapter_params_active"] == want["active"]
    assert (s["adapter_in_dim"], s["adapter_out_dim"]) == (2560, 2048)
    recipe_cfg = s["recipe"]
    assert recipe_cfg["adapter"]["shared_path"] == "parallel"
    assert recipe_cfg["adapter"]["aux_loss_coef"] == (0.0 if recipe.endswith("no_balance") else 0.01)


@pytest.mark.parametrize("recipe", ["paper/table1_dense", "paper/table1_moe_sequential", *sorted(PAPER_ARMS)])
def test_paper_arms_share_the_papers_setup(recipe: str) -> None:
    """Whisper-large-v3 + Qwen3-1.7B, ZeRO-2 bf16, AdamW 0.9/0.95, WSD, peak 1e-5, 20 warmup steps,
    and one token budget for every arm."""
    from moeaudio.config import load_recipe

    r = load_recipe(recipe)
    assert (r.encoder.name, r.encoder.d_model, r.encoder.stack, r.encoder.projection_dim) == (
        "openai/whisper-large-v3",
        1280,
        4,
        2560,
    )
    assert (r.llm.name, r.llm.hidden_size) == ("Qwen/Qwen3-1.7B", 2048)
    t = r.train
    assert (t.zero_stage, t.precision, tuple(t.betas), t.schedule, t.lr, t.warmup_steps) == (
        2,
        "bf16",
        (0.9, 0.95),
        "wsd",
        1e-5,
        20,
    )
    base = load_recipe("paper/table1_moe")
    assert (t.max_steps, r.data.micro_batch_size, t.grad_accum, t.seed) == (
        base.train.max_steps,
        base.data.micro_batch_size,
        base.train.grad_accum,
        base.train.seed,
    )
