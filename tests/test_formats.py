"""Roundtrips between moeaudio manifests and SLAM-LLM / ms-swift / LLaMA-Factory / NeMo formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from moeaudio.data.formats import FORMATS, convert, detect_format, read_items, write_items
from moeaudio.data.manifest import Item, ManifestError, read_manifest, write_manifest
from moeaudio.errors import UsageError


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
    # the external file named absolute paths (its loader resolves relative ones against the cwd): they stay
    assert all(Path(i.audio).is_absolute() for i in again)


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


# ----------------------------------------------------------------------------- peers' own manifests
# Rows as the peers ship them: SLAM-LLM's examples (drcap_zeroshot_aac/data_examples/clotho_test.jsonl and
# audiocaps_test.jsonl, asr_librispeech, mc_musiccaps, aispeech_asr, st_covost2 READMEs), ms-swift /
# LLaMA-Factory chat rows and NeMo ASR / Canary / instruction rows.


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


SLAM_CLOTHO = {
    "key": "Santa Motor", "prompt": "<AAC>", "source": "/data/dataset/Clotho/evaluation/Santa Motor.wav",
    "target": "A machine whines and squeals while rhythmically punching or stamping.", "target_len": 10,
    "source_len": 10, "text-type": "Transcribe", "audio_language": "english", "text_language": "english",
    "task-type": "<AAC>", "similar_captions": ["A mini-fan motor is being pushed against a mic.",
                                               "A rear view mirror is sounding robotic."],
}  # fmt: skip
SLAM_AUDIOCAPS = {
    "key": "Y7fmOlUlwoNg_1", "source": "/data/dataset/AudioCaps/test/Y7fmOlUlwoNg.wav",
    "target": "Constant rattling noise and sharp vibrations", "target_len": 6, "source_len": 6,
    "text-type": "Transcribe", "audio_language": "english", "text_language": "english", "task-type": "<AAC>",
    "similar_captions": ["The engine of a small machine pulling chains"],
}  # fmt: skip


def test_slam_captioning_stays_captioning_and_absolute_paths_stay_absolute(tmp_path: Path) -> None:
    """SLAM-LLM's own Clotho / AudioCaps manifests: '<AAC>' is a task tag, not a prompt; the items are
    sound captions, not transcriptions, and /data/... stays /data/... (not ../../data/...)."""
    from moeaudio.data.formats import convert_manifest

    src = _jsonl(tmp_path / "slam" / "clotho_test.jsonl", [SLAM_CLOTHO, SLAM_AUDIOCAPS])
    dst = tmp_path / "out" / "deep" / "clotho.jsonl"
    report = convert_manifest(src, dst)
    assert report.src_format == "slam" and report.items == 2 and report.guessed == 0
    assert report.tasks == {"caption/sound": 2}
    assert report.decisions == {
        "caption/sound <- SLAM-LLM tag '<AAC>' (task-type)": 2,
    }
    assert report.absolute_paths == 2
    assert {"similar_captions", "text-type", "source_task", "target_len"} <= set(report.kept_in_meta)
    clotho, caps = read_manifest(dst)
    assert (clotho.task, clotho.domain, clotho.lang) == ("caption", "sound", "en")
    assert clotho.instruction == "Describe the audio in one sentence."  # not "<AAC>"
    assert clotho.target.startswith("A machine whines") and clotho.id == "Santa Motor"
    assert clotho.audio == "/data/dataset/Clotho/evaluation/Santa Motor.wav"  # absolute, as in the source
    assert clotho.meta["source_task"] == "<AAC>" and clotho.meta["similar_captions"][0].startswith(
        "A mini-fan"
    )
    assert clotho.meta["converted"] == {
        "from": "slam",
        "task": "SLAM-LLM tag '<AAC>' (task-type)",
        "guessed": False,
    }
    assert caps.task == "caption" and caps.audio == "/data/dataset/AudioCaps/test/Y7fmOlUlwoNg.wav"
    # similar captions are retrieval context in DRCap, not references: eval scores against the target only
    from moeaudio.eval.handlers import caption_references
    from moeaudio.runtime.batching import Example

    assert caption_references(Example("x", caps.target, meta=caps.to_dict())) == [caps.target]


def test_slam_untagged_rows_are_guessed_and_reported(tmp_path: Path) -> None:
    rows = [  # asr_librispeech (no tag: the path names LibriSpeech), mc_musiccaps (relative path, no tag)
        {"key": "1001-134707-0000_ASR", "source": "/data/open_data/librispeech_audio/audio/librispeech_1001-134707-0000.wav",
         "target": "1 little recks the laborer."},
        {"key": "[-0Gj8-vB1q4]-[30-40]", "source": "MusicCaps/wav/[-0Gj8-vB1q4]-[30-40].wav",
         "target": "The low quality recording features a ballad song.", "duration": 10.0, "sample_rate": 48000},
        {"key": "k3", "source": "/corpus/x.wav", "target": "hello"},
    ]  # fmt: skip
    from moeaudio.data.formats import convert_manifest

    src = _jsonl(tmp_path / "slam" / "mixed.jsonl", rows)
    report = convert_manifest(src, tmp_path / "out" / "m.jsonl")
    assert report.guessed == 3 and report.absolute_paths == 2
    assert report.decisions == {
        "asr/speech <- guessed from path (librispeech)": 1,
        "caption/music <- guessed from path (musiccaps)": 1,
        "asr/speech <- guessed from default (asr)": 1,
    }
    ls, mc, plain = read_manifest(tmp_path / "out" / "m.jsonl")
    assert (ls.task, ls.domain) == ("asr", "speech") and ls.instruction == "Transcribe the audio."
    assert (mc.task, mc.domain) == ("caption", "music") and mc.meta["converted"]["guessed"] is True
    assert (
        mc.audio == "../slam/MusicCaps/wav/[-0Gj8-vB1q4]-[30-40].wav"
    )  # relative in the source: relative here
    assert mc.meta["sample_rate"] == 48000 and mc.meta["duration"] == 10.0
    assert plain.task == "asr"
    lines = "\n".join(report.lines())
    assert "guessed: the task of 3 of 3 items" in lines
    # an explicit --task is not a guess
    again = convert_manifest(src, tmp_path / "out" / "m2.jsonl", task="caption")
    assert again.guessed == 0 and {i.task for i in read_manifest(tmp_path / "out" / "m2.jsonl")} == {
        "caption"
    }


def test_slam_aispeech_and_covost_layouts(tmp_path: Path) -> None:
    rows = [
        {"key": "BAC009S0002W0122", "task": "ASR", "target": "而对楼市成交抑制作用最大的限购",
         "path": "/aistor/asr/train/data/data_wav.1.ark:17"},
        {"key": "BAC009S0764W0238", "task": "hotword", "path": "/aistor/asr/test/data/data_wav.1.ark:17343733",
         "target": "形成一批具有国际竞争力的中国企业", "hotword": "中国"},
    ]  # fmt: skip
    from moeaudio.data.formats import convert_manifest

    report = convert_manifest(_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "a_out.jsonl")
    asr, hot = read_manifest(tmp_path / "a_out.jsonl")
    assert (asr.task, hot.task, hot.meta["hotword"], hot.meta["source_task"]) == (
        "asr",
        "asr",
        "中国",
        "hotword",
    )
    assert any("Kaldi .ark" in n for n in report.notes) and report.guessed == 0

    covost = [  # st_covost2 README: prompt = language tag, gt = TRANSCRIPT<|xx|>TRANSLATION
        {"audio": "/cv/en/clips/common_voice_en_699711.mp3", "prompt": "<|en|>", "gt": "\"She'll be all right.\"",
         "source": "covost_en"},
        {"audio": "/cv/en/clips/common_voice_en_699711.mp3", "prompt": "<|de|>",
         "gt": "\"She'll be all right.\"<|de|>Sie wird schon in Ordnung sein.", "source": "covost_ende"},
        {"audio": "/cv/en/clips/common_voice_en_699711.mp3", "prompt": "\"She'll be all right.\"<|ja|>",
         "gt": "\"She'll be all right.\"<|ja|>彼女は大丈夫だろう。", "source": "covost_enenja"},
    ]  # fmt: skip
    src = _jsonl(tmp_path / "st.jsonl", covost)
    assert detect_format(src) == "slam"
    report = convert_manifest(src, tmp_path / "st_out.jsonl")
    en, de, ja = read_manifest(tmp_path / "st_out.jsonl")
    assert (en.task, en.lang, en.target, en.domain) == ("asr", "en", '"She\'ll be all right."', "speech")
    assert (de.task, de.target, de.meta["target_lang"]) == (
        "translation",
        "Sie wird schon in Ordnung sein.",
        "de",
    )
    assert (
        de.meta["transcript"] == '"She\'ll be all right."'
        and de.instruction == "Translate the speech into German."
    )
    assert (ja.task, ja.target, ja.meta["source"]) == ("translation", "彼女は大丈夫だろう。", "covost_enenja")
    assert en.audio == "/cv/en/clips/common_voice_en_699711.mp3" and report.guessed == 0
    assert any("no translation scorer" in n for n in report.notes)


def test_chat_roles_and_prompts(tmp_path: Path) -> None:
    rows = [  # ms-swift messages (system + multi-turn), LLaMA-Factory sharegpt, ms-swift query/response
        {"messages": [{"role": "system", "content": "You are a helpful audio assistant."},
                      {"role": "user", "content": "<audio>Please describe the sound in this clip."},
                      {"role": "assistant", "content": "A dog barks twice."},
                      {"role": "user", "content": "Is it indoors?"}, {"role": "assistant", "content": "No."}],
         "audios": ["/data/esc50/audio/1-100032-A-0.wav"]},
        {"conversations": [{"from": "human", "value": "<audio>What emotion does the speaker convey?"},
                           {"from": "gpt", "value": "happy"}], "audios": ["/data/ravdess/03-01-03.wav"],
         "tools": "[]"},
        {"query": "<audio>Transcribe the speech.", "response": "hello there", "audios": ["/data/ls/1.flac"]},
        {"messages": [{"role": "user", "content": "<audio>Tell me about it."},
                      {"role": "assistant", "content": "It is loud."}], "audios": ["/x/y.wav"]},
    ]  # fmt: skip
    from moeaudio.data.formats import convert_manifest

    src = _jsonl(tmp_path / "chat.jsonl", rows)
    assert detect_format(src) == "swift"
    report = convert_manifest(src, tmp_path / "chat_out.jsonl")
    cap, emo, asr, unknown = read_manifest(tmp_path / "chat_out.jsonl")
    assert (cap.task, cap.domain, cap.target) == ("caption", "sound", "A dog barks twice.")
    assert cap.instruction == "Please describe the sound in this clip."
    assert cap.meta["system"] == "You are a helpful audio assistant."
    assert cap.meta["extra_turns"] == [{"role": "user", "content": "Is it indoors?"},
                                       {"role": "assistant", "content": "No."}]  # fmt: skip
    assert (emo.task, emo.domain, emo.target, emo.meta["tools"]) == ("emotion", "speech", "happy", "[]")
    assert (asr.task, asr.target, asr.instruction) == ("asr", "hello there", "Transcribe the speech.")
    assert unknown.task == "asr" and unknown.instruction == "Tell me about it."
    assert report.guessed == 4
    assert report.decisions["caption/sound <- guessed from prompt text"] == 1
    assert report.decisions["asr/speech <- guessed from default (asr)"] == 1


def test_nemo_canary_and_instruction_rows(tmp_path: Path) -> None:
    rows = [
        {"audio_filepath": "/data/cv/de_1.wav", "duration": 3.2, "text": "Hallo Welt", "taskname": "s2t_translation",
         "source_lang": "en", "target_lang": "de", "pnc": "yes"},
        {"audio_filepath": "/data/cv/en_1.wav", "duration": 2.0, "text": "hello world", "taskname": "asr",
         "source_lang": "en", "target_lang": "en", "pnc": "no"},
        {"audio_filepath": "music/clip.wav", "duration": 10.0, "offset": 2.0,
         "question": "What is the genre of this music?", "answer": "jazz"},
    ]  # fmt: skip
    from moeaudio.data.formats import convert_manifest

    report = convert_manifest(_jsonl(tmp_path / "nemo" / "m.jsonl", rows), tmp_path / "nemo_out.jsonl")
    st, asr, qa = read_manifest(tmp_path / "nemo_out.jsonl")
    assert (st.task, st.domain, st.lang, st.target) == ("translation", "speech", "en", "Hallo Welt")
    assert st.instruction == "Translate the speech into German." and st.meta["target_lang"] == "de"
    assert st.meta["source_task"] == "s2t_translation" and st.meta["pnc"] == "yes"
    assert (asr.task, asr.lang, asr.instruction) == ("asr", "en", "Transcribe the audio.")
    assert (qa.task, qa.domain, qa.target, qa.instruction) == (
        "genre",
        "music",
        "jazz",
        "What is the genre of this music?",
    )
    assert qa.meta["offset"] == 2.0 and qa.audio == "nemo/music/clip.wav"
    assert any("'offset'" in n for n in report.notes)
    assert report.guessed == 1 and report.absolute_paths == 2


# ----------------------------------------------------------------------------- streaming conversion
# convert_manifest reads a jsonl source a line at a time and writes each record as it arrives, through a
# temp file renamed into place: the bytes must be those of the whole-file writers it replaced.


def _varied_items() -> list[Item]:
    """Items that exercise the writers: unicode, a newline and U+2028 in text, multiple choice, meta."""
    return [
        Item(id="a", audio="/corpus/ls/a.wav", task="asr", instruction="Transcribe the audio.", target="héllo wörld",
             duration=1.5, lang="de"),
        Item(id="b", audio="/corpus/esc/b.wav", task="caption", target="a dog barks\nthen\u2028stops",
             meta={"system": "You are an audio assistant.", "nested": {"k": [1, {"x": None}], "e": {}}}),
        Item(id="c", audio="/corpus/q/c.wav", task="mcq", instruction="Which animal?", target="dog",
             choices=["cat", "dog"], answer="B", meta={"tags": []}),
        Item(id="d", audio="/corpus/cv/d.wav", task="asr", target="", duration=0.0, lang="en"),
    ]  # fmt: skip


def _manifest_text(items: list[Item]) -> str:
    return "".join(json.dumps(it.to_dict(), ensure_ascii=False) + "\n" for it in items)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_streamed_output_equals_the_whole_file_writers(tmp_path: Path, fmt: str, suffix: str) -> None:
    """Every destination format, a jsonl and a .json list (its text as json.dumps(list, indent=2) writes it)."""
    from moeaudio.data.formats import convert_manifest

    items = _varied_items()
    src = tmp_path / "src.jsonl"
    src.write_text(_manifest_text(items), encoding="utf-8")
    dst = tmp_path / "out" / f"dst{suffix}"
    report = convert_manifest(src, dst, "moeaudio", fmt)
    assert report.items == len(items)
    if fmt == "moeaudio":  # a moeaudio destination is jsonl whatever its name; absolute paths stay absolute
        expected = _manifest_text(items)
    else:
        recs = [FORMATS[fmt].to_record(it, it.audio) for it in items]
        if suffix == ".json":
            expected = json.dumps(recs, ensure_ascii=False, indent=2) + "\n"
        else:
            expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    assert dst.read_bytes() == expected.encode("utf-8")


@pytest.mark.parametrize("n", [0, 1])
def test_json_list_destination_of_zero_and_one_item(tmp_path: Path, n: int) -> None:
    items = _varied_items()[1 : 1 + n]
    write_items(tmp_path / "lf.json", items, "llamafactory")
    recs = [FORMATS["llamafactory"].to_record(it, it.audio) for it in items]
    assert (tmp_path / "lf.json").read_text(encoding="utf-8") == json.dumps(
        recs, ensure_ascii=False, indent=2
    ) + "\n"


def test_convert_holds_memory_constant_on_a_large_jsonl(tmp_path: Path) -> None:
    """20,000 NeMo lines into a SLAM-LLM jsonl: the peak of traced allocations stays far below the source's
    size (the whole-file code held the text, every record and every Item: ~12x the source, measured).
    convert reads no audio, so the paths need not exist."""
    import tracemalloc

    from moeaudio.data.formats import convert_manifest

    n = 20_000
    src = tmp_path / "big.nemo.jsonl"
    rows = ({"audio_filepath": f"/corpus/ls/clip_{i:06d}.wav", "duration": 1.5 + i % 7,
             "text": f"utterance number {i} says hello world"} for i in range(n))  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    size = src.stat().st_size
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()  # nonzero if tracing was on already (PYTHONTRACEMALLOC)
        tracemalloc.reset_peak()
        report = convert_manifest(src, tmp_path / "big.slam.jsonl", "nemo", "slam")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert report.items == n and report.tasks == {"asr/speech": n}
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte source"
    with (tmp_path / "big.slam.jsonl").open() as fh:
        assert sum(1 for _ in fh) == n


def _bad_last_line(kind: str) -> bytes:
    return {
        "record": b'{"key": "z", "target": "no audio"}\n',
        "json": b'{"key": "z", "source": "/a/z.wav", "target": \n',
        "bytes": b'{"key": "z", "source": "/a/\xff.wav", "target": "t"}\n',
    }[kind]


@pytest.mark.parametrize("kind", ["record", "json", "bytes"])
def test_a_conversion_failing_at_the_last_line_leaves_the_destination(tmp_path: Path, kind: str) -> None:
    from moeaudio.data.formats import convert_manifest

    good = "".join(
        json.dumps({"key": f"k{i}", "source": f"/a/{i}.wav", "target": "t"}) + "\n" for i in range(50)
    )
    src = tmp_path / "src.jsonl"
    src.write_bytes(good.encode() + _bad_last_line(kind))
    dst = tmp_path / "out" / "dst.jsonl"
    dst.parent.mkdir()
    dst.write_text("the previous conversion\n")
    with pytest.raises((ManifestError, UsageError), match=rf"^{re.escape(str(src))}:51: "):
        convert_manifest(src, dst, "slam", "nemo")
    assert dst.read_text() == "the previous conversion\n"
    assert [p.name for p in dst.parent.iterdir()] == ["dst.jsonl"]  # no temp file left


def test_a_moeaudio_destination_refuses_duplicate_ids_and_stays_untouched(tmp_path: Path) -> None:
    """write_manifest's checks hold while streaming: every problem, as PATH: item N (id 'X'), before the rename."""
    from moeaudio.data.formats import convert_manifest

    rows = [
        {"key": "same" if i in (3, 7) else f"k{i}", "source": f"/a/{i}.wav", "target": "t"} for i in range(9)
    ]
    src = _jsonl(tmp_path / "dup.jsonl", rows)
    dst = tmp_path / "dst.jsonl"
    dst.write_text("old\n")
    with pytest.raises(
        ManifestError, match=rf"^{re.escape(str(dst))}: item 8 \(id 'same'\): duplicate id 'same'$"
    ):
        convert_manifest(src, dst, "slam", "moeaudio")
    assert dst.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == sorted(
        ["dup.jsonl", "dst.jsonl"]
    )


def test_not_utf8_on_line_3_names_the_line_and_column(tmp_path: Path) -> None:
    from moeaudio.io_utils import iter_user_lines, read_user_text

    src = tmp_path / "bytes.jsonl"
    line3 = b'{"key": "c", "source": "/a/\xe9t\xe9.wav", "target": "t"}\n'  # latin-1 'été': byte 0xe9 at column 28
    src.write_bytes(b"\xef\xbb\xbf" + b'{"key": "a", "source": "/a/a.wav", "target": "t"}\n' * 2 + line3)
    message = f"{src}:3: not UTF-8 text (byte 0xe9 at column 28); save the manifest as UTF-8"
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        read_items(src, "slam")
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        read_user_text(src, "manifest")  # the whole-file reader says the same
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        list(iter_user_lines(src, "manifest"))
    # a byte-order mark is dropped before the columns of line 1 are counted
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + line3)
    for read in (read_user_text, lambda p, w: list(iter_user_lines(p, w))):
        with pytest.raises(UsageError, match=r"bom.jsonl:1: not UTF-8 text \(byte 0xe9 at column 28\)"):
            read(tmp_path / "bom.jsonl", "manifest")


def test_line_breaks_are_newlines_only_and_detect_reads_the_first_record(tmp_path: Path) -> None:
    """U+2028 / U+0085 inside a JSON string (json.dumps(ensure_ascii=False) leaves them raw) are text, not
    line breaks (the whole-file reader split lines there and called the record invalid JSON); CRLF works;
    detect_format parses the first record only."""
    rows = [{"key": "a", "source": "/a/a.wav", "target": "one\u2028two\x85three"},
            {"key": "b", "source": "/a/b.wav", "target": "x"}]  # fmt: skip
    src = tmp_path / "s.jsonl"
    src.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode())
    a, b = read_items(src)
    assert a.target == "one\u2028two\x85three" and b.id == "b"
    (tmp_path / "late.jsonl").write_text(json.dumps(rows[1]) + "\nnot json at all\n")
    assert detect_format(tmp_path / "late.jsonl") == "slam"
    with pytest.raises(ManifestError, match=r"late.jsonl:2: invalid JSON"):
        read_items(tmp_path / "late.jsonl")


def test_convert_in_place(tmp_path: Path) -> None:
    """The source is read while the destination's temp file is written: converting a file onto itself works."""
    from moeaudio.data.formats import convert_manifest

    src = _jsonl(tmp_path / "m.jsonl", [SLAM_CLOTHO, SLAM_AUDIOCAPS])
    assert convert_manifest(src, src, "slam", "nemo").items == 2
    assert [json.loads(line)["audio_filepath"] for line in src.read_text().splitlines()] == [
        SLAM_CLOTHO["source"],
        SLAM_AUDIOCAPS["source"],
    ]
