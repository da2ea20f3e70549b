"""The feature cache's key holds every option that changes the cached states.

The fault: states computed with ``--repair-audio`` (NaN/Inf samples silenced) were cached by audio
content and encoder identity only, so a later run without the option silently reused them instead
of refusing the clip. Each option that changes the states must keep its own entries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from moeaudio.config import EncoderConfig
from moeaudio.data.audio import AudioDecodeError
from moeaudio.data.feature_cache import OPTIONS_FILE, FeatureCache, audio_key, cache_options
from moeaudio.model.encoder import build_encoder


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(EncoderConfig(name="tiny", d_model=64), seed=0).eval()


def _clips(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    good = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    bad = good.copy()
    bad[100:200] = np.nan
    paths = [folder / "good.wav", folder / "nan.wav"]
    sf.write(paths[0], good, 16000, subtype="FLOAT")
    sf.write(paths[1], bad, 16000, subtype="FLOAT")
    return paths


def test_repaired_states_never_feed_a_plain_run(encoder, tmp_path: Path) -> None:
    paths = _clips(tmp_path)
    repaired = FeatureCache.for_encoder(tmp_path / "cache", encoder, "repair")
    with pytest.warns(UserWarning, match="non-finite"):
        states = repaired.fill(encoder, paths, progress=False)
    assert all(torch.isfinite(s).all() for s in states) and repaired.misses == 2
    assert json.loads((repaired.root / OPTIONS_FILE).read_text())["nonfinite_audio"] == "repair"

    plain = FeatureCache.for_encoder(tmp_path / "cache", encoder, "error")
    assert plain.root != repaired.root and plain.root.name == encoder.identity  # default keeps its folder
    assert len(plain) == 0 and "nan.wav" not in str(plain.root)
    with pytest.raises(AudioDecodeError, match=r"nan\.wav.*non-finite"):
        plain.fill(encoder, paths, progress=False)  # refused, as without a cache
    assert audio_key(paths[1]) in repaired and audio_key(paths[1]) not in plain  # nothing shared
    # the good clip's states are the same either way; each folder holds its own copy
    plain_good = FeatureCache.for_encoder(tmp_path / "cache", encoder).fill(
        encoder, paths[:1], progress=False
    )
    torch.testing.assert_close(plain_good[0], states[0])
    # a second repaired run reuses its own entries only
    again = FeatureCache.for_encoder(tmp_path / "cache", encoder, "repair")
    again.fill(encoder, paths, progress=False)
    assert (again.hits, again.misses) == (2, 0)


def test_a_cache_refuses_states_of_other_options(encoder, tmp_path: Path) -> None:
    """Encoding into a cache with a NaN treatment other than its own is a bug caught at once."""
    cache = FeatureCache.for_encoder(tmp_path / "cache", encoder, "error")
    with pytest.raises(ValueError, match="nonfinite='repair'.*nonfinite='error'"):
        cache.ensure(encoder, _clips(tmp_path), nonfinite="repair", progress=False)


def test_every_state_changing_option_has_its_own_folder(encoder, tmp_path: Path) -> None:
    """Output layer, pitch stream, encoder seed, NaN treatment, precision, sample rate and the feature
    extractor's window each give another folder; equal options give the same one."""
    root = tmp_path / "cache"
    base = FeatureCache.for_encoder(root, encoder).root
    layer0 = build_encoder(EncoderConfig(name="tiny", d_model=64, output_layer=0), seed=0)
    pitch = build_encoder(EncoderConfig(name="tiny", d_model=64, pitch_features=True), seed=0)
    seed1 = build_encoder(EncoderConfig(name="tiny", d_model=64), seed=1)
    folders = {
        "base": base,
        "layer0": FeatureCache.for_encoder(root, layer0).root,
        "pitch": FeatureCache.for_encoder(root, pitch).root,
        "seed1": FeatureCache.for_encoder(root, seed1).root,
        "repair": FeatureCache.for_encoder(root, encoder, "repair").root,
        "bf16": FeatureCache.for_encoder(
            root, build_encoder(EncoderConfig(name="tiny", d_model=64)).bfloat16()
        ).root,
        "rate": FeatureCache(
            root, encoder.identity, options={**cache_options(encoder), "sample_rate": 8000}
        ).root,
    }
    assert len(set(folders.values())) == len(folders), folders
    assert (
        FeatureCache.for_encoder(root, build_encoder(EncoderConfig(name="tiny", d_model=64), seed=0)).root
        == base
    )

    # a feature extractor with another window (n_fft / hop) under the same encoder identity
    FeatureCache.for_encoder(root, encoder).put("0" * 32, torch.zeros(2, 64))  # records the base options
    other = build_encoder(EncoderConfig(name="tiny", d_model=64), seed=0)
    other.feature_extractor.hop_length = 80
    assert other.identity == encoder.identity
    moved = FeatureCache.for_encoder(root, other)
    assert moved.root not in folders.values() and len(moved) == 0
    assert FeatureCache.for_encoder(root, encoder).root == base  # the recorded front end keeps its folder
