"""Manifest validation (file:line errors, suggestions), roundtrip and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moeaudio.data.manifest import Item, ManifestError, read_manifest, write_manifest
from moeaudio.data.tasks import answer_letter, item_prompt, split_choices
from moeaudio.io_utils import atomic_path, atomic_write_bytes, atomic_write_text, save_figure

GOOD = {"id": "a", "audio": "wav/a.wav", "task": "asr", "target": "hello"}


def _write(path: Path, records: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _error(path: Path) -> str:
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    return str(ei.value)


def test_roundtrip_and_resolve(tmp_path: Path) -> None:
    items = [
        Item(id="a", audio="wav/a.wav", task="asr", target="hi", duration=1.5, sample_rate=16000, lang="en"),
        Item(
            id="b",
            audio="/abs/b.wav",
            task="mcq",
            target="dog",
            choices=["cat", "dog"],
            answer="B",
            meta={"k": 1},
        ),
    ]
    path = write_manifest(tmp_path / "sub" / "m.jsonl", items)
    back = read_manifest(path)
    assert back == items
    assert back[0].domain == "speech" and back[1].domain == "mixed"  # defaults from the task
    assert back[0].resolve_audio(path) == tmp_path / "sub" / "wav" / "a.wav"
    assert back[1].resolve_audio(path) == Path("/abs/b.wav")
    assert "duration" not in json.loads(path.read_text().splitlines()[1])  # None fields omitted
    assert not list((tmp_path / "sub").glob(".*tmp*"))  # no temp files left behind


def test_bad_domain_has_file_line_key_and_choices(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", [GOOD, "", {**GOOD, "id": "b", "domain": "voice"}])
    msg = _error(path)
    assert msg.startswith(f"{path}:3: key 'domain' must be one of speech, music, sound, mixed (got 'voice')")


def test_unknown_key_suggests_nearest(tmp_path: Path) -> None:
    rec = dict(GOOD)
    rec["domian"] = "speech"
    msg = _error(_write(tmp_path / "x.jsonl", [rec]))
    assert f"{tmp_path / 'x.jsonl'}:1: unknown key 'domian'; did you mean 'domain'?" in msg


def test_missing_required_and_types(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "x.jsonl",
        [
            {"id": "a", "audio": "a.wav", "task": "asr"},
            {**GOOD, "id": 7},
            {**GOOD, "id": "c", "duration": -1},
        ],
    )
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    errs = ei.value.errors
    assert errs[0] == f"{path}:1: missing required key 'target'; every line needs id, audio, task, target"
    assert errs[1].startswith(f"{path}:2: key 'id' must be a string (got int 7)")
    assert errs[2].startswith(f"{path}:3: key 'duration' must be a non-negative number")


def test_invalid_json_duplicate_id_and_answer(tmp_path: Path) -> None:
    mcq = {**GOOD, "id": "m", "task": "mcq", "choices": ["cat", "dog"], "answer": "dog"}
    path = _write(tmp_path / "x.jsonl", ['{"id": "a",', GOOD, GOOD, mcq])
    with pytest.raises(ManifestError) as ei:
        read_manifest(path)
    errs = ei.value.errors
    assert errs[0].startswith(f"{path}:1: invalid JSON")
    assert errs[1] == f"{path}:3: key 'id' value 'a' duplicates line 2; ids must be unique"
    assert errs[2] == f"{path}:4: key 'answer' must be the letter of the correct choice; use 'B' for 'dog'"


def test_write_manifest_rejects_invalid_items(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="domain"):
        write_manifest(
            tmp_path / "m.jsonl", [Item(id="a", audio="a.wav", task="asr", target="", domain="voice")]
        )
    assert not (tmp_path / "m.jsonl").exists()


def test_atomic_helpers(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "d" / "a.txt", "x\n")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "d" / "a.txt").read_text() == "x\n" and (
        tmp_path / "b.bin"
    ).read_bytes() == b"\x00\x01"
    target = tmp_path / "c.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == tmp_path
        tmp.write_text("new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"  # untouched on failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "c.txt", "d"]


def test_save_figure_is_atomic_and_closes_pyplot_figures(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "plots" / "a.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # pyplot's figure is released
    detached = Figure()  # object API: no pyplot manager, nothing to close
    detached.add_subplot().plot([0, 1])
    assert save_figure(detached, tmp_path / "b.png", tight=False).stat().st_size > 0

    class Broken:  # a figure whose rendering fails mid-write
        canvas = None

        def savefig(self, path, **kwargs) -> None:
            Path(path).write_bytes(b"partial")
            raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        save_figure(Broken(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the previous PNG is intact
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["a.png"]


def test_mcq_helpers() -> None:
    assert split_choices("Which one? A. cat B. dog C. vitamin A. D. eel") == (
        "Which one?",
        ["cat", "dog", "vitamin A.", "eel"],
    )
    assert split_choices("Is vitamin A. good?\n(A) yes\n(B) no") == ("Is vitamin A. good?", ["yes", "no"])
    assert split_choices("no options here") is None
    assert answer_letter("B", ["x", "y"]) == "B"
    assert answer_letter(" y ", ["x", "y"]) == "B"
    assert answer_letter("A", ["A", "B"]) == "A"
    assert answer_letter("A", ["B", "A"]) == "A" and answer_letter("A", ["B", "A"], prefer="text") == "B"
    assert answer_letter("(C) eel", ["x", "y", "eel"]) == "C"
    assert answer_letter("z", ["x", "y"]) is None
    item = Item(
        id="q", audio="a.wav", task="mcq", target="y", instruction="Q?", choices=["x", "y"], answer="B"
    )
    assert item_prompt(item).splitlines()[:3] == ["Q?", "A. x", "B. y"]
    item.meta["choices_in_audio"] = True
    assert "A. x" not in item_prompt(item)
