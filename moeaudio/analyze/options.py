"""Options of the `moeaudio analyze-*` commands, light enough for `moeaudio --help`."""

from __future__ import annotations

from dataclasses import dataclass

from moeaudio.errors import UsageError
from moeaudio.options import argument, option

__all__ = ["ConflictOptions", "ProbeOptions", "RoutingOptions"]

_REPAIR_HELP = "replace NaN/Inf audio samples by silence (with a warning) instead of refusing the file"
_CHECKPOINTS_HELP = "checkpoint dir or run dir (repeatable; default: newest under runs/)"


@dataclass
class RoutingOptions:
    """What `moeaudio analyze-routing` takes: one recording, or a manifest."""

    audio: str | None = argument(None, "one recording: per-token routing timeline")
    manifest: str | None = option(None, "manifest: expert x domain activation, load, MI")
    checkpoint: list[str] | None = option(None, _CHECKPOINTS_HELP)
    by: str = option("domain", "manifest mode: group by domain | task")
    png: str | None = option(None, "write the figure to this PNG file")
    as_json: bool = option(False, "print one JSON object", flag="--json")
    batch_size: int = option(16, "manifest mode: clips per batch")
    limit: int | None = option(None, "manifest mode: first N items only")
    device: str = option("cpu", "cpu | cuda")
    repair_audio: bool = option(False, _REPAIR_HELP)

    def validate(self) -> None:
        if (self.audio is None) == (self.manifest is None):
            raise UsageError("give either AUDIO or --manifest FILE")
        if self.by not in ("domain", "task"):
            raise UsageError(f"--by must be domain or task, got {self.by!r}")
        if self.audio is not None and self.checkpoint and len(self.checkpoint) > 1:
            raise UsageError("AUDIO mode takes one --checkpoint")


@dataclass
class ConflictOptions:
    """What `moeaudio analyze-conflict` takes."""

    manifest: str = option(help="manifest with speech / sound / music items")
    checkpoint: list[str] | None = option(None, _CHECKPOINTS_HELP)
    batches: int = option(4, "single-domain batches per domain")
    batch_size: int = option(8, "clips per batch")
    seed: int = option(0, "batch sampling seed")
    lr: float | None = option(None, "SGD step for influence scores (default: recipe train.lr)")
    include_aux: bool = option(False, "use lm_loss + balance losses (default: task loss only)")
    exact: bool = option(False, "also measure influence by taking the step")
    png: str | None = option(None, "write the figure to this PNG file")
    as_json: bool = option(False, "print one JSON object", flag="--json")
    limit: int | None = option(None, "first N manifest items only")
    device: str = option("cpu", "cpu | cuda")
    repair_audio: bool = option(False, _REPAIR_HELP)


@dataclass
class ProbeOptions:
    """What `moeaudio analyze-probe` takes."""

    checkpoint: str | None = option(None, "checkpoint or run dir (default: newest under runs/)")
    train_manifest: str | None = option(None, "clips the probes are fitted on (default: recipe's train)")
    eval_manifest: str | None = option(None, "held-out clips scored (default: recipe's valid)")
    tasks: str | None = option(None, "comma-separated tasks (default: every classification task)")
    png: str | None = option(None, "write the bar chart to this PNG file")
    as_json: bool = option(False, "print one JSON object", flag="--json")
    device: str = option("cpu", "cpu | cuda")
    repair_audio: bool = option(False, _REPAIR_HELP)
