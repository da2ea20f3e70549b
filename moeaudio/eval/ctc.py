"""Transcripts from a ``ctc_embed``-aligned adapter alone: no LLM runs.

After the alignment stage (:mod:`moeaudio.model.ctc_embed`) every audio token sits nearest to the LLM
embedding of a token it says, or to the blank. Reading the nearest token per audio token, merging
repeats and dropping blanks (CTC's best path) gives a transcript of what the adapter hands the LLM:
the measure of whether the alignment stage did its job, before any LLM step is spent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from moeaudio.model.audio_llm import AudioLLM
from moeaudio.model.ctc_embed import ctc_greedy_decode
from moeaudio.progress import progress_bar
from moeaudio.runtime.batching import Collator, Example, iter_batches

__all__ = ["ctc_transcribe"]


@torch.no_grad()
def ctc_transcribe(
    model: AudioLLM, examples: Sequence[Example], batch_size: int, progress: bool
) -> list[str]:
    """The best-path CTC transcript of each example's audio, in order (the model needs a CTC head)."""
    if model.ctc_head is None:
        raise ValueError("the model has no ctc_embed head: its recipe has no ctc_embed stage")
    out: list[str] = [""] * len(examples)
    embeddings = model.llm.get_input_embeddings().weight  # (vocab, d_llm)
    collate = Collator(model)
    device = next(model.parameters()).device
    with progress_bar("CTC transcripts", len(examples), progress) as advance:
        for idx, batch in iter_batches(examples, batch_size, collate, device):
            y, token_lengths, _ = model.adapt(model.encoder_states(batch), batch.frame_lengths)
            for i, ids in zip(
                idx, ctc_greedy_decode(model.ctc_head, y, token_lengths, embeddings), strict=True
            ):
                out[i] = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
            advance(len(idx))
    return out
