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
