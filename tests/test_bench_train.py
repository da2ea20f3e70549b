"""`moeaudio bench train RECIPE --json`: four arms (cached / recomputed x DeepSpeed / plain loop)
measured on the same batches, and ratios that are what the arms say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train import _run_cli


def test_bench_train_json(tiny_corpus: Path, tmp_path: Path) -> None:
    args = [
        f"data.root={tiny_corpus}",
        "data.synth_if_missing=false",
        f"data.feature_cache={tmp_path / 'cache'}",
    ]
    out = _run_cli(["bench", "train", "tiny/moe", *args, "--steps", "2", "--rounds", "2", "--warmup", "1", "--json"],
                   tmp_path, 300)  # fmt: skip
    result = json.loads(out.stdout[out.stdout.find("{\n") :])
    assert set(result) >= {"recipe", "steps", "rounds", "arms", "ratios", "peak_rss_mb", "micro_batch_size"}
    assert result["steps"] == 2 and result["rounds"] == 2
    arms = result["arms"]
    assert set(arms) == {"cached/deepspeed", "cached/plain", "recomputed/deepspeed", "recomputed/plain"}
    for arm in arms.values():
        assert arm["steps_per_s"] > 0 and arm["tokens_per_s"] > arm["steps_per_s"]
        assert len(arm["seconds_per_round"]) == 2 and 0 < arm["rss_mb"] <= result["peak_rss_mb"]
        # steps/s is the median round's: 2 steps over the median of two rounds
        assert arm["steps_per_s"] == pytest.approx(2 / (sum(arm["seconds_per_round"]) / 2), rel=0.01)
    r = result["ratios"]
    speed = {k: v["steps_per_s"] for k, v in arms.items()}
    assert r["cached_speedup_deepspeed"] == pytest.approx(
        speed["cached/deepspeed"] / speed["recomputed/deepspeed"], rel=0.01
    )
    assert r["deepspeed_overhead_cached"] == pytest.approx(
        speed["cached/plain"] / speed["cached/deepspeed"] - 1, abs=0.01
    )
    # no cache in the recipe: only the recomputed arms, and the cached ratios are null
    out = _run_cli(["bench", "train", "tiny/moe", *args[:2], "data.feature_cache=null", "--steps", "1", "--rounds", "1",
                    "--warmup", "0", "--json"], tmp_path, 300)  # fmt: skip
    result = json.loads(out.stdout[out.stdout.find("{\n") :])
    assert set(result["arms"]) == {"recomputed/deepspeed", "recomputed/plain"}
    assert (
        result["ratios"]["cached_speedup_deepspeed"] is None
        and result["ratios"]["deepspeed_overhead_recomputed"] is not None
    )
