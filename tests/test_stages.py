"""Staged training (train.stages): stage layout, objectives per stage, exact resume mid-stage and
across a stage boundary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe
from safetensors.torch import load_file

from moeaudio.config import RecipeError, load_recipe
from moeaudio.runtime.checkpoint import latest_checkpoint, load_trainer_state
from moeaudio.runtime.stage_plan import stage_dir, stage_recipe, stage_summary
from moeaudio.train.launch import train_recipe

STAGES = [
    {"name": "align", "objective": "ctc_embed", "trainable": ["adapter"], "max_steps": 3, "lr": 3e-3,
     "tasks": ["asr"], "save_every": 1},
    {"name": "tune", "objective": "ntp", "max_steps": 3, "save_every": 1},
]  # fmt: skip


def staged(corpus: Path, run_dir: Path, cache: Path):
    raw = tiny_recipe(
        corpus, run_dir, "moe", f"data.feature_cache={cache}", "train.keep_last=10", "train.log_every=1"
    ).model_dump(mode="json")
    raw["train"]["stages"] = STAGES
    raw["adapter"]["output_gain"] = "llm_embeddings"
    return load_recipe(raw)


@pytest.fixture(scope="module")
def full_run(tiny_corpus, tmp_path_factory, quiet_training):
    cache = tmp_path_factory.mktemp("stage_cache")
    run_dir = tmp_path_factory.mktemp("staged_full")
    recipe = staged(tiny_corpus, run_dir, cache)
    return recipe, train_recipe(recipe, evaluate=False), cache


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def test_stage_recipes_take_the_stage_settings_and_leave_the_recipe_alone(tiny_corpus, tmp_path):
    recipe = staged(tiny_corpus, tmp_path, tmp_path / "cache")
    align = stage_recipe(recipe, 0)
    assert (align.train.active_stage, align.train.max_steps, align.train.lr) == (0, 3, 3e-3)
    assert align.data.tasks == ["asr"] and recipe.data.tasks is None and recipe.train.active_stage is None
    assert stage_dir(tmp_path, recipe, 0) == tmp_path / "stages" / "1-align"
    assert stage_dir(tmp_path, recipe, 1) == tmp_path  # the last stage writes the run itself
    rows = stage_summary(recipe)
    assert [r["objective"] for r in rows] == ["ctc_embed", "ntp"]
    assert rows[0]["trains"] == ["adapter"] and rows[1]["trains"] == ["adapter", "llm"]


def test_a_staged_run_trains_each_stage_from_the_previous_ones_weights(full_run):
    recipe, result, _ = full_run
    run_dir = result.run_dir
    align = latest_checkpoint(run_dir / "stages" / "1-align")
    final = latest_checkpoint(run_dir)
    assert load_trainer_state(align)["step"] == 3 and load_trainer_state(final)["step"] == 3
    hist = load_trainer_state(align)["history"]
    assert all("ctc_loss" in r and "lm_loss" not in r for r in hist)
    assert all("lm_loss" in r for r in load_trainer_state(final)["history"])
    a, f = _weights(align), _weights(final)
    # stage 1 trained the adapter (and CTC head) only: the LLM is as built; stage 2 moved the LLM
    first = latest_checkpoint(run_dir / "stages" / "1-align").parent / "step-000001"
    llm_keys = [k for k in a if k.startswith("llm.")]
    assert llm_keys and all(torch.equal(a[k], _weights(first)[k]) for k in llm_keys)
    assert any(not torch.equal(a[k], f[k]) for k in llm_keys)
    assert torch.equal(a["ctc_head.blank"], f["ctc_head.blank"])  # not trained by the ntp stage
    rows = json.loads((run_dir / "stages.json").read_text())
    assert [r["stage"] for r in rows] == ["1-align", "2-tune"] and all(r["wall_seconds"] > 0 for r in rows)
    assert result.steps == 6


def _crash_copy(run_dir: Path, new_dir: Path, stage_path: str, step: int, keep_final_stages: bool) -> None:
    """``new_dir`` as it would be after a crash right after the step-``step`` checkpoint of the stage
    in ``stage_path`` (relative to the run); earlier stages finished."""
    if keep_final_stages:
        shutil.copytree(run_dir / "stages", new_dir / "stages")
    src = run_dir / stage_path / "checkpoints" / f"step-{step:06d}"
    dst = new_dir / stage_path / "checkpoints" / src.name
    shutil.rmtree(dst.parent, ignore_errors=True)
    shutil.copytree(src, dst)
    (dst.parent / "latest").write_text(src.name)


@pytest.mark.parametrize(
    "where",
    ["mid_first_stage", "at_the_boundary", "mid_last_stage"],
)
def test_resume_mid_stage_and_across_a_boundary_equals_the_uninterrupted_run(full_run, tmp_path, where):
    recipe, result, cache = full_run
    run_dir = result.run_dir
    if where == "mid_first_stage":
        _crash_copy(run_dir, tmp_path, "stages/1-align", 1, keep_final_stages=False)
    elif where == "at_the_boundary":
        _crash_copy(run_dir, tmp_path, "stages/1-align", 3, keep_final_stages=False)
    else:
        _crash_copy(run_dir, tmp_path, ".", 2, keep_final_stages=True)
    resumed = train_recipe(staged(recipe_root(recipe), tmp_path, cache), resume=True, evaluate=False)
    a, b = _weights(resumed.checkpoint), _weights(result.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    want = load_trainer_state(result.checkpoint)["history"]
    got = load_trainer_state(resumed.checkpoint)["history"]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=1e-5)
    # stages.json says which stage this process continued (its wall time is then the continuation's)
    rows = json.loads((resumed.run_dir / "stages.json").read_text())
    resumed_at = {"mid_first_stage": [1, None], "at_the_boundary": [None, None], "mid_last_stage": [None, 2]}
    assert [r.get("resumed_at_step") for r in rows] == resumed_at[where]


def recipe_root(recipe) -> Path:
    return Path(recipe.data.root)


def test_a_finished_staged_run_is_refused_without_resume_or_overwrite(full_run):
    recipe, result, _ = full_run
    with pytest.raises(Exception, match="already holds checkpoints"):
        train_recipe(recipe, evaluate=False)


def test_stage_overrides_and_bad_stages_get_clear_errors(tiny_corpus, tmp_path):
    raw = staged(tiny_corpus, tmp_path, tmp_path).model_dump(mode="json")
    r = load_recipe(raw, ["train.stages.align.max_steps=0"])
    assert r.train.stages[0].max_steps == 0 and r.train.total_steps == 3
    with pytest.raises(RecipeError, match="last stage 'tune' has max_steps 0"):
        load_recipe(raw, ["train.stages.tune.max_steps=0"])
    with pytest.raises(RecipeError, match="runs no LLM forward"):
        load_recipe(raw, ["train.stages.align.trainable=[adapter, lora]"])
    with pytest.raises(RecipeError, match="objective is ctc_embed already"):
        load_recipe(raw, ["train.stages.align.ctc_weight=0.3"])
    with pytest.raises(RecipeError, match="no stage 'aling'"):
        load_recipe(raw, ["train.stages.aling.lr=1"])
    # a top-level step count would be silently ignored by a staged recipe: refused, naming the way
    with pytest.raises(RecipeError, match=r"train.stages.NAME.max_steps"):
        load_recipe(raw, ["train.max_steps=3"])
    from moeaudio.config import with_settings

    with pytest.raises(RecipeError, match=r"setting 'train.max_steps'.*train.stages.NAME.max_steps"):
        with_settings(load_recipe(raw), {"train.max_steps": 3})  # a command's flag, the same refusal


def test_inspect_shows_the_stages_of_a_shipped_staged_recipe():
    from moeaudio.inspection import model_summary

    rows = model_summary(load_recipe("smol"))["stages"]
    assert [(r["stage"], r["objective"]) for r in rows] == [
        ("1-align", "ctc_embed"),
        ("2-asr", "ntp + 0.3 ctc_embed"),  # the alignment's CTC kept as a second loss
        ("3-mix", "ntp + 0.3 ctc_embed"),
    ]
    assert (
        rows[0]["trains"] == ["adapter"]
        and rows[2]["trains"] == ["adapter", "lora"]
        and rows[2]["tasks"][0] == "speech 45%: asr"  # the mix stage balances its tasks
    )
    assert model_summary(load_recipe("quickstart"))["stages"] == []


def test_bench_train_of_a_staged_recipe_times_each_stage_and_counts_its_flops(tiny_corpus, tmp_path):
    from moeaudio.bench.train_step import bench_train

    raw = staged(tiny_corpus, tmp_path, tmp_path / "cache").model_dump(mode="json")
    raw["train"]["stages"][1]["ctc_weight"] = 0.3  # the tune stage keeps the alignment's CTC
    result = bench_train(load_recipe(raw), steps=1, rounds=1, warmup=1)
    rows = {r["stage"]: r for r in result["stages"]}
    assert set(rows) == {"align", "tune"} and result["gemm_gflops"] > 0
    assert [rows[s]["objective"] for s in ("align", "tune")] == ["ctc_embed", "ntp + 0.3 ctc_embed"]
    for r in rows.values():
        assert r["gflop_per_step"] > 0 and 0 < r["share_of_gemm"] < 10
        assert r["projected_minutes"] == pytest.approx(r["max_steps"] * r["seconds_per_step"] / 60, abs=0.06)
    # the align stage runs no LLM, but scores every audio token against the whole (GPT-2 sized)
    # vocabulary: at least 2 x (vocabulary + blank) x d_llm FLOPs per audio token forward, as much again backward
    vocab, d_llm = 50257 + 1, 64  # tiny/moe: the builtin GPT-2 tokenizer, llm.hidden_size 64
    assert rows["align"]["gflop_per_step"] * 1e9 >= 4 * vocab * d_llm * 16  # >= 16 audio tokens per batch


def test_studies_take_staged_recipes_final_step_and_compare_their_stages():
    from moeaudio.reproduce.plan import PlannedRun
    from moeaudio.reproduce.study import StudyError, check_comparable

    smol, dense = load_recipe("smol"), load_recipe("smol_dense")
    run = PlannedRun("moe", 0, "smol", [], smol, Path("runs/x"))
    assert run.max_steps == smol.train.stages[-1].max_steps  # the last stage writes the run's checkpoints
    check_comparable({"moe": smol, "dense": dense})  # same stages: comparable
    shorter = load_recipe("smol_dense", ["train.stages.align.max_steps=10"])
    with pytest.raises(StudyError, match="train.stages"):
        check_comparable({"moe": smol, "dense": shorter})


def test_the_loss_curve_of_an_alignment_stage_draws_its_ctc_loss(tmp_path):
    from moeaudio.train.report import plot_loss_curve

    history = [{"step": i, "loss": 5.0 / i, "ctc_loss": 5.0 / i, "aux_loss": 1.0} for i in range(1, 6)]
    path = plot_loss_curve(history, tmp_path / "loss.png")
    assert path.stat().st_size > 1000


def test_a_stage_can_balance_its_tasks_with_its_own_mixture(tiny_corpus, tmp_path):
    """The smol corpus is 80% open-vocabulary speech; a stage can draw its tasks in chosen shares from
    the same manifest (a mixture source per group of tasks), the other stages untouched."""
    raw = staged(tiny_corpus, tmp_path, tmp_path / "cache").model_dump(mode="json")
    raw["train"]["stages"][1]["mixture"] = [
        {"name": "speech", "manifest": "train.jsonl", "tasks": ["asr"], "weight": 1},
        {"name": "labels", "manifest": "train.jsonl", "tasks": ["gender", "sound"], "weight": 3},
    ]
    recipe = load_recipe(raw)
    align, tune = stage_recipe(recipe, 0), stage_recipe(recipe, 1)
    assert align.data.mixture is None and align.data.tasks == ["asr"]
    assert [(m.name, m.tasks) for m in tune.data.mixture] == [
        ("speech", ["asr"]),
        ("labels", ["gender", "sound"]),
    ]
    assert stage_summary(recipe)[1]["tasks"] == ["speech 25%: asr", "labels 75%: gender+sound"]
    result = train_recipe(load_recipe(raw, ["train.stages.align.max_steps=1", "train.stages.tune.max_steps=2"]),
                          evaluate=False)  # fmt: skip
    assert result.steps == 3 and all("lm_loss" in r for r in load_trainer_state(result.checkpoint)["history"])

    raw["train"]["stages"][1]["tasks"] = ["asr"]
    with pytest.raises(RecipeError, match="tasks and mixture both set"):
        load_recipe(raw)
