"""`moeaudio transcribe`: windowing, batching, timestamps, stitching, subtitle formats, input expansion."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from moeaudio.cli import app
from moeaudio.eval.transcribe import (
    Segment,
    expand_audio_inputs,
    format_srt,
    format_timestamp,
    format_vtt,
    run_transcribe,
    split_windows,
)

SR = 16000
_CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d{3}) --> (\d\d):(\d\d):(\d\d)[,.](\d{3})")


@pytest.fixture(scope="module")
def long_recording(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two minutes of tiny-corpus speech clips separated by 0.6 s of silence."""
    from moeaudio.data.audio import load_audio

    rows = [json.loads(line) for line in (tiny_corpus / "train.jsonl").read_text().splitlines()]
    speech = [r for r in rows if r["task"] == "asr" and r["domain"] == "speech"]
    parts, total, i = [], 0, 0
    while total < 120 * SR:
        wave = load_audio(tiny_corpus / speech[i % len(speech)]["audio"], SR)
        parts += [wave, np.zeros(int(0.6 * SR), np.float32)]
        total += len(wave) + int(0.6 * SR)
        i += 1
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate(parts)[: 120 * SR], SR)
    return path


def _parse_cues(text: str) -> list[tuple[float, float, str]]:
    cues = []
    lines = text.splitlines()
    for k, line in enumerate(lines):
        m = _CUE.fullmatch(line)
        if m:
            g = [int(x) for x in m.groups()]
            start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
            end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
            cues.append((start, end, lines[k + 1]))
    return cues


def _check_windows(segments: list, duration: float, window: float) -> None:
    assert segments[0].start == 0.0
    assert segments[-1].end == pytest.approx(duration, abs=1e-3)
    for a, b in zip(segments, segments[1:], strict=False):
        assert a.end == b.start and b.start > a.start  # contiguous, increasing
    assert all(0 < s.end - s.start <= window + 1e-6 for s in segments)


def test_transcribe_two_minutes(tiny_checkpoint: Path, long_recording: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    [t] = run_transcribe([long_recording], tiny_checkpoint, fmt="json", stdout=out, stderr=err, batch_size=4)
    assert t.duration == pytest.approx(120.0)
    assert len(t.segments) >= 4  # 120 s in windows of <= 30 s
    _check_windows(t.segments, 120.0, 30.0)
    assert t.text == " ".join(s.text for s in t.segments if s.text)
    record = json.loads(out.getvalue())
    assert record["duration"] == pytest.approx(120.0) and len(record["segments"]) == len(t.segments)
    assert record["rtf"] > 0 and "real-time factor" in err.getvalue()


def test_stitching_and_subtitle_files(
    tiny_checkpoint: Path, long_recording: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moeaudio.eval.transcribe as runner

    seen: list[int] = []

    def fake_generate(
        model, examples, batch_size, max_new_tokens, num_beams, progress, collate=None, ctc_weight=None
    ):
        seen.append(len(examples))
        return [f"window {i} says {len(e.wave) / SR:.0f}" for i, e in enumerate(examples)], 1.0

    monkeypatch.setattr(runner, "generate_all", fake_generate)
    for fmt in ("srt", "vtt"):
        [t] = run_transcribe(
            [long_recording], tiny_checkpoint, fmt=fmt, output_dir=tmp_path, window=20, stderr=io.StringIO()
        )
        _check_windows(t.segments, 120.0, 20.0)
        assert t.text.startswith("window 0 says ") and t.text.count("window") == len(t.segments)
        text = (tmp_path / f"long.{fmt}").read_text()
        cues = _parse_cues(text)
        assert len(cues) == len(t.segments) == seen[-1]
        for (start, end, cue_text), seg in zip(cues, t.segments, strict=True):
            assert start == pytest.approx(seg.start, abs=1e-3) and end == pytest.approx(seg.end, abs=1e-3)
            assert cue_text == seg.text
        if fmt == "srt":
            assert text.startswith("1\n00:00:00,000 --> ") and "\n\n2\n" in text
        else:
            assert text.startswith("WEBVTT\n\n00:00:00.000 --> ")


def test_timestamp_and_formats() -> None:
    assert format_timestamp(3661.5) == "01:01:01,500"
    assert format_timestamp(59.9996, ".") == "00:01:00.000"
    assert format_timestamp(0.0) == "00:00:00,000"
    segs = [Segment(0.0, 1.25, "hello"), Segment(1.25, 2.0, ""), Segment(2.0, 3725.004, "world")]
    srt = format_srt(segs)
    assert srt == "1\n00:00:00,000 --> 00:00:01,250\nhello\n\n2\n00:00:02,000 --> 01:02:05,004\nworld\n"
    vtt = format_vtt(segs)
    assert vtt.splitlines()[:3] == ["WEBVTT", "", "00:00:00.000 --> 00:00:01.250"]
    assert [c[2] for c in _parse_cues(vtt)] == ["hello", "world"]


def test_split_windows_cuts_in_pauses() -> None:
    rng = np.random.default_rng(0)
    noise = rng.uniform(-0.5, 0.5, 70 * SR).astype(np.float32)
    quiet = noise.copy()
    quiet[int(28.0 * SR) : int(28.4 * SR)] = 0.0  # a pause 1.6-2 s before the 30 s boundary
    windows = split_windows(quiet, SR, 30.0)
    assert 28.0 <= windows[0][1] / SR <= 28.4
    assert split_windows(noise, SR, 30.0) == [(0, 30 * SR), (30 * SR, 60 * SR), (60 * SR, 70 * SR)]
    tail = split_windows(noise[: int(30.2 * SR)], SR, 30.0)  # a 0.2 s remainder is not left alone
    assert all(b - a >= 0.2 * SR for a, b in tail) and tail[-1][1] == int(30.2 * SR)
    assert split_windows(noise[:SR], SR, 30.0) == [(0, SR)]


def test_expand_inputs(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.wav", "a/b/y.flac", "a/b/z.mp3", "a/notes.txt", "c.wav"):
        (tmp_path / name).write_bytes(b"")
    assert expand_audio_inputs([tmp_path / "a"]) == [
        tmp_path / "a/b/y.flac",
        tmp_path / "a/b/z.mp3",
        tmp_path / "a/x.wav",
    ]
    assert expand_audio_inputs([str(tmp_path / "**/*.wav")]) == [tmp_path / "a/x.wav", tmp_path / "c.wav"]
    assert expand_audio_inputs([tmp_path / "c.wav", str(tmp_path / "*.wav")]) == [tmp_path / "c.wav"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_audio_inputs([tmp_path / "missing.wav"])
    with pytest.raises(FileNotFoundError, match="no audio files"):
        expand_audio_inputs([str(tmp_path / "*.ogg")])


def test_transcribe_cli_directory_and_glob(tiny_checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "in" / "one.wav", rng.uniform(-0.1, 0.1, 3 * SR), SR)
    sf.write(tmp_path / "in" / "sub" / "two.flac", rng.uniform(-0.1, 0.1, 2 * SR), SR)
    runner = CliRunner()
    args = ["transcribe", "--checkpoint", str(tiny_checkpoint), "--format", "json"]
    result = runner.invoke(app, [*args, str(tmp_path / "in")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: JSON lines only
    assert [Path(r["path"]).name for r in records] == ["one.wav", "two.flac"]
    assert "real-time factor" in result.stderr
    result = runner.invoke(
        app,
        [
            *args[:-2],
            "--format",
            "txt",
            "--output-dir",
            str(tmp_path / "o"),
            str(tmp_path / "in" / "**" / "*.flac"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["two.txt"]
    result = runner.invoke(app, [*args, "--window", "60", str(tmp_path / "in")])
    assert result.exit_code == 2 and "longer than the encoder accepts" in result.stderr
