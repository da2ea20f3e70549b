"""`moeaudio eval` end to end on the tiny checkpoint, plus the task registry and runner scoring.

The tiny checkpoint is barely trained: these tests check structure, files and value ranges, not quality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moeaudio.cli import app
from moeaudio.data.synth import SYNTH_TASKS
from moeaudio.errors import CheckpointError
from moeaudio.eval.tasks import EVAL_TASKS, closed_label_set, extract_choice, get_task

RESULT_FIELDS = (
    "task",
    "kind",
    "prompts",
    "normalizer",
    "decoding",
    "checkpoint_sha256",
    "manifest_sha256",
    "versions",
    "date",
    "n",
    "metrics",
    "chance",
    "throughput",
    "files",
)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _synth_rows(corpus: Path, split: str, task: str) -> list[dict]:
    rows = [r for r in _rows(corpus / f"{split}.jsonl") if r["task"] == task]
    for r in rows:  # absolute audio so the manifest can live elsewhere
        r["audio"] = str(corpus / r["audio"])
    return rows


def _in_unit(x: float) -> bool:
    return 0.0 <= x <= 1.0


@pytest.mark.parametrize("task", list(SYNTH_TASKS))
def test_eval_cli_json_every_synth_task(task: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{task}.json"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--task",
            task,
            "--checkpoint",
            str(tiny_checkpoint),
            "--output",
            str(out),
            "--json",
            "--max-items",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # nothing but the one JSON object on stdout
    assert summary["task"] == task and summary["n"] >= 2
    metrics = summary["metrics"]
    assert all(isinstance(v, float) for v in metrics.values())
    spec = SYNTH_TASKS[task]
    if task == "asr":
        assert metrics["wer"] >= 0.0 and metrics["cer"] >= 0.0
    else:
        assert _in_unit(metrics["accuracy"])
        assert summary["chance"]["accuracy"] == pytest.approx(spec["chance"])

    record = json.loads(out.read_text())
    for key in RESULT_FIELDS:
        assert key in record, key
    assert len(record["checkpoint_sha256"]) == 64 and len(record["manifest_sha256"]) == 64
    assert set(record["versions"]) == {"moeaudio", "torch", "transformers", "deepspeed"}
    assert record["throughput"]["items_per_s"] > 0
    assert record["decoding"]["strategy"] == "greedy"
    preds = _rows(Path(record["files"]["predictions"]))
    assert len(preds) == record["n"] and {"id", "target", "prediction", "answer"} <= set(preds[0])
    if record["kind"] == "classification":
        assert record["labels"] == list(spec["labels"])  # the closed set, not the few targets present
        assert record["chance_level"] == pytest.approx(1 / len(spec["labels"]))
        assert Path(record["files"]["confusion_png"]).read_bytes()[:4] == b"\x89PNG"
        for name in ("uar", "macro_f1"):
            assert _in_unit(record["metrics"][name])
        assert len(record["metrics"]["confusion"]) == len(spec["labels"])
    if record["kind"] == "mcq":
        assert record["chance_level"] == pytest.approx(0.25)
        assert {"by_domain", "by_category", "by_difficulty"} <= set(record["metrics"])


def test_eval_table_and_default_output(tiny_checkpoint: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "--task", "gender", "--checkpoint", str(tiny_checkpoint), "--max-items", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "chance" in result.stdout and "accuracy" in result.stdout and "0.500" in result.stdout
    assert (tiny_checkpoint / "eval" / "gender.json").exists()
    assert (tiny_checkpoint / "eval" / "gender.predictions.jsonl").exists()


def test_eval_latest_checkpoint_under_runs_dir(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from moeaudio.eval.evaluate import run_eval

    # A runs dir of our own (the run linked in): the session's temp root also holds runs that other
    # tests may have made later, and the newest of those would be picked.
    runs = tmp_path / "runs"
    checkpoints = tiny_checkpoint.parent  # <run>/checkpoints
    (runs / "tiny").mkdir(parents=True)
    (runs / "tiny" / "checkpoints").symlink_to(checkpoints, target_is_directory=True)
    record = run_eval("tempo", runs_dir=runs, output=tmp_path / "t.json", max_items=1, progress=False)
    assert Path(record["checkpoint"]).resolve() == tiny_checkpoint.resolve() and record["n"] == 1
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        run_eval("tempo", runs_dir=tmp_path / "empty", progress=False)


@pytest.mark.parametrize(
    ("task", "command"),
    [
        ("emotion", "moeaudio prepare ravdess"),
        ("genre", "moeaudio prepare gtzan"),
        ("mmau", "moeaudio prepare mmau"),
        ("mmsu", "moeaudio prepare voicebench"),
        ("vocalsound", "moeaudio prepare vocalsound"),
    ],
)
def test_missing_data_names_prepare_command(task: str, command: str, tiny_checkpoint: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--task", task, "--checkpoint", str(tiny_checkpoint), "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert command in " ".join(result.stderr.split())
    assert f"'{task}'" in result.stderr


def test_missing_data_in_given_manifest(tiny_checkpoint: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    from moeaudio.eval.evaluate import EvalDataError, run_eval

    manifest = _write_rows(tmp_path / "asr.jsonl", _synth_rows(tiny_corpus, "test", "asr"))
    with pytest.raises(EvalDataError, match="moeaudio prepare synth"):
        run_eval("intent", tiny_checkpoint, manifest, progress=False)
    with pytest.raises(EvalDataError, match="moeaudio prepare esc50"):
        run_eval("sound", tiny_checkpoint, manifest, progress=False)
    with pytest.raises(EvalDataError, match="manifest not found"):
        run_eval("sound", tiny_checkpoint, tmp_path / "nothing.jsonl", progress=False)
    assert "moeaudio prepare librispeech" in " ".join(get_task("asr").prepare_commands())
    assert "moeaudio prepare synth OUT" in get_task("asr").prepare_commands()


def test_label_set_and_chance_from_closed_sets() -> None:
    from moeaudio.eval.handlers import score_task
    from moeaudio.runtime.batching import Example

    for name, spec in SYNTH_TASKS.items():
        if spec["labels"]:
            assert closed_label_set(name, spec["labels"][:1]) == list(spec["labels"])
            assert EVAL_TASKS[name].labels == tuple(spec["labels"])
    assert len(closed_label_set("sound", ["dog"])) == 50  # not a synth label -> ESC-50
    assert closed_label_set("emotion", ["calm", "sad"])[0] == "neutral"  # RAVDESS (8), not the union
    assert len(closed_label_set("emotion", ["calm", "sad"])) == 8
    assert closed_label_set("emotion", ["frustrated"]) == closed_label_set("emotion", ["excited"])
    assert closed_label_set("my_task", ["b", "a"]) == ["a", "b"]

    # a small manifest with only two intents is still scored against all 12 (chance 1/12, not 1/2)
    examples = [
        Example("q", "weather", meta={"id": "1", "task": "intent"}),
        Example("q", "call", meta={"id": "2", "task": "intent"}),
    ]
    scored = score_task("intent", examples, ["The answer is weather.", "lights on"])
    assert scored["labels"] == list(SYNTH_TASKS["intent"]["labels"])
    assert scored["chance"] == pytest.approx(SYNTH_TASKS["intent"]["chance"])
    assert scored["metrics"]["accuracy"] == 0.5 and scored["answers"] == ["weather", "lights on"]


def test_mcq_letter_answers_and_mmau_rule() -> None:
    choices = ["dog", "cat", "cow", "pig"]
    assert extract_choice("B", choices) == "cat"
    assert extract_choice("(c)", choices) == "cow"
    assert extract_choice("D. pig", choices) == "pig"
    assert extract_choice("The answer is A.", choices) == "dog"
    assert extract_choice("A dog barks", choices) == "A dog barks"
    assert extract_choice("F", choices) == "F"
    assert EVAL_TASKS["mmau"].extract("B", choices=choices) == "B"  # official rule: no letters
    assert EVAL_TASKS["mmsu"].extract("B", choices=choices) == "cat"


def test_text_modality_few_shot_and_mmau_format(
    tiny_checkpoint: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    from moeaudio.eval.evaluate import EvalError, run_eval

    rows = _synth_rows(tiny_corpus, "test", "mcq")[:3]
    voicebench = []
    for i, r in enumerate(rows):  # VoiceBench-style items: options spoken, text version in meta
        text = r["instruction"].rsplit("\n", 1)[0]
        meta = {**r["meta"], "subset": "mmsu", "text_prompt": text, "choices_in_audio": True}
        voicebench.append({**r, "id": f"voicebench/mmsu/x-{i}", "meta": meta})
    manifest = _write_rows(tmp_path / "mmsu.jsonl", voicebench)
    speech = run_eval("mmsu", tiny_checkpoint, manifest, tmp_path / "mmsu.json", progress=False)
    text = run_eval(
        "mmsu", tiny_checkpoint, manifest, tmp_path / "mmsu.text.json", modality="text", progress=False
    )
    assert speech["n"] == text["n"] == 3 and text["modality"] == "text"
    assert all(_in_unit(r["metrics"]["accuracy"]) for r in (speech, text))
    # VoiceBench's own rule, cited in the result file, with its fail rate and seeded fallback
    assert speech["scorer"] == "voicebench" and "MatthewCYM/VoiceBench" in speech["scoring_rule"]["source"]
    assert {"fail_rate", "accuracy_parsed", "n_failed"} <= set(speech["metrics"])
    scored_rows = _rows(Path(speech["files"]["predictions"]))
    assert all({"extracted", "fallback", "reference", "correct"} <= set(r) for r in scored_rows)
    assert all(r["answer"] in "ABCD" and r["reference"] in "ABCD" for r in scored_rows)
    assert all("text_prompt" not in p and "Reply with the letter" in p for p in text["prompts"])
    with pytest.raises(EvalError, match="text_prompt"):
        run_eval(
            "mcq", tiny_checkpoint, _write_rows(tmp_path / "m.jsonl", rows), modality="text", progress=False
        )

    mmau_rows = [
        {**r, "id": f"mmau/q{i}", "meta": {**r["meta"], "sub_category": "x"}} for i, r in enumerate(rows)
    ]
    mmau = run_eval("mmau", tiny_checkpoint, _write_rows(tmp_path / "mmau.jsonl", mmau_rows), progress=False)
    official = json.loads(Path(mmau["files"]["mmau"]).read_text())
    assert [o["id"] for o in official] == ["q0", "q1", "q2"]
    for o in official:
        assert {"question", "choices", "answer", "task", "difficulty", "sub-category", "model_output"} <= set(
            o
        )

    shot = run_eval(
        "gender", tiny_checkpoint, few_shot=2, num_beams=2, output=tmp_path / "g.json", progress=False
    )
    assert len(shot["decoding"]["few_shot_ids"]) == 2 and shot["decoding"]["strategy"] == "beam"
    assert all(i.startswith("synth-train-") for i in shot["decoding"]["few_shot_ids"])


def test_few_shot_collator_prompt(tiny_checkpoint: Path, tiny_corpus: Path) -> None:
    import numpy as np

    from moeaudio.runtime.batching import Collator, Example
    from moeaudio.runtime.checkpoint import load_model

    model = load_model(tiny_checkpoint)
    shots = [Example("Gender?", "female", wave=np.zeros(16000, np.float32)), Example("Gender?", "male")]
    query = [Example("Gender?", None, wave=np.zeros(8000, np.float32)), Example("Text only?", None)]
    batch = Collator(model, for_generation=True, shots=shots)(query)
    n_tokens = [model.num_audio_tokens(16000), model.num_audio_tokens(8000)]
    slots = (batch.input_ids == model.audio_token_id).sum(1).tolist()
    assert slots == [n_tokens[0] + n_tokens[1], n_tokens[0]]  # shot audio in every row, query audio in row 0
    text = model.tokenizer.decode(batch.input_ids[1][batch.attention_mask[1].bool()])
    assert text.index("female") < text.index("male", text.index("female") + 6) < text.index("Text only?")
    assert len(model.generate(batch, max_new_tokens=2)) == 2

    plain = Collator(model, for_generation=True)([Example("Text only?", None)])  # no audio at all
    assert plain.encoder_inputs is None and int((plain.input_ids == model.audio_token_id).sum()) == 0
    assert len(model.generate(plain, max_new_tokens=2)) == 1
    assert math.isfinite(float(model(Collator(model)([Example("Say hi.", "hi")]))["loss"].detach()))


def test_asr_open_scores_only_open_vocabulary_transcription() -> None:
    spec = get_task("asr_open")
    assert spec.kind == "asr" and spec.metric == "wer" and spec.manifest_task == "asr"
    assert spec.selects({"task": "asr", "meta": {"vocab": "open"}})
    assert not spec.selects({"task": "asr", "meta": {"text_kind": "sentence"}})  # the closed phrase lists
    assert not spec.selects({"task": "spoken_qa", "meta": {"vocab": "open"}})


def test_eval_honours_the_recipes_max_new_tokens_and_the_flag_overrides_it(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`moeaudio eval` decodes as the checkpoint recipe's ``eval.max_new_tokens`` says (training's
    validation always did), ``--max-new-tokens`` overrides it, and a recipe without it leaves each
    task its own default (ASR: 128). What reaches generation is recorded, not just the result file."""
    import moeaudio.eval.evaluate as evaluate
    from moeaudio.config import load_recipe

    recipe = load_recipe(tiny_checkpoint / "recipe.yaml")
    assert recipe.eval.max_new_tokens == 8  # recipes/tiny/moe.yaml
    generated: list[int] = []
    real_generate = evaluate.generate_all

    def recording(model, examples, batch_size, max_new_tokens, *args, **kwargs):
        generated.append(max_new_tokens)
        return real_generate(model, examples, batch_size, max_new_tokens, *args, **kwargs)

    monkeypatch.setattr(evaluate, "generate_all", recording)

    def run(name: str, *flags: str) -> int:
        out = tmp_path / f"{name}.json"
        args = ["eval", "--task", "asr", "--checkpoint", str(tiny_checkpoint), "--max-items", "2"]
        result = CliRunner().invoke(app, [*args, "--output", str(out), "--json", *flags])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())["decoding"]["max_new_tokens"]

    assert run("recipe") == 8 and generated == [8]
    assert run("flag", "--max-new-tokens", "2") == 2 and generated == [8, 2]

    unset = tmp_path / "unset"  # the same checkpoint, its recipe without eval.max_new_tokens
    unset.mkdir()
    for f in tiny_checkpoint.iterdir():
        if f.name != "recipe.yaml":
            (unset / f.name).symlink_to(f)
    (unset / "recipe.yaml").write_text(
        recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"max_new_tokens": None})}).to_yaml()
    )
    record = evaluate.run_eval("asr", unset, output=tmp_path / "unset.json", max_items=1, progress=False)
    assert record["decoding"]["max_new_tokens"] == get_task("asr").max_new_tokens == 128
    assert generated == [8, 2, 128]
