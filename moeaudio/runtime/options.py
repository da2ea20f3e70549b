"""Options of `moeaudio export` and `moeaudio prepare-features`, light enough for `moeaudio --help`."""

from __future__ import annotations

from dataclasses import dataclass

from moeaudio.options import RecipeOptions, argument, option

__all__ = ["ExportOptions", "FeaturesOptions"]


@dataclass
class ExportOptions:
    """What `moeaudio export` takes."""

    checkpoint: str = argument(help="checkpoint or run directory (a run means its latest checkpoint)")
    out: str = argument(help="the export folder to write (must not exist, or be empty)")
    lora: str = option("merge", "a LoRA: merge (into the LLM's weights) | adapter (a PEFT adapter folder)")
    overwrite: bool = option(False, "replace OUT if it exists")
    as_json: bool = option(False, "print what was exported as one JSON object", flag="--json")


@dataclass
class FeaturesOptions(RecipeOptions):
    """What `moeaudio prepare-features` takes: a recipe, its overrides, and the workers."""

    workers: int = option(1, "processes encoding in parallel, each writing its own cache shards")
    as_json: bool = option(False, "print the report as one JSON object; the rest on stderr", flag="--json")
