"""`moeaudio reproduce` end to end on a tiny study (tiny recipes, 2 arms x 2 seeds, 2 steps each).

One module-scoped study is run the way a user's would be killed and restarted: the trainer raises on
its second call (the first arm of seed 0 finished, the second not), then the study is run again and
must train only the three runs left, leaving the finished one untouched. The other tests read what
that left behind: results.md / results.json / figures, a third run that trains nothing, --collect
on a copy of the folder, --print-commands, and the report's statistics on fixed numbers.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from moeaudio.config import load_recipe
from moeaudio.reproduce import runner
from moeaudio.reproduce.options import ReproduceOptions
from moeaudio.reproduce.plan import plan_study, recipe_fingerprint
from moeaudio.reproduce.report import build_results, render_markdown
from moeaudio.reproduce.study import StudyError, load_study


def tiny_study(corpus: Path) -> dict[str, Any]:
    return {
        "name": "tiny_study",
        "title": "Tiny study: dense vs MoE",
        "description": "Test scale: the tiny recipes, 2 steps each.",
        "paper_source": "made-up numbers for the test",
        "base": {"cpu": "tiny/moe"},
        "overrides": {
            "cpu": [
                f"data.root={corpus}",
                "data.synth_if_missing=false",
                "train.max_steps=2",
                "train.warmup_steps=1",
                "train.log_every=1",
                "train.conflict_every=1",
            ]
        },
        "baseline": "dense",
        "seeds": [0, 1],
        "arms": [
            {"name": "dense", "label": "Dense", "recipe": {"cpu": "tiny/dense"}, "paper": {"MCQ": 50.0}},
            {"name": "moe", "label": "MoE", "paper": {"MCQ": 52.5}},
        ],
        "columns": [
            {"name": "MCQ", "task": {"cpu": "mcq"}},
            {"name": "intent", "task": {"cpu": "intent"}},
            {"name": "asr WER", "task": {"cpu": "asr"}, "metric": "wer", "higher_is_better": False},
        ],
        "eval": {"cpu": {"max_items": 3, "batch_size": 8}},
        "analyses": [
            {"name": "routing", "kind": "routing", "title": "Routing", "arms": ["dense", "moe"]},
            {
                "name": "conflict",
                "kind": "conflict",
                "title": "Conflict",
                "arms": ["dense", "moe"],
                "num_batches": 1,
                "batch_size": 2,
                "paper": {"dense": {"cosine music-sound": -0.02}, "moe": {"cosine music-sound": 0.029}},
            },
        ],
    }


class Interrupted(RuntimeError):
    pass


@pytest.fixture(scope="module")
def study_run(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("study")
    study_file = root / "tiny_study.yaml"
    study_file.write_text(yaml.safe_dump(tiny_study(tiny_corpus)))
    out = root / "out"
    real = runner.train_recipe
    calls: dict[str, list[str]] = {"first": [], "second": []}

    def killed_after_first(recipe, output_dir=None, resume=False, evaluate=True):
        calls["first"].append(str(output_dir))
        if len(calls["first"]) == 2:
            raise Interrupted("killed between arms")
        return real(recipe, output_dir, resume=resume, evaluate=evaluate)

    def counting(recipe, output_dir=None, resume=False, evaluate=True):
        calls["second"].append(str(output_dir))
        return real(recipe, output_dir, resume=resume, evaluate=evaluate)

    opts = ReproduceOptions(study=str(study_file), output=str(out))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOEAUDIO_QUIET", "1")
        mp.setattr(runner, "train_recipe", killed_after_first)
        with pytest.raises(Interrupted):
            runner.reproduce(opts)
        first = out / "dense" / "seed-0"
        assert (first / runner.DONE).exists()
        assert not (out / "moe" / "seed-0" / runner.DONE).exists()
        weights = next(first.glob("checkpoints/step-*/model.safetensors"))
        stamps = {p: p.stat().st_mtime_ns for p in (weights, first / runner.DONE)}
        done_before = (first / runner.DONE).read_text()
        mp.setattr(runner, "train_recipe", counting)
        results = runner.reproduce(opts)
    return {
        "root": root,
        "study_file": study_file,
        "out": out,
        "calls": calls,
        "stamps": stamps,
        "done_before": done_before,
        "results": results,
    }


def test_interrupted_study_resumes_without_retraining(study_run: dict[str, Any]) -> None:
    out, calls = study_run["out"], study_run["calls"]
    assert calls["first"] == [str(out / "dense" / "seed-0"), str(out / "moe" / "seed-0")]
    # the rerun trains the three runs left, seed by seed, and not the finished one
    assert calls["second"] == [str(out / a / f"seed-{s}") for s, a in [(0, "moe"), (1, "dense"), (1, "moe")]]
    for path, stamp in study_run["stamps"].items():
        assert path.stat().st_mtime_ns == stamp, f"{path} was rewritten"
    assert (out / "dense" / "seed-0" / runner.DONE).read_text() == study_run["done_before"]
    for arm in ("dense", "moe"):
        for seed in (0, 1):
            record = json.loads((out / arm / f"seed-{seed}" / runner.DONE).read_text())
            assert (record["arm"], record["seed"], record["steps"]) == (arm, seed, 2)
            assert set(record["values"]) == {"MCQ", "intent", "asr WER"}
            for rel in record["eval_files"].values():
                assert (out / arm / f"seed-{seed}" / rel).exists()


def test_results_written_in_the_papers_layout(study_run: dict[str, Any]) -> None:
    out, results = study_run["out"], study_run["results"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["cells"] == json.loads(json.dumps(results["cells"]))
    assert results["missing_runs"] == []
    cells = results["cells"]
    for arm in ("dense", "moe"):
        for col in ("MCQ", "intent", "asr WER"):
            cell = cells[arm][col]
            assert cell["n"] == 2 and set(cell["values"]) == {"0", "1"}
            assert 0.0 <= cell["mean"] <= 100.0 or col == "asr WER"
    diff = cells["moe"]["MCQ"]["diff"]
    assert diff["n"] == 2 and diff["verdict"] in ("differs", "within noise")
    assert cells["dense"]["MCQ"]["diff"] is None  # the baseline
    assert (cells["dense"]["MCQ"]["paper"], cells["moe"]["MCQ"]["paper_delta"]) == (50.0, 2.5)
    # each run's number is its eval file's, x100 for an accuracy column
    record = json.loads((out / "moe" / "seed-1" / runner.DONE).read_text())
    eval_json = json.loads((out / "moe" / "seed-1" / record["eval_files"]["MCQ"]).read_text())
    assert cells["moe"]["MCQ"]["values"]["1"] == pytest.approx(100 * eval_json["metrics"]["accuracy"])
    md = (out / "results.md").read_text()
    assert md.startswith("# Tiny study: dense vs MoE")
    assert "| Adapter | MCQ | intent | asr WER ↓ |" in md
    weights = {a["name"]: a["adapter_weights"] for a in results["arms"]}  # each arm's own model's
    assert weights["dense"]["total"] == weights["dense"]["active"] > 0
    assert weights["moe"]["active"] < weights["moe"]["total"]
    assert "| Dense (" in md and " active) — ours |" in md
    assert "| Dense — paper | 50.00 |" in md and "| MoE — paper | +2.50 |" in md
    effect = cells["moe"]["MCQ"]["effect"]  # per-item records: seeds x items bootstrap, Holm-corrected
    assert effect["method"] == "items x seeds bootstrap" and effect["n_seeds"] == 2 and effect["n_items"] == 3
    assert effect["correction"] == "Holm over 3 columns" and effect["mde"] is not None
    assert "## Verdicts: MoE − Dense" in md
    assert "## Differences from the baseline (Dense)" in md
    assert "within noise" in md or "differs" in md
    assert results["differences_figure"] == "figures/differences.png"
    # train.conflict_every=1: the conflict curve over training steps, dense and MoE, 2 seeds each
    over = results["conflict_over_training"]
    assert over["figure"] == "figures/conflict_over_training.png" and over["seeds"] == {"dense": 2, "moe": 2}
    assert set(over["curves"]["moe"]["2"]) == {"all", "shared", "routed"}
    assert set(over["curves"]["dense"]["2"]) == {"all", "shared"}
    assert "## Figure: gradient conflict during training" in md
    for name in ("routing", "conflict", "differences", "conflict_over_training"):
        png = out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](figures/{name}.png)" in md
    routing = next(a for a in results["analyses"] if a["name"] == "routing")
    assert routing["skipped"] == {"dense": "a dense adapter has no router"}
    assert routing["quantities"]["MaxVio"]["moe"]["n"] == 2
    conflict = next(a for a in results["analyses"] if a["name"] == "conflict")
    cos = conflict["quantities"]["cosine music-sound"]
    assert cos["moe"]["diff"]["n"] == 2 and cos["dense"]["diff"] is None
    assert "| cosine music-sound |" in md


def test_finished_study_trains_nothing(study_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "train_recipe", never)
    monkeypatch.setattr(runner, "run_eval", never)  # nor evaluated
    results = runner.reproduce(
        ReproduceOptions(study=str(study_run["study_file"]), output=str(study_run["out"]))
    )
    assert results["cells"]["moe"]["MCQ"]["values"] == study_run["results"]["cells"]["moe"]["MCQ"]["values"]


def test_a_sibling_study_reuses_finished_twins(
    study_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same recipe and seed in another study beside this one (Table 3's balance arm is Table 1's moe):
    evaluated from the twin's checkpoint, never trained again; --no-reuse trains. The sibling does not
    log the conflict probe (as Table 3 does not): a setting that only observes makes no other run."""
    data = yaml.safe_load(study_run["study_file"].read_text())
    data["name"] = "sibling"
    data["overrides"]["cpu"].remove("train.conflict_every=1")
    for arm in data["arms"]:
        arm["name"] = "twin_" + arm["name"]
    data["baseline"] = "twin_dense"
    for an in data["analyses"]:
        an["arms"] = ["twin_" + a for a in an["arms"]]
        an.pop("paper", None)
    study_file = study_run["root"] / "sibling.yaml"
    study_file.write_text(yaml.safe_dump(data))
    sibling = study_run["root"] / "sibling-out"

    class Trained(RuntimeError):
        pass

    def never(*args, **kwargs):
        raise Trained

    monkeypatch.setattr(runner, "train_recipe", never)
    with pytest.raises(Trained):
        runner.reproduce(ReproduceOptions(study=str(study_file), output=str(sibling), reuse=False))
    assert not list(sibling.glob("*/seed-*/done.json"))
    results = runner.reproduce(ReproduceOptions(study=str(study_file), output=str(sibling)))
    assert results["missing_runs"] == []
    for arm in ("dense", "moe"):
        assert (
            results["cells"]["twin_" + arm]["MCQ"]["values"]
            == study_run["results"]["cells"][arm]["MCQ"]["values"]
        )
        for seed in (0, 1):
            record = json.loads((sibling / f"twin_{arm}" / f"seed-{seed}" / runner.DONE).read_text())
            twin = study_run["out"] / arm / f"seed-{seed}"
            assert (
                Path(record["reused_from"])
                == (twin / json.loads((twin / runner.DONE).read_text())["checkpoint"]).resolve()
            )
            assert (
                sibling / f"twin_{arm}" / f"seed-{seed}" / record["checkpoint"] / "model.safetensors"
            ).exists()
    assert (sibling / "results.md").exists()


def test_a_record_of_an_older_fingerprint_is_the_same_run(study_run: dict[str, Any]) -> None:
    """A done record written before a setting counted as observation-only holds a fingerprint this
    version does not compute; the recipe its checkpoint saved decides, so finished studies stay valid."""
    run_dir = study_run["out"] / "moe" / "seed-0"
    record = json.loads((run_dir / runner.DONE).read_text())
    ckpt = run_dir / record["checkpoint"]
    now = recipe_fingerprint(load_recipe(ckpt / "recipe.yaml"))
    assert runner._same_run({**record, "fingerprint": "written-by-an-older-version"}, ckpt, now)
    other = recipe_fingerprint(load_recipe(ckpt / "recipe.yaml", ["adapter.top_k=1"]))
    assert not runner._same_run({**record, "fingerprint": "written-by-an-older-version"}, ckpt, other)


def test_a_changed_study_is_refused(study_run: dict[str, Any], tmp_path: Path) -> None:
    data = yaml.safe_load(study_run["study_file"].read_text())
    data["arms"][1]["overrides"] = ["adapter.top_k=1"]  # the moe arm is no longer what was trained
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    with pytest.raises(StudyError, match="different recipe"):
        runner.reproduce(ReproduceOptions(study=str(changed), output=str(study_run["out"])))


def test_collect_gathers_a_prepared_folder(
    study_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after `--print-commands` jobs: checkpoints but no eval files or done markers; one job never ran."""
    out = tmp_path / "cluster"
    shutil.copytree(study_run["out"], out)
    for done in out.glob("*/seed-*/done.json"):
        done.unlink()
    for evals in out.glob("*/seed-*/checkpoints/step-*/eval"):
        shutil.rmtree(evals)
    shutil.rmtree(out / "moe" / "seed-1")  # this job never ran
    for f in ("results.md", "results.json"):
        (out / f).unlink()

    def never(*args, **kwargs):
        raise AssertionError("--collect trains nothing")

    monkeypatch.setattr(runner, "train_recipe", never)
    results = runner.reproduce(
        ReproduceOptions(study=str(study_run["study_file"]), output=str(out), collect=True)
    )
    assert results["missing_runs"] == ["moe/seed-1"]
    assert [a["missing_seeds"] for a in results["arms"]] == [[], [1]]
    for key in ("dense/seed-0", "moe/seed-0", "dense/seed-1"):
        record = json.loads((out / key / "done.json").read_text())
        assert record["train_seconds"] is None  # trained elsewhere: not measured here
        assert all((out / key / rel).exists() for rel in record["eval_files"].values())  # evaluated again
        original = json.loads((study_run["out"] / key / "done.json").read_text())
        assert record["values"] == original["values"]  # same checkpoint, same greedy eval
    assert results["cells"]["moe"]["MCQ"]["n"] == 1
    assert results["cells"]["moe"]["MCQ"]["diff"]["verdict"] == "n/a"
    md = (out / "results.md").read_text()
    assert "**Not finished:** moe/seed-1." in md and "(n=1)" in md


def test_print_commands(study_run: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from moeaudio.cli import app

    out = tmp_path / "jobs"
    study_file = str(study_run["study_file"])
    plan = plan_study(load_study(study_file), "cpu", output=out)
    for launcher, marker in [
        # cpu scale: one rank per run unless --world-size says otherwise
        ("torchrun", "torchrun --nnodes ${NNODES:-1} --nproc_per_node ${NPROC_PER_NODE:-1} --rdzv_backend c10d "
         "--rdzv_endpoint ${MASTER_ADDR:-localhost}:${MASTER_PORT:-29500} --rdzv_id "),
        ("deepspeed", "deepspeed --hostfile ${HOSTFILE:-hostfile} --num_gpus ${NPROC_PER_NODE:-1} --module moeaudio.train "),
        ("python", "python -m moeaudio.train "),
    ]:  # fmt: skip
        result = CliRunner().invoke(
            app, ["reproduce", study_file, "--print-commands", "--launcher", launcher, "--output", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert (out / "commands.sh").read_text() == result.stdout
        lines = result.stdout.splitlines()
        assert lines[0] == "#!/bin/sh"
        assert f"#   moeaudio reproduce tiny_study --scale cpu --output {out.resolve()} --collect" in lines
        commands = [line for line in lines if not line.startswith("#")]
        assert len(commands) == 4  # 2 arms x 2 seeds, seed by seed
        for run, line in zip(plan.runs, commands, strict=True):
            assert line.startswith(marker)
            args = shlex.split(line.split(" moeaudio.train ", 1)[1])
            assert args[-2:] == ["--output-dir", str((out / run.arm / f"seed-{run.seed}").resolve())]
            recipe, overrides = args[0], args[1:-2]
            assert f"train.seed={run.seed}" in overrides
            # what the job trains is what the study plans, so --collect will accept it
            assert recipe_fingerprint(load_recipe(recipe, overrides)) == run.fingerprint
    result = CliRunner().invoke(app, ["reproduce", study_file, "--print-commands", "--collect"])
    assert result.exit_code == 2 and "exclude each other" in result.output


# ----------------------------------------------------------------------------- the report by hand


def test_report_statistics_on_fixed_numbers(tiny_corpus: Path, tmp_path: Path) -> None:
    """Three seeds of made-up accuracies: the cells, differences and markdown computed by hand."""
    data = tiny_study(tiny_corpus)
    data["seeds"] = [0, 1, 2]
    data["columns"] = [
        {"name": "MCQ", "task": {"cpu": "mcq"}},
        {"name": "MCQ text", "task": {"cpu": "mcq"}, "modality": "text"},
        {"name": "gap", "gap": ["MCQ", "MCQ text"]},
    ]
    data["analyses"] = []
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    plan = plan_study(load_study(path), "cpu", output=tmp_path / "out")
    values = {  # (MCQ, MCQ text) per arm and seed, as eval writes them (fractions)
        ("dense", 0): (0.60, 0.70), ("dense", 1): (0.61, 0.70), ("dense", 2): (0.63, 0.70),
        ("moe", 0): (0.61, 0.70), ("moe", 1): (0.63, 0.70), ("moe", 2): (0.66, 0.70),
    }  # fmt: skip
    records = {
        f"{arm}/seed-{seed}": {"seed": seed, "values": {"MCQ": a, "MCQ text": t}}
        for (arm, seed), (a, t) in values.items()
    }
    results = build_results(plan, records)
    dense, moe = results["cells"]["dense"], results["cells"]["moe"]
    # dense MCQ 60, 61, 63: mean 61.333, std sqrt(((-1.333)^2 + (-0.333)^2 + 1.667^2) / 2) = 1.5275
    assert dense["MCQ"]["mean"] == pytest.approx(61.3333, abs=1e-4)
    assert dense["MCQ"]["std"] == pytest.approx(1.5275, abs=1e-4)
    # moe - dense per seed: 1, 2, 3 -> mean 2, std 1, half-width 4.303 / sqrt(3) = 2.4843
    d = moe["MCQ"]["diff"]
    assert (d["mean"], d["std"]) == (pytest.approx(2.0), pytest.approx(1.0))
    assert d["half_width"] == pytest.approx(2.4843, abs=5e-4)
    assert d["verdict"] == "within noise"
    # gap = MCQ - MCQ text, seed by seed: moe 61-70, 63-70, 66-70 = -9, -7, -4
    assert moe["gap"]["values"] == {
        "0": pytest.approx(-9.0),
        "1": pytest.approx(-7.0),
        "2": pytest.approx(-4.0),
    }
    assert moe["gap"]["diff"]["mean"] == pytest.approx(2.0)  # text is equal, so the gap moves with MCQ
    assert moe["MCQ text"]["diff"]["verdict"] == "within noise"  # identical: mean 0, std 0
    md = render_markdown(results)
    assert "| MoE — ours | 63.33 ± 2.52 | 70.00 ± 0.00 | −6.67 ± 2.52 |" in md
    assert "+2.00 [−0.48, +4.48] within noise" in md
    assert "| Dense — paper | 50.00 | — | — |" in md
    assert "| MoE — paper | +2.50 | — | — |" in md


def test_arms_option_keeps_the_baseline(tiny_corpus: Path, tmp_path: Path) -> None:
    from moeaudio.errors import UsageError

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_study(tiny_corpus)))
    study = load_study(path)
    plan = plan_study(study, "cpu", seeds=3, arms=["moe"], output=tmp_path / "o")
    assert plan.arms == ["dense", "moe"]  # differences need the baseline
    assert [r.key for r in plan.runs] == [f"{a}/seed-{s}" for s in (0, 1, 2) for a in ("dense", "moe")]
    with pytest.raises(UsageError, match="unknown arm"):
        plan_study(study, "cpu", arms=["moee"])
    with pytest.raises(StudyError, match="sets train.seed"):
        plan_study(study, "cpu", extra=["train.seed=3"])


def test_differences_figure_flips_lower_is_better_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right is better in every row: a WER difference is drawn as baseline - arm; a baseline-only
    study draws nothing."""
    from moeaudio.reproduce import plots

    cell = {"n": 3, "mean": 2.0, "low": 1.0, "high": 3.0, "verdict": "differs"}
    results = {
        "baseline": "dense",
        "title": "t",
        "confidence": 0.95,
        "arms": [{"name": "dense", "label": "Dense"}, {"name": "moe", "label": "MoE"}],
        "columns": [
            {"name": "MCQ", "gap": None, "higher_is_better": True, "unit": "%"},
            {"name": "asr WER", "gap": None, "higher_is_better": False, "unit": "%"},
        ],
        "cells": {
            "dense": {"MCQ": {"diff": None}, "asr WER": {"diff": None}},
            "moe": {"MCQ": {"diff": cell}, "asr WER": {"diff": cell}},
        },
    }
    drawn: list[tuple[list[float], list[float]]] = []
    real = plots.pyplot

    def spying():
        plt = real()
        original = plt.Axes.errorbar

        def errorbar(self, x, y, *args, **kwargs):
            drawn.append((list(x), list(y)))
            return original(self, x, y, *args, **kwargs)

        monkeypatch.setattr(plt.Axes, "errorbar", errorbar)
        return plt

    monkeypatch.setattr(plots, "pyplot", spying)
    png = plots.plot_differences(results, tmp_path / "d.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    assert drawn == [([2.0, -2.0], [0.0, 1.0])]  # MCQ +2 (better), WER +2 points drawn as -2 (worse)
    only_baseline = {**results, "arms": results["arms"][:1]}
    assert plots.plot_differences(only_baseline, tmp_path / "none.png") is None


def test_a_column_added_later_is_filled_without_retraining(
    study_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column added to a finished study (a nested metric: MCQ by domain) is read from the eval
    files already beside each checkpoint: nothing is trained or evaluated again; a metric path that
    is not there is an error naming the file."""
    out = tmp_path / "grown"
    shutil.copytree(study_run["out"], out)
    record = json.loads((out / "moe" / "seed-0" / runner.DONE).read_text())
    mcq = json.loads((out / "moe" / "seed-0" / record["eval_files"]["MCQ"]).read_text())
    domain = sorted(mcq["metrics"]["by_domain"])[0]
    data = yaml.safe_load(study_run["study_file"].read_text())
    data["columns"].append(
        {"name": "MCQ one domain", "task": {"cpu": "mcq"}, "metric": f"by_domain.{domain}.accuracy"}
    )
    grown = tmp_path / "grown.yaml"
    grown.write_text(yaml.safe_dump(data))

    def never(*args, **kwargs):
        raise AssertionError("nothing is trained or evaluated again")

    monkeypatch.setattr(runner, "train_recipe", never)
    monkeypatch.setattr(runner, "run_eval", never)
    results = runner.reproduce(ReproduceOptions(study=str(grown), output=str(out)))
    want = 100 * mcq["metrics"]["by_domain"][domain]["accuracy"]
    assert results["cells"]["moe"]["MCQ one domain"]["values"]["0"] == pytest.approx(want)
    assert results["cells"]["moe"]["MCQ one domain"]["n"] == 2
    saved = json.loads((out / "moe" / "seed-0" / runner.DONE).read_text())
    assert saved["values"]["MCQ one domain"] == pytest.approx(want / 100)

    data["columns"].append(
        {"name": "nowhere", "task": {"cpu": "mcq"}, "metric": "by_domain.nowhere.accuracy"}
    )
    grown.write_text(yaml.safe_dump(data))
    with pytest.raises(StudyError, match=r"mcq\.json: no metric 'by_domain\.nowhere\.accuracy'"):
        runner.reproduce(ReproduceOptions(study=str(grown), output=str(out)))
