"""The ``ctc_embed`` training step of a staged recipe's first stage, side by side in one run: the loss
code of a git revision against the working tree's, in interleaved rounds (same batches, same engine).

    python scripts/ctc_step_ab.py smol --old-rev 5f0e464 --rounds 3 --steps 8

Prints each round's seconds per step and the ratio of the medians (old / new).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moeaudio.bench.stages import _Stage
from moeaudio.config import load_recipe
from moeaudio.model import audio_llm, ctc_embed
from moeaudio.train.distributed import init_distributed


def _module_at(rev: str):
    """``moeaudio/model/ctc_embed.py`` as it was at ``rev``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:moeaudio/model/ctc_embed.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "ctc_embed_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("ctc_embed_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", nargs="?", default="smol")
    ap.add_argument("--old-rev", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    old = _module_at(args.old_rev)
    versions = {
        "new": (ctc_embed.EmbeddingCTCHead.logits, ctc_embed.ctc_embed_loss),
        "old": (old.EmbeddingCTCHead.logits, old.ctc_embed_loss),
    }
    init_distributed()
    stage = _Stage(load_recipe(args.recipe), 0, steps=args.steps, warmup=1, world=1)
    if stage.stage.objective != "ctc_embed":
        sys.exit(f"{args.recipe}: its first stage is not a ctc_embed stage")
    for idx in stage.batches[:1]:
        stage.step(idx)
    times: dict[str, list[float]] = {"new": [], "old": []}
    for _ in range(args.rounds):
        for name, (logits, loss) in versions.items():
            ctc_embed.EmbeddingCTCHead.logits = logits
            audio_llm.ctc_embed_loss = loss  # the model calls the name it imported
            t0 = time.perf_counter()
            for idx in stage.batches[1:]:
                stage.step(idx)
            times[name].append((time.perf_counter() - t0) / args.steps)
    new, old_s = statistics.median(times["new"]), statistics.median(times["old"])
    print({k: [round(t, 3) for t in v] for k, v in times.items()})
    print(f"seconds per step: old {old_s:.3f}, new {new:.3f}, old / new {old_s / new:.2f}")


if __name__ == "__main__":
    main()
