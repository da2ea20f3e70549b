"""VoiceBench's multiple-choice rule (MMSU, OpenBookQA), reproduced so our numbers compare with theirs.

VoiceBench (Chen et al. 2024, arXiv 2410.17196) scores its spoken multiple-choice subsets with
``MCQEvaluator`` in ``src/evaluator/mcq.py`` of https://github.com/MatthewCYM/VoiceBench (Apache-2.0;
reproduced from commit 533815410e3f4d602bd15a1de7105aea4acd828c, the file's last change 9f8db6c of
2025-02-02). Its rule, step by step:

1. lower-case the response; drop a leading ``<1>``, ``<2>`` or ``<3>`` (then strip);
2. for each answer template, in order, and each letter ``a``-``d``: if the template with the letter
   in place of ``[CHOICE]`` occurs anywhere in the response, the answer is that letter;
3. else the response is exactly a letter, or starts with a letter followed by ``.``, ``,``, ``:`` or ``)``;
4. else three special phrases (``would be a.``, ``would be "a.``, one scorpion answer) give ``A``;
5. else no answer: VoiceBench draws one of A-D at random (``random.choice``) and counts a failure.

Accuracy counts the drawn letters (that is VoiceBench's number); the fail rate is the share of drawn
ones. Here the draw is seeded (``random.Random(seed)``, one draw per failed item in item order) so a
result file reproduces, and two more numbers are reported beside it: the accuracy over the parsed
answers only, and the expected accuracy (a draw is right one time in four). Only the letters A-D exist
in the rule, as in VoiceBench (its MMSU and OpenBookQA questions have four options).

Where this differs from moeaudio's generic rule (option letters mapped to option text, then MMAU's
token match): "I would choose B", "The answer is **B**" and "B, because ..." are B here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

__all__ = ["VOICEBENCH_MCQ_SOURCE", "voicebench_extract", "voicebench_mcq_score"]

#: Where the rule comes from (written into every result file scored by it).
VOICEBENCH_MCQ_SOURCE = "https://github.com/MatthewCYM/VoiceBench/blob/533815410e3f4d602bd15a1de7105aea4acd828c/src/evaluator/mcq.py"

_LETTERS = ("a", "b", "c", "d")

# The answer templates of MCQEvaluator.extract_answer, in its order (order matters: the first hit wins).
_TEMPLATES: tuple[str, ...] = (
    '答案是[CHOICE]',
    '答案是 [CHOICE]',
    '答案是选项[CHOICE]',
    '答案应该是[CHOICE]',
    '答案应该是 [CHOICE]',
    '答案就是选项[CHOICE]',
    '答案是‘[CHOICE]',
    '是[CHOICE]：',
    '答案选[CHOICE]',
    '[CHOICE]是正确',
    '选项[CHOICE]是最合适的',
    'answer is: **[CHOICE]',
    'answer is **[CHOICE]',
    'the answer to the question is: **[CHOICE]',
    'the answer to the multiple-choice question is **[CHOICE]',
    "the answer is '[CHOICE]'",
    '[CHOICE] is the best answer',
    'the answer is [CHOICE]',
    'the correct answer is [CHOICE]',
    'would select [CHOICE]',
    'would choose [CHOICE]',
    'would select option [CHOICE]',
    'would choose option [CHOICE]',
    'is "[CHOICE]"',
    'is "[CHOICE].',
    'is: **[CHOICE])',
    'is **[CHOICE],',
    'is **[CHOICE]:',
    'is **[CHOICE])',
    'is: **[CHOICE].',
    'is: **[CHOICE]:',
    'is **[CHOICE].',
    'be **[CHOICE],',
    'is: **[CHOICE]**',
    'is therefore option **[CHOICE]:',
    'is: \n\n**[CHOICE])',
    'as **[CHOICE]:',
    'be **[CHOICE])',
    'be **[CHOICE]:',
    'is: \n\n**[CHOICE]**',
    'suggests **[CHOICE])',
    'be option **[CHOICE]:',
    'with **[CHOICE])',
    'is typically "[CHOICE])',
    'be to **[CHOICE])',
    'is: \n\n[CHOICE])',
    'is likely to be: **[CHOICE].',
    'is **[CHOICE] (',
    'is option **[CHOICE]**',
    'is likely **[CHOICE]**',
    'is:\n**[CHOICE].',
    'is:\n\n**[CHOICE].',
    'would be [CHOICE]',
    'would be option [CHOICE]',
    'would be ([CHOICE])',
    'would be option ([CHOICE])',
    'is [CHOICE],',
    'is typically [CHOICE],',
    'is typically [CHOICE].',
    "i'd say [CHOICE].",
    'option [CHOICE].',
    'option [CHOICE]:',
    'option [CHOICE],',
    'the answer is:\n**[CHOICE]',
    'is [CHOICE]:',
    'is [CHOICE].',
    'is [CHOICE],',
    'is: [CHOICE].',
    'is ([CHOICE])',
    'is:\n**[CHOICE])',
    'is likely **[CHOICE]:',
    'is the **[CHOICE])',
    ':\n[CHOICE].',
    ':\n[CHOICE])',
    ':\n[CHOICE],',
    ': \n[CHOICE].',
    ':  \n[CHOICE].',
    ':\n\n[CHOICE].',
    ':\n\n[CHOICE])',
    'is most likely **[CHOICE]:',
    ':\n\n[CHOICE],',
    ': \n\n[CHOICE].',
    'is option [CHOICE],',
    '([CHOICE]) would be',
    'is ([CHOICE]).',
    'is [CHOICE])',
    'is: [CHOICE])',
    'is:\n\n[CHOICE]:',
    'is: **[CHOICE],',
    '(option [CHOICE])',
    'answer is ([CHOICE])',
    'select option "[CHOICE]"',
    'is: [CHOICE]',
    'is typically **[CHOICE],',
    'is **[CHOICE]**',
    "is likely '[CHOICE]'",
    "is option '[CHOICE]'",
    'is:\n**[CHOICE]:',
    'is \\( \\boxed{[CHOICE] ',
    "would be '[CHOICE]'",
    'is the **[CHOICE]** ',
    'question is [CHOICE] (',
    'is:\n\n**[CHOICE])',
    'closest to option **[CHOICE]**',
    'is most likely **[CHOICE])',
    "the answer to the question is '[CHOICE]'",
    'question is **[CHOICE]**',
    "known as '[CHOICE]'",
    "is '[CHOICE])",
    'is typically **[CHOICE]:',
    'is \\( \\boxed{\\text{[CHOICE]}} \\)',
    'is \\( \\text{[CHOICE]) }',
    'is \\( \\text{[CHOICE]} \\)',
    'is \\( \\text{[CHOICE]:',
    'is \\( \\text{[CHOICE])',
    'is \\(\\text{[CHOICE].',
    'is:\n\n**[CHOICE]',
    'is \\( \\text{[CHOICE].}',
    'is \\( \\text{[CHOICE].',
    'is \\( \\boxed{[CHOICE]}',
    'is:\n\\[ \\boxed{\\text{[CHOICE]}}',
    'is:\n\\[ \\text{[CHOICE])',
    'is:\n\n\\[ \\text{[CHOICE])',
    'is \\( \\textbf{[CHOICE])',
    'is \\( \\text{[CHOICE]}',
    'is: \\( \\text{[CHOICE].',
    'corresponds to:\n- **[CHOICE]:',
    'would be: **[CHOICE]**.',
    'is \\( [CHOICE] \\)',
    'is:\n**[CHOICE] ',
    'corresponds to option **[CHOICE]**',
    'be **[CHOICE]**',
    'be: \n\n[CHOICE])',
    'is:\n\\[ \\boxed{[CHOICE]}',
    'is:  \n**[CHOICE]:',
    'is: \\( \\text{[CHOICE])',
    'is likely: **[CHOICE],',
    'is } \\mathbf{[CHOICE].',
    'is \\( \\boxed{[CHOICE])',
    'is \\( \\textbf{[CHOICE]}',
    'is \\([CHOICE]\\)',
    'is:\n  \n**[CHOICE]:',
    'is option **[CHOICE] ',
    'is:\n\\( \\textbf{[CHOICE].',
    'is \\( \\mathbf{[CHOICE]}',
    'was option **[CHOICE]**',
    'is likely "[CHOICE])',
    'option **[CHOICE]:',
    'is "[CHOICE])',
    'is most likely **[CHOICE],',
    'is often **[CHOICE]:',
    'is:  \n[CHOICE])',
    ' [CHOICE].',
    ' [CHOICE],',
    ' [CHOICE]:',
    ' [CHOICE])',
    '**[CHOICE].',
    '**[CHOICE])',
    '"[CHOICE].',
    '"[CHOICE],',
    '"[CHOICE]:',
    '([CHOICE])',
    '"[CHOICE]"',
)  # fmt: skip

# Phrases VoiceBench checks last, each meaning "A".
_SPECIAL_A = (
    "would be a.",
    'would be "a.',
    "the best option from the given choices would be a scorpion (a)",
)


def voicebench_extract(response: str | None) -> str | None:
    """The letter (``"A"``-``"D"``) VoiceBench reads in ``response``, or None where it reads none."""
    if response is None:
        return None
    text = response.lower()
    if text.startswith(("<1>", "<2>", "<3>")):
        text = text[3:].strip()
    for template in _TEMPLATES:
        for letter in _LETTERS:
            if template.replace("[CHOICE]", letter) in text:
                return letter.upper()
    for letter in _LETTERS:
        if text == letter or text.startswith(tuple(letter + p for p in ".,:)")):
            return letter.upper()
    return "A" if any(phrase in text for phrase in _SPECIAL_A) else None


def voicebench_mcq_score(
    responses: Sequence[str | None], references: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """VoiceBench's MCQ scoring of ``responses`` against reference letters, with a seeded fallback.

    Returns ``{"metrics": {...}, "items": [...]}``: ``accuracy`` (VoiceBench's, fallback letters
    included), ``fail_rate``, ``accuracy_parsed`` (over parsed answers only; NaN when none parsed),
    ``accuracy_expected`` (a fallback counts 1/4), counts; per item the extracted letter (None where
    none was read), the letter scored, whether it was drawn, and whether it is right.
    """
    if len(responses) != len(references):
        raise ValueError(f"{len(responses)} responses but {len(references)} references")
    rng = random.Random(seed)
    items = []
    for response, reference in zip(responses, references, strict=True):
        extracted = voicebench_extract(response)
        letter = extracted if extracted is not None else rng.choice(["A", "B", "C", "D"])
        items.append(
            {
                "extracted": extracted,
                "letter": letter,
                "fallback": extracted is None,
                "reference": reference,
                "correct": letter == reference,
            }
        )
    total = len(items)
    parsed = [i for i in items if not i["fallback"]]
    correct = sum(i["correct"] for i in items)
    correct_parsed = sum(i["correct"] for i in parsed)
    nan = float("nan")
    metrics = {
        "accuracy": correct / total if total else nan,
        "fail_rate": (total - len(parsed)) / total if total else nan,
        "accuracy_parsed": correct_parsed / len(parsed) if parsed else nan,
        "accuracy_expected": (correct_parsed + 0.25 * (total - len(parsed))) / total if total else nan,
        "correct": correct,
        "total": total,
        "n_parsed": len(parsed),
        "n_failed": total - len(parsed),
        "seed": seed,
    }
    return {"metrics": metrics, "items": items}
