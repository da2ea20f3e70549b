"""Audio decoding: resampling length, mono mixdown, errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moeaudio.data.audio import AudioDecodeError, audio_info, decode_audio_bytes, load_audio, save_audio


def test_resample_length_and_dtype(tmp_path: Path) -> None:
    sr = 44100
    t = np.arange(sr) / sr  # 1 s
    sf.write(tmp_path / "a.flac", 0.5 * np.sin(2 * np.pi * 440 * t), sr)
    wav = load_audio(tmp_path / "a.flac", 16000)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) <= 1
    native = load_audio(tmp_path / "a.flac", None)
    assert len(native) == sr


def test_mono_mixdown_is_channel_mean(tmp_path: Path) -> None:
    stereo = np.stack([np.full(800, 0.5), np.full(800, -0.25)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="FLOAT")
    wav = load_audio(tmp_path / "s.wav", None)
    np.testing.assert_allclose(wav, 0.125, atol=1e-6)
    assert load_audio(tmp_path / "s.wav", None, mono=False).shape == (800, 2)


def test_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav")
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        load_audio(bad)
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        audio_info(bad)
    with pytest.raises(AudioDecodeError, match="missing.flac: audio file does not exist"):
        load_audio(tmp_path / "missing.flac")
    with pytest.raises(AudioDecodeError, match="row-3"):
        decode_audio_bytes(b"garbage", name="row-3")


def test_save_info_and_formats(tmp_path: Path) -> None:
    wav = (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32)
    for ext in ("wav", "flac", "ogg"):
        path = save_audio(tmp_path / f"x.{ext}", wav, 16000)
        info = audio_info(path)
        assert info.sample_rate == 16000 and info.channels == 1
        assert abs(info.duration - 0.25) < 0.01
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.flac", "x.ogg", "x.wav"]  # no temp leftovers
    data = (tmp_path / "x.wav").read_bytes()
    out, sr = decode_audio_bytes(data, 8000)
    assert sr == 8000 and abs(len(out) - 2000) <= 1


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile built without mp3")
def test_mp3_roundtrip(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    save_audio(tmp_path / "x.mp3", 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    wav = load_audio(tmp_path / "x.mp3", 16000)
    assert abs(len(wav) - 16000) < 2000  # mp3 encoder padding
