"""train.report_to (jsonl, tensorboard, wandb), llm.attn_implementation, and the inference precision of
eval / transcribe (bf16 on a GPU, fp32 on CPU)."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe

from moeaudio.config import RecipeError, load_recipe
from moeaudio.runtime.device import inference_dtype
from moeaudio.train.launch import train_recipe


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MOEAUDIO_QUIET", "0")  # rank 0 reports (the loggers are what is tested)


def _train(corpus: Path, run: Path, *overrides: str):
    recipe = tiny_recipe(corpus, run, "moe", "data.tasks=[asr, gender]", "train.max_steps=2", "eval.max_items=2",
                         *overrides)  # fmt: skip
    return train_recipe(recipe)


class _FakeRun:
    def __init__(self, calls: list, **init):
        self.calls = calls
        calls.append(("init", init))

    def log(self, data, step=None):
        self.calls.append(("log", step, dict(data)))

    def finish(self):
        self.calls.append(("finish",))


def test_report_to_dispatches_to_each_logger(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """A stand-in wandb module records what the reporter sends: the recipe as config, every step's record,
    the final validation headlines, then finish. jsonl and tensorboard are left out when not asked for."""
    calls: list = []
    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # libraries probe find_spec("wandb")
    fake.init = lambda **kw: _FakeRun(calls, **kw)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = tmp_path / "run"
    _train(tiny_corpus, run, "train.report_to=[wandb]")
    assert not (run / "metrics.jsonl").exists() and not (run / "tensorboard").exists()
    kinds = [c[0] for c in calls]
    assert kinds == ["init", "log", "log", "log", "finish"]
    init = calls[0][1]
    assert init["dir"] == str(run) and init["config"]["train"]["report_to"] == ["wandb"]
    assert init["project"] == "moeaudio" and init["name"] == "run"
    assert [c[1] for c in calls[1:4]] == [1, 2, 2]
    assert {"train/loss", "train/lr", "train/aux_loss"} <= set(calls[1][2])
    assert set(calls[3][2]) == {"valid/asr/wer", "valid/gender/accuracy"}

    run2 = tmp_path / "run2"
    _train(tiny_corpus, run2, "train.report_to=[jsonl]")
    assert len((run2 / "metrics.jsonl").read_text().splitlines()) == 2 and not (run2 / "tensorboard").exists()


def test_wandb_offline_run(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """The real wandb (the dev extra installs it) in offline mode: the run is written under RUN/wandb."""
    pytest.importorskip("wandb", reason="wandb is in the dev extra")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    _train(tiny_corpus, run, "train.report_to=[wandb, jsonl, tensorboard]")
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, sorted(p.name for p in (run / "wandb").iterdir())
    assert (
        list(offline[0].glob("run-*.wandb"))
        and (run / "tensorboard").is_dir()
        and (run / "metrics.jsonl").exists()
    )


def test_report_to_wandb_without_wandb_fails_before_training(
    tiny_corpus: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(RecipeError, match=r"pip install 'moeaudio\[wandb\]'"):
        _train(tiny_corpus, tmp_path / "run", "train.report_to=[wandb]")
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(RecipeError, match="report_to"):
        load_recipe("tiny/moe", ["train.report_to=[mlflow]"])


def test_attn_implementation_reaches_transformers() -> None:
    from moeaudio.model.audio_llm import build_audio_llm

    outputs = {}
    for impl in ("eager", "sdpa"):
        model = build_audio_llm(load_recipe("tiny/moe", [f"llm.attn_implementation={impl}"])).eval()
        assert model.llm.config._attn_implementation == impl
        ids = torch.arange(3, 19)[None]
        with torch.no_grad():
            outputs[impl] = model.llm(input_ids=ids).logits
    torch.testing.assert_close(
        outputs["eager"], outputs["sdpa"], rtol=1e-4, atol=1e-5
    )  # same model, two kernels
    default = build_audio_llm(load_recipe("tiny/moe"))
    assert default.llm.config._attn_implementation == "sdpa"  # unchanged default
    from transformers.utils import is_flash_attn_2_available

    if not is_flash_attn_2_available():  # this machine: no flash-attn, no GPU
        with pytest.raises(RecipeError, match="flash-attn"):
            build_audio_llm(load_recipe("tiny/moe", ["llm.attn_implementation=flash_attention_2"]))


def test_inference_precision(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    assert inference_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert inference_dtype("cuda") == torch.bfloat16  # auto on a GPU: bf16, as training there
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert inference_dtype("cuda") == torch.float32
    assert (
        inference_dtype("cpu", "bf16") == torch.bfloat16 and inference_dtype("cuda", "fp32") == torch.float32
    )
    from moeaudio.errors import UsageError

    with pytest.raises(UsageError, match="--precision"):
        inference_dtype("cpu", "fp16")

    from moeaudio.eval.evaluate import run_eval

    fp32 = run_eval("gender", tiny_checkpoint, output=tmp_path / "g32.json", max_items=4, progress=False)
    bf16 = run_eval("gender", tiny_checkpoint, output=tmp_path / "g16.json", max_items=4, precision="bf16",
                    progress=False)  # fmt: skip
    assert fp32["decoding"]["precision"] == "float32" and bf16["decoding"]["precision"] == "bfloat16"
    assert bf16["n"] == fp32["n"] > 0
    assert json.loads((tmp_path / "g16.json").read_text())["decoding"]["precision"] == "bfloat16"


def test_a_quiet_run_prints_nothing_and_still_writes_its_files(
    tiny_corpus: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """MOEAUDIO_QUIET=1 silences the console only: metrics, TensorBoard, the loss curve and the
    validation results are the run's record and are written all the same."""
    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    run = tmp_path / "run"
    _train(tiny_corpus, run, "train.report_to=[jsonl, tensorboard]")
    assert capsys.readouterr().out == ""
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (run / "tensorboard").is_dir() and (run / "loss.png").is_file() and (run / "recipe.yaml").is_file()
    assert set(json.loads((run / "validation.json").read_text())) == {"asr", "gender"}
