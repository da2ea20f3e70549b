"""Peak memory and steps/s of training at 1x, 4x and 16x the built-in corpus, in memory vs streamed.

    python scripts/scale_measure.py --corpus data/synth --out /tmp/scale [--factors 1 4 16] [--steps 20]

The Nx corpus repeats the train manifest N times over distinct audio: copy k of every clip is the
clip times a gain of 1 - k/1000 (so its content hash, and its cache entry, differ), valid and test
are the original ones. Each (factor, data.loading) pair trains the `tiny/moe` recipe (random tiny
Whisper encoder, waveforms decoded per batch: no feature cache) for --steps steps in a fresh
process through the trainer's own setup() and train_step(), and reports the setup time, the
steps/s of the steps after the first, and the process's peak resident memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def make_corpus(src: Path, out: Path, factor: int) -> Path:
    import soundfile as sf

    if (out / "train.jsonl").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    lines = (src / "train.jsonl").read_text().splitlines()
    rows = []
    for k in range(factor):
        for line in lines:
            rec = json.loads(line)
            audio = (src / rec["audio"]).resolve()
            if k:
                wave, sr = sf.read(audio, dtype="float32")
                dst = out / "audio" / f"x{k}" / rec["audio"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                sf.write(dst, wave * (1 - k / 1000), sr, subtype=sf.info(audio).subtype)
                rec["audio"], rec["id"] = str(dst.resolve()), f"{rec['id']}-x{k}"
            else:
                rec["audio"] = str(audio)
            rows.append(json.dumps(rec))
    (out / "train.jsonl").write_text("\n".join(rows) + "\n")
    for split in ("valid", "test"):
        recs = [json.loads(x) for x in (src / f"{split}.jsonl").read_text().splitlines()]
        for rec in recs:
            rec["audio"] = str((src / rec["audio"]).resolve())
        (out / f"{split}.jsonl").write_text("\n".join(map(json.dumps, recs)) + "\n")
    return out


def one(corpus: str, loading: str, steps: int, run_dir: str) -> None:
    os.environ["MOEAUDIO_QUIET"] = "1"
    from moeaudio.config import load_recipe
    from moeaudio.train.trainer import setup, train_step

    recipe = load_recipe(
        "tiny/moe",
        [f"data.root={corpus}", "data.synth_if_missing=false", "data.feature_cache=null",
         f"data.loading={loading}", f"train.max_steps={steps}", f"train.output_dir={run_dir}"],
    )  # fmt: skip
    t0 = time.time()
    s, state = setup(recipe, overwrite=True)
    t1 = time.time()
    train_step(s, state)  # the first step (allocations) is not timed
    t2 = time.time()
    for _ in range(steps - 1):
        train_step(s, state)
    t3 = time.time()
    print(json.dumps({
        "items": len(s.train_examples) if loading == "memory" else len(s.batches._dataset),
        "setup_s": round(t1 - t0, 1),
        "steps_per_s": round((steps - 1) / (t3 - t2), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--out", type=Path, default=Path("/tmp/scale"))
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--loadings", nargs="+", default=["memory", "stream"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--one", nargs=3, metavar=("CORPUS", "LOADING", "RUN_DIR"))
    args = ap.parse_args()
    if args.one:
        one(args.one[0], args.one[1], args.steps, args.one[2])
        return
    for factor in args.factors:
        corpus = make_corpus(args.corpus, args.out / f"x{factor}", factor)
        for loading in args.loadings:
            out = subprocess.run(
                [sys.executable, __file__, "--steps", str(args.steps), "--one", str(corpus), loading,
                 str(args.out / f"run-x{factor}-{loading}")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            row = {"factor": factor, "loading": loading, **json.loads(out.stdout.strip().splitlines()[-1])}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
