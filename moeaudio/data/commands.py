"""`moeaudio prepare | convert`: the options in, a report (JSON or lines) out."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict

from moeaudio.data.formats import convert_manifest
from moeaudio.data.options import ConvertOptions, PrepareOptions
from moeaudio.data.prepare import run_prepare
from moeaudio.errors import UsageError
from moeaudio.options import print_json

__all__ = ["convert_command", "prepare_command"]


def prepare_command(opts: PrepareOptions) -> None:
    if opts.source == "features":  # its own command since the feature cache belongs to a recipe
        raise UsageError(
            "`moeaudio prepare features` is now `moeaudio prepare-features RECIPE [section.key=value ...] "
            "[--workers N]`"
        )
    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        report = run_prepare(opts, progress=not opts.as_json)
    if opts.as_json:
        print_json(report.to_dict() if hasattr(report, "to_dict") else asdict(report))


def convert_command(opts: ConvertOptions) -> None:
    report = convert_manifest(opts.src, opts.dst, opts.src_format, opts.dst_format, task=opts.task)
    print_json(report.to_dict()) if opts.as_json else print("\n".join(report.lines()))
