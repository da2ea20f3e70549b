"""Whisper's own decoder (greedy, no prompt) on a manifest's ASR items: the reference for what the
frozen encoder's features carry, scored exactly as ``moeaudio eval --task asr_open`` scores the LLM.

    python scripts/whisper_wer.py data/synth_smol/test.jsonl --vocab open --max-items 250

``--model``: a hub id or local folder of a ``WhisperForConditionalGeneration``; default: the offline
Whisper tiny.en that the smol recipes' encoder is (``moeaudio.model.whisper_offline``). Prints one JSON
object: WER, CER, items, and a few transcripts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from transformers.utils import logging as hf_logging

from moeaudio.data.audio import load_audio
from moeaudio.data.manifest import read_manifest
from moeaudio.eval.metrics import wer_cer
from moeaudio.eval.tasks import get_task
from moeaudio.model.whisper_offline import offline_whisper_dir
from moeaudio.progress import progress_bar


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--model", default=None, help="hub id or folder (default: the offline tiny.en)")
    ap.add_argument("--vocab", choices=["open", "closed", "all"], default="open")
    ap.add_argument("--max-items", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    hf_logging.set_verbosity_error()  # generate's per-batch notes on max_length and the attention mask
    source = args.model or str(offline_whisper_dir())
    processor = WhisperProcessor.from_pretrained(source)
    model = WhisperForConditionalGeneration.from_pretrained(source).eval()
    items = [it for it in read_manifest(args.manifest) if it.task == "asr"]
    if args.vocab != "all":
        open_vocabulary = get_task("asr_open").selects  # eval's own choice of the open-vocabulary clips
        items = [it for it in items if open_vocabulary(it) == (args.vocab == "open")]
    items = items[: args.max_items]
    hyps: list[str] = []
    with progress_bar("whisper", len(items)) as advance:
        for start in range(0, len(items), args.batch_size):
            batch = items[start : start + args.batch_size]
            audio = [load_audio(it.resolve_audio(args.manifest), 16000) for it in batch]
            features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
            with torch.no_grad():
                tokens = model.generate(features, max_new_tokens=96)
            hyps += processor.batch_decode(tokens, skip_special_tokens=True)
            advance(len(batch))
    refs = [it.target for it in items]
    result = wer_cer(refs, hyps)
    samples = [{"ref": r, "hyp": h.strip()} for r, h in list(zip(refs, hyps, strict=True))[:5]]
    print(
        json.dumps(
            {"n": len(items), "model": source, **{k: result[k] for k in ("wer", "cer")}, "samples": samples},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
