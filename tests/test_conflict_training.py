"""Gradient conflict during training (``train.conflict_every``): per adapter part, with a noise floor;
the conflict-over-training curve a study's report draws."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe
from safetensors.torch import load_file

from moeaudio.analyze import conflict, measure
from moeaudio.analyze.conflict import conflict_curve_summary, plot_conflict_over_training
from moeaudio.analyze.measure import adapter_part, domain_examples, training_conflict
from moeaudio.runtime.checkpoint import WEIGHTS, load_model
from moeaudio.runtime.examples import load_examples, manifest_path
from moeaudio.runtime.run_dir import RunDir
from moeaudio.train.launch import train_recipe

DOMAINS = ("music", "sound", "speech")


def test_adapter_parts_by_parameter_name() -> None:
    assert adapter_part("moe.experts.w1") == "routed"
    assert adapter_part("moe.router.W_g.weight") is None
    assert adapter_part("moe.shared_experts.w1") == "shared"
    assert adapter_part("aggregation.fc1.weight") == "shared"
    assert adapter_part("mlp.fc1.weight") == "shared"  # a dense adapter is all shared path


def _train(corpus: Path, cache: Path, run: Path, kind: str, *overrides: str) -> Path:
    """A tiny recipe, 4 steps on three domains' tasks."""
    recipe = tiny_recipe(
        corpus,
        run,
        kind,
        "data.tasks=[gender, instrument, sound]",
        f"data.feature_cache={cache}",
        "train.max_steps=4",
        "train.log_every=1",
        *overrides,
    )
    return train_recipe(recipe, evaluate=False).checkpoint


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def runs(tiny_corpus: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny MoE and dense recipes, 4 steps each, the probe every 2 steps."""
    out = {}
    for kind in ("moe", "dense"):
        run = tmp_path_factory.mktemp(f"conflict_{kind}")
        _train(tiny_corpus, cache, run, kind, "train.conflict_every=2")
        out[kind] = run
    return out


def test_probe_leaves_training_unchanged(
    runs: dict[str, Path], tiny_corpus: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The probe only observes (its own batches and seed, autograd.grad, eval mode): the weights after
    4 steps with a probe every 2 steps equal those without, bit for bit. Why it matters: a study's run
    with ``train.conflict_every`` is the same run as its twin without, so studies share it
    (``recipe_fingerprint`` leaves the setting out)."""
    probed = RunDir(runs["moe"]).latest()
    plain = _train(tiny_corpus, cache, tmp_path_factory.mktemp("conflict_off"), "moe")
    a, b = load_file(str(probed / WEIGHTS)), load_file(str(plain / WEIGHTS))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("kind,parts", [("moe", ("all", "shared", "routed")), ("dense", ("all", "shared"))])
def test_probe_logs_parts_and_floor(runs: dict[str, Path], kind: str, parts: tuple[str, ...]) -> None:
    records = [r for r in _logged(runs[kind]) if any(k.startswith("conflict_by_part/") for k in r)]
    assert [r["step"] for r in records] == [2, 4]
    rec = records[0]
    expected = set()
    for part in parts:
        head = f"conflict_by_part/{part}/"
        expected |= {head + "floor", *(f"{head}floor/{d}" for d in DOMAINS)}
        expected |= {head + p for p in ("music-sound", "music-speech", "sound-speech")}
    assert {k for k in rec if k.startswith("conflict_by_part/")} == expected
    assert all(-1.0 <= rec[k] <= 1.0 for k in expected)
    # the paper figure's mean-gradient cosines are still logged under their old names
    assert {k for k in rec if k.startswith("conflict/")} == {
        "conflict/music-sound",
        "conflict/music-speech",
        "conflict/sound-speech",
    }
    summary = conflict_curve_summary(rec)
    assert set(summary) == set(parts)
    pairs = [rec[f"conflict_by_part/all/{p}"] for p in ("music-sound", "music-speech", "sound-speech")]
    assert summary["all"]["cross"] == pytest.approx(sum(pairs) / 3)
    assert summary["all"]["floor"] == rec["conflict_by_part/all/floor"]


def test_floor_of_one_batch_with_itself_is_one(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The floor is the cosine of a domain's two batches: the same batch twice gives exactly 1, and
    then the cross-domain numbers are those of one gradient per domain."""
    model = load_model(tiny_checkpoint)
    examples = load_examples(model, manifest_path(model.recipe, "train"), model.recipe, progress=False)
    by_domain = domain_examples(examples)
    real = measure.sample_domain_batches

    def same_twice(examples_by_domain, num_batches, batch_size, seed=0):
        first = real(examples_by_domain, 1, batch_size, seed)
        return {d: [b[0], b[0]] for d, b in first.items()}

    monkeypatch.setattr(measure, "sample_domain_batches", same_twice)
    before = model.training
    out = training_conflict(model, by_domain, batch_size=4)
    assert model.training == before  # the probe restores the mode
    for part in ("all", "shared", "routed"):
        assert out[f"conflict_by_part/{part}/floor"] == pytest.approx(1.0, abs=1e-5)
    assert out["conflict_by_part/all/music-sound"] == pytest.approx(out["conflict/music-sound"], abs=1e-5)


def _curves(runs: dict[str, Path]) -> dict[str, dict[int, dict]]:
    """Each run's logged probes as the figure takes them: step -> per-part summary."""
    return {
        kind: {r["step"]: summary for r in _logged(run) if (summary := conflict_curve_summary(r))}
        for kind, run in runs.items()
    }


def test_curve_figure_from_the_logs(runs: dict[str, Path], tmp_path: Path) -> None:
    curves = _curves(runs)
    png = plot_conflict_over_training(curves, tmp_path / "c.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    assert plot_conflict_over_training({}, tmp_path / "none.png") is None


def test_curve_figure_legend_names_every_arm(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dense arm has no routed-experts panel, which used to hold the only legend: dense's curves
    were drawn without a name."""
    figures = []
    monkeypatch.setattr(conflict, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    curves = _curves(runs)
    plot_conflict_over_training(curves, tmp_path / "c.png")
    labels = {t.get_text() for legend in figures[0].legends for t in legend.get_texts()}
    assert not any(ax.get_legend() for ax in figures[0].axes)  # below the panels, over no curve
    assert labels == {
        f"{kind}: {what}" for kind in runs for what in ("across domains", "same domain (floor)")
    }
