"""`eval` on a clip longer than the encoder's 30 s window (a 70 s clip), under each eval.long_audio.

The fault: the encoder read the first 30 s and the rest was dropped without a word, so an ASR item
was scored on a transcript of less than half its audio. Now ASR is transcribed window by window (as
`transcribe` does), other tasks are cut or skipped or refused as the option says, and the result
counts the items affected.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import moeaudio.eval.long_audio as long_audio
from moeaudio.cli import app
from moeaudio.errors import EvalError
from moeaudio.eval.evaluate import run_eval

SR = 16000


@pytest.fixture(scope="module")
def long_manifest(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ASR items (a 70 s clip and a short one) and one 70 s gender item."""
    out = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(0)
    t = np.arange(70 * SR) / SR
    wave = 0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)  # tone bursts, pauses
    sf.write(out / "long.wav", (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32), SR)
    rows = [json.loads(line) for line in (tiny_corpus / "valid.jsonl").read_text().splitlines()]
    asr = [r for r in rows if r["task"] == "asr"][:2]
    gender = [r for r in rows if r["task"] == "gender"][:1]
    for r in asr + gender:
        r["audio"] = str(tiny_corpus / r["audio"])
    for r in (asr[0], gender[0]):
        r.update(id=f"long-{r['task']}", audio=str(out / "long.wav"), duration=70.0, sample_rate=SR)
    path = out / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in asr + gender))
    return path


def _rows(result: dict) -> dict[str, dict]:
    lines = Path(result["files"]["predictions"]).read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def test_asr_is_windowed_and_counted(
    tiny_checkpoint: Path, long_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[int]] = []
    real = long_audio.generate_all

    def spy(model, examples, *args, **kwargs):
        seen.append([len(e.wave) for e in examples])
        return real(model, examples, *args, **kwargs)

    monkeypatch.setattr(long_audio, "generate_all", spy)
    result = run_eval("asr", tiny_checkpoint, long_manifest, tmp_path / "asr.json", progress=False)
    assert result["n"] == 2
    record = result["long_audio"]
    assert record["policy"] == "window" and record["limit_s"] == pytest.approx(30.0)
    assert (record["n_affected"], record["n_windowed"], record["n_truncated"]) == (1, 1, 0)
    assert record["windowed"] == ["long-asr"]
    # the 70 s clip went through as three windows of at most 30 s covering every sample
    assert len(seen) == 1 and len(seen[0]) == 3
    assert sum(seen[0]) == 70 * SR and max(seen[0]) <= 30 * SR
    rows = _rows(result)
    assert rows["long-asr"]["long_audio"] == "windowed" and "long_audio" not in rows[asr_short_id(rows)]
    saved = json.loads((tmp_path / "asr.json").read_text())
    assert saved["long_audio"]["n_windowed"] == 1


def asr_short_id(rows: dict[str, dict]) -> str:
    return next(i for i in rows if i != "long-asr")


def test_truncate_skip_and_error(tiny_checkpoint: Path, long_manifest: Path, tmp_path: Path) -> None:
    cut = run_eval(
        "asr", tiny_checkpoint, long_manifest, tmp_path / "t.json", progress=False, long_audio="truncate"
    )
    assert cut["n"] == 2 and cut["long_audio"]["truncated"] == ["long-asr"]
    assert _rows(cut)["long-asr"]["long_audio"] == "truncated"

    skipped = run_eval(
        "asr", tiny_checkpoint, long_manifest, tmp_path / "s.json", progress=False, long_audio="skip"
    )
    assert skipped["n"] == 1 and skipped["long_audio"]["skipped"] == ["long-asr"]
    assert "long-asr" not in _rows(skipped)

    with pytest.raises(
        EvalError, match=r"1 of 2 items are longer than the encoder's 30 s window \(long-asr \(70\.0 s\)\)"
    ):
        run_eval(
            "asr", tiny_checkpoint, long_manifest, tmp_path / "e.json", progress=False, long_audio="error"
        )
    assert not (tmp_path / "e.json").exists()


def test_whole_clip_task_is_cut_and_marked_under_window(
    tiny_checkpoint: Path, long_manifest: Path, tmp_path: Path
) -> None:
    """A classification item cannot be windowed: under the default it is cut to the window, and said so."""
    result = run_eval("gender", tiny_checkpoint, long_manifest, tmp_path / "g.json", progress=False)
    assert result["n"] == 1 and result["long_audio"]["truncated"] == ["long-gender"]
    assert result["long_audio"]["n_windowed"] == 0


def test_cli_option_and_a_bad_value(tiny_checkpoint: Path, long_manifest: Path, tmp_path: Path) -> None:
    args = ["eval", "--task", "asr", "--checkpoint", str(tiny_checkpoint), "--manifest", str(long_manifest)]
    out = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "x.json"), "--long-audio", "error"])
    assert out.exit_code == 2 and "long-asr (70.0 s)" in out.output and "--long-audio window" in out.output
    out = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "y.json"), "--long-audio", "chop"])
    assert (
        out.exit_code == 2 and "--long-audio" in out.output and "window, truncate, skip, error" in out.output
    )
