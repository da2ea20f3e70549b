"""Options of `moeaudio prepare` and `moeaudio convert`, light enough for `moeaudio --help`."""

from __future__ import annotations

from dataclasses import dataclass

from moeaudio.options import argument, option

__all__ = ["ConvertOptions", "PrepareOptions"]


@dataclass
class PrepareOptions:
    """What `moeaudio prepare` takes."""

    source: str = argument(
        help="synth, librispeech, commonvoice, esc50, gtzan, ravdess, cremad, iemocap, vocalsound, mmau, "
        "voicebench, jsonl, csv, hf (a recipe's encoder feature cache: `moeaudio prepare-features`)"
    )
    paths: list[str] = argument(
        help="[SRC] OUT: the dataset's release folder (not for synth), then the output folder"
    )
    seed: int = option(0, "synth: random seed")
    size: str = option(
        "default",
        "synth: tiny | small | default | smol (default + spoken QA and open-vocabulary speech) | hard (the studies: saturated tasks made harder, 200 test items per job)",
    )
    opt: list[str] | None = option(None, "preparer option key=value (repeatable)")
    as_json: bool = option(
        False, "print the preparation report as one JSON object; the rest on stderr", flag="--json"
    )


@dataclass
class ConvertOptions:
    """What `moeaudio convert` takes."""

    src: str = argument(help="input manifest")
    dst: str = argument(help="output manifest")
    src_format: str = option("auto", "auto | moeaudio | slam | swift | llamafactory | nemo", flag="--from")
    dst_format: str = option("moeaudio", "moeaudio | slam | swift | llamafactory | nemo", flag="--to")
    task: str | None = option(
        None, "task of records without a task tag (default: guessed from prompt or path, else asr)"
    )
    as_json: bool = option(False, "print the conversion report as one JSON object", flag="--json")
