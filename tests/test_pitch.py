"""The pitch stream (encoder.pitch_features): pitch lands in its semitone band and its pitch class,
streams concatenate exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moeaudio.config import PITCH_BANDS, PITCH_BINS, PITCH_CLASSES, load_recipe
from moeaudio.inspection import adapter_summary
from moeaudio.model.encoder import build_encoder
from moeaudio.model.pitch import PitchAugmentedEncoder, SemitoneSpectrogram

SR = 16000
BASE = ["data.synth_if_missing=false", "encoder.tiny.init_std=0.1"]


def _tone(midi: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * 440.0 * 2 ** ((midi - 69) / 12) * t)).astype(np.float32)


@pytest.mark.parametrize("midi", [36, 48, 60, 61, 72, 96])
def test_a_pure_tone_lands_in_its_semitone(midi: int) -> None:
    feats = SemitoneSpectrogram()(_tone(midi), frames=50)  # (frames, bins)
    assert feats.shape == (50, PITCH_BINS) and PITCH_BINS == PITCH_BANDS + PITCH_CLASSES
    assert 36 + int(feats[10:40, :PITCH_BANDS].mean(0).argmax()) == midi
    if midi < 96:  # the top band (C7) lies above the whole octaves folded into pitch classes
        assert int(feats[10:40, PITCH_BANDS:].mean(0).argmax()) == midi % 12


def test_pitch_classes_fold_octaves_and_show_the_chord() -> None:
    """A C major triad gives the same pitch-class profile in any octave, peaked at C, E and G;
    C minor moves the E peak to E-flat. This is what lets a chord's quality be read off a few
    numbers, where the semitone bands spread it over five octaves."""
    sp = SemitoneSpectrogram()

    def profile(notes: tuple[int, ...]) -> torch.Tensor:
        return sp(sum(_tone(n) for n in notes), 50)[10:40, PITCH_BANDS:].mean(0)  # (classes,)

    low, mid, high = profile((48, 52, 55)), profile((60, 64, 67)), profile((72, 76, 79))
    for octave in (low, mid, high):
        assert set(octave.topk(3).indices.tolist()) == {0, 4, 7}
    # C4 and C5 give the same profile; at C3 a semitone is 8 Hz, two STFT bins, and some energy
    # leaks into the neighbouring classes
    assert torch.allclose(mid, high, atol=0.05)
    minor = profile((60, 63, 67))
    assert set(minor.topk(3).indices.tolist()) == {0, 3, 7}


def test_neighbouring_semitones_are_told_apart_in_a_chord() -> None:
    """C major vs C minor differ in one note (E vs E-flat): the bands say which."""
    sp = SemitoneSpectrogram()
    major = sp(_tone(60) + _tone(64) + _tone(67), 50)[10:40].mean(0)
    minor = sp(_tone(60) + _tone(63) + _tone(67), 50)[10:40].mean(0)
    e, e_flat = 64 - 36, 63 - 36
    assert major[e] > major[e_flat] + 2 and minor[e_flat] > minor[e] + 2


def test_loudness_invariant_and_padded_to_the_frame_count() -> None:
    sp = SemitoneSpectrogram()
    quiet, loud = sp(_tone(57, amplitude=0.05), 60), sp(_tone(57, amplitude=0.8), 60)
    assert torch.allclose(quiet[:50], loud[:50], atol=1e-3)
    assert (quiet[52:] == 0).all()  # 1 s of audio = 51 STFT frames; rows past the clip are zero
    assert sp(_tone(57, seconds=0.05), 3).shape == (3, PITCH_BINS)  # shorter than one window


def test_each_frame_is_standardised_across_its_bands() -> None:
    """Unit scale per frame, so the stream cannot outweigh the encoder's states in the adapter's
    input LayerNorm; a silent frame stays all zero instead of dividing by zero."""
    sp = SemitoneSpectrogram()
    noisy = np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32) + _tone(50)
    feats = sp(noisy, 50)[:45]  # (frames, bins)
    for group in (feats[:, :PITCH_BANDS], feats[:, PITCH_BANDS:]):  # bands and classes, each on its own
        assert torch.allclose(group.mean(1), torch.zeros(45), atol=1e-4)
        assert torch.allclose(group.std(1), torch.ones(45), atol=1e-2)
    silent = sp(np.zeros(SR, dtype=np.float32), 50)
    assert torch.isfinite(silent).all() and (silent == 0).all()


def test_augmented_encoder_is_base_states_then_semitones() -> None:
    recipe = load_recipe("tiny/moe", [*BASE, "encoder.pitch_features=true"])
    enc = build_encoder(recipe.encoder, seed=0)
    base = build_encoder(load_recipe("tiny/moe", BASE).encoder, seed=0)
    assert isinstance(enc, PitchAugmentedEncoder)
    waves = [_tone(60, 0.5), _tone(67, 0.8)]
    inputs = enc.prepare(waves)
    with torch.no_grad():
        out, ref = enc(inputs), base(base.prepare(waves))
    assert out.shape == (2, ref.shape[1], base.d_model + PITCH_BINS) and enc.d_model == out.shape[-1]
    assert torch.equal(out[..., : base.d_model], ref)
    frames = int(inputs.lengths[0])
    assert torch.allclose(out[0, :frames, base.d_model :], SemitoneSpectrogram()(waves[0], frames))
    assert enc.identity != base.identity  # the feature cache keeps the two apart


def test_recipe_widths_follow_the_pitch_stream() -> None:
    plain = load_recipe("quickstart", ["encoder.pitch_features=false"])
    pitched = load_recipe("quickstart", ["encoder.pitch_features=true"])
    assert pitched.encoder.frame_dim == plain.encoder.frame_dim + PITCH_BINS
    assert pitched.audio_token_dim == plain.audio_token_dim + 4 * PITCH_BINS  # stack 4
    assert adapter_summary(pitched)["adapter_in_dim"] == pitched.audio_token_dim


def test_audio_llm_trains_with_the_pitch_stream() -> None:
    from moeaudio.model.audio_llm import build_audio_llm
    from moeaudio.runtime.batching import Collator, Example

    recipe = load_recipe("tiny/moe", [*BASE, "encoder.pitch_features=true"])
    model = build_audio_llm(recipe)
    examples = [
        Example("Name the note.", "c", wave=_tone(60)),
        Example("Name the note.", "g", wave=_tone(67, 0.6)),
    ]
    batch = Collator(model)(examples)
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert model.stacker.out_dim == recipe.audio_token_dim
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.adapter.parameters())
