"""Each preparer against a tiny tree in its dataset's real release layout and naming."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moeaudio.data.manifest import Item, read_manifest
from moeaudio.data.sources import SOURCES, prepare_source
from moeaudio.data.sources.base import PrepareReport, block_split

SR = 16000


def tone(path: Path, seconds: float = 0.1, sr: int = SR, channels: int = 1) -> Path:
    """Write a short sine (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 440 * t)
    if channels > 1:
        wav = np.stack([wav] * channels, axis=1)
    sf.write(path, wav, sr)
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    return path


def load(report: PrepareReport, split: str) -> tuple[Path, list[Item]]:
    path = Path(report.out) / report.manifests[split]
    return path, read_manifest(path)


def by_id(items: list[Item]) -> dict[str, Item]:
    return {it.id: it for it in items}


def check_paths(manifest: Path, items: list[Item]) -> None:
    """Audio paths are relative to the manifest and resolve to the real files."""
    for it in items:
        assert not Path(it.audio).is_absolute()
        assert it.resolve_audio(manifest).is_file(), it.audio
        assert it.duration and it.duration > 0 and it.sample_rate


def test_registry() -> None:
    assert {"librispeech", "commonvoice", "esc50", "gtzan", "ravdess", "cremad", "iemocap", "vocalsound", "mmau",
            "voicebench", "jsonl", "csv", "hf"} <= set(SOURCES)  # fmt: skip
    with pytest.raises(KeyError, match="did you mean 'esc50'"):
        SOURCES["esc5"]


def test_librispeech(tmp_path: Path) -> None:
    root = tmp_path / "src" / "LibriSpeech"
    (root).mkdir(parents=True)
    (root / "SPEAKERS.TXT").write_text(
        ";ID  |SEX| SUBSET |MINUTES| NAME\n1089 | M | test-clean | 25 | Somebody\n"
    )
    for split, spk, chap, n in (("test-clean", "1089", "134686", 2), ("dev-clean", "84", "121123", 1)):
        d = root / split / spk / chap
        lines = []
        for i in range(n):
            utt = f"{spk}-{chap}-{i:04d}"
            tone(d / f"{utt}.flac")
            lines.append(f"{utt} HE HOPED THERE WOULD BE STEW {i}")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    report = prepare_source("librispeech", tmp_path / "src", tmp_path / "out", lowercase=True)
    assert report.splits == {"dev-clean": 1, "test-clean": 2}
    path, items = load(report, "test-clean")
    check_paths(path, items)
    it = by_id(items)["librispeech/1089-134686-0001"]
    assert (it.task, it.domain, it.lang, it.speaker) == ("asr", "speech", "en", "1089")
    assert it.target == "he hoped there would be stew 1" and it.meta["gender"] == "male"
    assert it.audio == "../src/LibriSpeech/test-clean/1089/134686/1089-134686-0001.flac"
    assert json.loads((tmp_path / "out" / "prepare_report.json").read_text())["total_items"] == 3


def test_commonvoice_mp3(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile cannot write mp3 here; Common Voice clips are mp3")
    root = tmp_path / "cv-corpus-17.0" / "en"
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
    rows = {
        "train": [("c1", "common_voice_en_1.mp3", 'He said "hi" there.', "twenties", "male_masculine")],
        "dev": [("c2", "common_voice_en_2.mp3", "Second clip.", "", "")],
        "test": [("c3", "common_voice_en_3.mp3", "Third clip.", "fifties", "female_feminine")],
    }
    for split, rs in rows.items():
        lines = [header]
        for cid, clip, sent, age, gender in rs:
            tone(root / "clips" / clip, seconds=0.5)
            lines.append(f"{cid}\t{clip}\tsid\t{sent}\t\t2\t0\t{age}\t{gender}\tUS\t\ten\t\n")
        (root / f"{split}.tsv").write_text("".join(lines))
    report = SOURCES["commonvoice"].prepare(root, tmp_path / "out")
    assert report.splits == {"train": 1, "dev": 1, "test": 1}
    path, items = load(report, "train")
    check_paths(path, items)
    (it,) = items
    assert it.id == "commonvoice/common_voice_en_1" and it.target == 'He said "hi" there.'
    assert (
        it.meta["gender"] == "male"
        and it.meta["age"] == "twenties"
        and it.speaker == "c1"
        and it.lang == "en"
    )
    assert "gender" not in load(report, "dev")[1][0].meta


def test_esc50(tmp_path: Path) -> None:
    root = tmp_path / "ESC-50-master"
    rows = [("1-100032-A-0.wav", 1, 0, "dog", "True"), ("5-9032-A-14.wav", 5, 14, "chirping_birds", "False")]
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for fn, fold, target, cat, esc10 in rows:
        tone(root / "audio" / fn, sr=44100)
        lines.append(f"{fn},{fold},{target},{cat},{esc10},{fn.split('-')[1]},A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    report = SOURCES["esc50"].prepare(tmp_path, tmp_path / "out")
    assert report.splits == {"train": 1, "test": 1}
    path, (test,) = load(report, "test")
    check_paths(path, [test])
    assert (test.target, test.task, test.domain, test.sample_rate) == (
        "chirping birds",
        "sound",
        "sound",
        44100,
    )
    assert test.meta["fold"] == 5 and test.meta["class_id"] == 14
    assert report.labels["sound"] == {"chirping birds": 1, "dog": 1}
    assert SOURCES["esc50"].prepare(root, tmp_path / "out10", esc10=True).splits == {"train": 1}


def test_gtzan_skips_and_reports_corrupt_file(tmp_path: Path) -> None:
    base = tmp_path / "Data" / "genres_original"
    for genre, first in (("blues", 0), ("jazz", 50)):
        for n in range(first, first + 10):
            tone(base / genre / f"{genre}.{n:05d}.wav", sr=22050)
    corrupt(base / "jazz" / "jazz.00054.wav")  # the famous broken file
    report = SOURCES["gtzan"].prepare(tmp_path, tmp_path / "out")
    assert report.splits == {"train": 15, "valid": 2, "test": 2}
    assert len(report.skipped) == 1
    skipped_path, reason = report.skipped[0]
    assert skipped_path.endswith("jazz/jazz.00054.wav") and "unreadable audio header" in reason
    path, items = load(report, "train")
    check_paths(path, items)
    ids = {it.id for s in report.splits for it in load(report, s)[1]}
    assert "gtzan/jazz.00054" not in ids and "gtzan/jazz.00053" in ids  # manifest still written
    assert {it.id for it in load(report, "test")[1]} == {"gtzan/blues.00009", "gtzan/jazz.00059"}
    assert {it.id for it in load(report, "valid")[1]} == {"gtzan/blues.00008", "gtzan/jazz.00058"}
    assert all(it.domain == "music" and it.task == "genre" for it in items)
    saved = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert saved["skipped"][0]["reason"] == reason


def test_ravdess(tmp_path: Path) -> None:
    root = tmp_path / "Audio_Speech_Actors_01-24"
    tone(root / "Actor_01" / "03-01-05-02-01-01-01.wav", sr=48000)  # angry, strong, male
    tone(root / "Actor_24" / "03-01-08-01-02-02-24.wav", sr=48000)  # surprised, female, test
    tone(root / "Actor_21" / "03-02-02-01-01-01-21.wav", sr=48000)  # song, calm, valid
    tone(root / "Actor_02" / "notes.wav")  # wrong name -> reported
    report = SOURCES["ravdess"].prepare(tmp_path, tmp_path / "out", tasks=("emotion", "gender"))
    assert report.splits == {"train": 2, "valid": 2, "test": 2}
    assert [p for p, _ in report.skipped] == [str(root / "Actor_02" / "notes.wav")]
    path, items = load(report, "train")
    check_paths(path, items)
    items_ = by_id(items)
    emo = items_["ravdess/03-01-05-02-01-01-01"]
    assert (emo.target, emo.task, emo.speaker) == ("angry", "emotion", "Actor_01")
    assert emo.meta["intensity"] == "strong" and emo.meta["statement"].startswith("Kids")
    assert items_["ravdess/03-01-05-02-01-01-01/gender"].target == "male"
    test = by_id(load(report, "test")[1])
    assert test["ravdess/03-01-08-01-02-02-24"].target == "surprised"
    assert test["ravdess/03-01-08-01-02-02-24/gender"].target == "female"
    assert by_id(load(report, "valid")[1])["ravdess/03-02-02-01-01-01-21"].meta["vocal_channel"] == "song"


def test_cremad(tmp_path: Path) -> None:
    root = tmp_path / "CREMA-D"
    names = ["1001_DFA_ANG_XX.wav", "1001_IEO_HAP_HI.wav", "1002_TIE_SAD_LO.wav", "1091_MTI_NEU_XX.wav"]
    for n in names:
        tone(root / "AudioWAV" / n)
    (root / "AudioWAV" / "1076_MTI_SAD_XX.wav").write_bytes(b"")  # empty in the real release
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n"
    )
    report = SOURCES["cremad"].prepare(
        tmp_path, tmp_path / "out", tasks=("emotion", "gender"), test_ratio=0.25, valid_ratio=0
    )
    assert [Path(p).name for p, _ in report.skipped] == ["1076_MTI_SAD_XX.wav"]
    # 1091 (last actor) -> test, and it has no demographics row -> no gender item.
    assert report.splits == {"train": 6, "test": 1}
    path, items = load(report, "train")
    check_paths(path, items)
    items_ = by_id(items)
    assert items_["cremad/1001_DFA_ANG_XX"].target == "angry"
    assert items_["cremad/1001_DFA_ANG_XX"].meta["text"] == "Don't forget a jacket"
    assert items_["cremad/1002_TIE_SAD_LO/gender"].target == "female"
    assert items_["cremad/1001_IEO_HAP_HI"].speaker == "1001"
    (test,) = load(report, "test")[1]
    assert test.id == "cremad/1091_MTI_NEU_XX" and test.target == "neutral"


def test_iemocap(tmp_path: Path) -> None:
    root = tmp_path / "IEMOCAP_full_release"
    evals = {
        1: ("Ses01F_impro01", [("F000", "neu"), ("M000", "exc"), ("F001", "fru"), ("M001", "ang")]),
        5: ("Ses05M_script01_1", [("F000", "sad"), ("M000", "hap")]),
    }
    for sess, (dialog, utts) in evals.items():
        sdir = root / f"Session{sess}"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        trans = []
        for i, (suffix, label) in enumerate(utts):
            utt = f"{dialog}_{suffix}"
            tone(sdir / "sentences" / "wav" / dialog / f"{utt}.wav")
            lines += [
                f"[{i}.5000 - {i + 1}.2500]\t{utt}\t{label}\t[2.5000, 3.0000, 3.5000]",
                f"C-E1:\t{label};\t()",
                "",
            ]
            trans.append(f"{utt} [{i:03d}.5000-{i + 1:03d}.2500]: Utterance {i}.")
        (sdir / "dialog" / "EmoEvaluation" / "Categorical").mkdir(parents=True)
        (sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (sdir / "dialog" / "transcriptions").mkdir(parents=True)
        (sdir / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(trans) + "\n")
    report = SOURCES["iemocap"].prepare(tmp_path, tmp_path / "out")
    assert report.splits == {"train": 2, "test": 2}
    path, items = load(report, "train")
    check_paths(path, items)
    items_ = by_id(items)
    assert set(items_) == {"iemocap/Ses01F_impro01_F000", "iemocap/Ses01F_impro01_M001"}
    neu = items_["iemocap/Ses01F_impro01_F000"]
    assert (neu.target, neu.speaker, neu.meta["gender"], neu.meta["text"]) == (
        "neutral",
        "Ses01F",
        "female",
        "Utterance 0.",
    )
    assert neu.meta["valence"] == 2.5 and neu.meta["improvised"] is True
    assert {it.target for it in load(report, "test")[1]} == {"sad", "happy"}
    merged = SOURCES["iemocap"].prepare(root, tmp_path / "out2", merge_excited=True)
    assert merged.splits["train"] == 3 and merged.labels["emotion"]["happy"] == 2


def test_vocalsound_official_and_fallback_splits(tmp_path: Path) -> None:
    root = tmp_path / "vocalsound_16k"
    for name in [
        "f0003_0_cough.wav",
        "f0003_1_throatclearing.wav",
        "m0010_0_laughter.wav",
        "m0042_0_sniff.wav",
    ]:
        tone(root / "audio_16k" / name)
    tone(root / "audio_16k" / "m0042_1_yawn.wav")  # unknown label -> reported
    fallback = SOURCES["vocalsound"].prepare(tmp_path, tmp_path / "out_fb", test_ratio=0.34, valid_ratio=0)
    assert fallback.splits == {"train": 3, "test": 1}
    (root / "meta").mkdir()
    (root / "meta" / "tr_meta.csv").write_text("f0003,Female,30,US,English,Healthy\n")
    (root / "meta" / "val_meta.csv").write_text("m0010,Male,25,UK,English,Healthy\n")
    (root / "meta" / "te_meta.csv").write_text("m0042,Male,40,IN,Hindi,Healthy\n")
    report = SOURCES["vocalsound"].prepare(root, tmp_path / "out")
    assert report.splits == {"train": 2, "valid": 1, "test": 1}
    assert [Path(p).name for p, _ in report.skipped] == ["m0042_1_yawn.wav"]
    path, items = load(report, "train")
    check_paths(path, items)
    items_ = by_id(items)
    tc = items_["vocalsound/f0003_1_throatclearing"]
    assert (tc.target, tc.task, tc.domain, tc.speaker, tc.meta["gender"]) == (
        "throat clearing", "vocalsound", "sound", "f0003", "female",
    )  # fmt: skip


def test_mmau(tmp_path: Path) -> None:
    entries = [
        {"id": "q1", "audio_id": "./test-mini-audios/q1.wav", "question": "Who speaks?",
         "choices": ["Man", "Woman", "Child", "Robot"], "answer": "Woman", "dataset": "AudioSet", "task": "sound",
         "split": "test-mini", "category": "Reasoning", "sub-category": "Acoustic Source Inference", "difficulty": "medium"},
        {"id": "q2", "audio_id": "./test-mini-audios/q2.wav", "question": "Genre?", "choices": ["rock", "jazz"],
         "answer": "jazz", "task": "music", "split": "test-mini", "category": "Perception", "difficulty": "easy"},
        {"id": "q3", "audio_id": "./test-mini-audios/q3.wav", "question": "Bad?", "choices": ["a", "b"],
         "answer": "c", "task": "speech", "split": "test-mini"},
    ]  # fmt: skip
    for e in entries:
        tone(tmp_path / "mmau" / e["audio_id"])
    (tmp_path / "mmau" / "mmau-test-mini.json").write_text(json.dumps(entries))
    report = SOURCES["mmau"].prepare(tmp_path / "mmau", tmp_path / "out")
    assert report.splits == {"test-mini": 2}
    assert report.skipped == [
        (f"{tmp_path / 'mmau' / 'mmau-test-mini.json'}:q3", "answer 'c' is not one of the choices")
    ]
    path, items = load(report, "test-mini")
    check_paths(path, items)
    q1, q2 = by_id(items)["mmau/q1"], by_id(items)["mmau/q2"]
    assert (q1.task, q1.domain, q1.answer, q1.target, q1.instruction) == (
        "mcq",
        "sound",
        "B",
        "Woman",
        "Who speaks?",
    )
    assert (
        q1.meta["sub_category"] == "Acoustic Source Inference" and q2.domain == "music" and q2.answer == "B"
    )


def test_mmau_list_valued_labels(tmp_path: Path) -> None:
    """The released test-mini stores ``category`` (and occasionally other labels) as a one-element list in
    some entries: those come out as the plain string, so the breakdown has one "Reasoning" category."""
    entries = [
        {"id": "a", "audio_id": "./test-mini-audios/a.wav", "question": "Which came first?",
         "choices": ["dog", "bell"], "answer": "dog", "dataset": "Clotho-AQA", "task": "sound",
         "split": "test-mini", "category": "Reasoning", "sub-category": "Temporal Reasoning", "difficulty": "hard"},
        {"id": "b", "audio_id": "./test-mini-audios/b.wav", "question": "How many speakers?",
         "choices": ["one", "two"], "answer": "two", "dataset": ["VoxCeleb"], "task": ["speech"],
         "split": "test-mini", "category": ["Reasoning"], "sub-category": ["Counting"], "difficulty": ["easy"]},
        {"id": "c", "audio_id": "./test-mini-audios/c.wav", "question": "What plays?",
         "choices": ["piano", "drums"], "answer": ["piano"], "task": "music", "split": "test-mini",
         "category": ["Perception", "Reasoning", "Perception"], "sub-category": [], "difficulty": " medium "},
    ]  # fmt: skip
    for e in entries:
        tone(tmp_path / "mmau" / e["audio_id"])
    (tmp_path / "mmau" / "mmau-test-mini.json").write_text(json.dumps(entries))
    report = SOURCES["mmau"].prepare(tmp_path / "mmau", tmp_path / "out")
    _, items = load(report, "test-mini")
    a, b, c = (by_id(items)[f"mmau/{k}"] for k in "abc")
    assert a.meta == {"dataset": "Clotho-AQA", "category": "Reasoning", "sub_category": "Temporal Reasoning",
                      "difficulty": "hard"}  # fmt: skip
    assert b.meta == {
        "dataset": "VoxCeleb",
        "category": "Reasoning",
        "sub_category": "Counting",
        "difficulty": "easy",
    }
    assert b.domain == "speech" and b.target == "two" and b.answer == "B"
    assert c.meta == {"category": "Perception; Reasoning", "difficulty": "medium"} and c.answer == "A"
    assert {i.meta["category"] for i in items} == {"Reasoning", "Perception; Reasoning"}


def _wav_bytes(seconds: float = 0.2, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, 0.2 * np.sin(np.arange(int(seconds * sr)) / 5), sr, format="WAV")
    return buf.getvalue()


def test_voicebench(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    audio_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

    def write(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "audio": pa.array([r["audio"] for r in rows], type=audio_t),
                "prompt": [r["prompt"] for r in rows],
                "reference": [r["reference"] for r in rows],
                **({"question_id": [r["question_id"] for r in rows]} if "question_id" in rows[0] else {}),
            }
        )
        pq.write_table(table, path)

    src = tmp_path / "voicebench"
    write(src / "mmsu" / "biology-00000-of-00001.parquet", [
        {"audio": {"bytes": _wav_bytes(), "path": "a.wav"}, "question_id": 7,
         "prompt": "Which organelle makes ATP?\nA. Nucleus\nB. Mitochondrion\nC. Ribosome\nD. Golgi", "reference": "B"},
        {"audio": {"bytes": b"not audio", "path": "b.wav"}, "question_id": 8,
         "prompt": "Q? A. x B. y C. z D. w", "reference": "A"},
    ])  # fmt: skip
    write(src / "openbookqa" / "test-00000-of-00001.parquet", [
        {"audio": {"bytes": _wav_bytes(), "path": "c.wav"}, "prompt": "Sun is a? A. star B. planet", "reference": "A"},
        {"audio": {"bytes": _wav_bytes(), "path": "d.wav"}, "prompt": "no choices here", "reference": "A"},
    ])  # fmt: skip
    report = SOURCES["voicebench"].prepare(src, tmp_path / "out")
    assert report.splits == {"mmsu": 1, "openbookqa": 1}
    reasons = dict(report.skipped)
    assert "cannot decode audio bytes" in reasons[f"{src / 'mmsu' / 'biology-00000-of-00001.parquet'}#1"]
    assert "could not parse" in reasons[f"{src / 'openbookqa' / 'test-00000-of-00001.parquet'}#1"]
    path, (it,) = load(report, "mmsu")
    check_paths(path, [it])
    assert it.audio == "audio/mmsu/biology-7.wav" and it.id == "voicebench/mmsu/biology-7"
    assert (it.task, it.answer, it.target, it.choices) == (
        "mcq",
        "B",
        "Mitochondrion",
        ["Nucleus", "Mitochondrion", "Ribosome", "Golgi"],
    )
    assert it.meta["text_prompt"].startswith("Which organelle") and it.meta["split"] == "biology"
    assert it.meta["choices_in_audio"] is True and it.sample_rate == SR
    _, (obqa,) = load(report, "openbookqa")
    assert obqa.choices == ["star", "planet"] and obqa.answer == "A"


def test_voicebench_list_columns(tmp_path: Path) -> None:
    """A label column stored as a list (one element in most rows) reaches meta as a plain string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    audio_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    path = tmp_path / "vb" / "mmsu" / "law-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    table = pa.table({
        "audio": pa.array([{"bytes": _wav_bytes(), "path": "a.wav"}, {"bytes": _wav_bytes(), "path": "b.wav"}],
                          type=audio_t),
        "prompt": ["Q1? A. w B. x C. y D. z", "Q2? A. w B. x C. y D. z"],
        "reference": [["C"], ["A"]],
        "category": [["law"], ["law", "ethics"]],
        "src": ["ori_mmlu-jurisprudence", "stemez"],
    })  # fmt: skip
    pq.write_table(table, path)
    report = SOURCES["voicebench"].prepare(tmp_path / "vb", tmp_path / "out", subsets=("mmsu",))
    _, items = load(report, "mmsu")
    assert [(i.answer, i.target, i.meta["category"], i.meta["src"]) for i in items] == [
        ("C", "y", "law", "ori_mmlu-jurisprudence"),
        ("A", "w", "law; ethics", "stemez"),
    ]


def test_jsonl_and_csv_generic(tmp_path: Path) -> None:
    tone(tmp_path / "data" / "clips" / "a.wav")
    tone(tmp_path / "data" / "clips" / "b.wav")
    (tmp_path / "data" / "train.jsonl").write_text(
        json.dumps({"uid": "a", "wav": "clips/a.wav", "text": "hello", "spk": "s1", "extra": 3}) + "\n"
        + json.dumps({"uid": "b", "wav": "clips/missing.wav", "text": "gone"}) + "\n"
        + json.dumps({"uid": "c", "text": "no audio"}) + "\n"
    )  # fmt: skip
    report = SOURCES["jsonl"].prepare(
        tmp_path / "data" / "train.jsonl",
        tmp_path / "out",
        columns={"id": "uid", "audio": "wav", "speaker": "spk"},
    )
    assert report.splits == {"train": 1}
    assert sorted(r for _, r in report.skipped) == [
        "missing file",
        "record has no 'wav' (map columns with columns={...})",
    ]
    path, (it,) = load(report, "train")
    check_paths(path, [it])
    assert (it.id, it.target, it.speaker, it.meta, it.task) == ("a", "hello", "s1", {"extra": 3}, "asr")

    # label fields stored as lists are flattened; a list target keeps every reference in meta
    (tmp_path / "data" / "cap.jsonl").write_text(
        json.dumps({"id": "c1", "audio": "clips/a.wav", "task": ["caption"], "target": ["a tone", "a beep"],
                    "lang": ["en"], "category": ["Perception"], "captions_model": ["x", "y"]}) + "\n"
    )  # fmt: skip
    report = SOURCES["jsonl"].prepare(tmp_path / "data" / "cap.jsonl", tmp_path / "out_cap")
    _, (cap,) = load(report, "cap")
    assert (cap.task, cap.target, cap.lang) == ("caption", "a tone", "en")
    assert cap.meta == {
        "category": "Perception",
        "references": ["a tone", "a beep"],
        "captions_model": ["x", "y"],
    }

    (tmp_path / "data" / "dev.csv").write_text("path,label,gender\nclips/b.wav,happy,female\n")
    report = SOURCES["csv"].prepare(
        tmp_path / "data" / "dev.csv",
        tmp_path / "out_csv",
        columns={"audio": "path", "target": "label"},
        task="emotion",
    )
    path, (it,) = load(report, "dev")
    check_paths(path, [it])
    assert (it.target, it.task, it.domain, it.meta) == ("happy", "emotion", "speech", {"gender": "female"})
    assert it.instruction.startswith("What emotion")


def test_hf_save_to_disk_and_parquet(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": _wav_bytes(0.3, 8000), "path": "x.wav"}, {"bytes": b"junk", "path": "y.wav"}],
            "sentence": ["first", "second"],
            "key": ["k1", "k2"],
            "speaker_id": ["s1", "s2"],
        }
    ).cast_column("audio", datasets.Audio(decode=False))
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "disk"))
    report = SOURCES["hf"].prepare(
        tmp_path / "disk",
        tmp_path / "out",
        text_column="sentence",
        id_column="key",
        speaker_column="speaker_id",
        target_sr=16000,
    )
    assert report.splits == {"test": 1} and "cannot decode" in report.skipped[0][1]
    path, (it,) = load(report, "test")
    check_paths(path, [it])
    assert (it.id, it.target, it.speaker, it.sample_rate, it.audio) == (
        "hf/test/k1",
        "first",
        "s1",
        16000,
        "audio/test/k1.wav",
    )
    assert abs(it.duration - 0.3) < 0.01

    ds.to_parquet(str(tmp_path / "pq" / "data" / "validation-00000-of-00001.parquet"))
    report = SOURCES["hf"].prepare(tmp_path / "pq", tmp_path / "out_pq", text_column="sentence")
    assert report.splits == {"validation": 1}
    path, (it,) = load(report, "validation")
    check_paths(path, [it])
    assert it.id == "hf/validation/000000"


def test_common_options_and_block_split(tmp_path: Path) -> None:
    base = tmp_path / "genres_original"
    for n in range(4):
        tone(base / "rock" / f"rock.{n:05d}.wav")
    report = SOURCES["gtzan"].prepare(
        tmp_path, tmp_path / "out", limit=1, verify="none", valid_ratio=0, test_ratio=0
    )
    assert report.splits == {"train": 1}
    (it,) = load(report, "train")[1]
    assert it.duration is None  # verify="none" does not open files
    decoded = SOURCES["gtzan"].prepare(tmp_path, tmp_path / "out2", verify="decode", workers=1)
    assert sum(decoded.splits.values()) == 4
    with pytest.raises(TypeError, match="did you mean 'limit'"):
        SOURCES["gtzan"].prepare(tmp_path, tmp_path / "out3", limt=1)
    from rich.console import Console

    buf = io.StringIO()
    decoded.print_summary(Console(file=buf, width=120))
    assert "gtzan: 4 items" in buf.getvalue() and "genre=4" in buf.getvalue()
    assert block_split(["b", "a", "c", "d"], 0.25, 0.25) == {
        "a": "train",
        "b": "train",
        "c": "valid",
        "d": "test",
    }
