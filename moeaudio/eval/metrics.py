"""Scoring functions for ASR, classification, multiple-choice QA and captioning.

Everything here is a pure function over strings and label lists (no model code), so evaluation
results can be recomputed from saved predictions. Library implementations are used where a
standard one exists (jiwer, sacrebleu, rouge-score) so numbers match what other papers report;
heavy/optional imports (sacrebleu, rouge-score, matplotlib) are done lazily inside the functions.

Scales: WER/CER, accuracy, UAR, F1 and ROUGE-L are fractions in [0, 1]; BLEU is sacrebleu's 0-100;
CIDEr-D is on the usual coco-caption scale (x10, so a perfect match on a diverse corpus is ~10).
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jiwer

from moeaudio.data.tasks import scalar_label
from moeaudio.eval.normalize import normalize_english
from moeaudio.io_utils import save_figure

__all__ = [
    "OTHER_LABEL",
    "caption_metrics",
    "cider_d",
    "classification_metrics",
    "match_label",
    "mmau_is_correct",
    "multiple_choice_metrics",
    "normalize_caption",
    "plot_confusion",
    "summarize_numbers",
    "wer_cer",
]

#: Confusion-matrix column for predictions that are not in the label set (including unparsable output).
OTHER_LABEL = "<other>"

_NAN = float("nan")


# --------------------------------------------------------------------------------------------- ASR


def wer_cer(
    references: Sequence[str],
    hypotheses: Sequence[str | None],
    normalizer: Callable[[str], str] | None = normalize_english,
) -> dict[str, Any]:
    """Corpus-level WER and CER (total edits / total reference length, not a mean of per-utterance rates).

    Both sides go through ``normalizer`` first (``None`` = compare raw text). A ``None`` or empty
    hypothesis scores as all deletions. A reference that is empty after normalisation has no defined
    error rate, so that pair is skipped and counted in ``num_skipped_empty_reference``.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    norm = normalizer or (lambda s: s)
    refs: list[str] = []
    hyps: list[str] = []
    skipped = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_n = " ".join(norm(ref or "").split())
        if not ref_n:
            skipped += 1
            continue
        refs.append(ref_n)
        hyps.append(" ".join(norm(hyp or "").split()))

    out: dict[str, Any] = {
        "wer": _NAN,
        "cer": _NAN,
        "substitutions": 0,
        "deletions": 0,
        "insertions": 0,
        "hits": 0,
        "ref_words": 0,
        "char_substitutions": 0,
        "char_deletions": 0,
        "char_insertions": 0,
        "ref_chars": 0,
        "num_scored": len(refs),
        "num_skipped_empty_reference": skipped,
    }
    if not refs:
        return out
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    out.update(
        wer=float(words.wer),
        cer=float(chars.cer),
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        hits=words.hits,
        ref_words=words.substitutions + words.deletions + words.hits,
        char_substitutions=chars.substitutions,
        char_deletions=chars.deletions,
        char_insertions=chars.insertions,
        ref_chars=chars.substitutions + chars.deletions + chars.hits,
    )
    return out


# -------------------------------------------------------------------------------- classification


def _label_text(text: str) -> str:
    """Lower-case, turn punctuation/underscores into spaces, collapse spaces (for label matching only)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\W_]+", " ", text)
    return " ".join(text.split())


def match_label(prediction_text: str | None, labels: Sequence[str]) -> str | None:
    """Map free generated text to one of ``labels``; ``None`` when no label is named.

    An LLM answers "The speaker sounds happy." rather than "happy", so: (1) exact match after
    normalisation (case/punctuation-insensitive); else (2) the label occurring as a whole word
    sequence, taking the earliest occurrence and, among labels starting at the same word, the longest
    (so "dog barking" wins over "dog").
    """
    if not prediction_text:
        return None
    text = _label_text(prediction_text)
    if not text:
        return None
    normed = [(label, _label_text(label)) for label in labels]
    for label, norm in normed:
        if norm and norm == text:
            return label
    padded = f" {text} "
    best: tuple[int, int, str] | None = None  # (start, -length, label)
    for label, norm in normed:
        if not norm:
            continue
        start = padded.find(f" {norm} ")
        if start < 0:
            continue
        key = (start, -len(norm), label)
        if best is None or key[:2] < best[:2]:
            best = key
    return best[2] if best else None


def classification_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1, per-class scores and a confusion matrix.

    ``labels`` fixes the class set and matrix order; default is the sorted set of ``y_true``. A
    prediction outside the set (or ``None``, e.g. from :func:`match_label`) lands in the extra last
    column :data:`OTHER_LABEL` and is always wrong. UAR (macro recall) averages over classes present in
    ``y_true`` because recall is undefined without support; macro-F1 averages over classes that are
    true or predicted at least once (sklearn's default set), so spurious predictions of an absent
    class are penalised. Undefined precision/recall/F1 are reported as 0 (sklearn ``zero_division=0``).
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    label_list = list(labels) if labels is not None else sorted(set(y_true))
    index = {label: i for i, label in enumerate(label_list)}
    if len(index) != len(label_list):
        raise ValueError("labels contain duplicates")
    unknown = sorted(set(y_true) - set(index))
    if unknown:
        raise ValueError(f"true labels not in the label set: {unknown}")

    n_labels = len(label_list)
    matrix = [[0] * (n_labels + 1) for _ in range(n_labels)]
    for true, pred in zip(y_true, y_pred, strict=True):
        col = index.get(pred, n_labels) if pred is not None else n_labels
        matrix[index[true]][col] += 1

    total = len(y_true)
    correct = sum(matrix[i][i] for i in range(n_labels))
    per_class: dict[str, dict[str, float]] = {}
    recalls: list[float] = []
    f1s: list[float] = []
    for i, label in enumerate(label_list):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(matrix[r][i] for r in range(n_labels))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "predicted": predicted,
        }
        if support:
            recalls.append(recall)
        if support or predicted:
            f1s.append(f1)

    return {
        "accuracy": correct / total if total else _NAN,
        "uar": sum(recalls) / len(recalls) if recalls else _NAN,
        "macro_f1": sum(f1s) / len(f1s) if f1s else _NAN,
        "num_items": total,
        "num_other": sum(row[n_labels] for row in matrix),
        "per_class_recall": {
            label: per_class[label]["recall"] for label in label_list if per_class[label]["support"]
        },
        "per_class": per_class,
        "labels": label_list,
        "confusion_columns": [*label_list, OTHER_LABEL],
        "confusion": matrix,
    }


def plot_confusion(
    matrix: Sequence[Sequence[float]],
    labels: Sequence[str],
    path: str | Path,
    *,
    normalize_rows: bool = False,
    title: str | None = None,
) -> Path:
    """Write the confusion matrix as a PNG (rows = true, columns = predicted).

    If ``matrix`` has one more column than ``labels`` it is labelled :data:`OTHER_LABEL`.
    ``normalize_rows`` colours by per-class recall (counts are still printed). Uses matplotlib's
    object API with the Agg canvas so it never touches pyplot's global backend or needs a display.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=float)
    n_rows = len(labels)
    if counts.ndim != 2 or counts.shape[0] != n_rows or counts.shape[1] not in (n_rows, n_rows + 1):
        raise ValueError(f"matrix shape {counts.shape} does not fit {n_rows} labels")
    columns = list(labels) + ([OTHER_LABEL] if counts.shape[1] == n_rows + 1 else [])
    shown = counts
    if normalize_rows:
        sums = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)

    size = max(4.0, 0.5 * len(columns) + 2.0)
    fig = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shown, cmap="Blues", aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(columns)), labels=columns, rotation=45, ha="right")
    ax.set_yticks(range(n_rows), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if len(columns) <= 30:
        vmax = float(shown.max()) if shown.size else 0.0
        for r in range(n_rows):
            for c in range(len(columns)):
                color = "white" if vmax and shown[r, c] > vmax / 2 else "black"
                ax.text(c, r, f"{counts[r, c]:g}", ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, tight=False)


# ------------------------------------------------------------------------- multiple choice (MMAU)

_MMAU_WORD = re.compile(r"\b\w+\b")


def _mmau_tokens(text: object) -> set[str]:
    return set(_MMAU_WORD.findall(str(text).lower()))


def mmau_is_correct(prediction: str | None, answer: str, choices: Sequence[str]) -> bool:
    """MMAU's official ``string_match`` rule (Sakshi113/MMAU ``evaluation.py``), reproduced exactly.

    Tokens are the lower-cased ``\\b\\w+\\b`` words of each string, as sets. Correct iff the prediction
    has at least one token, contains every answer token, and contains none of the distractor tokens
    that are not answer tokens (a distractor whose token set equals the answer's is ignored). The
    official script has no letter handling: "(B)" is just the token "b", so models must answer with
    the choice text. ``None`` is treated as an empty (wrong) prediction.
    """
    if prediction is None:
        return False
    prediction_tokens = _mmau_tokens(prediction)
    answer_tokens = _mmau_tokens(answer)
    if not prediction_tokens:
        return False
    incorrect_tokens: set[str] = set()
    for choice in choices:
        choice_tokens = _mmau_tokens(choice)
        if choice_tokens != answer_tokens:
            incorrect_tokens |= choice_tokens - answer_tokens
    return answer_tokens.issubset(prediction_tokens) and prediction_tokens.isdisjoint(incorrect_tokens)


# group name in the output -> keys looked up on each item, first present wins ("task" is MMAU's name)
_MC_GROUPS = {
    "by_domain": ("domain", "task"),
    "by_category": ("category",),
    "by_difficulty": ("difficulty",),
}


def multiple_choice_metrics(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy of multiple-choice answers under :func:`mmau_is_correct`, overall and per group.

    Each item needs ``prediction``, ``answer`` and ``choices``; optional ``domain`` (or MMAU's
    ``task``), ``category`` and ``difficulty`` give the breakdowns, each ``{value: {accuracy, correct,
    total}}``. Unlike the official script, which silently drops items without a prediction, a missing
    or ``None`` prediction counts as wrong (reported in ``no_prediction``) so the total stays honest.
    """
    correct = 0
    no_prediction = 0
    groups: dict[str, dict[str, list[int]]] = {name: {} for name in _MC_GROUPS}
    for item in items:
        prediction = item.get("prediction")
        if prediction is None:
            no_prediction += 1
        ok = mmau_is_correct(prediction, item["answer"], item["choices"])
        correct += ok
        for name, keys in _MC_GROUPS.items():
            # scalar_label: a manifest prepared before list-valued labels were flattened still groups right
            value = next((scalar_label(item[k]) for k in keys if scalar_label(item.get(k)) is not None), None)
            if value is None:
                continue
            tally = groups[name].setdefault(str(value), [0, 0])
            tally[0] += ok
            tally[1] += 1

    total = len(items)
    result: dict[str, Any] = {
        "accuracy": correct / total if total else _NAN,
        "correct": correct,
        "total": total,
        "no_prediction": no_prediction,
    }
    for name, tallies in groups.items():
        result[name] = {
            value: {"accuracy": c / t, "correct": c, "total": t} for value, (c, t) in sorted(tallies.items())
        }
    return result


# ------------------------------------------------------------------------------------ captioning


def normalize_caption(text: str) -> str:
    """Lower-case and strip punctuation, applied to references and hypotheses before every caption metric.

    coco-caption/DCASE tools use the Java PTB tokenizer for this; this pure-Python stand-in gives the
    same tokens for ordinary captions, so absolute scores may differ slightly on odd punctuation.
    """
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def _ngram_counts(words: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def cider_d(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[str],
    n: int = 4,
    sigma: float = 6.0,
) -> tuple[float, list[float]]:
    """CIDEr-D, a line-by-line port of pycocoevalcap's ``CiderScorer`` (Vedantam et al. 2015).

    Inputs are whitespace-tokenised strings (normalise first). TF-IDF weights n-grams (1..n) with
    document frequencies taken over this corpus's reference sets, so the score depends on the corpus
    and is 0 for a single item (every n-gram has idf 0). Per n: clipped cosine similarity times a
    Gaussian length penalty (``sigma``); averaged over n and references, times 10. As in the original,
    the "length" in the penalty is the bigram count. Returns ``(corpus mean, per-item scores)``.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference sets but {len(hypotheses)} hypotheses")
    if not hypotheses:
        return _NAN, []
    crefs = [[_ngram_counts(ref.split(), n) for ref in refs] for refs in references]
    ctest = [_ngram_counts(hyp.split(), n) for hyp in hypotheses]
    doc_freq: Counter[tuple[str, ...]] = Counter()
    for refs in crefs:
        doc_freq.update({ngram for ref in refs for ngram in ref})
    log_num_docs = math.log(float(len(crefs)))

    def to_vec(counts: Counter[tuple[str, ...]]) -> tuple[list[dict], list[float], int]:
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for ngram, tf in counts.items():
            k = len(ngram) - 1
            weight = float(tf) * (log_num_docs - math.log(max(1.0, doc_freq[ngram])))
            vec[k][ngram] = weight
            norm[k] += weight * weight
            if k == 1:  # pycocoevalcap counts bigrams here; kept for identical scores
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def sim(hyp: tuple, ref: tuple) -> list[float]:
        (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
        penalty = math.exp(-((len_h - len_r) ** 2) / (2 * sigma**2))
        vals = []
        for k in range(n):
            val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_h[k].items())
            if norm_h[k] != 0 and norm_r[k] != 0:
                val /= norm_h[k] * norm_r[k]
            vals.append(val * penalty)
        return vals

    scores: list[float] = []
    for test, refs in zip(ctest, crefs, strict=True):
        if not refs:
            raise ValueError("every hypothesis needs at least one reference")
        hyp_vec = to_vec(test)
        total = [0.0] * n
        for ref in refs:
            for k, v in enumerate(sim(hyp_vec, to_vec(ref))):
                total[k] += v
        scores.append(sum(total) / n / len(refs) * 10.0)
    return sum(scores) / len(scores), scores


def caption_metrics(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU-4 (sacrebleu, 0-100), ROUGE-L F (rouge-score, 0-1) and CIDEr-D for captions.

    Each hypothesis may have any number (>= 1) of references. All text is normalised with
    :func:`normalize_caption` first and BLEU runs with ``tokenize="none"`` so the three metrics see
    the same tokens. ROUGE-L is the per-item max F-measure over references, averaged over items
    (rouge-score's ``score_multi``; coco-caption's ROUGE-L uses an F with beta=1.2 instead).
    """
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference sets but {len(hypotheses)} hypotheses")
    refs = [[normalize_caption(r) for r in item_refs if normalize_caption(r)] for item_refs in references]
    if any(not r for r in refs):
        raise ValueError("every hypothesis needs at least one non-empty reference")
    hyps = [normalize_caption(h) for h in hypotheses]
    if not hyps:
        return {"bleu4": _NAN, "rouge_l": _NAN, "cider_d": _NAN, "num_items": 0}

    max_refs = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(max_refs)]
    bleu = BLEU(tokenize="none").corpus_score(hyps, streams)

    scorer = RougeScorer(["rougeL"], use_stemmer=False)
    rouge = [scorer.score_multi(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps, strict=True)]

    cider, _ = cider_d(refs, hyps)
    return {
        "bleu4": float(bleu.score),
        "rouge_l": sum(rouge) / len(rouge),
        "cider_d": float(cider),
        "num_items": len(hyps),
    }


# ----------------------------------------------------------------------------------------- output


def summarize_numbers(metrics: Mapping[str, Any], sep: str = ".") -> dict[str, float]:
    """Flatten nested metric dicts to ``{"by_domain.sound.accuracy": 0.5, ...}`` for ``--json`` output.

    Keeps only real numbers (ints, floats, numpy scalars; NaN kept as NaN); drops booleans, strings,
    ``None`` and lists such as the confusion matrix.
    """
    flat: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, numbers.Real):
            flat[key] = float(value)
        elif isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                walk(sub_value, f"{key}{sep}{sub_key}" if key else str(sub_key))

    walk(metrics, "")
    return flat
