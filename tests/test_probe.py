"""Linear probes (`moeaudio analyze-probe`): the probe itself on known data, then end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from moeaudio.analyze.probe import STAGES, fit_probe, pooled_stages
from moeaudio.cli import app
from moeaudio.runtime.checkpoint import load_model
from moeaudio.runtime.examples import load_manifest_examples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _blobs(n: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian classes in 20-d whose means differ by ``shift`` along one axis each."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 20, generator=g)
    x[torch.arange(n), y] += shift
    return x, y


def test_probe_separates_separable_classes() -> None:
    x_tr, y_tr = _blobs(300, shift=6.0, seed=0)
    x_ev, y_ev = _blobs(150, shift=6.0, seed=1)
    acc, train_acc = fit_probe(x_tr, y_tr, x_ev, y_ev)
    assert acc > 0.97 and train_acc > 0.97


def test_probe_is_at_chance_without_signal() -> None:
    x_tr, y_tr = _blobs(300, shift=0.0, seed=0)
    x_ev, y_ev = _blobs(600, shift=0.0, seed=1)
    acc, _ = fit_probe(x_tr, y_tr, x_ev, y_ev)
    assert abs(acc - 1 / 3) < 0.08, acc


def test_unseen_eval_label_counts_as_error() -> None:
    x_tr, y_tr = _blobs(300, shift=6.0, seed=0)
    x_ev, y_ev = _blobs(30, shift=6.0, seed=1)
    y_ev[:10] = -1  # a class the train clips never had
    acc, _ = fit_probe(x_tr, y_tr, x_ev, y_ev)
    assert acc <= 20 / 30 + 1e-6


def test_pooled_stages_are_mean_and_std_of_each_stage(tiny_checkpoint, tiny_corpus) -> None:
    model = load_model(tiny_checkpoint)
    examples = load_manifest_examples(model, tiny_corpus / "valid.jsonl")[:3]
    pooled = pooled_stages(model, examples)
    assert set(pooled) == set(STAGES)
    ex = examples[0]
    states = ex.states if ex.states is not None else model.encoder(model.encoder.prepare([ex.wave]))[0]
    d_enc = states.shape[-1]
    assert pooled["encoder"].shape == (3, 2 * d_enc)
    assert torch.allclose(pooled["encoder"][0, :d_enc], states.mean(0), atol=1e-5)
    assert pooled["adapter"].shape == (3, 2 * model.llm.get_input_embeddings().embedding_dim)


def test_cli_probes_every_classification_task(tiny_checkpoint, tiny_corpus, tmp_path: Path) -> None:
    png = tmp_path / "probe.png"
    result = CliRunner().invoke(
        app, ["analyze-probe", "--checkpoint", str(tiny_checkpoint), "--json", "--png", str(png)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["train_manifest"].endswith("train.jsonl") and data["eval_manifest"].endswith("valid.jsonl")
    tasks = {r["task"] for r in data["probes"]}
    assert {"gender", "chord", "sound", "instrument"} <= tasks
    assert not tasks & {"asr", "mcq"}  # free text and multiple choice are not probed
    for r in data["probes"]:
        assert r["stage"] in STAGES and 0.0 <= r["accuracy"] <= 1.0
        assert r["chance"] == pytest.approx(1 / {"gender": 2, "chord": 5}.get(r["task"], 1 / r["chance"]))
    assert png.read_bytes()[:8] == PNG_MAGIC
    one = CliRunner().invoke(
        app, ["analyze-probe", "--checkpoint", str(tiny_checkpoint), "--tasks", "gender"]
    )
    assert one.exit_code == 0, one.output
    assert "gender" in one.stdout and "chord" not in one.stdout


def test_cli_unknown_task_is_a_clear_error(tiny_checkpoint) -> None:
    result = CliRunner().invoke(
        app, ["analyze-probe", "--checkpoint", str(tiny_checkpoint), "--tasks", "genre"]
    )
    assert result.exit_code != 0
    assert "genre" in result.output and "tasks present" in result.output
