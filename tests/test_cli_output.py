"""Quiet, useful command-line output: no library noise without --verbose, --json on every command that
produces a result, --verbose on every command, shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from moeaudio.cli import app

REPO = Path(__file__).resolve().parent.parent

# What the libraries printed on every command that loads the offline Whisper, before: transformers' LOAD
# REPORT table, its tqdm bar for loading weights, DeepSpeed's accelerator notice, warnings.
NOISE = ("LOAD REPORT", "UNEXPECTED", "Loading weights", "Warning", "WARNING", "[WARNING]", "it/s]")


def _moeaudio(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`moeaudio ARGS 2>&1` in a fresh interpreter (this checkout's moeaudio)."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "moeaudio", *args],  # moeaudio/__main__.py, as `python -m moeaudio`
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": pythonpath, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )


def test_eval_on_the_quickstart_model_prints_no_library_noise(
    quickstart_checkpoint: Path, tiny_corpus: Path, whisper_cache: Path, tmp_path: Path
) -> None:
    args = ["eval", "--task", "asr", "--checkpoint", str(quickstart_checkpoint), "--manifest",
            str(tiny_corpus / "test.jsonl"), "--max-items", "2", "--output", str(tmp_path / "asr.json")]  # fmt: skip
    quiet = _moeaudio(args, tmp_path, MOEAUDIO_CACHE=str(whisper_cache))
    assert quiet.returncode == 0, quiet.stdout[-3000:]
    assert "wer" in quiet.stdout and "results:" in quiet.stdout
    assert not [n for n in NOISE if n in quiet.stdout], quiet.stdout
    loud = _moeaudio([*args, "--verbose"], tmp_path, MOEAUDIO_CACHE=str(whisper_cache))
    assert loud.returncode == 0 and "Loading weights" in loud.stdout  # the libraries speak again
    assert "LOAD REPORT" not in loud.stdout  # the Whisper head is expected to be left out: not reported


def _commands(group, prefix: str = ""):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_every_command_has_verbose_and_completion_is_on() -> None:
    root = typer.main.get_command(app)
    names = dict(_commands(root))
    assert {"train", "eval", "prepare", "convert", "transcribe", "export", "recipes list"} <= set(names)
    missing = [n for n, cmd in names.items() if "--verbose" not in {o for p in cmd.params for o in p.opts}]
    assert not missing, f"commands without --verbose: {missing}"
    result_commands = ["inspect", "prepare", "convert", "train", "eval", "transcribe", "export", "analyze-routing",
                       "analyze-conflict", "analyze-probe", "bench adapter", "bench train", "recipes list"]  # fmt: skip
    no_json = [n for n in result_commands if "--json" not in {o for p in names[n].params for o in p.opts}]
    assert not no_json, f"commands producing a result without --json: {no_json}"
    help_text = CliRunner().invoke(app, ["--help"]).output
    assert "--install-completion" in help_text and "--show-completion" in help_text


def test_prepare_convert_and_train_json(tiny_corpus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    prepared = runner.invoke(app, ["prepare", "synth", str(tmp_path / "synth"), "--size", "tiny", "--json"])
    assert prepared.exit_code == 0, prepared.output
    summary = json.loads(prepared.stdout)  # nothing but the JSON on stdout
    assert summary["n_clips"] > 0 and set(summary["manifests"]) == {"train", "valid", "test"}

    converted = runner.invoke(
        app,
        ["convert", str(tiny_corpus / "test.jsonl"), str(tmp_path / "slam.jsonl"), "--to", "slam", "--json"],
    )
    assert converted.exit_code == 0, converted.output
    report = json.loads(converted.stdout)
    assert report["items"] > 0 and report["dst_format"] == "slam" and report["guessed"] == 0

    run = tmp_path / "run"
    overrides = [f"data.root={tiny_corpus}", f"train.output_dir={run}", "data.synth_if_missing=false",
                 "data.tasks=[asr, gender]", "train.max_steps=2", "eval.max_items=2"]  # fmt: skip
    trained = runner.invoke(app, ["train", "tiny/moe", *overrides, "--json"])
    assert trained.exit_code == 0, trained.output
    result = json.loads(trained.stdout)
    assert result["steps"] == 2 and result["checkpoint"].endswith("step-000002")
    assert set(result["validation"]) == {"asr", "gender"}
    assert result["validation"]["gender"]["metric"] == "accuracy" and result["final"]["step"] == 2
