"""Two processes writing the same output at once: each succeeds with intact files, or one is refused.

- `eval --output X` twice: the output's lock lets one write; the other is refused at once, naming it.
- `prepare features` twice on one cache: both succeed (each writes shards of its own, atomically);
  the cache holds every clip once per key and every shard reads back.
- `reproduce` of one study twice: the study folder's lock lets one run; the other is refused.

Real processes throughout; the refusals are also checked against a holder whose pid is known.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open
from typer.testing import CliRunner

from moeaudio.cli import app
from moeaudio.data.feature_cache import OPTIONS_FILE

REPO = Path(__file__).resolve().parent.parent
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "MOEAUDIO_LAUNCHER_PID")
HOLD = """
import sys, time
from moeaudio.io_utils import FileLock
FileLock(sys.argv[1], sys.argv[2], directory=sys.argv[3] == "dir").acquire()
print("held", flush=True)
time.sleep(120)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["MOEAUDIO_QUIET"] = "1"
    env["COLUMNS"] = "400"
    return env


def _both(args: list[str], cwd: Path, timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Start two `moeaudio ARGS` at the same moment; wait for both."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "moeaudio", *args],
            cwd=cwd,
            env=_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(2)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def _refused_or_ok(runs: list[subprocess.CompletedProcess[str]], what: str) -> int:
    """Each run succeeded or was refused naming the other's pid; at least one succeeded. Returns how
    many were refused."""
    refused = 0
    for r in runs:
        if r.returncode != 0:
            assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
            assert f"is in use by a running {what} (pid " in r.stderr.replace("\n", ""), r.stderr[-2000:]
            assert "Traceback" not in r.stderr
            refused += 1
    assert refused < len(runs)
    return refused


@pytest.fixture
def holder():
    """A separate process holding a lock: ``holder(target, what, dir|file)`` -> its pid."""
    children: list[subprocess.Popen[str]] = []

    def hold(target: Path, what: str, kind: str) -> int:
        child = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(target), what, kind],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        children.append(child)
        return child.pid

    yield hold
    for child in children:
        child.kill()
        child.wait(10)


# ------------------------------------------------------------------------------------------- eval


def _asr_manifest(corpus: Path, out: Path, n: int = 4) -> Path:
    rows = [json.loads(line) for line in (corpus / "valid.jsonl").read_text().splitlines()]
    rows = [{**r, "audio": str(corpus / r["audio"])} for r in rows if r["task"] == "asr"][:n]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_two_evals_into_one_output(tiny_checkpoint: Path, tiny_corpus: Path, tmp_path: Path, holder) -> None:
    manifest = _asr_manifest(tiny_corpus, tmp_path / "m.jsonl")
    out = tmp_path / "result.json"
    args = ["eval", "--task", "asr", "--checkpoint", str(tiny_checkpoint), "--manifest", str(manifest)]
    runs = _both([*args, "--output", str(out), "--json"], tmp_path)
    _refused_or_ok(runs, "eval")
    result = json.loads(out.read_text())  # whole, from one run
    predictions = [json.loads(line) for line in Path(result["files"]["predictions"]).read_text().splitlines()]
    assert result["n"] == len(predictions) == 4
    assert not list(tmp_path.glob(".result*.tmp*"))  # no temporary file left behind

    # a live holder: refused at once, naming it, and the earlier result untouched
    before = out.read_bytes()
    pid = holder(out, "eval", "file")
    start = time.monotonic()
    refused = CliRunner().invoke(app, [*args, "--output", str(out)], env={"COLUMNS": "400"})
    assert refused.exit_code == 2 and time.monotonic() - start < 30
    text = refused.output.replace("\n", "")
    assert f"{out} is in use by a running eval (pid {pid}" in text and "--output FILE" in text
    assert out.read_bytes() == before


# --------------------------------------------------------------------------------------- features


def test_two_feature_preparers_on_one_cache(tiny_corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "valid", "test"):  # a small corpus: the first 12 items of each split
        lines = (tiny_corpus / f"{split}.jsonl").read_text().splitlines()[:12]
        rows = [{**json.loads(line), "audio": str(tiny_corpus / json.loads(line)["audio"])} for line in lines]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [
        "prepare-features", "tiny/moe", f"data.root={data}", "data.synth_if_missing=false",
        f"data.feature_cache={cache}", "--json",
    ]  # fmt: skip
    runs = _both(args, tmp_path)
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    reports = [json.loads(r.stdout[r.stdout.rfind("\n{") + 1 :]) for r in runs]
    folder = Path(reports[0]["cache"])
    keys: set[str] = set()
    for shard in folder.glob("shards/*.safetensors"):  # every shard whole and readable
        with safe_open(str(shard), framework="pt") as f:
            for k in f.keys():
                assert f.get_tensor(k).ndim == 2
                keys.add(k)
    assert len(keys) == reports[0]["clips"] == reports[1]["clips"]
    assert json.loads((folder / OPTIONS_FILE).read_text())["nonfinite_audio"] == "error"
    again = subprocess.run(
        [sys.executable, "-m", "moeaudio", *args], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert json.loads(again.stdout[again.stdout.rfind("\n{") + 1 :])["encoded"] == 0  # nothing missing


# -------------------------------------------------------------------------------------- reproduce


def _tiny_study(corpus: Path) -> dict:
    return {
        "name": "twice",
        "title": "Two writers",
        "description": "Test scale: two tiny arms, one step.",
        "paper_source": "none",
        "base": {"cpu": "tiny/moe"},
        "overrides": {"cpu": [f"data.root={corpus}", "data.synth_if_missing=false", "train.max_steps=1"]},
        "baseline": "dense",
        "seeds": [0],
        "arms": [
            {"name": "dense", "label": "Dense", "recipe": {"cpu": "tiny/dense"}, "paper": {"ASR": 1.0}},
            {"name": "moe", "label": "MoE", "paper": {"ASR": 1.0}},
        ],
        "columns": [{"name": "ASR", "task": {"cpu": "asr"}, "metric": "wer", "higher_is_better": False}],
        "eval": {"cpu": {"max_items": 2, "batch_size": 8}},
        "analyses": [],
    }


def test_two_reproduce_runs_of_one_study(tiny_corpus: Path, tmp_path: Path, holder) -> None:
    study = tmp_path / "twice.yaml"
    study.write_text(yaml.safe_dump(_tiny_study(tiny_corpus)))
    out = tmp_path / "out"
    pid = holder(out, "reproduce", "dir")  # a live holder first: refused at once, naming it
    refused = CliRunner().invoke(app, ["reproduce", str(study), "--output", str(out)], env={"COLUMNS": "400"})
    assert refused.exit_code == 2, refused.output
    text = refused.output.replace("\n", "")
    assert f"{out} is in use by a running reproduce (pid {pid}" in text and "--output DIR" in text
    assert not (out / "dense").exists()  # nothing trained

    other = tmp_path / "other"
    runs = _both(["reproduce", str(study), "--output", str(other)], tmp_path, timeout=600)
    _refused_or_ok(runs, "reproduce")
    results = json.loads((other / "results.json").read_text())  # whole, from the run that went ahead
    assert results["missing_runs"] == [] and set(results["cells"]) == {"dense", "moe"}
    assert all(len(results["cells"][arm]["ASR"]["values"]) == 1 for arm in ("dense", "moe"))
