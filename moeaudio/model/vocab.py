"""A byte-level BPE trimmed to the tokens a corpus uses, for an LLM trained from scratch.

A random-init LLM (``llm.name: tiny``) learns only the tokens its training text contains; with the
GPT-2 BPE that is ~600 of 50,366. The other rows still cost every step: the output projection over
the whole vocabulary, the tied embedding's dense gradient and AdamW over it were over a third of a
quickstart step (docs/benchmarks.md). ``llm.vocab: corpus`` keeps the used tokens, every token on
the merge paths that build them and the 256 byte tokens; text the corpus does not contain still
tokenizes, into smaller pieces.

Why the trimmed tokenizer splits the corpus exactly as the full one does: BPE merges, at each
step, the adjacent pair with the lowest rank. Every merge the full tokenizer applies to a corpus
word builds a token on a kept token's merge path, so it is kept; dropping merges it never applies
leaves the lowest-ranked available pair the same at every step. ``tests/test_vocab.py`` checks it
on every text of the synthetic corpus.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["byte_alphabet", "trim_bpe"]


def byte_alphabet() -> list[str]:
    """The 256 single-byte tokens of a byte-level BPE (GPT-2's printable byte mapping)."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _merge_pairs(merges: list[Any]) -> list[tuple[str, str]]:
    """tokenizer.json stores a merge as "a b" (older files) or ["a", "b"]."""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in merges]


def trim_bpe(spec: dict[str, Any], used: Iterable[str], keep_added: Iterable[str] = ()) -> dict[str, Any]:
    """A copy of the tokenizer.json ``spec`` (a byte-level BPE) that keeps the tokens in ``used``,
    the tokens they are merged from (recursively), the byte alphabet and the added tokens named in
    ``used`` or ``keep_added``. Ids are renumbered 0..K-1 in the original order; merges keep their
    ranks' order. Tokens of ``used`` that the vocabulary lacks (special tokens added later) are
    ignored; the post-processor is dropped."""
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"vocabulary trimming needs a BPE tokenizer, not {model.get('type')!r}")
    vocab: dict[str, int] = model["vocab"]
    alphabet = set(byte_alphabet())
    if not alphabet <= vocab.keys():
        raise ValueError(
            f"not a byte-level BPE: {len(alphabet - vocab.keys())} of the 256 byte tokens are missing"
        )
    pairs = _merge_pairs(model["merges"])
    built_from: dict[str, list[tuple[str, str]]] = {}
    for a, b in pairs:
        built_from.setdefault(a + b, []).append((a, b))
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    wanted = set(used) | set(keep_added)
    keep = {t for t in wanted if t in vocab} | alphabet
    stack = list(keep)
    while stack:  # close over merge paths: a kept token's parts are kept
        for a, b in built_from.get(stack.pop(), ()):
            for part in (a, b):
                if part not in keep:
                    keep.add(part)
                    stack.append(part)
    kept_added = [t for t in added if t in wanted]
    order = sorted(keep | {t for t in kept_added if t in vocab}, key=vocab.__getitem__)
    new_id = {t: i for i, t in enumerate(order)}
    for t in kept_added:  # added tokens outside the BPE vocabulary go after it
        new_id.setdefault(t, len(new_id))
    trimmed = dict(spec)
    trimmed["model"] = {
        **model,
        "vocab": {t: new_id[t] for t in order},
        "merges": [[a, b] for a, b in pairs if a + b in keep and a in keep and b in keep],
    }
    trimmed["added_tokens"] = [{**added[t], "id": new_id[t]} for t in kept_added]
    # A post-processor names tokens by their old ids (the builtin one adds Whisper's transcript
    # prefix, which an LLM prompt never asks for: prompts are tokenized without special tokens).
    trimmed["post_processor"] = None
    return trimmed
