"""Greedy CTC WER of an aligned adapter (a ``ctc_embed`` stage's checkpoint) on a manifest's ASR items.

    python scripts/ctc_wer.py runs/smol/stages/1-align data/synth_smol/valid.jsonl --vocab open --max-items 250

Prints one JSON object: WER, CER, items, and a few transcripts. No LLM runs (moeaudio.eval.ctc).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moeaudio.data.manifest import read_manifest
from moeaudio.eval.ctc import ctc_transcribe
from moeaudio.eval.metrics import wer_cer
from moeaudio.eval.tasks import get_task
from moeaudio.runtime.checkpoint import load_model, resolve_checkpoint
from moeaudio.runtime.examples import load_examples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a checkpoint or run directory (a ctc_embed stage's)")
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--vocab", choices=["open", "closed", "all"], default="open")
    ap.add_argument("--max-items", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    model = load_model(resolve_checkpoint(args.checkpoint))
    items = [it for it in read_manifest(args.manifest) if it.task == "asr"]
    if args.vocab != "all":
        open_vocabulary = get_task("asr_open").selects  # eval's own choice of the open-vocabulary clips
        items = [it for it in items if open_vocabulary(it) == (args.vocab == "open")]
    items = items[: args.max_items]
    examples = load_examples(model, args.manifest, model.recipe, progress=True, items=items)
    hyps = ctc_transcribe(model, examples, args.batch_size, progress=True)
    refs = [e.target for e in examples]
    result = wer_cer(refs, hyps)
    samples = [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps, strict=True))[:5]]
    print(
        json.dumps({"n": len(items), **{k: result[k] for k in ("wer", "cer")}, "samples": samples}, indent=1)
    )


if __name__ == "__main__":
    main()
