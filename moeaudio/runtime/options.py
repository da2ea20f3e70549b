"""Options of `moeaudio export`, light enough for `moeaudio --help`."""

from __future__ import annotations

from dataclasses import dataclass

from moeaudio.options import argument, option

__all__ = ["ExportOptions"]


@dataclass
class ExportOptions:
    """What `moeaudio export` takes."""

    checkpoint: str = argument(help="checkpoint or run directory (a run means its latest checkpoint)")
    out: str = argument(help="the export folder to write (must not exist, or be empty)")
    lora: str = option("merge", "a LoRA: merge (into the LLM's weights) | adapter (a PEFT adapter folder)")
    overwrite: bool = option(False, "replace OUT if it exists")
    as_json: bool = option(False, "print what was exported as one JSON object", flag="--json")
