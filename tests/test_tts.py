"""Tests for the offline eSpeak NG synthesiser (fast: each utterance takes a few tens of ms)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading

import numpy as np
import pytest

from moeaudio.data.tts import NATIVE_SAMPLE_RATE, Voice, list_variants, synthesize

TEXT = "hello world, this is a short test sentence"


def _digest(audio: np.ndarray) -> str:
    return hashlib.sha256(audio.tobytes()).hexdigest()


def test_output_format() -> None:
    audio, sr = synthesize(TEXT)
    assert sr == NATIVE_SAMPLE_RATE
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.5 < len(audio) / sr < 10
    assert np.abs(audio).max() <= 1.0
    assert np.abs(audio).max() > 0.05  # not silence


@pytest.mark.parametrize("voice", [Voice(), Voice(variant="f2"), Voice(variant="m3", pitch=70, rate=220)])
def test_deterministic_in_process(voice: Voice) -> None:
    first, _ = synthesize(TEXT, voice)
    for _ in range(2):
        again, _ = synthesize(TEXT, voice)
        assert _digest(again) == _digest(first)


def test_deterministic_across_processes() -> None:
    """A fresh interpreter (fresh eSpeak statics, other libc rand state) must produce the same bytes."""
    voice = Voice(variant="f2")
    # Advance eSpeak's state in this process first, so the comparison is "used engine" vs "fresh engine".
    synthesize("some unrelated warm up text", Voice(variant="m1"))
    code = (
        "import hashlib; from moeaudio.data.tts import Voice, synthesize; "
        f"print(hashlib.sha256(synthesize({TEXT!r}, Voice(variant='f2'))[0].tobytes()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == _digest(synthesize(TEXT, voice)[0])


def test_thread_safe_and_deterministic() -> None:
    expected = {v: _digest(synthesize(TEXT, Voice(variant=v))[0]) for v in ("m1", "f3")}
    results: list[tuple[str, str]] = []

    def work(variant: str) -> None:
        for _ in range(3):
            results.append((variant, _digest(synthesize(TEXT, Voice(variant=variant))[0])))

    threads = [threading.Thread(target=work, args=(v,)) for v in ("m1", "f3", "m1", "f3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12
    assert all(digest == expected[variant] for variant, digest in results)


def test_variants_and_pitch_change_audio() -> None:
    digests = {
        _digest(synthesize(TEXT, voice)[0])
        for voice in (Voice(), Voice(variant="f2"), Voice(variant="m3"), Voice(pitch=90), Voice(pitch=10))
    }
    assert len(digests) == 5


def test_duration_grows_with_text_length() -> None:
    short, sr = synthesize("hello")
    medium, _ = synthesize("hello there, how are you")
    long, _ = synthesize("hello there, how are you today? I hope the weather is fine where you live.")
    assert len(short) < len(medium) < len(long)
    assert len(long) / sr > 2 * len(short) / sr


def test_rate_changes_duration() -> None:
    slow, _ = synthesize(TEXT, Voice(rate=120))
    normal, _ = synthesize(TEXT, Voice(rate=175))
    fast, _ = synthesize(TEXT, Voice(rate=300))
    assert len(slow) > len(normal) > len(fast)
    assert len(slow) > 1.8 * len(fast)


def test_word_gap_adds_pauses_between_words() -> None:
    """espeakWORDGAP is in units of 10 ms per word boundary: 5 boundaries x 60 ms ~ 0.3 s longer."""
    text = "the big cat likes the dog"
    plain, sr = synthesize(text, Voice(word_gap=0))
    gapped, _ = synthesize(text, Voice(word_gap=6))
    extra_s = (len(gapped) - len(plain)) / sr
    assert 0.15 < extra_s < 0.5, extra_s


def test_sample_rate_argument_resamples() -> None:
    native, sr = synthesize(TEXT)
    resampled, sr16 = synthesize(TEXT, sample_rate=16000)
    assert sr16 == 16000 and resampled.dtype == np.float32
    assert len(resampled) == pytest.approx(len(native) * 16000 / sr, abs=2)
    assert np.abs(resampled).max() <= 1.0
    same, sr_same = synthesize(TEXT, sample_rate=sr)
    assert sr_same == sr and _digest(same) == _digest(native)


def test_silence_is_trimmed() -> None:
    audio, sr = synthesize(TEXT)
    margin = int(0.02 * sr)
    assert np.abs(audio[:margin]).max() > 1e-3 or np.abs(audio[margin : 2 * margin]).max() > 1e-3
    assert np.abs(audio[-2 * margin :]).max() > 1e-3
    assert len(synthesize("")[0]) == 0


def test_list_variants_and_gender() -> None:
    variants = list_variants()
    assert {"f2", "m3", "klatt"} <= set(variants)
    assert Voice(variant="f2").gender == "female"
    assert Voice(variant="m3").gender == "male"
    assert Voice().gender == "male"
    assert Voice(variant="f1", gender="male").gender == "female"  # derived, never trusted from the caller
    assert Voice(variant="f2").espeak_name == "en-us+f2"


def test_unknown_voice_raises() -> None:
    with pytest.raises(RuntimeError, match="set voice"):
        synthesize(TEXT, Voice(name="no-such-language"))
