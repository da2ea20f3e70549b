"""Answer by ranking: the candidate the model finds most likely, instead of a generated answer.

Small instruct LLMs often miss the *form* of a multiple-choice answer (SmolLM2-135M answers "A" to
most written questions) while still preferring the right option. The standard protocol of LLM
benchmarks (lm-evaluation-harness's ``acc`` for MMLU, ARC, OpenBookQA) scores each candidate
continuation by the sum of its tokens' log-probabilities after the prompt and takes the best, so
what is measured is knowledge, not answer formatting. The answer with the highest summed log-probability is
scored (``acc``); the result also holds ``accuracy_norm``, the answer with the highest log-probability
per character (lm-eval's ``acc_norm``), which does not favour short options. Reporting both, as ``moeaudio eval --scoring
generate|loglik`` does, separates the two.

The candidates are the forms the task's targets take: the option texts where targets are option
texts (the built-in spoken questions, MMAU), the letters where targets are letters (VoiceBench), the
closed label set for classification. A candidate's response ends with the end-of-turn token, as in
training, so an option that is a prefix of another ("a hat" vs "a hat and gloves") is not favoured.

``--scoring cloze`` (:mod:`moeaudio.eval.cloze`) ranks the same way with the options left out of the
prompt and the candidate's own tokens scored without the end-of-turn token (``end_of_turn=False``):
lm-evaluation-harness's continuation, exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from moeaudio.data.tasks import CHOICE_LETTERS
from moeaudio.errors import EvalDataError
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.progress import progress_bar
from moeaudio.runtime.batching import Collator, Example, example_lengths, iter_batches

__all__ = ["best_per_character", "candidates_for", "rank_all", "scored_answers"]


def candidates_for(example: Example, labels: Sequence[str] | None = None) -> list[str]:
    """What may be answered to ``example``: the label set, else its option texts or letters."""
    if labels is not None:
        return list(labels)
    choices = list(example.meta.get("choices") or [])
    item_id = example.meta.get("id", "?")
    if not choices:
        raise EvalDataError(f"item {item_id}: --scoring loglik needs 'choices' on every multiple-choice item")
    target = (example.target or "").strip()
    if target in choices:
        return choices
    letters = list(CHOICE_LETTERS[: len(choices)])
    if target.strip("().").upper() in letters:
        return letters
    raise EvalDataError(
        f"item {item_id}: target {target!r} is neither one of its choices nor an option letter, so "
        "there is nothing to rank it against; fix the manifest, or use --scoring generate"
    )


def scored_answers(scorer: str, examples: Sequence[Example], answers: Sequence[str]) -> list[str]:
    """The ranked answers in the form the task's rule scores: an option text becomes its letter where
    the rule reads letters (VoiceBench's) or the item's target is a letter; labels and texts stay."""
    out = []
    for e, answer in zip(examples, answers, strict=True):
        choices = list(e.meta.get("choices") or [])
        target = (e.target or "").strip()
        as_letter = scorer == "voicebench" or (
            target not in choices and target.strip("().").upper() in CHOICE_LETTERS
        )
        out.append(CHOICE_LETTERS[choices.index(answer)] if as_letter and answer in choices else answer)
    return out


def best_per_character(logprobs: Sequence[dict[str, float]]) -> list[str]:
    """Per item, the candidate of highest log-probability per character (lm-eval's ``acc_norm``)."""
    return [max(lp, key=lambda c, lp=lp: lp[c] / max(1, len(c))) for lp in logprobs]


class _Continuation(Collator):
    """A :class:`Collator` whose responses are the candidate's own tokens, without the end-of-turn token:
    lm-evaluation-harness's continuation (what cloze scoring sums)."""

    def response_ids(self, target: str) -> list[int]:
        return self.tok(target, add_special_tokens=False).input_ids


class _CandidateRows(Sequence[Example]):
    """Row j = example i with candidate c as its response, built when a batch asks for it (a lazy
    ``examples`` reads its audio then, not all at once)."""

    def __init__(self, examples: Sequence[Example], rows: list[tuple[int, str]]):
        self.examples, self.rows = examples, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> Example:  # type: ignore[override]
        i, cand = self.rows[j]
        e = self.examples[i]
        return Example(e.instruction, cand, e.wave, e.states, e.meta)

    def lengths(self) -> list[int]:
        per_example = example_lengths(self.examples)
        return [per_example[i] for i, _ in self.rows]


def rank_all(
    model: AudioLLM,
    examples: Sequence[Example],
    candidates: Sequence[Sequence[str]],
    batch_size: int,
    progress: bool,
    shots: Sequence[Example] = (),
    end_of_turn: bool = True,
) -> tuple[list[str], list[dict[str, float]], float]:
    """The best candidate per example, every candidate's summed log-probability, and items/s.

    Every (example, candidate) pair is one training-style row (prompt, then the candidate as the
    response); rows are batched by length like generation's. ``end_of_turn=False`` scores the
    candidate's tokens alone (cloze), without the end-of-turn token training puts after a response.
    """
    collate = Collator(model, shots=shots) if end_of_turn else _Continuation(model, shots=shots)
    rows = [
        (i, c) for i, cands in enumerate(candidates) for c in cands
    ]  # (example index, candidate) per scored row
    scored = _CandidateRows(examples, rows)
    logprobs: list[dict[str, float]] = [{} for _ in examples]
    device = next(model.parameters()).device
    start = time.time()
    with torch.no_grad(), progress_bar("ranking answers", len(scored), progress) as advance:
        for idx, batch in iter_batches(scored, batch_size, collate, device):
            sums, _lengths = model.response_logprob(batch)  # (batch,), (batch,)
            for j, value in zip(idx, sums.tolist(), strict=True):
                i, cand = rows[j]
                logprobs[i][cand] = value
            advance(len(idx))
    best = [max(cands, key=lambda c, lp=lp: lp[c]) for cands, lp in zip(candidates, logprobs, strict=True)]
    return best, logprobs, len(examples) / max(1e-9, time.time() - start)
