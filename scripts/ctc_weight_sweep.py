"""Choose ``eval.ctc_weight`` on a validation split: the n-best of both readers is computed once and
each weight's pick scored, beside the LLM's own greedy transcript and the CTC best path.

    python scripts/ctc_weight_sweep.py runs/smol data/synth_smol/valid.jsonl --num-beams 4 \
        --weights 0,0.1,0.2,0.3,0.5,0.7,1 --length-bonuses 0,0.5,1,1.5,2 --max-items 250

Prints one JSON object: WER and CER (after Whisper's English normaliser, as ``moeaudio eval`` scores
ASR) for every weight, and for every weight and length bonus (per LLM token). ``--dump F`` writes
every candidate with its scores (JSON lines) for further study. Decoding with the chosen weight:
``moeaudio eval --task asr_open --num-beams 4 --ctc-weight W`` (moeaudio.eval.joint_ctc).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from moeaudio.data.manifest import read_manifest
from moeaudio.eval.ctc import ctc_transcribe
from moeaudio.eval.generation import generate_all
from moeaudio.eval.joint_ctc import best_transcript, nbest_scores
from moeaudio.eval.metrics import wer_cer
from moeaudio.eval.tasks import get_task
from moeaudio.runtime.checkpoint import load_model, resolve_checkpoint
from moeaudio.runtime.examples import load_examples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a checkpoint or run directory trained with a ctc_embed stage")
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--vocab", choices=["open", "all"], default="open")
    ap.add_argument("--weights", default="0,0.1,0.2,0.3,0.5,0.7,1")
    ap.add_argument("--length-bonuses", default="0")
    ap.add_argument("--dump", type=Path, default=None, help="write each clip's candidates and scores here")
    ap.add_argument("--num-beams", type=int, default=4)
    ap.add_argument("--max-items", type=int, default=250)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    model = load_model(resolve_checkpoint(args.checkpoint)).eval()
    task = get_task("asr_open" if args.vocab == "open" else "asr")
    items = [it for it in read_manifest(args.manifest) if task.selects(it)][: args.max_items]
    examples = load_examples(model, args.manifest, model.recipe, progress=True, items=items)
    refs = [e.target for e in examples]
    max_new = args.max_new_tokens or model.recipe.eval.max_new_tokens or task.max_new_tokens

    def scored(hyps: list[str]) -> dict[str, float]:
        result = wer_cer(refs, hyps)
        return {"wer": round(result["wer"], 4), "cer": round(result["cer"], 4)}

    out: dict = {"checkpoint": args.checkpoint, "manifest": str(args.manifest), "n": len(items)}
    start = time.time()
    greedy, _ = generate_all(model, examples, args.batch_size, max_new, 1, progress=True)
    out["llm_greedy"] = scored(greedy) | {"seconds": round(time.time() - start, 1)}
    out["ctc_best_path"] = scored(ctc_transcribe(model, examples, args.batch_size, progress=True))
    start = time.time()
    scores = nbest_scores(model, examples, args.batch_size, max_new, args.num_beams, progress=True)
    out["nbest_seconds"] = round(time.time() - start, 1)
    out["num_beams"] = args.num_beams
    out["mean_candidates"] = round(sum(len(s) for s in scores) / max(1, len(scores)), 2)

    def picks(bonus: float) -> dict[str, dict[str, float]]:
        return {
            w: scored([best_transcript(s, float(w), bonus) for s in scores]) for w in args.weights.split(",")
        }

    out["joint"] = picks(0.0)
    out["joint_by_length_bonus"] = {
        b: out["joint"] if float(b) == 0.0 else picks(float(b)) for b in args.length_bonuses.split(",")
    }
    if args.dump:
        rows = [
            {"id": e.meta["id"], "target": e.target, "candidates": {c: list(v) for c, v in s.items()}}
            for e, s in zip(examples, scores, strict=True)
        ]
        args.dump.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
