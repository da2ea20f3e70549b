"""`moeaudio bench adapter`: runs on tiny sizes and reports ratios (no timing assertions)."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from moeaudio.bench.adapter import bench_adapter, paired_range, render_bench
from moeaudio.cli import app

TINY = [
    "--tokens",
    "64",
    "--d-in",
    "32",
    "--d-out",
    "16",
    "--experts",
    "4",
    "--top-k",
    "2",
    "--expert-dim",
    "16",
]


def test_bench_adapter_function_shapes_and_params():
    res = bench_adapter(tokens=32, d_in=16, d_out=16, num_experts=4, top_k=2, expert_dim=16, repeats=1)
    assert res["config"]["shared_dim"] == 0  # the routed preset: experts alone
    assert res["params"]["moe_total"] == res["params"]["dense_total"] == 4 * 16 * (16 + 16)
    assert res["params"]["moe_active"] == res["params"]["moe_total"] // 2
    assert res["config"]["dense_hidden"] == 64
    (run,) = res["runs"]
    assert run["tokens"] == 32 and run["ratios"]["loop"]["vs_loop_forward"] == 1.0
    for key in ("forward_ms", "forward_backward_ms", "forward_gflops", "saved_mib"):
        assert run["backends"]["dense"][key] > 0
        assert run["backends"]["moe loop"][key] > 0
    for name in ("loop", "sort", "grouped"):
        r = run["ratios"][name]
        if "skipped" not in run["backends"][f"moe {name}"]:
            assert r["vs_dense_forward"] > 0 and r["vs_loop_forward_backward"] > 0
    assert run["auto"] in ("sort", "grouped")
    (ref,) = [v for name, v in run["backends"].items() if name.startswith("transformers")]
    assert ref["forward_backward_gflops"] > 0
    summary = res["summary"]["32"]
    assert summary["flop_limit"] == 0.5 and summary["moe_over_dense"] > 0
    assert summary["best_over_transformers"] > 0 and summary["best_backend"] in ("loop", "sort", "grouped")
    assert render_bench(res).row_count == 4 + 1 + 1  # moe x3, dense, transformers, summary


def test_moe_over_dense_range_pairs_rounds_and_brackets_the_median_ratio():
    assert paired_range([2.0, 3.0, 9.0], [4.0, 3.0, 10.0]) == [0.5, 1.0]  # round by round, not sorted
    res = bench_adapter(tokens=32, d_in=16, d_out=16, num_experts=4, top_k=2, expert_dim=16, repeats=4)
    (run,) = res["runs"]
    best = run["backends"][f"moe {run['best_backend']}"]
    dense = run["backends"]["dense"]
    assert len(best["rounds_ms"]["forward_backward"]) == len(dense["rounds_ms"]["forward"]) == 4
    lo, hi = run["moe_over_dense_range"]
    assert lo <= run["moe_over_dense"] <= hi
    assert res["summary"]["32"]["moe_over_dense_range"] == [lo, hi]


def test_bench_adapter_presets_and_token_counts():
    res = bench_adapter(
        tokens="8,16", preset="paper", d_in=32, d_out=16, expert_dim=16, shared_dim=64, repeats=1
    )
    assert [r["tokens"] for r in res["runs"]] == [8, 16] and set(res["summary"]) == {"8", "16"}
    assert res["config"]["num_experts"] == 8 and res["config"]["top_k"] == 4  # from the preset
    assert res["summary"]["8"]["flop_limit"] == (4 * 16 + 64) / (8 * 16 + 64)
    assert res["params"]["moe_active"] == (4 * 16 + 64) * (32 + 16)


def test_bench_adapter_cpu_clock_one_thread():
    threads = torch.get_num_threads()
    res = bench_adapter(
        tokens=16, d_in=16, d_out=16, num_experts=4, top_k=2, expert_dim=16, repeats=1, clock="cpu"
    )
    assert res["config"]["clock"] == "cpu" and res["config"]["threads"] == 1
    assert torch.get_num_threads() == threads  # restored
    assert res["runs"][0]["backends"]["dense"]["forward_backward_ms"] >= 0


def test_cli_bench_adapter_table_and_json():
    runner = CliRunner()
    table = runner.invoke(app, ["bench", "adapter", *TINY, "--repeats", "1"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    for text in ("moe loop", "moe sort", "dense", "transformers", "GFLOP/s", "/ dense"):
        assert text in table.stdout
    out = runner.invoke(app, ["bench", "adapter", *TINY, "--repeats", "1", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data) == {"config", "params", "runs", "summary"}
    assert data["config"]["num_experts"] == 4 and data["config"]["top_k"] == 2
    assert set(data["summary"]["64"]) >= {"moe_over_dense", "flop_limit", "best_over_transformers"}
    bad = runner.invoke(app, ["bench", "adapter", *TINY, "--dtype", "int8"])
    assert bad.exit_code == 2
    for flags in (["--clock", "sundial"], ["--preset", "huge"], ["--tokens", "1,x"]):
        bad = runner.invoke(app, ["bench", "adapter", *TINY, *flags])
        assert bad.exit_code == 2 and flags[0] in bad.output, bad.output
