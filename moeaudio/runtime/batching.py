"""Examples -> model batches: the one prompt builder (training, zero-shot and few-shot generation).

A prompt is a chat: optional solved examples (``shots``: user turn + assistant answer, each with
its own audio) and then the query's user turn. Each audio placeholder in the rendered chat is
expanded to one placeholder id per audio token, which :meth:`AudioLLM.embed` later replaces with
adapter outputs row by row. Training batches are right-padded and carry labels on the response;
generation batches are left-padded so every row's answer starts at the same position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from moeaudio.model.audio_llm import IGNORE, AudioBatch, AudioLLM
from moeaudio.model.encoder import EncoderInputs

__all__ = ["Collator", "Example", "example_length", "iter_batches"]


@dataclass
class Example:
    """One item as the model sees it: audio (waveform or cached states) + instruction + target."""

    instruction: str
    target: str | None
    wave: np.ndarray | None = None
    states: torch.Tensor | None = None  # (frames, d_model)
    meta: dict = field(default_factory=dict)

    @property
    def has_audio(self) -> bool:
        return self.wave is not None or self.states is not None


def example_length(example: Example) -> int:
    """Sort key for batching: encoder frames, samples, or (text-only) characters."""
    if example.states is not None:
        return int(example.states.shape[0])
    return len(example.wave) if example.wave is not None else len(example.instruction)


def example_lengths(examples: Sequence[Example]) -> list[int]:
    """Every example's :func:`example_length`; a lazy sequence (``LazyExamples``) gives them from
    headers, so sorting it does not read its audio."""
    own = getattr(examples, "lengths", None)
    return list(own()) if callable(own) else [example_length(e) for e in examples]


class Collator:
    """Examples -> :class:`AudioBatch`: chat prompt with one placeholder per audio token, masked labels.

    ``shots`` (few-shot evaluation) are solved examples put before every query, keeping their audio.
    """

    def __init__(self, model: AudioLLM, for_generation: bool = False, shots: Sequence[Example] = ()):
        self.model = model
        self.tok = model.tokenizer
        self.placeholder = model.recipe.llm.audio_placeholder
        self.for_generation = for_generation
        self.shots = list(shots)

    def user_content(self, instruction: str, with_audio: bool) -> str:
        """The user turn: the instruction with the audio placeholder before or after it.

        Audio first is the usual layout (Qwen2-Audio, SALMONN). With the instruction first, a
        causal LLM reads every audio token already knowing the question, so its own layers can
        pick out what the task needs (pitch for gender, harmony for chords) instead of leaving
        all of that to the few positions after the audio; small LLMs trained from scratch
        depend on this most.
        """
        if not with_audio:
            return instruction
        if self.model.recipe.llm.audio_position == "after_instruction":
            return f"{instruction}\n{self.placeholder}"
        return f"{self.placeholder}\n{instruction}"

    def prompt_ids(self, turns: Sequence[Example], n_audio: Sequence[int | None]) -> list[int]:
        """Token ids of the chat ``turns`` (earlier ones answered) with each placeholder expanded to
        its clip's audio tokens; ``n_audio[i] = None`` marks a text-only turn."""
        system = self.model.recipe.llm.system_prompt
        messages = [] if system is None else [{"role": "system", "content": system}]
        for k, e in enumerate(turns):
            messages.append(
                {"role": "user", "content": self.user_content(e.instruction, n_audio[k] is not None)}
            )
            if k < len(turns) - 1:
                messages.append({"role": "assistant", "content": e.target or ""})
        if self.tok.chat_template:
            kwargs = {"enable_thinking": False} if "enable_thinking" in self.tok.chat_template else {}
            text = self.tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **kwargs
            )
        else:
            text = "".join(f"{m['content']}\n" for m in messages)
        counts = iter(n for n in n_audio if n is not None)
        out: list[int] = []
        for token in self.tok(text, add_special_tokens=False).input_ids:
            out.extend([token] * next(counts) if token == self.model.audio_token_id else [token])
        return out

    def response_ids(self, target: str) -> list[int]:
        return self.tok(target, add_special_tokens=False).input_ids + [self.tok.eos_token_id]

    def collate_audio(
        self, clips: list[Example]
    ) -> tuple[torch.Tensor, EncoderInputs | None, torch.Tensor | None]:
        """The clips' audio as one padded batch: (frame_lengths, encoder inputs or cached states).

        ``clips`` are the examples that have audio, in the order their placeholders appear.
        """
        if not clips:  # text-only examples (e.g. the text version of a spoken question)
            return torch.zeros(0, dtype=torch.long), None, None
        if clips[0].states is not None:
            frame_lengths = torch.tensor([e.states.shape[0] for e in clips])
            states = torch.zeros(len(clips), int(frame_lengths.max()), clips[0].states.shape[1])
            for i, e in enumerate(clips):
                states[i, : e.states.shape[0]] = e.states  # (clips, frames, d_model)
            return frame_lengths, None, states
        enc_inputs = self.model.encoder.prepare([e.wave for e in clips])
        return enc_inputs.lengths, enc_inputs, None

    def __call__(self, examples: list[Example]) -> AudioBatch:
        conversations = [[*self.shots, e] for e in examples]
        frame_lengths, enc_inputs, states = self.collate_audio(
            [e for turns in conversations for e in turns if e.has_audio]
        )
        audio_tokens = iter(self.model.stacker.token_lengths(frame_lengths).tolist())
        rows, label_rows = [], []
        for turns in conversations:
            prompt = self.prompt_ids(turns, [next(audio_tokens) if e.has_audio else None for e in turns])
            query = turns[-1]
            response = [] if self.for_generation or query.target is None else self.response_ids(query.target)
            rows.append(prompt + response)
            label_rows.append([IGNORE] * len(prompt) + response)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.tok.pad_token_id, dtype=torch.long)  # (batch, seq)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)  # (batch, seq)
        attention = torch.zeros((len(rows), width), dtype=torch.long)  # (batch, seq)
        for i, (row, lab) in enumerate(zip(rows, label_rows, strict=True)):
            span = slice(width - len(row), width) if self.for_generation else slice(0, len(row))
            input_ids[i, span] = torch.tensor(row)
            labels[i, span] = torch.tensor(lab)
            attention[i, span] = 1
        return AudioBatch(
            input_ids,
            attention,
            None if self.for_generation else labels,
            frame_lengths,
            enc_inputs,
            states,
            [e.meta for e in examples],
        )


def iter_batches(
    examples: Sequence[Example],
    batch_size: int,
    collate: Callable[[list[Example]], AudioBatch],
    device: torch.device | str,
) -> Iterator[tuple[list[int], AudioBatch]]:
    """Length-sorted batches (less padding) on ``device``, with the indices of their examples.

    Used by generation, routing capture and the probes, so all of them batch the same way.
    """
    lengths = example_lengths(examples)
    order = sorted(range(len(examples)), key=lambda i: lengths[i])
    step = max(1, batch_size)
    for s in range(0, len(order), step):
        idx = order[s : s + step]
        yield idx, collate([examples[i] for i in idx]).to(device)
