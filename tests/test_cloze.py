"""`--scoring cloze`: the question without its options, each option's text scored as the continuation
(lm-evaluation-harness's ``acc`` / ``acc_norm``), and the modality gap of spoken questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from moeaudio.data import synth
from moeaudio.data.synth.labels import SYNTH_TASKS
from moeaudio.data.tasks import format_choices
from moeaudio.errors import EvalDataError
from moeaudio.eval.cloze import cloze_candidates, cloze_prompt, strip_label_list, strip_options
from moeaudio.eval.evaluate import run_eval
from moeaudio.eval.ranking import best_per_character, scored_answers
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.checkpoint import load_model
from moeaudio.runtime.examples import load_manifest_examples

CHOICES = ["a hat", "shoes", "a tie", "gloves"]


def _rows(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def spoken_questions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six spoken questions of the ``smol`` corpus's test split (clips and a manifest), as prepared."""
    out = tmp_path_factory.mktemp("spoken_qa")
    specs = [s for s in synth._plan(0, "smol", jobs=["speech_qa"]) if s.split == "test"][:6]
    rows = [synth._build_item((str(out), 0, spec)) for spec in specs]
    (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out / "test.jsonl"


# ------------------------------------------------------------------------------------------ the prompts


def test_spoken_question_prompts_have_no_options() -> None:
    written = f"What do you wear on your head?\n{format_choices(CHOICES)}"
    item = {
        "id": "q1",
        "task": "spoken_qa",
        "choices": CHOICES,
        "meta": {"text_prompt": written, "spoken_text": "What do you wear on your head?"},
    }
    heard = Example(
        f"Answer the spoken question.\n{format_choices(CHOICES)}\nAnswer with the text of the correct option.",
        "a hat",
        meta=item,
    )
    assert cloze_prompt(heard, "audio") == "Answer the spoken question."
    assert cloze_prompt(heard, "text") == "What do you wear on your head?"
    # VoiceBench: the parsed question, and an inline option list goes too
    vb = {
        "id": "v",
        "choices": CHOICES,
        "meta": {"question": "Which?", "text_prompt": "Which? A. a hat B. shoes"},
    }
    assert cloze_prompt(Example("x", "a hat", meta=vb), "text") == "Which?"
    assert strip_options("Which one? A. a hat B. shoes C. a tie D. gloves", CHOICES) == "Which one?"
    assert strip_options("Which one?\n(A) a hat\n(B) shoes\n(C) a tie\n(D) gloves\nThink.", CHOICES) == (
        "Which one?\nThink."
    )
    # a letter-answer instruction keeps its question and loses its answer format
    mmau = Example(
        "Which animal is heard?\nA. dog\nB. cat\nReply with the option letter.",
        "dog",
        meta={"choices": ["dog", "cat"]},
    )
    assert cloze_prompt(mmau, "audio") == "Which animal is heard?"
    with pytest.raises(EvalDataError, match="question in writing"):
        cloze_prompt(Example("x", "a hat", meta={"id": "q2", "choices": CHOICES, "meta": {}}), "text")


def test_classification_prompts_lose_their_label_lists() -> None:
    expected = {
        "chord": "What is the quality of the chord?",
        "background": "What is heard behind the voice?",
        "tempo": "What is the tempo?",
        "speaking_rate": "What is the speaking rate?",
        "sound": "What sound is this?",
        "intent": "What does the speaker want?",
    }
    for task, prompt in expected.items():
        spec = SYNTH_TASKS[task]
        example = Example(spec["instruction"], spec["labels"][0], meta={"task": task})
        assert cloze_prompt(example, "audio", list(spec["labels"])) == prompt, task
    # words that are not labels, or one label alone, stay
    assert strip_label_list("Is it red, green or blue?", ["cat", "dog"]) == "Is it red, green or blue?"
    assert strip_label_list("Name the sound, rain.", ["rain", "wind"]) == "Name the sound, rain."
    assert cloze_candidates(Example("q", "x", meta={}), ["x", "y"]) == ["x", "y"]
    assert cloze_candidates(Example("q", "B", meta={"choices": CHOICES})) == CHOICES  # texts, never letters
    with pytest.raises(EvalDataError, match="needs 'choices'"):
        cloze_candidates(Example("q", "x", meta={"id": "i"}))


def test_acc_norm_is_per_character() -> None:
    """A short option wins on the summed log-probability, a long one per character: acc and acc_norm
    disagree, as lm-eval's do."""
    logprobs = [{"a": -2.0, "a very long answer": -6.0}, {"yes": -1.0, "no": -3.0}]
    assert [max(lp, key=lp.get) for lp in logprobs] == ["a", "yes"]
    assert best_per_character(logprobs) == ["a very long answer", "yes"]  # -6/18 > -2/1; -1/3 > -3/2
    examples = [
        Example("q", "B", meta={"choices": ["x", "y"]}),
        Example("q", "y", meta={"choices": ["x", "y"]}),
    ]
    assert scored_answers("mmau", examples, ["y", "y"]) == ["B", "y"]  # letter targets are scored as letters
    assert scored_answers("voicebench", examples, ["x", "y"]) == ["A", "B"]


def test_eval_acc_and_acc_norm_disagree_by_construction(
    tiny_checkpoint: Path, spoken_questions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Log-probabilities built so that on every item the sum and the per-character mean pick different
    options: the target and the option whose length differs most from it get nearly the same
    log-probability per character, the target's a little better when it is the longer, a little worse
    when it is the shorter. accuracy counts the items whose target is the shorter, accuracy_norm the others."""
    import moeaudio.eval.evaluate as evaluate

    shorter_target: dict[str, bool] = {}

    def fake_rank_all(model, examples, candidates, batch_size, progress, shots=(), end_of_turn=True):
        assert not end_of_turn  # cloze scores the option's tokens alone
        logprobs = []
        for e, cands in zip(examples, candidates, strict=True):
            rival = max((c for c in cands if c != e.target), key=lambda c, t=e.target: abs(len(c) - len(t)))
            shorter_target[e.meta["id"]] = len(e.target) < len(rival)
            per_char = {e.target: 1.0, rival: 0.99 if len(rival) > len(e.target) else 1.01}
            logprobs.append({c: -per_char.get(c, 100.0) * len(c) for c in cands})
        return [max(lp, key=lp.get) for lp in logprobs], logprobs, 1.0

    monkeypatch.setattr(evaluate, "rank_all", fake_rank_all)
    result = run_eval(
        "spoken_qa", tiny_checkpoint, spoken_questions, tmp_path / "qa.json", scoring="cloze", progress=False
    )
    rows = _rows(result["files"]["predictions"])
    for r in rows:  # the construction held: sum and per-character pick different options on every item
        assert max(r["logprobs"], key=r["logprobs"].get) != best_per_character([r["logprobs"]])[0]
    shorter = sum(shorter_target[r["id"]] for r in rows) / len(rows)
    assert 0 < shorter < 1  # both cases occur in these six items
    assert result["metrics"]["accuracy"] == pytest.approx(shorter)
    assert result["metrics"]["accuracy_norm"] == pytest.approx(1 - shorter)
    assert result["modality_gap"] == {"accuracy": 0.0, "accuracy_norm": 0.0}  # the same numbers in writing


# ------------------------------------------------------------------------------- the numbers, by hand


def _chat_ids(model, instruction: str) -> list[int]:
    """The prompt's token ids as the tokenizer's chat template renders one user turn (or plain text)."""
    tok = model.tokenizer
    system = model.recipe.llm.system_prompt
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": instruction})
    if tok.chat_template:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"{m['content']}\n" for m in messages)
    return tok(text, add_special_tokens=False).input_ids


def _continuation_logprob(model, prefix: torch.Tensor, option: str) -> float:
    """Sum of log-softmax over ``option``'s tokens after the prefix embeddings (1, L, d)."""
    ids = model.tokenizer(option, add_special_tokens=False).input_ids
    option_embeds = model.llm.get_input_embeddings()(torch.tensor([ids]))
    embeds = torch.cat([prefix, option_embeds], dim=1)
    logits = model.llm(inputs_embeds=embeds).logits[0].float()  # (L + n, vocab)
    logp = torch.log_softmax(logits[prefix.shape[1] - 1 : -1], dim=-1)  # positions predicting the option
    return float(logp[torch.arange(len(ids)), torch.tensor(ids)].sum())


def test_cloze_equals_summed_token_logprobs_by_hand(
    tiny_checkpoint: Path, spoken_questions: Path, tmp_path: Path
) -> None:
    result = run_eval(
        "spoken_qa", tiny_checkpoint, spoken_questions, tmp_path / "qa.json", scoring="cloze", progress=False
    )
    assert result["scoring"] == "cloze" and result["decoding"]["strategy"] == "cloze"
    text_path = result["files"]["text_result"]
    assert Path(text_path).name == "qa.text.json"
    text = json.loads(Path(text_path).read_text())
    heard, read = _rows(result["files"]["predictions"]), _rows(text["files"]["predictions"])
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32).eval()
    embed = model.llm.get_input_embeddings()
    with torch.no_grad():
        # in writing: the question alone, each option after it, through the LLM alone
        for row in read:
            item = next(r for r in _rows(spoken_questions) if r["id"] == row["id"])
            assert row["instruction"] == item["meta"]["spoken_text"]  # the question, no options
            prefix = embed(torch.tensor([_chat_ids(model, row["instruction"])]))
            for option in item["choices"]:
                assert row["logprobs"][option] == pytest.approx(
                    _continuation_logprob(model, prefix, option), abs=1e-4
                )
        # heard: the spoken clip's adapter outputs in the prompt, the same options after it
        examples = {e.meta["id"]: e for e in load_manifest_examples(model, spoken_questions)}
        for row in heard:
            assert row["instruction"] == "Answer the spoken question."
            e = examples[row["id"]]
            batch = Collator(model, for_generation=True)(
                [Example(row["instruction"], None, e.wave, e.states, e.meta)]
            )
            prefix, _ = model.embed(batch)  # (1, L, d): one row, no padding
            for option in row["choices"]:
                assert option not in row["instruction"]
                assert row["logprobs"][option] == pytest.approx(
                    _continuation_logprob(model, prefix, option), abs=1e-4
                )
    for rows, res in ((heard, result), (read, text)):
        assert all(r["prediction"] == max(r["logprobs"], key=r["logprobs"].get) for r in rows)
        assert res["metrics"]["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
        norm = sum(best_per_character([r["logprobs"]])[0] == r["target"] for r in rows) / len(rows)
        assert res["metrics"]["accuracy_norm"] == pytest.approx(norm)
    # the gap: audio minus text, the same items, the same scoring
    assert [r["id"] for r in heard] == [r["id"] for r in read]
    assert text["modality"] == "text" and text["scoring"] == "cloze"
    for metric in ("accuracy", "accuracy_norm"):
        assert result["text_metrics"][metric] == text["metrics"][metric]
        gap = result["metrics"][metric] - text["metrics"][metric]
        assert result["modality_gap"][metric] == pytest.approx(gap)
    assert json.loads(Path(result["output"]).read_text())["modality_gap"] == result["modality_gap"]


def test_text_scoring_does_not_use_the_adapter(
    tiny_checkpoint: Path, spoken_questions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moeaudio.model.audio_llm import AudioLLM

    def no_adapter(*args, **kwargs):
        raise AssertionError("the adapter ran on a text-only prompt")

    monkeypatch.setattr(AudioLLM, "adapt", no_adapter)
    result = run_eval(
        "spoken_qa",
        tiny_checkpoint,
        spoken_questions,
        tmp_path / "t.json",
        modality="text",
        scoring="cloze",
        progress=False,
    )
    assert result["n"] == 6 and "modality_gap" not in result  # text is the reference side: no gap of its own


def test_gap_in_every_spoken_question_result_and_cloze_for_classification(
    tiny_checkpoint: Path, spoken_questions: Path, tmp_path: Path
) -> None:
    for scoring in ("generate", "loglik"):
        result = run_eval(
            "spoken_qa",
            tiny_checkpoint,
            spoken_questions,
            tmp_path / f"{scoring}.json",
            scoring=scoring,
            max_items=3,
            max_new_tokens=4,
            progress=False,
        )
        text = json.loads(Path(result["files"]["text_result"]).read_text())
        assert text["n"] == result["n"] == 3 and text["scoring"] == scoring
        gap = result["metrics"]["accuracy"] - text["metrics"]["accuracy"]
        assert result["modality_gap"]["accuracy"] == pytest.approx(gap)
    chord = run_eval("chord", tiny_checkpoint, max_items=4, scoring="cloze", progress=False)
    assert Path(chord["output"]).name == "chord.cloze.json" and "modality_gap" not in chord
    rows = _rows(chord["files"]["predictions"])
    assert all(r["instruction"] == "What is the quality of the chord?" for r in rows)
    assert all(set(r["logprobs"]) == set(chord["labels"]) for r in rows)


def test_voicebench_cloze_is_scored_by_letter(
    tiny_checkpoint: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    """VoiceBench's rule reads letters: the ranked option text is scored as its letter (never a random
    fallback), and in writing the question comes without its options."""
    rows = [r for r in _rows(tiny_corpus / "test.jsonl") if r["task"] == "mcq"][:3]
    items = []
    for i, r in enumerate(rows):  # options spoken in the audio; the question in writing beside them
        meta = {**r["meta"], "subset": "mmsu", "choices_in_audio": True}
        meta["text_prompt"] = r["instruction"].rsplit("\n", 1)[0]  # question, then the lettered options
        items.append(
            {**r, "audio": str(tiny_corpus / r["audio"]), "id": f"voicebench/mmsu/x-{i}", "meta": meta}
        )
    manifest = tmp_path / "mmsu.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in items))
    result = run_eval(
        "mmsu", tiny_checkpoint, manifest, tmp_path / "mmsu.json", scoring="cloze", progress=False
    )
    text = json.loads(Path(result["files"]["text_result"]).read_text())
    for res in (result, text):
        assert res["scorer"] == "voicebench" and res["metrics"]["fail_rate"] == 0.0
        scored = _rows(res["files"]["predictions"])
        picked = [max(r["logprobs"], key=r["logprobs"].get) for r in scored]
        letters = ["ABCD"[r["choices"].index(p)] for r, p in zip(scored, picked, strict=True)]
        assert [r["answer"] for r in scored] == letters
        right = sum(p == r["target"] for r, p in zip(scored, picked, strict=True)) / len(scored)
        assert res["metrics"]["accuracy"] == pytest.approx(right)
    for r, item in zip(_rows(text["files"]["predictions"]), items, strict=True):
        assert r["instruction"] == item["meta"]["text_prompt"].split("\nA. ")[0]  # the question alone
    assert result["modality_gap"]["accuracy"] == pytest.approx(
        result["metrics"]["accuracy"] - text["metrics"]["accuracy"]
    )
