"""`moeaudio bench adapter`: runs on tiny sizes and reports ratios (no timing assertions)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from moeaudio.bench import bench_adapter, render_bench
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
    assert res["params"]["moe_total"] == res["params"]["dense_total"] == 4 * 16 * (16 + 16)
    assert res["params"]["moe_active"] == res["params"]["moe_total"] // 2
    assert res["config"]["dense_hidden"] == 64
    assert res["ratios"]["loop"]["vs_loop_forward"] == 1.0
    for key in ("forward_ms", "forward_backward_ms"):
        assert res["dense"][key] > 0
        assert res["backends"]["loop"][key] > 0
    for name in ("loop", "sort", "grouped"):
        r = res["ratios"][name]
        if "skipped" not in res["backends"][name]:
            assert r["vs_dense_forward"] > 0 and r["vs_loop_forward_backward"] > 0
    assert res["backends"]["auto"]["resolves_to"] in ("sort", "grouped")
    assert render_bench(res).row_count == 4


def test_cli_bench_adapter_table_and_json():
    runner = CliRunner()
    table = runner.invoke(app, ["bench", "adapter", *TINY, "--repeats", "1"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    for text in ("moe loop", "moe sort", "dense", "x loop", "/ dense"):
        assert text in table.stdout
    out = runner.invoke(app, ["bench", "adapter", *TINY, "--repeats", "1", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data) == {"config", "params", "backends", "dense", "ratios"}
    assert data["config"]["experts"] == 4 and data["config"]["top_k"] == 2
    bad = runner.invoke(app, ["bench", "adapter", *TINY, "--dtype", "int8"])
    assert bad.exit_code == 2
