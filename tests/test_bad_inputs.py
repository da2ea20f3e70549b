"""Bad inputs across every command: a clear one-line error naming the culprit, never a traceback.

Each case runs one `moeaudio` command on one broken input (an audio file that is a directory, empty,
a header only, cut short, text named .wav, NaN samples; a manifest line that is malformed, lacks a
field, names an unknown domain or task, repeats an id, has a multiple-choice target outside its
choices, an audio path that does not resolve; a recipe with an impossible number or an empty file; a
checkpoint that is truncated, shape-mismatched, corrupt or whose ``latest`` names a missing step) and
asserts three things: the exit status, that no traceback is printed (nor raised inside the runner),
and that the message names the culprit (file, line, key or option). A few inputs are not errors and
must work instead (a BOM, an item without ``duration``, ``--repair-audio``); those cases assert
exit status 0 and what was said.

Beside the table: a pickle payload planted in a checkpoint never runs under any command that reads
a checkpoint (``train --resume`` included), a loss that goes NaN stops training naming the step and
the term, a full disk during a checkpoint save leaves the previous checkpoint loadable, and a
recording longer than the encoder's window is routed window by window.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from moeaudio.cli import app
from moeaudio.runtime.checkpoint import describe_files, latest_checkpoint, load_model

runner = CliRunner()
SR = 16000


# ------------------------------------------------------------------------------------------ helpers


def run(*args: object, code: int = 2, env: dict[str, str] | None = None):
    """Run `moeaudio ARGS`; assert the exit status and that no traceback was printed or raised."""
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "400", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            "command raised instead of printing an error:\n"
            + "".join(traceback.format_exception(result.exception))
        )
    out = result.output
    assert "Traceback" not in out, out
    assert result.exit_code == code, f"exit {result.exit_code}, expected {code}:\n{out}"
    return result


def invoke(*args: object, code: int = 2, env: dict[str, str] | None = None) -> str:
    """:func:`run`, returning the output (stdout and stderr) with line breaks removed, so a message
    rich wrapped is one string again."""
    return run(*args, code=code, env=env).output.replace("\n", "")


def invoke_json(*args: object) -> dict:
    """:func:`run` (exit status 0) of a ``--json`` command: the one JSON object on stdout."""
    return json.loads(run(*args, code=0).stdout)


def names(out: str, *culprits: object) -> None:
    for culprit in culprits:
        assert str(culprit) in out, f"{culprit!r} not named in: {out}"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, rows: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: the marker file appears if the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class Env:
    corpus: Path
    checkpoint: Path  # a trained tiny MoE checkpoint (never modified)
    audio: dict[str, Path]
    tmp: Path

    def rows(self, task: str | None = None, split: str = "valid", n: int = 2) -> list[dict]:
        """``n`` synth rows (of ``task``) with absolute audio paths."""
        out = []
        for r in _rows(self.corpus / f"{split}.jsonl"):
            if task is None or r["task"] == task:
                out.append({**r, "audio": str(self.corpus / r["audio"])})
            if len(out) == n:
                break
        return out

    def manifest(self, rows: list[object], name: str = "m.jsonl") -> Path:
        return write_lines(self.tmp / name, rows)

    def checkpoint_copy(self, deepspeed: bool = False) -> Path:
        out = self.tmp / "run" / "checkpoints" / self.checkpoint.name
        ignore = None if deepspeed else shutil.ignore_patterns("deepspeed")
        shutil.copytree(self.checkpoint, out, ignore=ignore)
        (out.parent / "latest").write_text(out.name)
        return out

    def data_root(self, train_rows: list[object]) -> Path:
        """A data root whose train.jsonl holds ``train_rows`` (valid.jsonl: the corpus's)."""
        root = self.tmp / "data"
        write_lines(root / "train.jsonl", train_rows)
        shutil.copy(self.corpus / "valid.jsonl", root / "valid.jsonl")  # its audio paths are relative:
        if not (root / "audio").exists():
            (root / "audio").symlink_to(self.corpus / "audio", target_is_directory=True)
        return root

    def train_args(self, root: Path, *overrides: str, run: str = "run") -> list[str]:
        return [
            "train", "tiny/moe", f"data.root={root}", "data.synth_if_missing=false", "train.max_steps=1",
            "--output-dir", str(self.tmp / run), "--no-eval", *overrides,
        ]  # fmt: skip


@pytest.fixture(scope="module")
def bad_audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_audio")
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(d / "good.wav", tone, SR, subtype="PCM_16")
    full = (d / "good.wav").read_bytes()
    (d / "folder.wav").mkdir()
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "header.wav", np.zeros(0, np.float32), SR, subtype="PCM_16")
    (d / "truncated.wav").write_bytes(full[: len(full) // 2])
    (d / "text.wav").write_text("this is a text file, not audio\n")
    nan = tone.copy()
    nan[100:110] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    inf = tone.copy()
    inf[5] = np.inf
    sf.write(d / "inf.wav", inf, SR, subtype="FLOAT")
    sf.write(d / "short.wav", tone[:80], SR, subtype="PCM_16")  # 5 ms: less than one encoder frame
    (d / "no_audio_here").mkdir()
    (d / "no_audio_here" / "notes.txt").write_text("nothing")
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture
def env(tiny_corpus: Path, tiny_checkpoint: Path, bad_audio: dict[str, Path], tmp_path: Path) -> Env:
    return Env(tiny_corpus, tiny_checkpoint, bad_audio, tmp_path)


# ------------------------------------------------------------------------------------------ the cases

Case = Callable[[Env], None]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return register


# --- prepare


@case("prepare-unknown-source")
def _(e: Env) -> None:
    names(invoke("prepare", "librispeeh", "SRC", e.tmp / "out"), "librispeeh", "librispeech")


@case("prepare-synth-extra-path")
def _(e: Env) -> None:
    names(invoke("prepare", "synth", "a", "b"), "moeaudio prepare synth OUT")


@case("prepare-jsonl-missing-source")
def _(e: Env) -> None:
    names(invoke("prepare", "jsonl", e.tmp / "nowhere", e.tmp / "out"), "nowhere")


@case("prepare-malformed-opt")
def _(e: Env) -> None:
    names(invoke("prepare", "jsonl", e.tmp, e.tmp / "out", "--opt", "verify"), "--opt", "'verify'")


@case("prepare-unknown-opt")
def _(e: Env) -> None:
    src = e.manifest(e.rows("asr"), "src.jsonl")
    names(invoke("prepare", "jsonl", src, e.tmp / "out", "--opt", "verfy=info"), "verfy", "verify")


@case("prepare-jsonl-not-utf8")
def _(e: Env) -> None:
    src = e.tmp / "latin1.jsonl"
    src.write_bytes('{"audio": "a.wav", "text": "caf\u00e9"}\n'.encode("latin-1"))
    names(invoke("prepare", "jsonl", src, e.tmp / "out"), "latin1.jsonl", "UTF-8")


@case("prepare-jsonl-bad-items-skipped-and-reported")
def _(e: Env) -> None:
    rows = [{"audio": str(e.audio[k]), "text": "hello"} for k in ("good", "truncated", "text", "header")]
    src = e.manifest(
        [*rows, "{broken", {"audio": str(e.audio["good"]), "text": "x", "duration": "long"}], "s.jsonl"
    )
    out = invoke("prepare", "jsonl", src, e.tmp / "out", code=0)
    names(out, "skipped 5 inputs", "truncated.wav", "text.wav", "header.wav", "s.jsonl:5", "s.jsonl:6")
    assert len(_rows(e.tmp / "out" / "s.jsonl")) == 1


@case("prepare-synth-out-is-a-file")
def _(e: Env) -> None:
    (e.tmp / "afile").write_text("x")
    names(invoke("prepare", "synth", e.tmp / "afile"), "OUT", "afile", "is a file")


@case("prepare-synth-unknown-size")
def _(e: Env) -> None:
    names(invoke("prepare", "synth", e.tmp / "out", "--size", "huge"), "huge")


# --- convert


@case("convert-missing-source")
def _(e: Env) -> None:
    names(invoke("convert", e.tmp / "nope.jsonl", e.tmp / "o.jsonl"), "nope.jsonl")


@case("convert-malformed-line")
def _(e: Env) -> None:
    src = e.manifest([{"key": "a", "source": "a.wav", "target": "x"}, '{"key": "b",'], "slam.jsonl")
    names(invoke("convert", src, e.tmp / "o.jsonl", "--from", "slam"), "slam.jsonl:2", "invalid JSON")


@case("convert-unknown-format")
def _(e: Env) -> None:
    src = e.manifest(e.rows("asr"))
    names(invoke("convert", src, e.tmp / "o.jsonl", "--to", "kaldi"), "'kaldi'")


@case("convert-json-list-of-numbers")
def _(e: Env) -> None:
    src = e.tmp / "list.json"
    src.write_text("[1, 2, 3]")
    names(invoke("convert", src, e.tmp / "o.jsonl", "--from", "nemo"), "list.json:1", "JSON object")


@case("convert-nemo-missing-key")
def _(e: Env) -> None:
    src = e.manifest([{"audio_filepath": "a.wav", "text": "x"}, {"text": "no audio"}], "nemo.jsonl")
    names(invoke("convert", src, e.tmp / "o.jsonl", "--from", "nemo"), "nemo.jsonl:2", "audio_filepath")


@case("convert-empty-file")
def _(e: Env) -> None:
    src = e.tmp / "empty.jsonl"
    src.write_text("")
    names(invoke("convert", src, e.tmp / "o.jsonl"), "empty.jsonl", "empty file")


@case("convert-source-is-directory")
def _(e: Env) -> None:
    names(invoke("convert", e.tmp, e.tmp / "o.jsonl"), str(e.tmp), "directory")


@case("convert-not-utf8")
def _(e: Env) -> None:
    src = e.tmp / "bytes.jsonl"
    src.write_bytes(b'{"key": "a", "source": "\xff\xfe.wav", "target": "x"}\n')
    names(invoke("convert", src, e.tmp / "o.jsonl", "--from", "slam"), "bytes.jsonl:1", "UTF-8")


@case("convert-unknown-domain")
def _(e: Env) -> None:
    src = e.manifest([{**e.rows("asr", n=1)[0], "domain": "voice"}], "dom.jsonl")
    names(invoke("convert", src, e.tmp / "o.jsonl", "--to", "slam"), "dom.jsonl:1", "'domain'", "'voice'")


@case("convert-destination-is-directory")
def _(e: Env) -> None:
    src = e.manifest(e.rows("asr"))
    (e.tmp / "outdir").mkdir()
    names(invoke("convert", src, e.tmp / "outdir", "--to", "nemo"), "outdir", "directory")


@case("convert-destination-under-a-file")
def _(e: Env) -> None:
    src = e.manifest(e.rows("asr"))
    (e.tmp / "afile").write_text("x")
    names(invoke("convert", src, e.tmp / "afile" / "o.jsonl"), "afile", "is a file")


# --- inspect


@case("inspect-missing-recipe")
def _(e: Env) -> None:
    names(invoke("inspect", e.tmp / "nope.yaml"), "nope.yaml", "quickstart")


@case("inspect-empty-recipe")
def _(e: Env) -> None:
    (e.tmp / "empty.yaml").write_text("# nothing yet\n")
    names(invoke("inspect", e.tmp / "empty.yaml"), "empty.yaml", "empty")


@case("inspect-negative-lr")
def _(e: Env) -> None:
    names(invoke("inspect", "tiny/moe", "train.lr=-0.001"), "train.lr", "greater than 0")


@case("inspect-zero-lr")
def _(e: Env) -> None:
    names(invoke("inspect", "tiny/moe", "train.lr=0"), "train.lr")


@case("inspect-typo-key")
def _(e: Env) -> None:
    names(invoke("inspect", "tiny/moe", "adapter.topk=2"), "adapter.topk", "adapter.top_k")


@case("inspect-invalid-yaml")
def _(e: Env) -> None:
    (e.tmp / "bad.yaml").write_text("adapter:\n  kind: [moe\n")
    names(invoke("inspect", e.tmp / "bad.yaml"), "bad.yaml", "YAML")


@case("inspect-recipe-is-a-list")
def _(e: Env) -> None:
    (e.tmp / "list.yaml").write_text("- a\n- b\n")
    names(invoke("inspect", e.tmp / "list.yaml"), "list.yaml", "mapping")


@case("inspect-zero-experts")
def _(e: Env) -> None:
    names(invoke("inspect", "tiny/moe", "adapter.num_experts=0"), "adapter.num_experts")


@case("inspect-recipe-not-utf8")
def _(e: Env) -> None:
    (e.tmp / "latin.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    names(invoke("inspect", e.tmp / "latin.yaml"), "latin.yaml", "UTF-8")


@case("inspect-beta-out-of-range")
def _(e: Env) -> None:
    names(invoke("inspect", "tiny/moe", "train.betas=[0.9, 1.5]"), "train.betas")


@case("inspect-override-not-yaml")
def _(e: Env) -> None:
    names(invoke("inspect", "tiny/moe", "train.lr=[1e-3,"), "train.lr=[1e-3,", "YAML")


@case("inspect-unknown-encoder-offline-says-so")
def _(e: Env) -> None:
    out = invoke("inspect", "tiny/moe", "encoder.name=no-such-org/no-such-encoder", code=0)
    names(out, "warning", "encoder.name", "no-such-org/no-such-encoder", "not available offline")


@case("inspect-unknown-llm-offline-says-so")
def _(e: Env) -> None:
    out = invoke("inspect", "tiny/moe", "llm.name=no-such-org/no-such-llm", code=0)
    names(out, "warning", "llm.name", "no-such-org/no-such-llm")


# --- recipes show


@case("recipes-show-unknown")
def _(e: Env) -> None:
    names(invoke("recipes", "show", "tiny/mo"), "tiny/mo", "tiny/moe")


@case("recipes-show-override-without-equals")
def _(e: Env) -> None:
    names(invoke("recipes", "show", "tiny/moe", "train.lr"), "override 'train.lr'")


@case("recipes-show-zero-batch")
def _(e: Env) -> None:
    names(invoke("recipes", "show", "tiny/moe", "data.micro_batch_size=0"), "data.micro_batch_size")


@case("recipes-show-negative-steps")
def _(e: Env) -> None:
    names(invoke("recipes", "show", "tiny/moe", "train.max_steps=-5"), "train.max_steps")


@case("recipes-show-wrong-type")
def _(e: Env) -> None:
    names(invoke("recipes", "show", "tiny/moe", "train.warmup_steps=soon"), "train.warmup_steps", "soon")


@case("recipes-show-nan-lr")
def _(e: Env) -> None:
    names(invoke("recipes", "show", "tiny/moe", "train.lr=.nan"), "train.lr")


# --- train: recipe


@case("train-negative-lr")
def _(e: Env) -> None:
    names(invoke(*e.train_args(e.corpus, "train.lr=-0.001")), "train.lr", "greater than 0")
    assert not (e.tmp / "run").exists()  # refused before anything was written


@case("train-unknown-encoder-offline")
def _(e: Env) -> None:
    out = invoke(*e.train_args(e.corpus, "encoder.name=no-such-org/no-such-encoder"))
    names(out, "encoder.name", "no-such-org/no-such-encoder", "cannot be loaded")


@case("train-unknown-llm-offline")
def _(e: Env) -> None:
    out = invoke(*e.train_args(e.corpus, "llm.name=no-such-org/no-such-llm"))
    names(out, "llm.name", "no-such-org/no-such-llm", "cannot be loaded")


@case("train-missing-manifests")
def _(e: Env) -> None:
    names(invoke(*e.train_args(e.tmp / "nothing")), "train.jsonl", "moeaudio prepare synth")


@case("train-no-items-of-the-tasks")
def _(e: Env) -> None:
    names(invoke(*e.train_args(e.corpus, "data.tasks=[not_a_task]")), "no training items", "not_a_task")


@case("train-zero-processes")
def _(e: Env) -> None:
    names(invoke(*e.train_args(e.corpus, "--nproc", "0")), "--nproc")


@case("train-output-dir-is-a-file")
def _(e: Env) -> None:
    (e.tmp / "run").write_text("not a directory")
    names(invoke(*e.train_args(e.corpus)), "--output-dir", "is a file")


@case("train-feature-cache-is-a-file")
def _(e: Env) -> None:
    (e.tmp / "cache").write_text("not a directory")
    names(
        invoke(*e.train_args(e.corpus, f"data.feature_cache={e.tmp / 'cache'}")),
        "data.feature_cache",
        "is a file",
    )


# --- train: manifests (the same checks as prepare, naming file and line)


@case("train-manifest-malformed-line")
def _(e: Env) -> None:
    root = e.data_root([*e.rows("asr"), '{"id": "x", "audio": '])
    names(invoke(*e.train_args(root)), "train.jsonl:3", "invalid JSON")


@case("train-manifest-missing-field")
def _(e: Env) -> None:
    row = {k: v for k, v in e.rows("asr", n=1)[0].items() if k != "target"}
    names(invoke(*e.train_args(e.data_root([row]))), "train.jsonl:1", "'target'")


@case("train-manifest-unknown-domain")
def _(e: Env) -> None:
    rows = e.rows("asr")
    rows[1]["domain"] = "speach"
    names(invoke(*e.train_args(e.data_root(rows))), "train.jsonl:2", "'domain'", "speech")


@case("train-manifest-duplicate-ids")
def _(e: Env) -> None:
    row = e.rows("asr", n=1)[0]
    names(invoke(*e.train_args(e.data_root([row, row]))), "train.jsonl:2", "duplicates line 1")


@case("train-manifest-unknown-task")
def _(e: Env) -> None:
    rows = e.rows("asr")
    rows[1]["task"] = "ars"
    names(invoke(*e.train_args(e.data_root(rows))), "train.jsonl:2", "unknown task 'ars'", "'asr'")


@case("train-manifest-audio-does-not-resolve")
def _(e: Env) -> None:
    rows = e.rows("asr")
    rows[0]["audio"] = "clips/missing.wav"
    names(invoke(*e.train_args(e.data_root(rows))), "train.jsonl:1", "clips/missing.wav", "does not exist")


@case("train-manifest-undecodable-audio")
def _(e: Env) -> None:
    rows = e.rows("asr")
    rows[1]["audio"] = str(e.audio["text"])
    names(invoke(*e.train_args(e.data_root(rows))), "train.jsonl:2", "text.wav", "not an audio file")


@case("train-manifest-header-only-audio")
def _(e: Env) -> None:
    rows = e.rows("asr")
    rows[0]["audio"] = str(e.audio["header"])
    names(invoke(*e.train_args(e.data_root(rows))), "train.jsonl:1", "header.wav", "no audio samples")


@case("train-manifest-mcq-target-not-a-choice")
def _(e: Env) -> None:
    rows = e.rows("mcq", split="train")
    rows[1]["target"] = "none of these"
    names(invoke(*e.train_args(e.data_root(rows))), "train.jsonl:2", "'target'", "none of these")


@case("train-manifest-nan-audio")
def _(e: Env) -> None:
    rows = e.rows("asr")
    rows[1]["audio"] = str(e.audio["nan"])
    names(invoke(*e.train_args(e.data_root(rows))), "nan.wav", "non-finite", "--repair-audio")


@case("train-valid-manifest-checked-up-front")
def _(e: Env) -> None:
    root = e.data_root(e.rows("asr"))
    write_lines(root / "valid.jsonl", ['{"id": 1}'])
    args = [a for a in e.train_args(root) if a != "--no-eval"]
    names(invoke(*args), "valid.jsonl:1", "'id'")


# --- train: run directories and resume


@case("train-into-run-with-checkpoints")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy(deepspeed=True)
    out = invoke(*e.train_args(e.corpus))
    names(out, str(e.tmp / "run"), ckpt.name, "--resume", "--output-dir", "--overwrite")
    assert latest_checkpoint(e.tmp / "run") == ckpt  # untouched


@case("train-resume-and-overwrite")
def _(e: Env) -> None:
    names(invoke(*e.train_args(e.corpus, "--resume", "--overwrite")), "--resume", "--overwrite")


@case("train-resume-without-checkpoint")
def _(e: Env) -> None:
    names(invoke(*e.train_args(e.corpus, "--resume", run="fresh")), "no complete checkpoint", "fresh")


@case("train-resume-corrupt-trainer-state")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy(deepspeed=True)
    (ckpt / "trainer_state.json").write_text('{"step": 30, "rng": ')
    names(invoke(*e.train_args(e.corpus, "--resume")), "trainer_state.json", "not valid JSON")


@case("train-resume-latest-names-missing-step")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy(deepspeed=True)
    (ckpt.parent / "latest").write_text("step-000099")
    out = invoke(*e.train_args(e.corpus, "--resume"))
    names(out, "latest", "step-000099", "does not exist", ckpt.name)


@case("train-resume-truncated-weights")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy(deepspeed=True)
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])
    names(invoke(*e.train_args(e.corpus, "--resume")), "model.safetensors", "truncated")


@case("train-resume-truncated-deepspeed-shard")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy(deepspeed=True)
    shard = ckpt / "deepspeed" / "state" / "mp_rank_00_model_states.pt"
    shard.write_bytes(shard.read_bytes()[:1000])
    names(invoke(*e.train_args(e.corpus, "--resume")), "mp_rank_00_model_states.pt is truncated (1000 of")


@case("train-resume-missing-deepspeed-shard")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy(deepspeed=True)
    (ckpt / "deepspeed" / "state" / "mp_rank_00_model_states.pt").unlink()
    names(
        invoke(*e.train_args(e.corpus, "--resume")), "deepspeed/state/mp_rank_00_model_states.pt", "missing"
    )


@case("train-resume-with-another-recipe")
def _(e: Env) -> None:
    e.checkpoint_copy(deepspeed=True)
    out = invoke(*e.train_args(e.corpus, "adapter.expert_dim=48", "--resume"))
    names(out, "adapter.moe", "shape", "the recipe being resumed")


# --- eval: checkpoints


@case("eval-missing-checkpoint")
def _(e: Env) -> None:
    names(invoke("eval", "--task", "gender", "--checkpoint", e.tmp / "nope"), "nope", "does not exist")


@case("eval-truncated-weights")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    names(invoke("eval", "--task", "gender", "--checkpoint", ckpt), "model.safetensors", "truncated")


@case("eval-truncated-weights-without-file-list")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    (ckpt / "checkpoint.json").unlink()
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[:-7])
    out = invoke("eval", "--task", "gender", "--checkpoint", ckpt)
    names(out, "model.safetensors", "not a complete safetensors file")


@case("eval-empty-weights")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    (ckpt / "model.safetensors").write_bytes(b"")
    names(invoke("eval", "--task", "gender", "--checkpoint", ckpt), "model.safetensors", "empty")


@case("eval-shape-mismatch")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    recipe = (ckpt / "recipe.yaml").read_text().replace("expert_dim: 32", "expert_dim: 48")
    (ckpt / "recipe.yaml").write_text(recipe)  # its size changes: the content checks catch the edit
    out = invoke("eval", "--task", "gender", "--checkpoint", ckpt)
    names(out, "tensor 'adapter.moe", "has shape", "recipe.yaml")


@case("eval-missing-recipe")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    (ckpt / "recipe.yaml").unlink()
    names(invoke("eval", "--task", "gender", "--checkpoint", ckpt), "recipe.yaml is missing")


@case("eval-corrupt-recipe")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    (ckpt / "recipe.yaml").write_text("adapter: [unclosed\n")
    names(invoke("eval", "--task", "gender", "--checkpoint", ckpt), "recipe.yaml", "YAML")


@case("eval-corrupt-file-list")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    (ckpt / "checkpoint.json").write_text("{not json")
    names(invoke("eval", "--task", "gender", "--checkpoint", ckpt), "checkpoint.json", "corrupt")


@case("eval-run-latest-names-missing-step")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    (ckpt.parent / "latest").write_text("step-000050")
    out = invoke("eval", "--task", "gender", "--checkpoint", ckpt.parent.parent)
    names(out, "latest", "step-000050", "does not exist", ckpt.name)


# --- eval: manifests


def _eval(e: Env, manifest: Path, *extra: object, task: str = "gender", code: int = 2) -> str:
    return invoke("eval", "--task", task, "--checkpoint", e.checkpoint, "--manifest", manifest,
                  "--output", e.tmp / "out.json", *extra, code=code)  # fmt: skip


def _eval_json(e: Env, manifest: Path, task: str = "gender") -> dict:
    return invoke_json("eval", "--task", task, "--checkpoint", e.checkpoint, "--manifest", manifest,
                       "--output", e.tmp / "out.json", "--json")  # fmt: skip


def _with_audio(e: Env, key: str, task: str = "gender") -> Path:
    rows = e.rows(task)
    rows[1]["audio"] = str(e.audio[key])
    return e.manifest(rows)


@case("eval-manifest-malformed-line")
def _(e: Env) -> None:
    names(_eval(e, e.manifest([*e.rows("gender"), "not json"])), "m.jsonl:3", "invalid JSON")


@case("eval-manifest-unknown-task")
def _(e: Env) -> None:
    rows = e.rows("gender")
    rows.append({**rows[0], "id": "typo", "task": "gnder"})
    names(_eval(e, e.manifest(rows)), "m.jsonl:3", "unknown task 'gnder'", "did you mean 'gender'")


@case("eval-manifest-missing-field")
def _(e: Env) -> None:
    rows = e.rows("gender")
    del rows[0]["audio"]
    names(_eval(e, e.manifest(rows)), "m.jsonl:1", "'audio'")


@case("eval-manifest-duplicate-ids")
def _(e: Env) -> None:
    rows = e.rows("gender")
    rows[1]["id"] = rows[0]["id"]
    names(_eval(e, e.manifest(rows)), "m.jsonl:2", "duplicates line 1")


@case("eval-manifest-unknown-domain")
def _(e: Env) -> None:
    rows = e.rows("gender")
    rows[0]["domain"] = "noise"
    names(_eval(e, e.manifest(rows)), "m.jsonl:1", "'domain'", "'noise'")


@case("eval-audio-is-directory")
def _(e: Env) -> None:
    names(_eval(e, _with_audio(e, "folder")), "m.jsonl:2", "folder.wav", "is a directory")


@case("eval-audio-empty")
def _(e: Env) -> None:
    names(_eval(e, _with_audio(e, "empty")), "m.jsonl:2", "empty.wav", "empty file")


@case("eval-audio-header-only")
def _(e: Env) -> None:
    names(_eval(e, _with_audio(e, "header")), "m.jsonl:2", "header.wav", "no audio samples")


@case("eval-audio-truncated")
def _(e: Env) -> None:
    names(_eval(e, _with_audio(e, "truncated")), "m.jsonl:2", "truncated.wav", "truncated")


@case("eval-audio-text-named-wav")
def _(e: Env) -> None:
    names(_eval(e, _with_audio(e, "text")), "m.jsonl:2", "text.wav", "not an audio file")


@case("eval-audio-nan")
def _(e: Env) -> None:
    names(_eval(e, _with_audio(e, "nan")), "nan.wav", "non-finite", "--repair-audio")


@case("eval-audio-inf")
def _(e: Env) -> None:
    names(_eval(e, _with_audio(e, "inf")), "inf.wav", "non-finite")


@case("eval-audio-nan-repaired-by-option")
def _(e: Env) -> None:
    out = _eval(e, _with_audio(e, "nan"), "--repair-audio", "--json", code=0)
    names(out, "warning:", "nan.wav", "replaced by silence")


@case("eval-audio-too-short")
def _(e: Env) -> None:
    names(_eval(e, _with_audio(e, "short")), "m.jsonl:2", "short.wav", "shorter than the encoder")


@case("eval-audio-does-not-resolve")
def _(e: Env) -> None:
    rows = e.rows("gender")
    rows[0]["audio"] = "elsewhere/clip.wav"
    names(_eval(e, e.manifest(rows)), "m.jsonl:1", "elsewhere/clip.wav", "does not exist")


@case("eval-manifest-without-duration-works")
def _(e: Env) -> None:
    rows = [{k: v for k, v in r.items() if k != "duration"} for r in e.rows("gender")]
    assert _eval_json(e, e.manifest(rows))["n"] == 2


@case("eval-mcq-target-not-a-choice")
def _(e: Env) -> None:
    rows = e.rows("mcq")
    rows[0]["target"] = "something else"
    names(_eval(e, e.manifest(rows), task="mcq"), "m.jsonl:1", "'target'", "something else")


@case("eval-mcq-answer-disagrees-with-target")
def _(e: Env) -> None:
    rows = e.rows("mcq")
    letters = "ABCD"
    right = rows[0]["answer"]
    rows[0]["answer"] = next(x for x in letters[: len(rows[0]["choices"])] if x != right)
    names(_eval(e, e.manifest(rows), task="mcq"), "m.jsonl:1", "'answer'")


@case("eval-manifest-not-utf8")
def _(e: Env) -> None:
    path = e.tmp / "m.jsonl"
    path.write_bytes(json.dumps(e.rows("gender", n=1)[0]).encode() + b"\n\xff\xfe\n")
    names(_eval(e, path), "m.jsonl:2", "UTF-8")


@case("eval-manifest-with-bom-works")
def _(e: Env) -> None:
    path = e.tmp / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in e.rows("gender")).encode())
    assert _eval_json(e, path)["n"] == 2


@case("eval-manifest-missing")
def _(e: Env) -> None:
    names(_eval(e, e.tmp / "nope.jsonl"), "nope.jsonl", "not found")


@case("eval-manifest-is-directory")
def _(e: Env) -> None:
    names(_eval(e, e.tmp), str(e.tmp), "directory")


@case("eval-zero-max-items")
def _(e: Env) -> None:
    names(_eval(e, e.manifest(e.rows("gender")), "--max-items", "0"), "--max-items")


@case("eval-unknown-device")
def _(e: Env) -> None:
    names(_eval(e, e.manifest(e.rows("gender")), "--device", "tpu9"), "--device", "tpu9")


@case("eval-output-is-a-directory")
def _(e: Env) -> None:
    (e.tmp / "outdir").mkdir()
    out = invoke("eval", "--task", "gender", "--checkpoint", e.checkpoint, "--output", e.tmp / "outdir")
    names(out, "--output", "outdir", "is a directory")


# --- transcribe


def _transcribe(e: Env, *args: object, code: int = 2) -> str:
    return invoke("transcribe", *args, "--checkpoint", e.checkpoint, code=code)


@case("transcribe-directory-without-audio")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["no_audio_here"]), "no_audio_here", "no audio files")


@case("transcribe-missing-file")
def _(e: Env) -> None:
    names(_transcribe(e, e.tmp / "gone.wav"), "gone.wav", "no such file")


@case("transcribe-empty-file")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["empty"]), "empty.wav", "empty file")


@case("transcribe-header-only")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["header"]), "header.wav", "no audio samples")


@case("transcribe-truncated")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["truncated"]), "truncated.wav", "truncated")


@case("transcribe-text-named-wav")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["text"]), "text.wav", "not an audio file")


@case("transcribe-nan-samples")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["nan"]), "nan.wav", "non-finite", "--repair-audio")


@case("transcribe-nan-repaired-by-option")
def _(e: Env) -> None:
    out = _transcribe(e, e.audio["nan"], "--repair-audio", code=0)
    names(out, "warning:", "nan.wav", "replaced by silence", "real-time factor")


@case("transcribe-too-short")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["short"]), "short.wav", "shorter than the encoder")


@case("transcribe-zero-window")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["good"], "--window", "0"), "--window")


@case("transcribe-window-past-encoder-limit")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["good"], "--window", "100"), "--window", "longer than the encoder accepts")


@case("transcribe-unknown-format")
def _(e: Env) -> None:
    names(_transcribe(e, e.audio["good"], "--format", "docx"), "'docx'")


@case("transcribe-truncated-checkpoint")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[:100])
    out = invoke("transcribe", e.audio["good"], "--checkpoint", ckpt)
    names(out, "model.safetensors", "truncated")


@case("transcribe-output-dir-is-a-file")
def _(e: Env) -> None:
    (e.tmp / "afile").write_text("x")
    names(_transcribe(e, e.audio["good"], "--output-dir", e.tmp / "afile"), "--output-dir", "is a file")


# --- analyze-routing


def _routing(e: Env, *args: object, code: int = 2) -> str:
    return invoke("analyze-routing", *args, "--checkpoint", e.checkpoint, code=code)


@case("routing-audio-is-directory")
def _(e: Env) -> None:
    names(_routing(e, e.audio["folder"]), "folder.wav", "is a directory")


@case("routing-audio-empty")
def _(e: Env) -> None:
    names(_routing(e, e.audio["empty"]), "empty.wav", "empty file")


@case("routing-audio-text-named-wav")
def _(e: Env) -> None:
    names(_routing(e, e.audio["text"]), "text.wav", "not an audio file")


@case("routing-audio-header-only")
def _(e: Env) -> None:
    names(_routing(e, e.audio["header"]), "header.wav", "no audio samples")


@case("routing-audio-truncated")
def _(e: Env) -> None:
    names(_routing(e, e.audio["truncated"]), "truncated.wav", "truncated")


@case("routing-audio-nan")
def _(e: Env) -> None:
    names(_routing(e, e.audio["nan"]), "nan.wav", "non-finite")


@case("routing-manifest-malformed")
def _(e: Env) -> None:
    names(_routing(e, "--manifest", e.manifest([*e.rows(), "[1, 2]"])), "m.jsonl:3", "JSON object")


@case("routing-manifest-unknown-task")
def _(e: Env) -> None:
    rows = e.rows()
    rows[0]["task"] = "whatever"
    names(_routing(e, "--manifest", e.manifest(rows)), "m.jsonl:1", "unknown task 'whatever'")


@case("routing-manifest-missing")
def _(e: Env) -> None:
    names(_routing(e, "--manifest", e.tmp / "none.jsonl"), "none.jsonl", "not found")


@case("routing-audio-and-manifest")
def _(e: Env) -> None:
    names(_routing(e, e.audio["good"], "--manifest", e.manifest(e.rows())), "AUDIO", "--manifest")


@case("routing-dangling-latest")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    shutil.rmtree(ckpt)
    out = invoke("analyze-routing", e.audio["good"], "--checkpoint", ckpt.parent.parent)
    names(out, "latest", ckpt.name, "does not exist")


@case("routing-png-is-a-directory")
def _(e: Env) -> None:
    names(_routing(e, e.audio["good"], "--png", e.tmp), "--png", "is a directory")


# --- analyze-conflict


def _conflict(e: Env, *args: object) -> str:
    return invoke(
        "analyze-conflict", *args, "--checkpoint", e.checkpoint, "--batches", "1", "--batch-size", "1"
    )


@case("conflict-manifest-missing")
def _(e: Env) -> None:
    names(_conflict(e, "--manifest", e.tmp / "none.jsonl"), "none.jsonl")


@case("conflict-manifest-duplicate-ids")
def _(e: Env) -> None:
    rows = e.rows(n=3)
    rows[2]["id"] = rows[0]["id"]
    names(_conflict(e, "--manifest", e.manifest(rows)), "m.jsonl:3", "duplicates line 1")


@case("conflict-zero-batches")
def _(e: Env) -> None:
    out = invoke(
        "analyze-conflict", "--manifest", e.manifest(e.rows()), "--checkpoint", e.checkpoint, "--batches", "0"
    )
    names(out, "--batches")


@case("conflict-negative-lr")
def _(e: Env) -> None:
    names(_conflict(e, "--manifest", e.manifest(e.rows()), "--lr", "-1"), "--lr")


@case("conflict-one-domain-only")
def _(e: Env) -> None:
    names(_conflict(e, "--manifest", e.manifest(e.rows("asr"))), "m.jsonl", "at least two")


@case("conflict-truncated-checkpoint")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:50])
    out = invoke("analyze-conflict", "--manifest", e.manifest(e.rows()), "--checkpoint", ckpt)
    names(out, "model.safetensors", "truncated")


@case("conflict-png-under-a-file")
def _(e: Env) -> None:
    (e.tmp / "afile").write_text("x")
    names(
        _conflict(e, "--manifest", e.manifest(e.rows()), "--png", e.tmp / "afile" / "c.png"),
        "--png",
        "is a file",
    )


# --- analyze-probe


@case("probe-train-manifest-missing")
def _(e: Env) -> None:
    out = invoke("analyze-probe", "--checkpoint", e.checkpoint, "--train-manifest", e.tmp / "none.jsonl")
    names(out, "none.jsonl", "not found")


@case("probe-eval-manifest-malformed")
def _(e: Env) -> None:
    bad = e.manifest([*e.rows(), "{"], "held.jsonl")
    out = invoke("analyze-probe", "--checkpoint", e.checkpoint, "--eval-manifest", bad)
    names(out, "held.jsonl:3", "invalid JSON")


@case("probe-unknown-task")
def _(e: Env) -> None:
    out = invoke("analyze-probe", "--checkpoint", e.checkpoint, "--tasks", "gender,no_such_task")
    names(out, "no_such_task")


@case("probe-shape-mismatch")
def _(e: Env) -> None:
    ckpt = e.checkpoint_copy()
    recipe = (ckpt / "recipe.yaml").read_text().replace("num_experts: 4", "num_experts: 6")
    (ckpt / "recipe.yaml").write_text(recipe)
    names(invoke("analyze-probe", "--checkpoint", ckpt), "tensor 'adapter.moe", "has shape")


# --- bench adapter


@case("bench-zero-experts")
def _(e: Env) -> None:
    names(invoke("bench", "adapter", "--experts", "0"), "--experts")


@case("bench-top-k-above-experts")
def _(e: Env) -> None:
    names(invoke("bench", "adapter", "--experts", "4", "--top-k", "9"), "--top-k")


@case("bench-unknown-device")
def _(e: Env) -> None:
    names(invoke("bench", "adapter", "--device", "quantum"), "--device", "quantum")


@case("bench-unknown-dtype")
def _(e: Env) -> None:
    names(invoke("bench", "adapter", "--dtype", "float8"), "--dtype", "float8")


@case("bench-zero-tokens")
def _(e: Env) -> None:
    names(invoke("bench", "adapter", "--tokens", "0"), "--tokens")


@case("bench-zero-repeats")
def _(e: Env) -> None:
    names(invoke("bench", "adapter", "--repeats", "0"), "--repeats")


def test_the_table_covers_every_command() -> None:
    prefixes = ("prepare", "convert", "inspect", "recipes-show", "train", "eval", "transcribe",
                "routing", "conflict", "probe", "bench")  # fmt: skip
    assert len(CASES) >= 60
    for prefix in prefixes:
        assert any(name.startswith(prefix) for name in CASES), prefix


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    # offline, as the unknown-model cases describe (the variable is read when huggingface_hub is imported)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    CASES[name](env)


# ------------------------------------------------------------------------------------------ pickles


def _plant(checkpoint: Path, marker: Path) -> list[Path]:
    """Pickle payloads where a loader might look: DeepSpeed's model shard, and .pt/.bin beside the weights."""
    planted = [
        checkpoint / "deepspeed" / "state" / "mp_rank_00_model_states.pt",
        checkpoint / "pytorch_model.bin",
        checkpoint / "tokenizer" / "extra.pt",
    ]
    for path in planted:
        torch.save({"module": _Payload(marker)}, path)
    return planted


@pytest.fixture
def planted(env: Env) -> tuple[Path, Path]:
    """A copy of the tiny checkpoint with payloads planted and its file list updated to match (so the
    size check passes and the loaders themselves are what is tested); the marker path."""
    ckpt = env.checkpoint_copy(deepspeed=True)
    marker = env.tmp / "PWNED"
    _plant(ckpt, marker)
    (ckpt / "checkpoint.json").write_text(json.dumps(describe_files(ckpt, 30)))
    return ckpt, marker


def test_payload_is_inert_on_its_own(tmp_path: Path) -> None:
    """The payload does run when unpickled the unsafe way: the tests below would catch it."""
    marker = tmp_path / "PWNED"
    torch.save({"module": _Payload(marker)}, tmp_path / "p.pt")
    torch.load(tmp_path / "p.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "command",
    ["eval", "transcribe", "analyze-routing", "analyze-conflict", "analyze-probe"],
)
def test_pickle_in_checkpoint_never_runs(command: str, env: Env, planted, monkeypatch) -> None:
    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    ckpt, marker = planted
    audio = env.corpus / env.rows("asr", n=1)[0]["audio"]
    manifest = env.manifest([r for task in ("asr", "sound", "instrument") for r in env.rows(task)])
    args = {
        "eval": ["eval", "--task", "gender", "--checkpoint", ckpt, "--max-items", "1", "--json"],
        "transcribe": ["transcribe", audio, "--checkpoint", ckpt],
        "analyze-routing": ["analyze-routing", audio, "--checkpoint", ckpt, "--json"],
        "analyze-conflict": ["analyze-conflict", "--manifest", manifest, "--checkpoint", ckpt,
                             "--batches", "1", "--batch-size", "1", "--json"],
        "analyze-probe": ["analyze-probe", "--checkpoint", ckpt, "--tasks", "gender", "--json"],
    }[command]  # fmt: skip
    invoke(*args, code=0)  # the planted files are never read
    assert not marker.exists()


def test_pickle_as_weights_file_is_refused(env: Env, monkeypatch) -> None:
    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    ckpt = env.checkpoint_copy()
    marker = env.tmp / "PWNED"
    torch.save({"module": _Payload(marker)}, ckpt / "model.safetensors")
    (ckpt / "checkpoint.json").write_text(json.dumps(describe_files(ckpt, 30)))
    out = invoke("eval", "--task", "gender", "--checkpoint", ckpt)
    names(out, "model.safetensors", "not a complete safetensors file")
    assert not marker.exists()


@pytest.mark.parametrize("file_list", ["updated", "stale"])
def test_pickle_in_deepspeed_shard_never_runs_on_resume(env: Env, monkeypatch, file_list: str) -> None:
    """``train --resume`` reads the DeepSpeed shards: with weights-only loading the payload is refused
    (file list updated to match); with the file list as written the changed shard is named first."""
    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    ckpt = env.checkpoint_copy(deepspeed=True)
    marker = env.tmp / "PWNED"
    shard = ckpt / "deepspeed" / "state" / "mp_rank_00_model_states.pt"
    torch.save({"module": _Payload(marker)}, shard)
    if file_list == "updated":
        (ckpt / "checkpoint.json").write_text(json.dumps(describe_files(ckpt, 30)))
    out = invoke(*env.train_args(env.corpus, "train.max_steps=31", "--resume"))
    names(out, "mp_rank_00_model_states.pt")
    if file_list == "updated":
        names(out, "weights-only load refuses", "nothing in it was run")
    assert not marker.exists()


def test_weights_only_guard_allows_only_deepspeed_types(tmp_path: Path) -> None:
    """The guard forces ``weights_only=True`` on every torch.load, even one asking for False."""
    from moeaudio.train.checkpoint import weights_only_torch_load

    marker = tmp_path / "PWNED"
    torch.save({"x": _Payload(marker)}, tmp_path / "p.pt")
    torch.save({"w": torch.ones(2), "step": 3}, tmp_path / "ok.pt")
    with weights_only_torch_load() as loaded:
        assert torch.load(tmp_path / "ok.pt", weights_only=False)["step"] == 3
        with pytest.raises(Exception, match="[Ww]eights only"):
            torch.load(tmp_path / "p.pt", weights_only=False)
    assert loaded == [str(tmp_path / "ok.pt"), str(tmp_path / "p.pt")]
    assert not marker.exists()
    assert torch.load is not None and "safe_load" not in repr(torch.load)  # restored


# ------------------------------------------------------------------------------------------ training


def test_nan_loss_stops_training_naming_step_and_term(env: Env, monkeypatch) -> None:
    """A learning rate that drives the loss to NaN stops the run at the step it happens, before the
    update; the last checkpoint written is left as it was and holds finite weights."""
    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    args = env.train_args(
        env.corpus, "train.lr=1e6", "train.warmup_steps=0", "train.max_steps=8", "train.save_every=1"
    )
    out = invoke(*args)
    names(out, "went NaN", "train.lr", "last good checkpoint")
    found = re.search(r"error: step (\d+): (lm_loss|aux_loss|z_loss)", out)
    assert found, out
    step = int(found[1])
    last = latest_checkpoint(env.tmp / "run")
    assert last is not None and last.name == f"step-{step - 1:06d}"
    model = load_model(last)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_in_one_loss_term_is_named(env: Env, monkeypatch) -> None:
    """Which term went non-finite is named: here the balance loss at step 2."""
    from moeaudio.model.audio_llm import AudioLLM

    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    real = AudioLLM.forward
    calls = {"n": 0}

    def forward(self, batch):
        out = real(self, batch)
        calls["n"] += 1
        if calls["n"] == 2:
            out["aux_loss"] = torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(AudioLLM, "forward", forward)
    out = invoke(*env.train_args(env.corpus, "train.max_steps=3"))
    names(out, "step 2: aux_loss went NaN", "lm_loss", "finite", "no checkpoint had been written yet")


def test_disk_full_during_save_keeps_previous_checkpoint(env: Env, monkeypatch) -> None:
    import moeaudio.train.checkpoint as checkpoint

    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    real_save = checkpoint.save_file
    calls = []

    def full_disk(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:  # the second checkpoint: part of a file written, then the disk is full
            Path(filename).write_bytes(b"\x00" * 64)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    args = env.train_args(env.corpus, "train.max_steps=2", "train.save_every=1")
    out = invoke(*args)
    names(out, "no space left", "step-000002", "step-000001", "--resume")
    root = env.tmp / "run" / "checkpoints"
    assert (root / "latest").read_text().strip() == "step-000001"
    assert not (root / "step-000002").exists() and not list(root.glob(".tmp-*"))
    load_model(latest_checkpoint(env.tmp / "run"))  # complete and loadable

    monkeypatch.setattr(checkpoint, "save_file", real_save)  # space freed: the run continues
    invoke(*args, "--resume", code=0)
    assert (root / "latest").read_text().strip() == "step-000002"


def test_overwrite_starts_the_run_again(env: Env, monkeypatch) -> None:
    """Without --resume a run directory with checkpoints is refused; --overwrite replaces them, and a
    shorter second run leaves ``latest`` on a step that exists (the old, later steps are gone)."""
    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    invoke(*env.train_args(env.corpus, "train.max_steps=3", "train.save_every=1"), code=0)
    invoke(*env.train_args(env.corpus, "train.max_steps=1"))
    invoke(*env.train_args(env.corpus, "train.max_steps=1", "--overwrite"), code=0)
    root = env.tmp / "run" / "checkpoints"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-000001"]
    assert latest_checkpoint(env.tmp / "run") == root / "step-000001"


def test_routing_collapse_warns(env: Env, monkeypatch) -> None:
    monkeypatch.delenv("MOEAUDIO_QUIET", raising=False)
    args = env.train_args(
        env.corpus, "train.max_steps=3", "train.collapse_load_spread=0.5", "train.collapse_steps=2"
    )
    out = invoke(*args, code=0)
    names(out, "warning:", "routing collapse", "steps 1-2", "adapter.aux_loss_coef")
    assert out.count("routing collapse: load_spread") == 1  # once per episode


# ------------------------------------------------------------------------------------------ long audio


def test_routing_long_recording_is_windowed(env: Env, monkeypatch) -> None:
    """70 s through an encoder that takes 30 s: every window is routed and the duration reported is
    the audio routed (before, only the first 30 s were routed while 70 s was reported)."""
    monkeypatch.setenv("MOEAUDIO_QUIET", "1")
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(70 * SR)).astype(np.float32)
    path = env.tmp / "long.wav"
    sf.write(path, wave, SR, subtype="PCM_16")
    data = invoke_json("analyze-routing", path, "--checkpoint", env.checkpoint, "--json")
    assert data["duration"] == pytest.approx(70.0)
    assert len(data["windows"]) == 3 and data["windows"][-1][1] == pytest.approx(70.0)
    times = [t["time"] for t in data["tokens"]]
    assert times == sorted(times) and times[-1] > 69.0
    assert data["num_tokens"] == pytest.approx(70.0 / data["frame_seconds"], abs=len(data["windows"]))
