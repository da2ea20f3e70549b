"""`moeaudio prepare-features | export`: the options in, a report (JSON or a line) out."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console

from moeaudio.config import load_recipe
from moeaudio.options import print_json
from moeaudio.runtime.export import export_checkpoint
from moeaudio.runtime.features import prepare_features
from moeaudio.runtime.options import ExportOptions, FeaturesOptions

__all__ = ["export_command", "features_command"]


def features_command(opts: FeaturesOptions) -> None:
    recipe = load_recipe(opts.recipe, opts.overrides or [])
    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        report = prepare_features(recipe, workers=opts.workers, progress=not opts.as_json)
    if opts.as_json:
        print_json(report)
        return
    print(
        f"{report['clips']} clips: {report['encoded']} encoded, {report['reused']} already cached; "
        f"{report['shards']} new shards, {report['entries']} entries in {report['cache']} "
        f"({report['workers']} workers, {report['seconds']:.1f} s)"
    )


def export_command(opts: ExportOptions) -> None:
    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        manifest = export_checkpoint(opts.checkpoint, opts.out, lora=opts.lora, overwrite=opts.overwrite)
    if opts.as_json:
        print_json(manifest)
        return
    Console().print(
        f"exported {manifest['source_checkpoint']} to {manifest['out']} "
        f"({len(manifest['files'])} files; model card: {manifest['out']}/README.md)",
        highlight=False,
    )
