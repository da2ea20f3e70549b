"""Joint CTC/LLM transcription: CTC prefix beam search and sequence scores against an exhaustive sum
over alignments; the n-best's LLM scores against the response log-probability computed by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from moeaudio.config import load_recipe
from moeaudio.eval.joint_ctc import (
    best_transcript,
    ctc_log_probs,
    ctc_prefix_beam_search,
    ctc_sequence_logprob,
    joint_score,
    nbest_scores,
)
from moeaudio.model.audio_llm import build_audio_llm


def _exhaustive(logp: torch.Tensor) -> dict[tuple[int, ...], float]:
    """log p(labels) for every label sequence: every path of classes summed after CTC's collapse
    (repeats merged, then blanks, class 0, removed). Labels are class - 1, as the search returns."""
    frames, classes = logp.shape
    probs: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=frames):
        labels = tuple(c - 1 for c, _ in itertools.groupby(path) if c != 0)
        p = math.exp(sum(float(logp[t, c]) for t, c in enumerate(path)))
        probs[labels] = probs.get(labels, 0.0) + p
    return {k: math.log(v) for k, v in probs.items()}


@pytest.fixture
def frames() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn(5, 4).mul(1.5).log_softmax(-1)  # (frames, blank + 3 tokens)


def test_prefix_beam_search_without_pruning_gives_every_sequence_its_exact_probability(frames):
    exact = _exhaustive(frames)
    found = ctc_prefix_beam_search(frames, beam=10_000, prune=4)
    assert len(found) == len(exact)
    for ids, score in found:
        assert score == pytest.approx(exact[tuple(ids)], abs=1e-9)
    ranked = sorted(exact, key=exact.get, reverse=True)
    assert [tuple(ids) for ids, _ in found[:5]] == ranked[:5]


def test_a_narrow_beam_keeps_the_most_likely_sequences_first(frames):
    exact = _exhaustive(frames)
    found = ctc_prefix_beam_search(frames, beam=3, prune=3)
    assert len(found) == 3
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    best = max(exact, key=exact.get)
    assert tuple(found[0][0]) == best  # this case's best survives the pruning
    for ids, score in found:  # pruned sums can only lose alignments
        assert score <= exact[tuple(ids)] + 1e-9


def test_sequence_logprob_is_the_sum_over_all_alignments(frames):
    exact = _exhaustive(frames)
    sequences = [[], [0], [1, 1], [2, 0, 1], [0, 1, 2, 1, 0]]
    got = ctc_sequence_logprob(frames, sequences)
    for seq, value in zip(sequences, got, strict=True):
        assert value == pytest.approx(exact[tuple(seq)], abs=1e-6)
    # a token four times needs a blank between each: seven frames; impossible in five, not a number
    assert ctc_sequence_logprob(frames, [[1, 1, 1]])[0] == pytest.approx(exact[(1, 1, 1)], abs=1e-6)
    assert ctc_sequence_logprob(frames, [[1, 1, 1, 1]]) == [-math.inf]


def test_joint_score_weights_and_extremes():
    assert joint_score(0.3, -10.0, -2.0) == pytest.approx(0.3 * -10.0 + 0.7 * -2.0)
    assert joint_score(0.0, -math.inf, -2.0) == -2.0  # weight 0 ignores an impossible CTC score
    assert joint_score(1.0, -4.0, -math.inf) == -4.0
    assert joint_score(0.3, -10.0, -2.0, 4, 0.5) == pytest.approx(0.3 * -10.0 + 0.7 * -2.0 + 2.0)
    scores = {"a hat": (-1.0, -9.0, 2), "a cat": (-5.0, -2.0, 2), "a cat sat": (-6.0, -3.5, 3)}
    assert best_transcript(scores, 0.0) == "a cat"
    assert best_transcript(scores, 1.0) == "a hat"
    assert best_transcript(scores, 0.5) == "a cat"  # -5.5 vs -3.5 vs -4.75
    assert best_transcript(scores, 0.9) == "a hat"  # -1.8 vs -4.7
    assert best_transcript(scores, 0.5, length_bonus=2.0) == "a cat sat"  # -1.0 vs 0.5 vs 1.25


def _ctc_model():
    raw = load_recipe("recipes/tiny/moe.yaml").model_dump(mode="json")
    raw["train"]["stages"] = [
        {"name": "align", "objective": "ctc_embed", "trainable": ["adapter"], "max_steps": 2},
        {"name": "tune", "objective": "ntp", "max_steps": 2},
    ]
    torch.manual_seed(0)
    return build_audio_llm(load_recipe(raw)).eval()


def test_nbest_holds_both_readers_candidates_scored_by_hand(tiny_corpus, tmp_path):
    from moeaudio.data.manifest import read_manifest
    from moeaudio.runtime.batching import Collator
    from moeaudio.runtime.examples import load_examples

    model = _ctc_model()
    manifest = tiny_corpus / "valid.jsonl"
    items = [i for i in read_manifest(manifest) if i.task == "asr"][:3]
    examples = load_examples(model, manifest, model.recipe, progress=False, items=items)
    scores = nbest_scores(model, examples, batch_size=2, max_new_tokens=6, num_beams=2, progress=False)
    assert len(scores) == len(examples)
    tok = model.tokenizer
    for example, cands in zip(examples, scores, strict=True):
        assert 1 <= len(cands) <= 4
        logp = ctc_log_probs(model, [example])[0]  # (audio tokens, vocab + 1)
        ctc_best = tok.decode(ctc_prefix_beam_search(logp, 2)[0][0], skip_special_tokens=True).strip()
        assert ctc_best in cands or not ctc_best
        for text, (ctc, llm, length) in cands.items():
            ids = tok(text, add_special_tokens=False).input_ids
            assert length == len(ids)
            assert ctc == pytest.approx(_exhaustive_or_forward(logp, ids), rel=1e-5)
            # the LLM's: the candidate as the response (then the end of turn), log-probabilities summed by hand
            batch = Collator(model)([type(example)(example.instruction, text, example.wave, example.states)])
            with torch.no_grad():
                logits = model.llm(inputs_embeds=model.embed(batch)[0]).logits[0].float()
            labels = batch.labels[0]
            positions = (labels != -100).nonzero().flatten()
            hand = sum(float(logits[t - 1].log_softmax(-1)[labels[t]]) for t in positions.tolist())
            assert llm == pytest.approx(hand, rel=1e-4, abs=1e-3)


def _exhaustive_or_forward(logp: torch.Tensor, ids: list[int]) -> float:
    """log p_ctc(ids) by the textbook forward recursion (the vocabulary is too large to enumerate)."""
    from test_ctc_embed import _hand_ctc

    return -_hand_ctc(logp.tolist(), [i + 1 for i in ids])


def test_eval_refuses_ctc_weight_without_a_ctc_head_or_on_a_task_without_transcripts(tiny_checkpoint):
    from moeaudio.errors import EvalError
    from moeaudio.eval.evaluate import run_eval

    with pytest.raises(EvalError, match="without a ctc_embed stage"):
        run_eval("asr", tiny_checkpoint, ctc_weight=0.3, progress=False)
    with pytest.raises(EvalError, match="for asr tasks, not 'intent'"):
        run_eval("intent", tiny_checkpoint, ctc_weight=0.3, progress=False)
