"""Shared test fixtures.

The offline Whisper tiny.en conversion (a few seconds) is done once per test session into a temporary
cache, so Whisper tests never depend on, or write to, the user's ``~/.cache/moeaudio``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


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
    from moeaudio.train.main import train_recipe

    run = tmp_path_factory.mktemp("run_tiny_moe")
    return train_recipe(tiny_recipe(tiny_corpus, run, "moe", "train.max_steps=30"), evaluate=False).checkpoint


@pytest.fixture(scope="session")
def tiny_dense_checkpoint(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dense twin of ``tiny_checkpoint`` (same data, steps and seed)."""
    from moeaudio.train.main import train_recipe

    run = tmp_path_factory.mktemp("run_tiny_dense")
    return train_recipe(
        tiny_recipe(tiny_corpus, run, "dense", "train.max_steps=30"), evaluate=False
    ).checkpoint
