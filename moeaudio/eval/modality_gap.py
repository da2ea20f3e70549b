"""The modality gap of spoken questions: accuracy with the question heard minus with it read.

The paper reports it for VoiceBench's MMSU and OpenBookQA (audio input vs the same questions as text),
and it is the number that says whether the adapter carries a question's meaning into the LLM: the text
score is what the LLM knows, the audio score what it knows through the adapter. Both sides must be the
same items under the same scoring (a gap between letter-answer audio and cloze text measures the
formats, not the modalities), so ``moeaudio eval`` of a spoken-question task with audio scores the same
items in writing with the same scoring, the same checkpoint and the same LLM (the text prompt has no
audio, so the adapter is not used), and puts the gap into the audio result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import Item

__all__ = ["GAP_METRICS", "add_modality_gap", "gap_rows", "is_spoken_question", "text_twin_output"]

#: The metrics a gap is taken of (where the result has them): the headline and, for ranked answers,
#: the per-character normalised accuracy.
GAP_METRICS = ("accuracy", "accuracy_norm")


def is_spoken_question(kind: str, items: Sequence[Item]) -> bool:
    """Whether ``items`` are spoken questions with a written twin: multiple choice, each with
    ``meta.text_prompt`` (the built-in spoken questions, VoiceBench's MMSU and OpenBookQA)."""
    return kind == "mcq" and bool(items) and all((i.meta or {}).get("text_prompt") for i in items)


def text_twin_output(audio_output: Path, default_audio: Path, default_text: Path) -> Path:
    """Where the written twin's result goes: the default text name beside a default audio result,
    else ``<audio stem>.text.json`` beside the audio result ``--output`` named."""
    if audio_output == default_audio:
        return default_text
    stem = audio_output.with_suffix("") if audio_output.suffix == ".json" else audio_output
    return stem.parent / f"{stem.name}.text.json"


def add_modality_gap(audio: dict[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """``audio`` with ``text_metrics`` (the written twin's numbers), ``modality_gap`` (audio minus text,
    per metric of :data:`GAP_METRICS` both have) and the twin's result file under ``files``."""
    if audio["n"] != text["n"]:
        raise ValueError(
            f"the modality gap needs the same items: {audio['n']} with audio, {text['n']} in writing"
        )
    shared = [
        m for m in GAP_METRICS if isinstance(audio["metrics"].get(m), int | float) and m in text["metrics"]
    ]
    audio["text_metrics"] = {m: text["metrics"][m] for m in shared}
    audio["modality_gap"] = {m: audio["metrics"][m] - text["metrics"][m] for m in shared}
    audio["files"]["text_result"] = text["output"]
    return audio


def gap_rows(result: dict[str, Any]) -> list[tuple[str, float, None]]:
    """Table rows: each gapped metric in writing, then the gap (audio minus text)."""
    text, gap = result.get("text_metrics") or {}, result.get("modality_gap") or {}
    rows: list[tuple[str, float, None]] = []
    for metric in gap:
        rows.append((f"{metric}, text (same items)", text[metric], None))
        rows.append((f"modality gap, {metric} (audio - text)", gap[metric], None))
    return rows
