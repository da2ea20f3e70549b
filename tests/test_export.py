"""`moeaudio export`: a self-contained folder that loads in a fresh process with every cache pointed at an
empty directory, and gives the same greedy outputs and logits as the checkpoint it came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe, write_checkpoint
from safetensors import safe_open
from typer.testing import CliRunner

from moeaudio.cli import app

REPO = Path(__file__).resolve().parent.parent
PROMPT = "Transcribe the audio."

# Run in a fresh interpreter, away from the checkout, with no cache that has ever seen the run.
_PROBE = r"""
import json, sys
import moeaudio
model = moeaudio.load(sys.argv[1], device="cpu")
clips = sys.argv[3:]
print(json.dumps({
    "file": moeaudio.__file__,
    "greedy": model.generate(clips, sys.argv[2], max_new_tokens=12),
    "logits": [model.logits(c, sys.argv[2]).tolist() for c in clips],
}))
"""


def _clips(corpus: Path, n: int = 2) -> list[str]:
    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()]
    return [str(corpus / r["audio"]) for r in rows if r["task"] == "asr"][:n]


def _probe(target: Path, clips: list[str], tmp_path: Path, env: dict[str, str]) -> dict:
    """Greedy outputs and logits of ``moeaudio.load(target)`` in a fresh interpreter. The reference runs
    this way too: a bit-for-bit comparison must not depend on what earlier tests did to this process."""
    (tmp_path / "probe.py").write_text(_PROBE)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "probe.py"), str(target), PROMPT, *clips],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fresh_process(export: Path, clips: list[str], tmp_path: Path) -> tuple[dict, Path]:
    """The export, loaded with every cache pointed at an empty folder and the hubs offline."""
    empty = tmp_path / "empty-caches"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOEAUDIO_", "HF_", "TRANSFORMERS_"))}
    env |= {
        "MOEAUDIO_CACHE": str(empty / "moeaudio"),
        "HF_HOME": str(empty / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "XDG_CACHE_HOME": str(empty / "xdg"),
    }
    return _probe(export, clips, tmp_path, env), empty


def _reference(checkpoint: Path, clips: list[str], tmp_path: Path) -> dict:
    """The training checkpoint itself, loaded with this session's caches."""
    return _probe(checkpoint, clips, tmp_path, dict(os.environ))


def test_export_of_the_quickstart_model_loads_anywhere(
    quickstart_checkpoint: Path, tiny_corpus: Path, whisper_cache: Path, tmp_path: Path, monkeypatch
) -> None:
    """The frozen offline Whisper is not in the checkpoint's weights (it is rebuilt from the converted
    cache); the export carries it, the LLM as a transformers folder, the tokenizer and a model card."""
    from moeaudio.eval.evaluate import run_eval

    monkeypatch.setenv("MOEAUDIO_CACHE", str(whisper_cache))
    scored = run_eval(
        "gender", quickstart_checkpoint, tiny_corpus / "test.jsonl", max_items=2, progress=False
    )
    with safe_open(str(quickstart_checkpoint / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("encoder.")]  # the training checkpoint's gap

    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(quickstart_checkpoint.parent.parent), str(out), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["source_checkpoint"] == str(quickstart_checkpoint.resolve()) and manifest["lora"] is None
    for name in ("README.md", "recipe.yaml", "model.safetensors", "export.json", "encoder/config.json",
                 "encoder/preprocessor_config.json", "llm/config.json", "llm/model.safetensors",
                 "tokenizer/tokenizer.json", "eval/gender.json"):  # fmt: skip
        assert (out / name).is_file(), name
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("encoder.") for k in keys) and not any(k.startswith("llm.") for k in keys)
    recipe = (out / "recipe.yaml").read_text()
    assert "name: ./encoder" in recipe and "name: ./llm" in recipe and "tokenizer: ./tokenizer" in recipe
    card = (out / "README.md").read_text()
    accuracy = scored["metrics"]["accuracy"]
    assert "# quickstart" in card and "MoE-Adapter: 8 experts, top-4" in card
    assert f"| gender (audio) | accuracy | {accuracy:.3f} |" in card
    assert "moeaudio.load(" in card and "training items:" in card

    clips = _clips(tiny_corpus)
    got, empty = _fresh_process(out, clips, tmp_path)
    assert Path(got["file"]).is_relative_to(REPO)
    want = _reference(quickstart_checkpoint, clips, tmp_path)
    assert got["greedy"] == want["greedy"]
    assert got["logits"] == want["logits"]  # bit for bit
    assert not [p for p in empty.rglob("*") if p.is_file()], "the export reached for a cache"

    again = CliRunner().invoke(app, ["export", str(quickstart_checkpoint), str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.fixture(scope="module")
def lora_checkpoint(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with LoRA on the LLM, its LoRA weights made non-zero (B starts at zero)."""
    from moeaudio.model.audio_llm import build_audio_llm

    recipe = tiny_recipe(tiny_corpus, tmp_path_factory.mktemp("lora_run"), "moe", "llm.lora_r=4")
    model = build_audio_llm(recipe)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return write_checkpoint(model, tmp_path_factory.mktemp("lora_ckpt") / "step-000000")


@pytest.mark.parametrize("lora", ["adapter", "merge"])
def test_export_lora_as_peft_adapter_or_merged(
    lora_checkpoint: Path, tiny_corpus: Path, tmp_path: Path, lora
) -> None:
    from moeaudio.api import export

    out = tmp_path / f"export-{lora}"
    manifest = export(lora_checkpoint, out, lora=lora)
    recipe = (out / "recipe.yaml").read_text()
    if lora == "adapter":
        assert manifest["lora"] == "adapter" and "lora_adapter: ./lora" in recipe
        config = json.loads((out / "lora" / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["r"] == 4
        assert (out / "lora" / "adapter_model.safetensors").is_file()
        with safe_open(str(out / "llm" / "model.safetensors"), "pt") as f:
            assert not [k for k in f.keys() if "lora_" in k]  # the base weights, unmerged
    else:
        assert manifest["lora"] == "merged" and "lora_r: 0" in recipe and not (out / "lora").exists()
    clips = _clips(tiny_corpus)
    got, _ = _fresh_process(out, clips, tmp_path)
    want = _reference(lora_checkpoint, clips, tmp_path)
    assert got["greedy"] == want["greedy"]
    if lora == "adapter":
        assert got["logits"] == want["logits"]  # the same computation, bit for bit
    else:  # W + BA computed once: equal up to float rounding
        for a, b in zip(got["logits"], want["logits"], strict=True):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-4)
