"""VoiceBench's MCQ rule (MMSU, OpenBookQA): item-by-item agreement with VoiceBench's evaluator on
tricky answers, the seeded fallback, the reported numbers and the wiring into `moeaudio eval`.

The expected letters below are what VoiceBench's ``MCQEvaluator.extract_answer`` (MatthewCYM/VoiceBench
at 533815410e, ``src/evaluator/mcq.py``) returns for each answer: checked against that file when this
test was written (this list, and 20,000 random strings of answer fragments, agreed item by item).
"""

from __future__ import annotations

import math
import random

import pytest

from moeaudio.eval.handlers import VoiceBenchMcqHandler, handler_for, score_task
from moeaudio.eval.metrics import mmau_is_correct
from moeaudio.eval.tasks import EVAL_TASKS, extract_choice
from moeaudio.eval.voicebench import VOICEBENCH_MCQ_SOURCE, voicebench_extract, voicebench_mcq_score
from moeaudio.runtime.batching import Example

CHOICES = ["dog", "cat", "cow", "pig"]

# (model answer, the letter VoiceBench reads; None = no letter, VoiceBench draws one at random)
VOICEBENCH_READS = [
    ("B", "B"),
    ("b", "B"),
    ("(B)", "B"),
    ("B.", "B"),
    ("B. cat", "B"),
    ("B) cat", "B"),
    ("B, because the cat meows", "B"),
    ("I would choose B", "B"),
    ("I would select option C.", "C"),
    ("The answer is **B**", "B"),
    ("The answer is B.", "B"),
    ("The answer is: D", "D"),
    ("Answer: (B)", "B"),
    ("The correct answer is C", "C"),
    ("C is the best answer", "C"),
    ("Option D.", "D"),
    ("(option C)", "C"),
    ("I'd say A.", "A"),
    ('"C"', "C"),
    ("The answer is \\( \\boxed{B} \\)", "B"),
    ("<1> B", "B"),
    ("<2>c.", "C"),
    ("d)", "D"),
    ("The speaker says A, but the answer is **C**.", "C"),
    ("The answer would be a.", "A"),
    ("**D**", None),  # no template has "**d**" alone: a miss in VoiceBench too
    ("A dog barks", None),
    ("cat", None),  # the option text is not a letter
    ("I think it is the cat", None),
    ("Answer B", None),
    ("It is B", None),
    ("None of them", None),
    ("", None),
]


@pytest.mark.parametrize(("answer", "letter"), VOICEBENCH_READS, ids=[repr(a) for a, _ in VOICEBENCH_READS])
def test_extract_agrees_with_voicebench_item_by_item(answer: str, letter: str | None) -> None:
    assert voicebench_extract(answer) == letter


def test_the_three_answers_the_generic_rule_got_wrong() -> None:
    """Under moeaudio's generic rule (letters mapped to text, then MMAU's token match) these were wrong
    although the model answered B; VoiceBench counts each as B."""
    for answer in ("I would choose B", "The answer is **B**", "B, because it meows"):
        assert not mmau_is_correct(extract_choice(answer, CHOICES), "cat", CHOICES)
        assert voicebench_extract(answer) == "B"


def test_seeded_fallback_fail_rate_and_parsed_accuracy() -> None:
    responses = ["B", "no idea", "I would choose C", "hmm", "A.", "dunno", "The answer is **D**", "?"]
    references = ["B", "A", "C", "D", "B", "C", "D", "A"]
    out = voicebench_mcq_score(responses, references, seed=3)
    m = out["metrics"]
    # parsed: B (right), C (right), A (wrong), D (right) -> 3 of 4; four failures drawn with Random(3)
    rng = random.Random(3)  # what VoiceBench's evaluate() draws after random.seed(3)
    drawn = {i: rng.choice(["A", "B", "C", "D"]) for i in (1, 3, 5, 7)}
    lucky = sum(drawn[i] == references[i] for i in drawn)
    assert [i["letter"] for i in out["items"]] == ["B", drawn[1], "C", drawn[3], "A", drawn[5], "D", drawn[7]]
    assert [i["fallback"] for i in out["items"]] == [False, True, False, True, False, True, False, True]
    assert (m["n_parsed"], m["n_failed"], m["total"]) == (4, 4, 8)
    assert m["fail_rate"] == 0.5 and m["accuracy_parsed"] == 0.75
    assert m["accuracy"] == (3 + lucky) / 8
    assert m["accuracy_expected"] == (3 + 0.25 * 4) / 8
    assert voicebench_mcq_score(responses, references, seed=3) == out  # reproducible
    nothing = voicebench_mcq_score(["?"], ["A"])["metrics"]
    assert nothing["fail_rate"] == 1.0 and math.isnan(nothing["accuracy_parsed"])


def _example(target: str, answer: str, subset: str = "mmsu") -> Example:
    meta = {"id": f"voicebench/{subset}/x", "choices": CHOICES, "answer": answer, "task": "mcq",
            "meta": {"subset": subset}}  # fmt: skip
    return Example("Listen and answer.", target, meta=meta)


def test_mmsu_and_openbookqa_are_scored_by_voicebench_rule_mmau_by_its_own() -> None:
    assert EVAL_TASKS["mmsu"].scorer == EVAL_TASKS["openbookqa"].scorer == "voicebench"
    assert EVAL_TASKS["mmau"].scorer == EVAL_TASKS["mcq"].scorer == "default"
    assert isinstance(handler_for("mcq", "voicebench"), VoiceBenchMcqHandler)
    assert not isinstance(handler_for("mcq", EVAL_TASKS["mmau"].scorer), VoiceBenchMcqHandler)

    examples = [_example("cat", "B"), _example("cow", "C"), _example("pig", "D")]
    predictions = ["I would choose B", "The answer is **C**", "pig"]
    vb = score_task("mmsu", examples, predictions, spec=EVAL_TASKS["mmsu"])
    assert vb["scorer"] == "voicebench"
    assert vb["metrics"]["n_parsed"] == 2 and vb["metrics"]["accuracy_parsed"] == 1.0
    assert [a["extracted"] for a in vb["answers"]] == ["B", "C", None]
    generic = score_task("mcq", examples, predictions)  # the generic rule: letters mapped, then MMAU's match
    assert generic["metrics"]["accuracy"] == pytest.approx(1 / 3)  # only "pig" (the option text) is right
    rule = handler_for("mcq", "voicebench").scoring_rule(EVAL_TASKS["mmsu"])
    assert rule["source"] == VOICEBENCH_MCQ_SOURCE and "MatthewCYM/VoiceBench" in rule["source"]
    assert "Sakshi113/MMAU" in handler_for("mcq").scoring_rule(EVAL_TASKS["mmau"])["source"]
