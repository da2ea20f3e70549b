"""Metric tests against hand-computed values (see the arithmetic in each comment)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from moeaudio.eval.metrics import (
    OTHER_LABEL,
    caption_metrics,
    cider_d,
    classification_metrics,
    match_label,
    mmau_is_correct,
    multiple_choice_metrics,
    normalize_caption,
    plot_confusion,
    summarize_numbers,
    wer_cer,
)
from moeaudio.eval.normalize import (
    load_english_spelling_mapping,
    normalize_basic,
    normalize_english,
    normalizer_for,
)

# ------------------------------------------------------------------------------------ normalise


def test_normalize_english_numbers_and_contractions():
    assert normalize_english("Mr. Smith paid twenty-five dollars!") == "mister smith paid $25"
    assert normalize_english("I'm gonna   say: UM, it's fine") == "i am going to say it is fine"


def test_normalize_basic_strips_punctuation_brackets_and_case():
    assert normalize_basic("Hola, ¿qué tal? [ruido] (risas)  Ça va") == "hola qué tal ça va"


def test_normalizer_for_language_codes():
    assert normalizer_for("en") is normalize_english
    assert normalizer_for("en-US") is normalize_english
    assert normalizer_for("English") is normalize_english
    assert normalizer_for("de") is normalize_basic
    assert normalizer_for(None) is normalize_basic


def test_spelling_mapping_from_explicit_path(tmp_path):
    path = tmp_path / "normalizer.json"
    path.write_text(json.dumps({"colour": "color"}))
    mapping, source = load_english_spelling_mapping(str(path))
    assert mapping == {"colour": "color"}
    assert source == str(path)


def test_british_and_american_spellings_score_the_same():
    """Whisper's spelling map ships with a dependency (whisper-normalizer), so it is always found offline
    and British spellings are no longer errors against American references."""
    mapping, source = load_english_spelling_mapping()
    assert source != "none" and len(mapping) > 1000, source
    assert normalize_english("The colour of the theatre") == normalize_english("The color of the theater")
    assert (
        normalize_english("I apologise, I recognised the organisation")
        == "i apologize i recognized the organization"
    )
    assert wer_cer(["the colour is grey"], ["the color is gray"], normalizer=normalize_english)["wer"] == 0.0


# ------------------------------------------------------------------------------------------ ASR


def test_wer_cer_corpus_level_with_empty_hypothesis():
    # pair 1: "the cat sat" -> "the cat sit on": 1 sub (sat/sit) + 1 ins (on), 2 hits
    # pair 2: "hello world" -> "": 2 deletions.  WER = (1 + 1 + 2) / 5 = 0.8
    # chars: pair 1 = a->i + " on" = 4 edits / 11; pair 2 = 11 deletions / 11 -> CER = 15 / 22
    out = wer_cer(["the cat sat", "hello world"], ["the cat sit on", ""], normalizer=None)
    assert out["wer"] == pytest.approx(0.8)
    assert (out["substitutions"], out["deletions"], out["insertions"], out["hits"]) == (1, 2, 1, 2)
    assert out["ref_words"] == 5
    assert out["cer"] == pytest.approx(15 / 22)
    assert (out["char_substitutions"], out["char_deletions"], out["char_insertions"]) == (1, 11, 3)
    assert out["num_scored"] == 2 and out["num_skipped_empty_reference"] == 0


def test_wer_cer_none_hypothesis_is_all_deletions():
    out = wer_cer(["a b c"], [None], normalizer=None)
    assert out["wer"] == 1.0 and out["deletions"] == 3


def test_wer_cer_skips_references_empty_after_normalisation():
    out = wer_cer(["", "[noise]", "a b"], ["x", "y", "a b"], normalizer=normalize_basic)
    assert out["num_skipped_empty_reference"] == 2
    assert out["num_scored"] == 1
    assert out["wer"] == 0.0 and out["cer"] == 0.0


def test_wer_cer_all_skipped_gives_nan():
    out = wer_cer([""], ["x"])
    assert math.isnan(out["wer"]) and math.isnan(out["cer"])
    assert out["num_scored"] == 0 and out["num_skipped_empty_reference"] == 1


def test_wer_cer_english_normaliser_default():
    out = wer_cer(["Mr. Smith has twenty-five apples."], ["mister smith has 25 apples"])
    assert out["wer"] == 0.0


def test_wer_cer_length_mismatch():
    with pytest.raises(ValueError):
        wer_cer(["a"], ["a", "b"])


# ------------------------------------------------------------------------------- classification


def test_classification_metrics_hand_computed():
    # rows (true) x cols (pred a, b, c, <other>):
    #   a: [2, 1, 0, 0]   b: [0, 1, 0, 1] (None)   c: [0, 0, 0, 1] ("zzz")
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", None, "zzz"]
    out = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert out["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1]]
    assert out["confusion_columns"] == ["a", "b", "c", OTHER_LABEL]
    assert out["accuracy"] == pytest.approx(3 / 6)
    # recalls 2/3, 1/2, 0 -> UAR 7/18
    assert out["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 0.0})
    assert out["uar"] == pytest.approx(7 / 18)
    # precision a=2/2, b=1/2, c=0 (never predicted); F1 a = 2*1*(2/3)/(5/3) = 0.8, b = 0.5, c = 0
    assert out["per_class"]["a"]["f1"] == pytest.approx(0.8)
    assert out["macro_f1"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert out["num_other"] == 2 and out["num_items"] == 6


def test_classification_absent_label_does_not_change_averages():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", None, "zzz"]
    out = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert out["uar"] == pytest.approx(7 / 18)
    assert out["macro_f1"] == pytest.approx(1.3 / 3)
    assert "d" not in out["per_class_recall"]
    assert out["per_class"]["d"]["support"] == 0
    assert len(out["confusion"]) == 4 and len(out["confusion"][0]) == 5


def test_classification_spurious_prediction_counts_in_macro_f1():
    # "b" never true but predicted once: F1(a) = 2*(1)(1/2)/(3/2) = 2/3, F1(b) = 0 -> macro 1/3; UAR = 1/2
    out = classification_metrics(["a", "a"], ["a", "b"], ["a", "b"])
    assert out["uar"] == pytest.approx(0.5)
    assert out["macro_f1"] == pytest.approx(1 / 3)


def test_classification_default_labels_and_errors():
    out = classification_metrics(["x", "y"], ["y", "y"])
    assert out["labels"] == ["x", "y"] and out["accuracy"] == 0.5
    with pytest.raises(ValueError):
        classification_metrics(["a", "q"], ["a", "a"], ["a"])
    with pytest.raises(ValueError):
        classification_metrics(["a"], ["a", "a"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Happy.", "happy"),
        ("  NEUTRAL ", "neutral"),
        ("The speaker sounds sad, not happy.", "sad"),
        ("I would say happy rather than sad", "happy"),
        ("unhappy", None),
        ("", None),
        (None, None),
        ("I don't know", None),
    ],
)
def test_match_label_emotions(text, expected):
    assert match_label(text, ["happy", "sad", "neutral"]) == expected


def test_match_label_prefers_longest_at_same_position_and_normalises_labels():
    assert match_label("Dog barking loudly", ["dog", "dog barking"]) == "dog barking"
    assert match_label("a dog, then dog barking", ["dog", "dog barking"]) == "dog"
    assert match_label("I hear a car horn.", ["car_horn", "siren"]) == "car_horn"


def test_plot_confusion_writes_png(tmp_path):
    out = classification_metrics(["a", "b"], ["a", None], ["a", "b"])
    path = plot_confusion(out["confusion"], out["labels"], tmp_path / "sub" / "cm.png", normalize_rows=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_confusion([[1, 2, 3, 4]], ["a"], tmp_path / "bad.png")


# ------------------------------------------------------------------------------ multiple choice

DOG_CHOICES = ["Dog barking", "Dog growling", "Cat meowing", "Bird chirping"]


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("Dog barking", True),
        ("dog BARKING.", True),  # case and punctuation ignored
        ("The sound is a dog barking in the distance", True),  # extra non-choice words are fine
        ("barking dog", True),  # token sets: word order is ignored by the official rule
        ("dog", False),  # "barking" missing; "dog" alone is shared with a distractor
        ("Dog growling", False),
        ("Dog barking or dog growling", False),  # names two choices
        ("It is a dog barking, not a cat meowing", False),  # any distractor-only word fails
        ("", False),
        ("  ...  ", False),  # no tokens
        (None, False),
        ("(A)", False),  # no letter mapping in the official script
    ],
)
def test_mmau_dog_barking(prediction, expected):
    assert mmau_is_correct(prediction, "Dog barking", DOG_CHOICES) is expected


def test_mmau_answer_articles_must_appear():
    # Real MMAU item: answer tokens {a, child}; "child" alone lacks "a" and is wrong under the rule.
    choices = ["A child", "A woman", "An adult man", "A teenager"]
    assert mmau_is_correct("It is a child.", "A child", choices) is True
    assert mmau_is_correct("child", "A child", choices) is False
    assert mmau_is_correct("a man", "A child", choices) is False


def test_mmau_man_vs_woman_and_numbers_and_duplicates():
    assert mmau_is_correct("woman", "Man", ["Man", "Woman"]) is False  # \b\w+\b: "woman" != "man"
    assert mmau_is_correct("The speaker is a man", "Man", ["Man", "Woman"]) is True
    assert mmau_is_correct("3 times", "3", ["1", "2", "3", "4"]) is True
    assert mmau_is_correct("3 or 4", "3", ["1", "2", "3", "4"]) is False
    # a distractor with the same token set as the answer is ignored
    assert mmau_is_correct("Man", "man", ["man", "Man", "Woman"]) is True


def test_multiple_choice_metrics_breakdowns():
    choices = ["Man", "Woman"]
    items = [
        {"prediction": "man", "answer": "Man", "choices": choices, "domain": "speech", "difficulty": "easy"},
        {
            "prediction": "woman",
            "answer": "Man",
            "choices": choices,
            "domain": "speech",
            "difficulty": "hard",
        },
        {"prediction": None, "answer": "Man", "choices": choices, "task": "sound", "difficulty": "easy"},
        {
            "prediction": "dog barking",
            "answer": "Dog barking",
            "choices": DOG_CHOICES,
            "task": "sound",
            "category": "Reasoning",
        },
    ]
    out = multiple_choice_metrics(items)
    assert out["accuracy"] == pytest.approx(2 / 4)
    assert (out["correct"], out["total"], out["no_prediction"]) == (2, 4, 1)
    assert out["by_domain"] == {
        "sound": {"accuracy": 0.5, "correct": 1, "total": 2},
        "speech": {"accuracy": 0.5, "correct": 1, "total": 2},
    }
    assert out["by_difficulty"] == {
        "easy": {"accuracy": 0.5, "correct": 1, "total": 2},
        "hard": {"accuracy": 0.0, "correct": 0, "total": 1},
    }
    assert out["by_category"] == {"Reasoning": {"accuracy": 1.0, "correct": 1, "total": 1}}


def test_multiple_choice_metrics_empty():
    out = multiple_choice_metrics([])
    assert math.isnan(out["accuracy"]) and out["total"] == 0 and out["by_domain"] == {}


# ---------------------------------------------------------------------------------- captioning


def test_normalize_caption():
    assert normalize_caption("A dog barks, then -- RAIN!") == "a dog barks then rain"


def test_caption_metrics_identical():
    # CIDEr-D by hand: "a" is in both reference sets -> idf 0; every other n-gram idf = log 2.
    # item 1 (3 words): cosine 1 for n = 1..3, 0 for n = 4 -> 10 * 3/4 = 7.5; item 2 (5 words): 10.
    out = caption_metrics(
        [["A dog barks."], ["Rain falls on a roof"]], ["a dog barks", "rain falls on a roof"]
    )
    assert out["bleu4"] == pytest.approx(100.0)
    assert out["rouge_l"] == pytest.approx(1.0)
    assert out["cider_d"] == pytest.approx((7.5 + 10.0) / 2)
    assert out["num_items"] == 2


def test_caption_metrics_partial_match_by_hand():
    # hyp "the cat sat on the mat" vs ref "the cat sat on a mat":
    # clipped precisions 5/6, 3/5, 2/4, 1/3; equal lengths -> BP 1; BLEU = 100 * (1/12) ** 0.25
    # LCS = "the cat sat on mat" = 5 -> P = R = F = 5/6.  Single item -> all idf 0 -> CIDEr-D 0.
    out = caption_metrics([["The cat sat on a mat."]], ["the cat sat on the mat"])
    assert out["bleu4"] == pytest.approx(100 * (1 / 12) ** 0.25)
    assert out["rouge_l"] == pytest.approx(5 / 6)
    assert out["cider_d"] == 0.0


def test_caption_metrics_variable_reference_counts():
    out = caption_metrics([["a b c d e", "zzz"], ["f g h i j"]], ["a b c d e", "f g h i j"])
    assert out["bleu4"] == pytest.approx(100.0)
    # ROUGE-L takes the best reference per item
    assert out["rouge_l"] == pytest.approx(1.0)


def test_caption_metrics_requires_references():
    with pytest.raises(ValueError):
        caption_metrics([["", "  "]], ["a dog"])
    with pytest.raises(ValueError):
        caption_metrics([["a"]], ["a", "b"])


def test_cider_d_partial_by_hand():
    # item 1 identical (3 words) -> 7.5 as above.
    # item 2 hyp "a cat" vs ref "a cat meows": n=1 cos = ln2^2 / (ln2 * ln2*sqrt2) = 1/sqrt2, n=2 the same,
    # n=3,4 = 0; bigram lengths 1 vs 2 -> penalty exp(-1/72).  score = 10 * (2/sqrt2)/4 * exp(-1/72)
    mean, scores = cider_d([["a dog barks"], ["a cat meows"]], ["a dog barks", "a cat"])
    item2 = 10 * (math.sqrt(2) / 4) * math.exp(-1 / 72)
    assert scores == pytest.approx([7.5, item2])
    assert mean == pytest.approx((7.5 + item2) / 2)


def test_cider_d_matches_pycocoevalcap():
    from pycocoevalcap.cider import cider as cider_mod  # the dev extra installs it: this must not skip

    refs = [
        ["a dog barks loudly", "a dog is barking", "dog barks twice"],
        ["rain falls on a tin roof", "heavy rain on a roof"],
        ["a man speaks while a car passes", "a car passes by as a man talks"],
        ["birds chirp", "birds are chirping in the trees", "a bird sings"],
        ["silence"],
    ]
    hyps = ["a dog barks", "rain on a roof", "a man talks and a car passes by", "birds chirping", ""]
    ref_mean, ref_scores = cider_mod.Cider().compute_score(
        {i: r for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}
    )
    mean, scores = cider_d(refs, hyps)
    assert mean == pytest.approx(float(ref_mean))
    assert scores == pytest.approx(list(ref_scores))


def test_multiple_choice_breakdown_flattens_list_labels():
    """Items from a manifest prepared before list-valued labels were flattened group with the others."""
    items = [
        {"prediction": "dog", "answer": "dog", "choices": ["dog", "cat"], "category": "Reasoning"},
        {"prediction": "cat", "answer": "dog", "choices": ["dog", "cat"], "category": ["Reasoning"]},
        {
            "prediction": "dog",
            "answer": "dog",
            "choices": ["dog", "cat"],
            "category": ["Perception", "Reasoning"],
        },
    ]
    by_category = multiple_choice_metrics(items)["by_category"]
    assert by_category == {
        "Reasoning": {"accuracy": 0.5, "correct": 1, "total": 2},
        "Perception; Reasoning": {"accuracy": 1.0, "correct": 1, "total": 1},
    }


def test_scalar_label():
    from moeaudio.data.tasks import scalar_label

    assert scalar_label(["Reasoning"]) == "Reasoning"
    assert scalar_label([" a ", ["b", "a"], ""]) == "a; b"
    assert scalar_label([]) is None and scalar_label("  ") is None and scalar_label(None) is None
    assert scalar_label(" x ") == "x" and scalar_label(3) == 3


# ------------------------------------------------------------------------------------- summary


def test_summarize_numbers_flattens_numbers_only():
    metrics = {
        "accuracy": 0.5,
        "total": 4,
        "flag": True,
        "name": "x",
        "none": None,
        "confusion": [[1, 0], [0, 1]],
        "by_domain": {"sound": {"accuracy": np.float64(0.25), "total": np.int64(2)}},
    }
    assert summarize_numbers(metrics) == {
        "accuracy": 0.5,
        "total": 4.0,
        "by_domain.sound.accuracy": 0.25,
        "by_domain.sound.total": 2.0,
    }
    flat = summarize_numbers(classification_metrics(["a", "b"], ["a", "a"]))
    assert flat["uar"] == 0.5 and flat["per_class.a.precision"] == 0.5
    assert all(isinstance(v, float) for v in flat.values())
