"""Evaluation items longer than the encoder accepts (Whisper: 30 s): windowed, cut, skipped or refused.

The encoder reads at most its window; what lies past it used to be dropped without a word, so an ASR
item of 70 s was scored against a transcript of its first 30 s. ``eval.long_audio`` (``--long-audio``)
says what to do with such an item instead:

- ``window`` (default): an ASR item is cut into windows at pauses and its windows' transcripts are
  joined, as ``moeaudio transcribe`` does (:func:`moeaudio.data.audio.split_windows`); an item of a
  task that needs the whole clip at once (classification, multiple choice, captioning) cannot be
  windowed and is cut to the window, as under ``truncate``.
- ``truncate``: every long item is read up to the window only.
- ``skip``: long items are not scored (``n`` counts the others).
- ``error``: evaluation is refused, naming the long items and these choices.

Either way the result says how many items were affected (``long_audio`` in the result JSON, with
their ids) and each affected item's row in the predictions file carries ``long_audio``: ``windowed``
or ``truncated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from moeaudio.data.audio import load_audio, split_windows
from moeaudio.data.manifest import Item
from moeaudio.data.tasks import item_prompt
from moeaudio.errors import EvalError
from moeaudio.eval.generation import generate_all
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.windows import max_window_seconds

__all__ = [
    "LONG_AUDIO_POLICIES",
    "LongAudio",
    "plan_long_audio",
    "prepare_long_audio",
    "window_long_items",
    "windowed_predictions",
]

LONG_AUDIO_POLICIES = ("window", "truncate", "skip", "error")
#: Task kinds whose answer is a transcript: windows can be transcribed apart and joined.
WINDOWED_KINDS = frozenset({"asr"})


@dataclass
class LongAudio:
    """What happened to the items longer than the encoder's window (``limit_s``; None: no limit)."""

    policy: str
    limit_s: float | None
    windowed: list[str] = field(default_factory=list)  # ids of ASR items transcribed window by window
    truncated: list[str] = field(default_factory=list)  # ids read up to the window only
    skipped: list[str] = field(default_factory=list)  # ids not scored

    def mark(self, item_id: str) -> str | None:
        """``windowed`` / ``truncated`` for an affected scored item, else None."""
        if item_id in self.windowed:
            return "windowed"
        return "truncated" if item_id in self.truncated else None

    def summary(self) -> dict[str, Any]:
        """The result JSON's ``long_audio`` record: policy, limit, counts and (up to 100) ids each."""
        return {
            "policy": self.policy,
            "limit_s": self.limit_s,
            "n_affected": len(self.windowed) + len(self.truncated) + len(self.skipped),
            "n_windowed": len(self.windowed),
            "n_truncated": len(self.truncated),
            "n_skipped": len(self.skipped),
            "windowed": self.windowed[:100],
            "truncated": self.truncated[:100],
            "skipped": self.skipped[:100],
        }


def plan_long_audio(
    items: Sequence[Item], kind: str, policy: str, limit_s: float | None, manifest: Any
) -> tuple[list[Item], LongAudio]:
    """The items to score and what is done with the long ones; :class:`EvalError` under ``error``
    (naming the manifest, how many items, the first ids and the other choices)."""
    if policy not in LONG_AUDIO_POLICIES:
        raise EvalError(
            f"--long-audio / eval.long_audio must be one of {', '.join(LONG_AUDIO_POLICIES)} (got {policy!r})"
        )
    record = LongAudio(policy, limit_s)
    if limit_s is None:
        return list(items), record
    long = [i for i in items if (i.duration or 0.0) > limit_s + 1e-6]
    if not long:
        return list(items), record
    if policy == "error":
        shown = ", ".join(f"{i.id} ({i.duration:.1f} s)" for i in long[:5])
        raise EvalError(
            f"{manifest}: {len(long)} of {len(items)} items are longer than the encoder's {limit_s:g} s window "
            f"({shown}{', ...' if len(long) > 5 else ''}); choose what to do with them: --long-audio window "
            "(ASR in windows, other tasks cut), truncate (read the first window only) or skip (not scored)"
        )
    if policy == "skip":
        record.skipped = [i.id for i in long]
        skipped = set(record.skipped)
        return [i for i in items if i.id not in skipped], record
    if policy == "window" and kind in WINDOWED_KINDS:
        record.windowed = [i.id for i in long]
    else:
        record.truncated = [i.id for i in long]
    return list(items), record


def window_long_items(
    model: Any,
    items: Sequence[Item],
    manifest: Any,
    predictions: list[str],
    record: LongAudio,
    *,
    collate: Collator,
    batch_size: int,
    max_new_tokens: int,
    num_beams: int,
    ctc_weight: float | None = None,
    nonfinite: str = "error",
    progress: bool = False,
) -> list[str]:
    """``predictions`` with each windowed item's replaced by its windows' transcripts, joined in order.

    Every window of every such item is generated in one batched pass, with the item's own prompt
    (and ``collate``'s few-shot examples, if any); ``max_new_tokens`` applies per window."""
    if not record.windowed or record.limit_s is None:
        return predictions
    wanted = set(record.windowed)
    sr = model.encoder.sample_rate
    windows: list[Example] = []
    owner: list[int] = []
    for k, item in enumerate(items):
        if item.id not in wanted:
            continue
        wave = load_audio(item.resolve_audio(manifest), sr, nonfinite=nonfinite)
        for a, b in split_windows(wave, sr, record.limit_s):
            windows.append(
                Example(item_prompt(item), None, wave=wave[a:b], meta={"id": f"{item.id}@{a / sr:.2f}"})
            )
            owner.append(k)
    texts, _ = generate_all(
        model,
        windows,
        batch_size,
        max_new_tokens,
        num_beams,
        progress,
        collate=collate,
        ctc_weight=ctc_weight,
    )
    out = list(predictions)
    for k in dict.fromkeys(owner):
        out[k] = " ".join(t.strip() for t, o in zip(texts, owner, strict=True) if o == k and t.strip())
    return out


def prepare_long_audio(p: Any, model: Any) -> None:
    """Apply the plan's ``long_audio_policy`` to its items (audio modality only): sets ``p.items`` (the
    long ones dropped under ``skip``) and ``p.long_audio`` (:class:`LongAudio`; None in writing)."""
    if p.modality != "audio":
        p.long_audio = None
        return
    p.items, p.long_audio = plan_long_audio(
        p.items, p.spec.kind, p.long_audio_policy, max_window_seconds(model), p.manifest
    )


def windowed_predictions(
    p: Any, model: Any, predictions: list[str], collate: Collator, progress: bool
) -> list[str]:
    """:func:`window_long_items` with the plan's settings (the predictions as they are when nothing is
    windowed)."""
    if p.long_audio is None or not p.long_audio.windowed:
        return predictions
    return window_long_items(
        model, p.items, p.manifest, predictions, p.long_audio, collate=collate, batch_size=p.batch_size,
        max_new_tokens=p.max_new_tokens, num_beams=p.num_beams, ctc_weight=p.ctc_weight,
        nonfinite=p.recipe.data.nonfinite_audio,
        progress=progress,
    )  # fmt: skip
