"""`--scoring loglik`: candidates ranked by the model's own log-likelihood (lm-eval-harness's ``acc``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moeaudio.errors import EvalDataError
from moeaudio.eval.ranking import candidates_for, rank_all
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.checkpoint import load_model


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_candidates_are_the_form_the_target_takes() -> None:
    choices = ["a hat", "shoes", "a tie", "gloves"]
    assert candidates_for(Example("q", "shoes", meta={"choices": choices})) == choices
    assert candidates_for(Example("q", "B", meta={"choices": choices})) == ["A", "B", "C", "D"]
    assert candidates_for(Example("q", "x", meta={}), labels=["x", "y"]) == ["x", "y"]
    with pytest.raises(EvalDataError, match="neither one of its choices"):
        candidates_for(Example("q", "boots", meta={"id": "i1", "choices": choices}))
    with pytest.raises(EvalDataError, match="needs 'choices'"):
        candidates_for(Example("q", "boots", meta={"id": "i1"}))


def test_response_logprob_is_minus_the_training_loss(tiny_checkpoint: Path) -> None:
    """One row: the summed log-probability equals -(mean token NLL x response tokens) of forward()."""
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    model.eval()
    wave = torch.randn(16000).numpy() * 0.1
    batch = Collator(model)([Example("Transcribe the speech.", "the fish is red", wave=wave)])
    with torch.no_grad():
        loss = model(batch)["lm_loss"]
    sums, lengths = model.response_logprob(batch)
    assert int(lengths[0]) == len(model.tokenizer("the fish is red", add_special_tokens=False).input_ids) + 1
    assert torch.allclose(sums[0], -loss * lengths[0], rtol=1e-5, atol=1e-4)


def test_rank_all_takes_the_most_likely_candidate_per_item(tiny_checkpoint: Path) -> None:
    """Batched ranking (rows of different lengths, padded) equals scoring each pair alone."""
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    model.eval()
    rng = torch.Generator().manual_seed(0)
    examples = [
        Example("Which animal is it?", "cat", wave=(torch.randn(n, generator=rng) * 0.1).numpy())
        for n in (8000, 16000, 24000)
    ]
    candidates = [["dog", "cat", "a very long cow"], ["cat", "dog"], ["pig", "cat", "dog", "cow"]]
    best, logprobs, rate = rank_all(model, examples, candidates, batch_size=4, progress=False)
    assert rate > 0
    for e, cands, lp, b in zip(examples, candidates, logprobs, best, strict=True):
        assert set(lp) == set(cands) and b == max(cands, key=lp.get)
        for c in cands:
            alone, _ = model.response_logprob(Collator(model)([Example(e.instruction, c, wave=e.wave)]))
            assert lp[c] == pytest.approx(float(alone[0]), abs=1e-3)


def test_eval_scoring_loglik_end_to_end(tiny_checkpoint: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    from moeaudio.errors import EvalError
    from moeaudio.eval.evaluate import run_eval

    result = run_eval("mcq", tiny_checkpoint, max_items=6, scoring="loglik", progress=False)
    assert result["scoring"] == "loglik" and result["decoding"]["strategy"] == "loglik"
    assert Path(result["output"]).name == "mcq.loglik.json"
    rows = _rows(Path(result["files"]["predictions"]))
    assert len(rows) == 6
    for r in rows:  # the prediction is the option with the highest log-likelihood, and is scored
        assert set(r["logprobs"]) == set(r["choices"])
        assert r["prediction"] == max(r["logprobs"], key=r["logprobs"].get)
    accuracy = sum(r["correct"] for r in rows) / len(rows)
    assert result["metrics"]["accuracy"] == pytest.approx(accuracy)
    normed = [max(r["logprobs"], key=lambda c, r=r: r["logprobs"][c] / len(c)) == r["target"] for r in rows]
    assert result["metrics"]["accuracy_norm"] == pytest.approx(sum(normed) / len(rows))

    sound = run_eval("sound", tiny_checkpoint, max_items=4, scoring="loglik", progress=False)
    labels = set(sound["labels"])
    assert all(set(r["logprobs"]) == labels for r in _rows(Path(sound["files"]["predictions"])))
    with pytest.raises(EvalError, match="mcq and classification"):
        run_eval("asr", tiny_checkpoint, max_items=2, scoring="loglik", progress=False)
