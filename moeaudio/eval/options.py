"""Options of `moeaudio eval` and `moeaudio transcribe`, light enough for `moeaudio --help`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moeaudio.options import argument, option

__all__ = ["EvalOptions", "TranscribeOptions"]


@dataclass
class EvalOptions:
    """What `moeaudio eval` takes; ``None`` means the task's default or the checkpoint recipe's ``eval``."""

    task: str = option(help="asr, emotion, sound, mmau, mmsu, intent, mcq, ...")
    checkpoint: str | None = option(None, "checkpoint or run dir (default: newest under --runs-dir)")
    manifest: str | None = option(None, "manifest (default: the recipe's test, else valid split)")
    output: str | None = option(None, "result JSON (default: CHECKPOINT/eval/TASK.json)")
    few_shot: int | None = option(None, "train examples shown first")
    shot_pool: str | None = option(
        None,
        "fixed shots and prompt templates per benchmark (a YAML path, or 'paper' for the shipped pool; "
        "default: the recipe's eval.shot_pool): the shots come from the pool, not the train manifest",
    )
    num_beams: int | None = option(None, "1 = greedy")
    ctc_weight: float | None = option(
        None,
        "transcription by a model with a ctc_embed stage: rescore the LLM's and the adapter's CTC "
        "num-beams-best with this weight on the CTC score, 0-1 (default: the recipe's eval.ctc_weight; "
        "none: the LLM's answer alone)",
    )
    max_items: int | None = option(None, "score only the first N items")
    modality: str = option("audio", "audio | text (spoken-question MCQ)")
    scoring: str = option(
        "generate",
        "generate (score the generated answer) | loglik (answer the option or label with the highest "
        "log-likelihood: mcq and classification tasks) | cloze (the same, with the question asked without "
        "its options and each option's text scored as the continuation, lm-eval's acc/acc_norm)",
    )
    runs_dir: str = option("runs", "where to look for checkpoints")
    batch_size: int | None = option(None, "items per generate call")
    max_new_tokens: int | None = option(
        None, "tokens generated per item (default: the recipe's eval.max_new_tokens, else the task's)"
    )
    seed: int = option(
        0, "seed of the few-shot selection and of random scoring steps (VoiceBench fallback letter)"
    )
    device: str | None = option(None, "cpu | cuda (default: cuda when available)")
    precision: str = option("auto", "auto | fp32 | bf16 (auto: bf16 on a GPU, fp32 on CPU)")
    loading: str | None = option(
        None,
        "memory (every item's audio read first) | stream (read a batch at a time) | auto "
        "(default: the recipe's data.loading; auto streams above data.stream_above_gb)",
    )
    repair_audio: bool = option(
        False, "replace NaN/Inf audio samples by silence (with a warning) instead of refusing the file"
    )
    long_audio: str | None = option(
        None,
        "items longer than the encoder's window (Whisper: 30 s): window (ASR transcribed in windows, other "
        "tasks cut to the window) | truncate | skip (not scored) | error (default: the recipe's eval.long_audio)",
    )
    as_json: bool = option(False, "print one JSON object, nothing else", flag="--json")

    def recipe_settings(self) -> dict[str, Any]:
        """The flags given, as the recipe keys they override (merged by ``config.with_settings``)."""
        flags = {
            "eval.few_shot": self.few_shot,
            "eval.shot_pool": self.shot_pool,
            "eval.num_beams": self.num_beams,
            "eval.ctc_weight": self.ctc_weight,
            "eval.batch_size": self.batch_size,
            "eval.max_items": self.max_items,
            "eval.max_new_tokens": self.max_new_tokens,
            "eval.long_audio": self.long_audio,
            "data.loading": self.loading,
            "data.nonfinite_audio": "repair" if self.repair_audio else None,
        }
        return {key: value for key, value in flags.items() if value is not None}


@dataclass
class TranscribeOptions:
    """What `moeaudio transcribe` takes."""

    audio: list[str] = argument(help="audio files, directories (recursive) or globs")
    checkpoint: str | None = option(None, "checkpoint or run dir (default: newest under runs/)")
    prompt: str | None = option(None, "instruction (default: transcribe)")
    fmt: str = option("txt", "txt | json | srt | vtt", flag="--format")
    as_json: bool = option(False, "the same as --format json (one JSON object per file)", flag="--json")
    output_dir: str | None = option(None, "one file per input (default: stdout)")
    window: float | None = option(None, "seconds per window (default 30, the encoder limit)")
    batch_size: int = option(8, "windows per generate call")
    num_beams: int = option(1, "1 = greedy")
    ctc_weight: float | None = option(
        None,
        "a model with a ctc_embed stage: rescore the LLM's and the adapter's CTC num-beams-best with "
        "this weight on the CTC score, 0-1 (default: the LLM's answer alone)",
    )
    device: str | None = option(None, "cpu | cuda (default: cuda when available)")
    precision: str = option("auto", "auto | fp32 | bf16 (auto: bf16 on a GPU, fp32 on CPU)")
    repair_audio: bool = option(
        False, "replace NaN/Inf audio samples by silence (with a warning) instead of refusing the file"
    )
