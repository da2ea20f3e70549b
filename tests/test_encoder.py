"""Audio encoders: the Whisper wrapper with the sliced positional table, waveform encoders,
frame stacking, and the offline Whisper tiny.en weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moeaudio.config import EncoderConfig
from moeaudio.model.encoder import FrameStacker, HFWaveformEncoder, WhisperAudioEncoder, build_encoder

SR = 16000


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def tiny_whisper() -> WhisperAudioEncoder:
    enc = build_encoder(EncoderConfig(name="tiny", family="whisper"), seed=0)
    assert isinstance(enc, WhisperAudioEncoder)
    return enc.eval()


def test_padded_batch_equals_each_clip_alone(tiny_whisper: WhisperAudioEncoder) -> None:
    clips = [_clip(1.0, 0), _clip(2.3, 1), _clip(0.5, 2)]
    with torch.no_grad():
        batch_inputs = tiny_whisper.prepare(clips)
        batch = tiny_whisper(batch_inputs)  # (3, frames, 64)
        assert batch_inputs.lengths.tolist() == [50, 115, 25]
        assert batch.shape == (3, 115, 64)
        for i, clip in enumerate(clips):
            alone = tiny_whisper(tiny_whisper.prepare([clip]))  # (1, n_i, 64)
            n = int(batch_inputs.lengths[i])
            assert alone.shape == (1, n, 64)
            torch.testing.assert_close(batch[i, :n], alone[0], atol=1e-5, rtol=1e-4)


def test_full_length_equals_transformers_forward(tiny_whisper: WhisperAudioEncoder) -> None:
    clip = _clip(30.0, 3)
    with torch.no_grad():
        inputs = tiny_whisper.prepare([clip])
        assert inputs.values.shape == (1, 80, 3000)
        ours = tiny_whisper(inputs)
        theirs = tiny_whisper.encoder(inputs.values).last_hidden_state  # WhisperEncoder.forward
    assert ours.shape == theirs.shape == (1, 1500, 64)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    # And the mel features are the feature extractor's own 30 s features.
    ref = tiny_whisper.feature_extractor(clip, sampling_rate=SR, return_tensors="pt").input_features
    torch.testing.assert_close(inputs.values, ref)


def test_short_clip_is_not_padded_to_30_seconds(tiny_whisper: WhisperAudioEncoder) -> None:
    clip = _clip(2.0, 4)
    assert tiny_whisper.output_length(len(clip)) == 100
    inputs = tiny_whisper.prepare([clip])
    assert inputs.values.shape == (1, 80, 200)
    assert inputs.lengths.tolist() == [100]
    with torch.no_grad():
        assert tiny_whisper(inputs).shape == (1, 100, 64)
    assert tiny_whisper.frame_rate == 50.0 and tiny_whisper.d_model == 64
    with pytest.raises(ValueError, match="too short"):
        tiny_whisper.prepare([np.zeros(100, dtype=np.float32)])


@pytest.mark.parametrize("family", ["wavlm", "hubert", "wav2vec2"])
def test_waveform_encoders_share_the_interface(family: str) -> None:
    enc = build_encoder(EncoderConfig(name="tiny", family=family, d_model=64), seed=0).eval()
    assert isinstance(enc, HFWaveformEncoder)
    assert enc.d_model == 64 and enc.frame_rate == 50.0
    clips = [_clip(1.0, 0), _clip(0.6, 1)]
    # Conv front end (kernel 10/3/3/3/3/2/2, stride 5/2/2/2/2/2/2): 1 s -> 49 frames, 0.6 s -> 29.
    assert [enc.output_length(len(c)) for c in clips] == [49, 29]
    with torch.no_grad():
        inputs = enc.prepare(clips)
        out = enc(inputs)
    assert inputs.lengths.tolist() == [49, 29]
    assert inputs.sample_lengths.tolist() == [16000, 9600]
    assert out.shape == (2, 49, 64)
    assert torch.isfinite(out).all()
    # Group-norm feature extractors are not padding invariant: only shapes are checked here.


def test_frame_stacker_shapes_and_token_lengths() -> None:
    stacker = FrameStacker(d_model=8, stack=4)
    assert stacker.out_dim == 32 and stacker.projection is None
    assert stacker.token_lengths(torch.tensor([1, 4, 5, 8, 9, 10])).tolist() == [1, 1, 2, 2, 3, 3]  # ceil
    hidden = torch.randn(2, 10, 8)
    tokens, lengths = stacker(hidden, torch.tensor([10, 5]))
    assert tokens.shape == (2, 3, 32)  # 10 frames padded to 12 -> 3 tokens
    assert lengths.tolist() == [3, 2]
    # Token j is frames 4j..4j+3 concatenated; the padding and frames past each length are zero.
    torch.testing.assert_close(tokens[0, 1], hidden[0, 4:8].reshape(-1))
    torch.testing.assert_close(tokens[0, 2, :16], hidden[0, 8:10].reshape(-1))
    assert tokens[0, 2, 16:].abs().sum() == 0
    torch.testing.assert_close(tokens[1, 1, :8], hidden[1, 4])
    assert tokens[1, 1, 8:].abs().sum() == 0 and tokens[1, 2].abs().sum() == 0

    projected = FrameStacker(d_model=8, stack=4, projection_dim=16)
    assert projected.out_dim == 16
    tokens, lengths = projected(hidden, torch.tensor([10, 5]))
    assert tokens.shape == (2, 3, 16) and lengths.tolist() == [3, 2]
    n_params = sum(p.numel() for p in projected.parameters())
    assert n_params == 2 * 32 + 32 * 16 + 16 + 2 * 16  # LN -> Linear -> SiLU -> LN


def test_offline_whisper_tiny_en(whisper_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same cache directory as the session fixture, so the weights are converted only once.
    monkeypatch.setenv("MOEAUDIO_CACHE", str(whisper_dir.parent))
    cfg = EncoderConfig()
    assert cfg.name == "whisper-tiny.en-offline"
    enc = build_encoder(cfg).eval()
    assert isinstance(enc, WhisperAudioEncoder)
    assert enc.d_model == cfg.d_model == 384
    assert len(enc.encoder.layers) == 4
    assert sum(p.numel() for p in enc.parameters()) == 8_208_384
    clip = _clip(1.0, 5)
    with torch.no_grad():
        out = enc(enc.prepare([clip]))
    assert out.shape == (1, 50, 384)
    assert torch.isfinite(out).all()
    # Cached features are keyed on the weights, not only on the name.
    assert enc.identity == build_encoder(cfg).identity


def test_train_mode_dropout_matches_transformers() -> None:
    """Fine-tuning the encoder: same dropout as WhisperEncoder.forward (same RNG draws)."""
    cfg = EncoderConfig(name="tiny", family="whisper", tiny={"dropout": 0.2, "max_source_positions": 100})
    enc = build_encoder(cfg, seed=0).train()
    inputs = enc.prepare([_clip(4.0, 6)])  # cut to this config's full table: 100 positions, 200 mel frames
    assert inputs.lengths.tolist() == [100]
    torch.manual_seed(1)
    ours = enc(inputs)
    torch.manual_seed(1)
    theirs = enc.encoder(inputs.values).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    torch.manual_seed(2)
    assert not torch.allclose(enc(inputs), ours)  # dropout is really on


def test_output_layer_is_that_layers_hidden_state() -> None:
    """encoder.output_layer=k returns transformers' hidden_states[k + 1] (no final LayerNorm)."""
    enc = build_encoder(EncoderConfig(name="tiny", family="whisper", output_layer=0), seed=0).eval()
    last = build_encoder(EncoderConfig(name="tiny", family="whisper"), seed=0).eval()
    assert enc.identity != last.identity  # cached features of different layers never mix
    inputs = enc.prepare([_clip(30.0, 4)])
    with torch.no_grad():
        ours = enc(inputs)
        theirs = enc.encoder(inputs.values, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="output_layer=5"):
        build_encoder(EncoderConfig(name="tiny", family="whisper", output_layer=5))
    wav = build_encoder(EncoderConfig(name="tiny", family="wavlm", output_layer=0), seed=0).eval()
    with torch.no_grad():
        hidden = wav(wav.prepare([_clip(1.0, 0)]))
    assert hidden.shape == (1, 49, 64)
