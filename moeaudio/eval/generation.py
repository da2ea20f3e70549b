"""Batched answer generation (KV cache through transformers ``generate``), shared by eval,
training's validation and transcription."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from transformers.generation.streamers import BaseStreamer

from moeaudio.eval.joint_ctc import joint_ctc_transcribe
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.progress import progress_bar
from moeaudio.runtime.batching import Collator, Example, iter_batches

__all__ = ["TokenCallback", "generate_all"]

#: ``on_token(example index, token id)``: one new token of one example's answer, as it is decoded.
TokenCallback = Callable[[int, int], None]


class _RowStreamer(BaseStreamer):
    """Hands every row's new tokens of one batch to ``on_token`` under the example's index.

    transformers' own streamers take a batch of one; this one maps batch rows back to the examples
    (``idx``) so a batch of several requests streams each answer to its owner. A row's tokens stop
    at its first end-of-sequence token (the padding after it is not part of the answer).
    """

    def __init__(self, idx: Sequence[int], on_token: TokenCallback, eos_token_id: int | None):
        self.idx = list(idx)
        self.on_token = on_token
        self.eos = eos_token_id
        self.prompt_seen = False
        self.done = [False] * len(self.idx)

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate's first call carries the prompt ids
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token == self.eos:
                self.done[row] = True
                continue
            self.on_token(self.idx[row], int(token))

    def end(self) -> None:
        pass


def generate_all(
    model: AudioLLM,
    examples: Sequence[Example],
    batch_size: int,
    max_new_tokens: int,
    num_beams: int,
    progress: bool,
    collate: Collator | None = None,
    on_token: TokenCallback | None = None,
    ctc_weight: float | None = None,
) -> tuple[list[str], float]:
    """Texts generated for every example (input order) and the rate in items/s.

    ``collate`` builds the prompts (default: one user turn, left-padded; few-shot evaluation passes
    a collator with shots). ``on_token`` (greedy only) receives each new token as it is decoded.
    ``ctc_weight`` (transcription after a ``ctc_embed`` stage): joint CTC/LLM rescoring of both
    readers' n-best (:mod:`moeaudio.eval.joint_ctc`) instead of the LLM's answer alone.
    """
    if on_token is not None and (num_beams != 1 or ctc_weight is not None):
        raise ValueError("on_token streams greedy decoding only (num_beams=1, no ctc_weight)")
    collate = collate or Collator(model, for_generation=True)
    if ctc_weight is not None:
        return joint_ctc_transcribe(
            model, examples, batch_size, max_new_tokens, num_beams, ctc_weight, progress, collate
        )
    device = next(model.parameters()).device
    outputs: list[str] = [""] * len(examples)
    start = time.time()
    with torch.no_grad(), progress_bar("generating", len(examples), progress) as advance:
        for idx, batch in iter_batches(examples, batch_size, collate, device):
            streamer = None if on_token is None else _RowStreamer(idx, on_token, model.tokenizer.eos_token_id)
            texts = model.generate(
                batch, max_new_tokens=max_new_tokens, num_beams=num_beams, streamer=streamer
            )
            for i, t in zip(idx, texts, strict=True):
                outputs[i] = t
            advance(len(idx))
    return outputs, len(examples) / max(1e-9, time.time() - start)
