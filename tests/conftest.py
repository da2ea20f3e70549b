"""Shared test fixtures.

The offline Whisper tiny.en conversion (a few seconds) is done once per test session into a temporary
cache, so Whisper tests never depend on, or write to, the user's ``~/.cache/moeaudio``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def quiet_training():
    """MOEAUDIO_QUIET=1 for a whole module: training runs print no reporter output."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOEAUDIO_QUIET", "1")
        yield


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly converted Whisper tiny.en directory (WhisperForConditionalGeneration + processor)."""
    from moeaudio.model.whisper_offline import offline_whisper_dir

    return offline_whisper_dir(tmp_path_factory.mktemp("moeaudio-cache") / "whisper-tiny.en")


@pytest.fixture(scope="session")
def whisper_model(whisper_dir: Path):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()


@pytest.fixture(scope="session")
def whisper_processor(whisper_dir: Path):
    from transformers import WhisperProcessor

    return WhisperProcessor.from_pretrained(whisper_dir)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in synthetic corpus at its `tiny` size (~150 clips, every domain and task)."""
    from moeaudio.data.synth import make_synth_corpus

    out = tmp_path_factory.mktemp("synth_tiny")
    make_synth_corpus(out, seed=0, size="tiny", progress=False)
    return out


def tiny_recipe(corpus: Path, run_dir: Path, kind: str = "moe", *overrides: str):
    """The shipped tiny recipe pointed at a test corpus and run directory."""
    from moeaudio.config import load_recipe

    return load_recipe(
        f"tiny/{kind}",
        [f"data.root={corpus}", f"train.output_dir={run_dir}", "data.synth_if_missing=false", *overrides],
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MoE audio-LLM trained for 30 steps with DeepSpeed (ZeRO 0) on the tiny corpus."""
    from moeaudio.train.launch import train_recipe

    run = tmp_path_factory.mktemp("run_tiny_moe")
    return train_recipe(tiny_recipe(tiny_corpus, run, "moe", "train.max_steps=30"), evaluate=False).checkpoint


@pytest.fixture(scope="session")
def tiny_dense_checkpoint(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dense twin of ``tiny_checkpoint`` (same data, steps and seed)."""
    from moeaudio.train.launch import train_recipe

    run = tmp_path_factory.mktemp("run_tiny_dense")
    return train_recipe(
        tiny_recipe(tiny_corpus, run, "dense", "train.max_steps=30"), evaluate=False
    ).checkpoint


def write_checkpoint(model, out: Path) -> Path:
    """A checkpoint directory of an (untrained) model, laid out as training writes one (no DeepSpeed
    shards): what eval, transcribe and export read."""
    import json

    from safetensors.torch import save_file

    from moeaudio.train.checkpoint import weights_to_save

    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().clone().contiguous() for k, v in weights_to_save(model, model.state_dict()).items()
    }
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt", "step": "0"})
    (out / "recipe.yaml").write_text(model.recipe.to_yaml())
    model.tokenizer.save_pretrained(str(out / "tokenizer"))
    (out / "trainer_state.json").write_text(json.dumps({"step": 0, "history": []}))
    return out


@pytest.fixture(scope="session")
def whisper_cache(whisper_dir: Path) -> Path:
    """A MOEAUDIO_CACHE holding the converted offline Whisper (point the environment at it)."""
    return whisper_dir.parent


@pytest.fixture(scope="session")
def quickstart_checkpoint(
    tiny_corpus: Path, whisper_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The quickstart's model (offline Whisper tiny.en frozen, pitch stream, MoE-Adapter, small Qwen2),
    untrained, saved as a checkpoint: the frozen encoder is left out of its weights as in training."""
    import os

    from moeaudio.config import load_recipe
    from moeaudio.model.audio_llm import build_audio_llm
    from moeaudio.runtime.vocabulary import recipe_tokenizer

    recipe = load_recipe(
        "quickstart", [f"data.root={tiny_corpus}", "data.synth_if_missing=false", "data.feature_cache=null"]
    )
    old = os.environ.get("MOEAUDIO_CACHE")
    os.environ["MOEAUDIO_CACHE"] = str(whisper_cache)
    try:
        model = build_audio_llm(recipe, tokenizer=recipe_tokenizer(recipe))
    finally:
        os.environ.pop("MOEAUDIO_CACHE") if old is None else os.environ.__setitem__("MOEAUDIO_CACHE", old)
    return write_checkpoint(model, tmp_path_factory.mktemp("quickstart_ckpt") / "checkpoints" / "step-000000")
