"""The feature cache's disk estimate and its refusal before anything is encoded."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moeaudio.config import EncoderConfig
from moeaudio.data.feature_cache import FeatureCache, check_cache_room, state_bytes_per_second
from moeaudio.errors import DiskFullError
from moeaudio.model.encoder import build_encoder

Usage = namedtuple("Usage", "total used free")


def test_paper_encoder_estimate() -> None:
    """Whisper-large-v3: 1280 float32 values at 50 Hz = 256 kB per second, 0.92 GB per hour."""
    assert state_bytes_per_second(1280, 50.0) == 256_000
    assert check_cache_room("/", 3600, 1280, 50.0, free_bytes=10**12) == 921_600_000


def test_refusal_names_folder_need_free_and_fix(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "whisper"  # not there yet: the nearest existing folder is asked
    with pytest.raises(DiskFullError) as err:
        check_cache_room(folder, 10_000 * 3600, 1280, 50.0, free_bytes=500 * 10**9)
    msg = str(err.value)
    for part in (
        str(folder),
        "10,000.0 h",
        "9.2 TB",
        "500.0 GB free",
        "data.feature_cache: null",
        "256.0 kB",
    ):
        assert part in msg, (part, msg)
    check_cache_room(folder, 3600, 1280, 50.0, free_bytes=10**10)  # 0.92 GB fits in 10 GB


def test_fill_refuses_before_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = build_encoder(EncoderConfig(name="tiny", d_model=64), seed=0).eval()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], (0.1 * rng.standard_normal(16000 * (i + 1))).astype(np.float32), 16000)
    cache = FeatureCache(tmp_path / "cache", encoder.identity)
    need = state_bytes_per_second(64, encoder.frame_rate) * 6  # 1 + 2 + 3 seconds
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**12, 0, int(need * 0.9)))
    with pytest.raises(DiskFullError, match=r"data\.feature_cache"):
        cache.fill(encoder, paths, progress=False)
    assert not list(cache.shard_dir.glob("*.safetensors")), "nothing may be written after the refusal"
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**12, 0, int(need * 2)))
    states = cache.fill(encoder, paths, progress=False)
    written = sum(s.numel() * s.element_size() for s in states)
    assert written == pytest.approx(need, rel=0.02)  # the estimate is the states' real size
