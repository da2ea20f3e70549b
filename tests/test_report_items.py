"""Item-level verdicts in a study's report: per-item records read from eval files, the primary column
judged alone, the others Holm-corrected, the minimum detectable effect beside each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from moeaudio.data.manifest import Item
from moeaudio.eval.handlers import HANDLERS
from moeaudio.eval.metrics import wer_cer
from moeaudio.eval.normalize import normalize_english
from moeaudio.reproduce.items import item_scores, predictions_path
from moeaudio.reproduce.plan import plan_study
from moeaudio.reproduce.report import build_results, render_markdown
from moeaudio.reproduce.runner import adapter_weights, collect_items
from moeaudio.reproduce.study import StudyError, load_study

N = 200


def _study(tmp_path: Path, primary: str | None = "MCQ") -> Path:
    data: dict[str, Any] = {
        "name": "items_study",
        "title": "Items study",
        "description": "Made-up per-item records.",
        "base": {"cpu": "tiny/moe"},
        "overrides": {"cpu": [f"data.root={tmp_path / 'corpus'}", "data.synth_if_missing=false"]},
        "baseline": "dense",
        "seeds": [0, 1, 2],
        "arms": [
            {"name": "dense", "label": "Dense", "recipe": {"cpu": "tiny/dense"}},
            {"name": "moe", "label": "MoE"},
        ],
        "columns": [
            {"name": "MCQ", "task": {"cpu": "mcq"}},
            {"name": "MCQ speech", "task": {"cpu": "mcq"}, "metric": "by_domain.speech.accuracy"},
            {"name": "intent", "task": {"cpu": "intent"}},
            {"name": "asr WER", "task": {"cpu": "asr"}, "metric": "wer", "higher_is_better": False},
        ],
    }
    if primary:
        data["primary"] = {"cpu": primary}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _write_eval(folder: Path, task: str, metric: str, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / f"{task}.json"
    result.write_text(json.dumps({"task": task, "metric": metric, "metrics": {}}))
    predictions_path(result).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return result


def _runs(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Records and eval files: MoE +15 points on MCQ (every seed, other items), one intent item per
    seed (the same item), identical ASR."""
    rng = np.random.default_rng(0)
    base_mcq = rng.random((3, N)) < 0.5
    base_intent = rng.random(N) < 0.7
    base_intent[0] = False
    records: dict[str, Any] = {}
    for arm in ("dense", "moe"):
        for seed in range(3):
            mcq = base_mcq[seed].copy()
            intent = base_intent.copy()
            if arm == "moe":
                wrong = np.flatnonzero(~mcq)
                mcq[rng.choice(wrong, 30, replace=False)] = True
                intent[0] = True
            folder = tmp_path / "out" / arm / f"seed-{seed}" / "eval"
            files = {
                "MCQ": _write_eval(
                    folder,
                    "mcq",
                    "accuracy",
                    [
                        {"id": f"q{i}", "domain": "speech" if i % 2 else "sound", "correct": bool(mcq[i])}
                        for i in range(N)
                    ],
                ),  # fmt: skip
                "intent": _write_eval(
                    folder,
                    "intent",
                    "accuracy",
                    [{"id": f"i{i}", "domain": "speech", "correct": bool(intent[i])} for i in range(N)],
                ),  # fmt: skip
                "asr WER": _write_eval(
                    folder,
                    "asr",
                    "wer",
                    [{"id": f"a{i}", "word_errors": i % 3, "ref_words": 5} for i in range(N)],
                ),  # fmt: skip
            }
            files["MCQ speech"] = files["MCQ"]
            run_dir = tmp_path / "out" / arm / f"seed-{seed}"
            records[f"{arm}/seed-{seed}"] = {
                "seed": seed,
                "values": {
                    "MCQ": mcq.mean(),
                    "MCQ speech": mcq[1::2].mean(),
                    "intent": intent.mean(),
                    "asr WER": sum(i % 3 for i in range(N)) / (5 * N),
                },
                "eval_files": {k: str(v.relative_to(run_dir)) for k, v in files.items()},
            }
    return records, {}


def test_item_scores_per_metric(tmp_path: Path) -> None:
    result = _write_eval(tmp_path, "mcq", "accuracy", [
        {"id": "a", "domain": "speech", "correct": True},
        {"id": "b", "domain": "sound", "correct": False},
    ])  # fmt: skip
    assert item_scores(result) == {"a": (1.0, 1.0), "b": (0.0, 1.0)}
    assert item_scores(result, "by_domain.sound.accuracy") == {"b": (0.0, 1.0)}
    assert item_scores(result, "macro_f1") is None  # not a sum over items: seed-level statistics
    old = _write_eval(tmp_path / "old", "asr", "wer", [{"id": "a", "prediction": "x"}])
    assert item_scores(old) is None  # written before per-item word errors existed


def test_asr_rows_sum_to_the_corpus_wer() -> None:
    refs = ["the red cat sees the dog", "turn on the light", "three four five"]
    hyps = ["the red cat see dog", "turn the light on please", "three four five"]
    handler = HANDLERS["asr"]
    rows = [
        handler.prediction_row(Item(id=str(k), audio="x.wav", task="asr", target=r, lang="en"), h)
        for k, (r, h) in enumerate(zip(refs, hyps, strict=True))
    ]
    corpus = wer_cer(refs, hyps, normalizer=normalize_english)
    assert sum(r["word_errors"] for r in rows) / sum(r["ref_words"] for r in rows) == pytest.approx(
        corpus["wer"]
    )
    assert rows[2]["word_errors"] == 0 and rows[0]["domain"] == "speech"


def test_report_verdicts_from_items(tmp_path: Path) -> None:
    plan = plan_study(load_study(_study(tmp_path)), "cpu", output=tmp_path / "out")
    records, _ = _runs(tmp_path)
    items = collect_items(plan, records)
    assert set(items["moe"]) == {"MCQ", "MCQ speech", "intent", "asr WER"}
    assert len(items["moe"]["MCQ speech"][0]) == N // 2
    weights = {
        "dense": {"total": 3_201_024, "active": 3_201_024},
        "moe": {"total": 3_201_024, "active": 2_134_016},
    }
    results = build_results(plan, records, items=items, weights=weights)
    moe = results["cells"]["moe"]
    mcq, intent, wer = moe["MCQ"]["effect"], moe["intent"]["effect"], moe["asr WER"]["effect"]
    assert results["primary"] == "MCQ"
    assert mcq["primary"] and mcq["method"] == "items x seeds bootstrap"
    assert mcq["mean"] == pytest.approx(15.0) and mcq["verdict"] == "differs" and mcq["direction"] == "better"
    assert mcq["p_adjusted"] == mcq["p"]  # the primary column is not corrected
    # one item (0.5 points of 200), the same in every seed: the old t interval says "differs"
    assert moe["intent"]["diff"]["verdict"] == "differs" and moe["intent"]["diff"]["half_width"] == 0.0
    assert intent["mean"] == pytest.approx(0.5) and intent["verdict"] == "within noise"
    assert intent["correction"] == "Holm over 3 columns"
    assert intent["p_adjusted"] >= intent["p"]
    assert wer["mean"] == 0.0 and wer["p_adjusted"] == 1.0
    # MDE at Holm's first step (alpha / 3) is larger than it would be at alpha for the same SE
    assert intent["mde_alpha"] == pytest.approx(0.05 / 3) and intent["mde"] > 0
    md = render_markdown(results)
    assert "## Verdicts: MoE − Dense" in md
    assert "| **MCQ (primary)** | +15.00 |" in md
    assert "(Holm)" in md and "3 seeds × 200 items" in md
    assert "| MoE (3.20M weights, 2.13M active) — ours |" in md


@pytest.mark.parametrize(
    "scale,dense,moe",
    [
        ("cpu", (3_201_024, 3_201_024), (3_201_024, 2_134_016)),
        ("paper", (94_371_840,) * 2, (94_371_840, 70_778_880)),
    ],
)
def test_labels_carry_each_scales_own_weights(tmp_path: Path, scale: str, dense: tuple, moe: tuple) -> None:
    """Table 1's rows are labelled with the weights of the model at the scale run, computed from it."""
    weights = adapter_weights(plan_study(load_study("table1"), scale, output=tmp_path / "o"))
    assert (weights["dense"]["total"], weights["dense"]["active"]) == dense
    assert (weights["moe"]["total"], weights["moe"]["active"]) == moe


def test_without_items_the_report_falls_back_to_seeds(tmp_path: Path) -> None:
    plan = plan_study(load_study(_study(tmp_path, primary=None)), "cpu", output=tmp_path / "out")
    records, _ = _runs(tmp_path)
    results = build_results(plan, records)
    effect = results["cells"]["moe"]["intent"]["effect"]
    assert effect["method"] == "seeds only (t)" and effect["correction"] == "Holm over 4 columns"
    assert effect["p"] == 0.0  # a constant shift over seeds: what the t test sees


def test_primary_must_name_a_column(tmp_path: Path) -> None:
    path = _study(tmp_path, primary="MMAU")
    with pytest.raises(StudyError, match="primary.cpu: 'MMAU' is not a column"):
        load_study(path)


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "frozen_llm", "figures", "table1_modality"])
def test_shipped_studies_name_a_primary_and_keep_mmau_for_the_benchmark(name: str) -> None:
    """Every study with columns names its primary column at each scale; "MMAU" is only ever the real
    benchmark's column; the CPU studies run on the hard corpus (the spoken-question one on ``smol``)."""
    study = load_study(name)
    for scale in study.scales:
        if study.columns_at(scale):
            assert study.primary_column(scale) in [c.name for c in study.columns_at(scale)]
        if scale == "cpu":
            size = study.resolve(study.baseline, "cpu").data.synth_size
            assert size == ("smol" if name == "table1_modality" else "hard")
    for col in study.columns:
        if "MMAU" in col.name:
            assert col.task.cpu is None and col.task.paper == "mmau", col.name
