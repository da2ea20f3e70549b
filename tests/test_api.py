"""The Python API: the README's example runs as written, and `import moeaudio` stays light."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import moeaudio

REPO = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    """The first python block under the README's "## Python API" heading."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_readme_python_example_runs_as_written(
    tiny_checkpoint: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    """In a fresh interpreter, in a folder with runs/quickstart (the tiny test run) and talk.wav."""
    (tmp_path / "runs").mkdir()
    shutil.copytree(tiny_checkpoint.parent.parent, tmp_path / "runs" / "quickstart", symlinks=True)
    row = next(json.loads(x) for x in (tiny_corpus / "test.jsonl").read_text().splitlines() if '"asr"' in x)
    shutil.copy(tiny_corpus / row["audio"], tmp_path / "talk.wav")
    code = readme_example()
    assert 'moeaudio.load("runs/quickstart")' in code and "moeaudio.export(" in code
    (tmp_path / "example.py").write_text(code)
    proc = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == moeaudio.__version__
    assert (tmp_path / "exports" / "quickstart" / "README.md").is_file()
    assert (tmp_path / "runs" / "quickstart" / "checkpoints").is_dir()


def test_api_surface_is_lazy_and_documented() -> None:
    assert moeaudio.__version__ == "0.1.0"
    expected = {"load", "AudioModel", "prepare", "convert", "train_recipe", "evaluate", "transcribe", "export",
                "inspect", "analyze_routing", "analyze_conflict", "analyze_probe", "bench_adapter", "load_recipe"}  # fmt: skip
    assert expected <= set(moeaudio.__all__) and expected <= set(dir(moeaudio))
    from moeaudio import api  # its literal __all__ (ruff reads re-exports from it) must list the same names

    assert sorted(api.__all__) == sorted(moeaudio._API)
    for name in moeaudio.__all__:
        value = getattr(moeaudio, name)
        assert name == "__version__" or value.__doc__, f"moeaudio.{name} has no docstring"
    probe = "import sys, moeaudio; print('torch' in sys.modules, moeaudio.__version__)"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.split() == ["False", moeaudio.__version__]
