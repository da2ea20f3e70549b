"""Batched answer generation (KV cache through transformers ``generate``), shared by eval,
training's validation and transcription."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from moeaudio.model.audio_llm import AudioLLM
from moeaudio.progress import progress_bar
from moeaudio.runtime.batching import Collator, Example, iter_batches

__all__ = ["generate_all"]


def generate_all(
    model: AudioLLM,
    examples: Sequence[Example],
    batch_size: int,
    max_new_tokens: int,
    num_beams: int,
    progress: bool,
    collate: Collator | None = None,
) -> tuple[list[str], float]:
    """Texts generated for every example (input order) and the rate in items/s.

    ``collate`` builds the prompts (default: one user turn, left-padded; few-shot evaluation passes
    a collator with shots).
    """
    collate = collate or Collator(model, for_generation=True)
    device = next(model.parameters()).device
    outputs: list[str] = [""] * len(examples)
    start = time.time()
    with torch.no_grad(), progress_bar("generating", len(examples), progress) as advance:
        for idx, batch in iter_batches(examples, batch_size, collate, device):
            texts = model.generate(batch, max_new_tokens=max_new_tokens, num_beams=num_beams)
            for i, t in zip(idx, texts, strict=True):
                outputs[i] = t
            advance(len(idx))
    return outputs, len(examples) / max(1e-9, time.time() - start)
