"""Roundtrips between moeaudio manifests and SLAM-LLM / ms-swift / LLaMA-Factory / NeMo formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moeaudio.data.formats import FORMATS, convert, detect_format, read_items, write_items
from moeaudio.data.manifest import Item, ManifestError, read_manifest, write_manifest


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    items = [
        Item(id="u1", audio="audio/u1.wav", task="asr", instruction="Transcribe the audio.", target="hello world",
             duration=1.25, lang="en"),
        Item(id="u2", audio="audio/u2.wav", task="asr", instruction="Transcribe the audio.", target="second one",
             duration=2.0, lang="en"),
    ]  # fmt: skip
    return write_manifest(tmp_path / "data" / "train.jsonl", items)


@pytest.mark.parametrize("fmt", ["slam", "swift", "llamafactory", "nemo"])
def test_roundtrip_through_format(manifest: Path, tmp_path: Path, fmt: str) -> None:
    ext = tmp_path / "ext" / f"train.{fmt}.jsonl"
    assert convert(manifest, ext, "moeaudio", fmt) == 2
    assert detect_format(ext) == {"llamafactory": "swift"}.get(fmt, fmt)
    back = tmp_path / "back" / "train.jsonl"
    convert(ext, back, fmt, "moeaudio")
    orig, again = read_manifest(manifest), read_manifest(back)
    for a, b in zip(orig, again, strict=True):
        assert a.resolve_audio(manifest) == b.resolve_audio(back)
        assert (a.target, a.task) == (b.target, b.task)
        if fmt != "nemo":
            assert (a.id, a.instruction) == (b.id, b.instruction)
        else:
            assert (a.duration, a.lang) == (b.duration, b.lang)
    assert not Path(again[0].audio).is_absolute()  # moeaudio output is relative to the manifest


def test_external_records_look_right(manifest: Path, tmp_path: Path) -> None:
    convert(manifest, tmp_path / "s.jsonl", "moeaudio", "swift")
    rec = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert rec["messages"][0] == {"role": "user", "content": "<audio>Transcribe the audio."}
    assert rec["messages"][1] == {"role": "assistant", "content": "hello world"}
    assert rec["audios"] == [str(tmp_path / "data" / "audio" / "u1.wav")] and rec["id"] == "u1"
    convert(manifest, tmp_path / "slam.jsonl", "moeaudio", "slam")
    rec = json.loads((tmp_path / "slam.jsonl").read_text().splitlines()[0])
    assert rec == {
        "key": "u1",
        "source": str(tmp_path / "data" / "audio" / "u1.wav"),
        "target": "hello world",
        "prompt": "Transcribe the audio.",
    }
    convert(manifest, tmp_path / "nemo.jsonl", "moeaudio", "nemo")
    rec = json.loads((tmp_path / "nemo.jsonl").read_text().splitlines()[1])
    assert rec == {
        "audio_filepath": str(tmp_path / "data" / "audio" / "u2.wav"),
        "duration": 2.0,
        "text": "second one",
        "lang": "en",
    }


def test_llamafactory_json_list_and_mcq_prompt(tmp_path: Path) -> None:
    item = Item(
        id="q",
        audio="/x/q.wav",
        task="mcq",
        instruction="Which?",
        target="dog",
        choices=["cat", "dog"],
        answer="B",
    )
    write_items(tmp_path / "lf.json", [item], "llamafactory")
    data = json.loads((tmp_path / "lf.json").read_text())
    assert isinstance(data, list) and "A. cat\nB. dog" in data[0]["messages"][0]["content"]
    (back,) = read_items(tmp_path / "lf.json", "llamafactory", task="mcq")
    assert back.audio == "/x/q.wav" and back.target == "dog" and back.instruction.startswith("Which?")


def test_relative_source_paths_and_bad_records(tmp_path: Path) -> None:
    (tmp_path / "n.jsonl").write_text(
        json.dumps({"audio_filepath": "a/x.wav", "duration": 1, "text": "t"}) + "\n"
    )
    (item,) = read_items(tmp_path / "n.jsonl", "nemo")
    assert item.audio == str(tmp_path / "a" / "x.wav")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"key": "k", "target": "t"}) + "\n")
    with pytest.raises(ManifestError, match=r"bad.jsonl:1: not a valid slam record \(missing key 'source'\)"):
        read_items(tmp_path / "bad.jsonl", "slam")
    assert set(FORMATS) == {"moeaudio", "slam", "swift", "llamafactory", "nemo"}
