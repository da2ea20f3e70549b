"""The paper's evaluation protocol end to end at CPU scale, through `moeaudio reproduce --collect`.

What it shows on the tiny recipes (minutes on a CPU; the numbers are a random tiny model's, only the
plumbing is under test):

1. fixtures: the built-in tiny synthetic corpus; a spoken-question benchmark made from its audio
   multiple-choice items (``meta.text_prompt`` holds each question in writing, as VoiceBench's do); an
   emotion benchmark prepared by the RAVDESS preparer from a RAVDESS-named folder of tones;
2. a study (dense vs MoE, one seed) whose columns are the spoken MCQ in audio, the same questions in
   writing on the base LLM (``llm: base``), their gap, and RAVDESS emotion; its evaluation protocol is a
   shot pool (fixed MCQ shot ids from the benchmark with a template per modality, emotion shots drawn
   from the benchmark's dev split);
3. ``reproduce --print-commands --launcher python`` into one folder, the commands run as a cluster
   would (``sh commands.sh``), the folder moved (a shared file system mounted elsewhere), and
   ``reproduce --collect`` there: evaluation, results.md, every result with its shot ids.

Usage: ``python scripts/paper_protocol_cpu.py OUT`` (OUT must not exist). Prints results.md and the
shot ids each result recorded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from moeaudio.data.synth import make_synth_corpus

EMOTIONS = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}


def run(*cmd: str, cwd: Path | None = None) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=cwd)


def spoken_questions(synth: Path, out: Path) -> list[str]:
    """The synthetic corpus's audio MCQ items, each with its question in writing (``meta.text_prompt``)."""
    out.mkdir(parents=True)
    ids = []
    for split in ("valid", "test"):
        rows = []
        for line in (synth / f"{split}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec["task"] != "mcq":
                continue
            rec["audio"] = str((synth / rec["audio"]).resolve())
            options = " ".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(rec["choices"]))
            rec["meta"] = {**(rec.get("meta") or {}), "text_prompt": f"{rec['instruction']} {options}"}
            rows.append(json.dumps(rec))
            ids.append(rec["id"]) if split == "test" else None
        (out / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return ids


def ravdess_fixture(src: Path, out: Path) -> None:
    """RAVDESS-named tones (4 emotions x 24 actors, two statements) prepared by the RAVDESS preparer."""
    rng = np.random.default_rng(0)
    for actor in range(1, 25):
        for code in EMOTIONS:
            for statement in ("01", "02"):
                path = src / "Audio_Speech_Actors_01-24" / f"Actor_{actor:02d}"
                path.mkdir(parents=True, exist_ok=True)
                freq = 150 + 60 * int(code) + 5 * actor
                t = np.arange(int(0.8 * 16000)) / 16000
                wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
                sf.write(
                    path / f"03-01-{code}-01-{statement}-01-{actor:02d}.wav", wave.astype(np.float32), 16000
                )
    run("moeaudio", "prepare", "ravdess", str(src), str(out))


def main(out: Path) -> None:
    out.mkdir(parents=True)
    synth = out / "synth"
    make_synth_corpus(synth, seed=0, size="tiny", progress=False)
    mcq_ids = spoken_questions(synth, out / "spoken")
    ravdess_fixture(out / "ravdess_src", out / "ravdess")
    pool = {
        "description": "CPU-scale stand-in for recipes/studies/shots/paper.yaml",
        "benchmarks": {
            "mcq": {
                "source": "benchmark",
                "ids": mcq_ids[:2],
                "template": "{question}\n{choices}\nAnswer with the text of the correct option.",
                "text_template": "Answer the multiple-choice question. Reply with the letter of the correct option.\n{text_prompt}",
            },
            "emotion": {"source": "valid.jsonl", "seed": 0},
        },
    }
    (out / "shots.yaml").write_text(yaml.safe_dump(pool, sort_keys=False))
    study = {
        "name": "protocol_cpu",
        "title": "The paper's evaluation protocol on the tiny recipes",
        "description": "Dense vs MoE tiny adapters; spoken MCQ in audio and in writing (base LLM), RAVDESS emotion.",
        "base": {"cpu": "tiny/moe"},
        "overrides": {"cpu": [f"data.root={synth}", "data.synth_if_missing=false", "train.max_steps=30"]},
        "baseline": "dense",
        "seeds": [0],
        "arms": [
            {"name": "dense", "label": "dense", "recipe": {"cpu": "tiny/dense"}},
            {"name": "moe", "label": "MoE", "recipe": {"cpu": "tiny/moe"}},
        ],
        "columns": [
            {
                "name": "MCQ audio",
                "task": {"cpu": "mcq"},
                "manifest": {"cpu": str(out / "spoken" / "test.jsonl")},
            },
            {
                "name": "MCQ text",
                "task": {"cpu": "mcq"},
                "modality": "text",
                "llm": "base",
                "manifest": {"cpu": str(out / "spoken" / "test.jsonl")},
            },  # fmt: skip
            {"name": "MCQ gap", "gap": ["MCQ audio", "MCQ text"]},
            {
                "name": "RAVDESS emotion",
                "task": {"cpu": "emotion"},
                "manifest": {"cpu": str(out / "ravdess" / "test.jsonl")},
            },
        ],
        "eval": {"cpu": {"few_shot": 2, "shot_pool": str(out / "shots.yaml")}},
    }
    study_file = out / "protocol_cpu.yaml"
    study_file.write_text(yaml.safe_dump(study, sort_keys=False))
    node = out / "node" / "study"
    run(
        "moeaudio",
        "reproduce",
        str(study_file),
        "--print-commands",
        "--launcher",
        "python",
        "--output",
        str(node),
    )
    run("sh", str(node / "commands.sh"))
    shared = out / "shared" / "study"  # the folder as another machine mounts it
    shared.parent.mkdir()
    shutil.move(str(node), str(shared))
    run("moeaudio", "reproduce", str(study_file), "--output", str(shared), "--collect")
    print((shared / "results.md").read_text())
    for path in sorted(shared.rglob("eval/*.json")):
        if path.name.endswith(".predictions.jsonl"):
            continue
        result = json.loads(path.read_text())
        decoding = result.get("decoding", {})
        print(f"{path.relative_to(shared)}: n={result['n']} of {result['n_available']}, "
              f"shot_pool={decoding.get('shot_pool')}, few_shot_ids={decoding.get('few_shot_ids')}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 2 or Path(sys.argv[1]).exists():
        sys.exit("usage: python scripts/paper_protocol_cpu.py OUT   (OUT must not exist)")
    main(Path(sys.argv[1]))
