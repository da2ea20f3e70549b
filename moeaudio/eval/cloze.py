"""Cloze prompts: the question asked without its options, so each option's text can be scored as the answer.

Why: a small instruct LLM often cannot pick a listed option (SmolLM2-135M is at chance on lettered or
listed multiple choice even in writing) while it does know which answer is likely. The form
lm-evaluation-harness and SmolLM2's own reports use for small models asks the question alone and scores
each option's text as the continuation (``acc``: summed token log-probability; ``acc_norm``: per
character). With the options in the prompt, the score measures answer formatting as much as
knowledge, and a modality gap measured that way says little.

What a cloze prompt is, per item:

* audio (``--modality audio``): the item's instruction with the lettered option block, the answer-format
  sentences ("Answer with the text of the correct option.", "Reply with the option letter.") and, for
  classification, an enumerated label list ("...: major, minor or augmented?") taken out. A spoken
  question keeps its lead ("Answer the spoken question.") and the audio. Items whose options are spoken
  in the audio (VoiceBench, ``meta.choices_in_audio``) keep them there: only the text can be changed.
* text (``--modality text``): the question alone: ``meta.question`` where the item has it (VoiceBench),
  else ``meta.text_prompt`` with its option list taken out (the built-in spoken questions).

The candidates are always texts: an MCQ item's option texts (never letters) and a classification task's
closed label set. Scoring them is :func:`moeaudio.eval.ranking.rank_all` with ``end_of_turn=False``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from moeaudio.data.tasks import CHOICE_LETTERS, TASK_INSTRUCTIONS, format_choices, split_choices
from moeaudio.errors import EvalDataError
from moeaudio.runtime.batching import Example
from moeaudio.runtime.examples import LazyExamples

__all__ = [
    "cloze_candidates",
    "cloze_examples",
    "cloze_prompt",
    "cloze_question",
    "strip_answer_format",
    "strip_label_list",
    "strip_options",
]

#: Sentences that only say how to format an answer (they point at letters or at an option list the cloze
#: prompt no longer has): "Answer with the text of the correct option.", "Reply with the option letter."
_ANSWER_FORMAT = re.compile(r"(?:^|(?<=[.?!\n]))[ \t]*(?:answer|reply|respond)\s+with\b[^.?!\n]*[.?!]?", re.I)
#: "... by choosing one of the options" (the generic MCQ instruction)
_CHOOSING = re.compile(r"\s+by\s+choosing\s+(?:one\s+of\s+)?the\s+(?:options|choices)", re.I)
#: one lettered option line: "A. text", "(B) text", "C) text", "D: text"
_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.):]\s+(.*?)\s*$")
#: the question a cloze prompt asks when an item's instruction is nothing but options and format hints
FALLBACK_QUESTION = "Answer the question."


def _tidy(text: str) -> str:
    """Strip each line, drop empty ones (what removing a block or a sentence leaves behind)."""
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def strip_options(text: str, choices: Sequence[str]) -> str:
    """``text`` without its list of ``choices``: the block :func:`format_choices` renders, lettered
    option lines, or an inline "Q? A. x B. y" list (:func:`split_choices`) whose options are ``choices``."""
    if not choices:
        return _tidy(text)
    block = format_choices(list(choices))
    if block in text:
        return _tidy(text.replace(block, "\n"))
    wanted = {_key(c) for c in choices}
    kept = []
    for line in text.splitlines():
        m = _OPTION_LINE.match(line)
        if m and m.group(1) in CHOICE_LETTERS and _key(m.group(2)) in wanted:
            continue
        kept.append(line)
    text = "\n".join(kept)
    parsed = split_choices(text)
    if parsed is not None:
        question, found = parsed
        *head, last = [_key(c) for c in found]
        keys = [_key(c) for c in choices]
        if len(found) == len(choices) and head == keys[:-1] and last.startswith(keys[-1]):
            text = question
    return _tidy(text)


def strip_label_list(text: str, labels: Sequence[str]) -> str:
    """``text`` without an enumerated list of ``labels`` ("a, b or c", at least two of them).

    A list appended after a colon or comma goes ("Which sound is it: rain, wind or bell?" -> "Which sound
    is it?"); "Is the X a, b or c?" becomes "What is the X?" (the list is the question's own words there).
    Lists of other words, or a single label, are left alone.
    """
    labels = [lab for lab in labels if lab.strip()]
    if len(labels) < 2:
        return text
    alt = "|".join(re.escape(lab) for lab in sorted(labels, key=len, reverse=True))
    one = rf"(?:{alt})"
    listed = rf"{one}(?:\s*,\s*{one})*\s*,?\s+(?:or|and)\s+{one}"
    text = re.sub(rf"^(\s*)is\s+(the\s+[^?.,:]+?)\s+{listed}\s*\?", r"\1What is \2?", text, flags=re.I | re.M)
    return re.sub(rf"\s*[:,]\s*{listed}(?=\s*[?.!]|\s*$)", "", text, flags=re.I | re.M)


def strip_answer_format(text: str) -> str:
    """``text`` without the sentences that only say how to format the answer (letters, option texts)."""
    return _tidy(_CHOOSING.sub("", _ANSWER_FORMAT.sub("", text)))


def _choices(item: dict) -> list[str]:
    return [str(c) for c in item.get("choices") or []]


def cloze_question(item: dict) -> str:
    """The written question alone (``--modality text``): ``meta.question``, else ``meta.text_prompt``
    without its options; raises :class:`EvalDataError` for an item with neither."""
    inner = item.get("meta") or {}
    question = str(inner.get("question") or "").strip()
    if not question:
        prompt = str(inner.get("text_prompt") or "")
        question = strip_options(prompt, _choices(item)) if prompt else ""
    if not question:
        raise EvalDataError(
            f"item {item.get('id', '?')}: --scoring cloze --modality text needs the question in writing "
            "(meta.question, or meta.text_prompt with the question before its options)"
        )
    return question


def cloze_prompt(example: Example, modality: str, labels: Sequence[str] | None = None) -> str:
    """The instruction of ``example`` in cloze form (see the module docstring); ``example.meta`` is the
    manifest item's dict, ``labels`` the closed label set of a classification task."""
    item = example.meta
    if modality == "text":
        return cloze_question(item)
    text = strip_options(example.instruction, _choices(item))
    if labels:
        text = strip_label_list(text, labels)
    text = strip_answer_format(text)
    if text:
        return text
    fallback = strip_answer_format(TASK_INSTRUCTIONS.get(str(item.get("task")), ""))
    return fallback or FALLBACK_QUESTION


def cloze_examples(
    examples: Sequence[Example] | LazyExamples, modality: str, labels: Sequence[str] | None = None
) -> list[Example] | LazyExamples:
    """``examples`` with cloze instructions; a :class:`LazyExamples` is changed in place (its headers), so
    its audio is still read a batch at a time."""

    def rewrite(e: Example) -> Example:
        return Example(cloze_prompt(e, modality, labels), e.target, e.wave, e.states, e.meta)

    if isinstance(examples, LazyExamples):
        examples.headers = [rewrite(e) for e in examples.headers]
        return examples
    return [rewrite(e) for e in examples]


def cloze_candidates(example: Example, labels: Sequence[str] | None = None) -> list[str]:
    """What is scored as the continuation: the label set, else the item's option texts."""
    if labels is not None:
        return list(labels)
    choices = _choices(example.meta)
    if not choices:
        raise EvalDataError(
            f"item {example.meta.get('id', '?')}: --scoring cloze needs 'choices' on every multiple-choice item"
        )
    return choices
