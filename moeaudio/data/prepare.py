"""`moeaudio prepare`: the built-in synthetic corpus, or a dataset from its release layout."""

from __future__ import annotations

from pathlib import Path

from moeaudio.data.options import PrepareOptions
from moeaudio.data.sources.base import PrepareReport, get_source, print_summary
from moeaudio.data.synth import SynthSummary, make_synth_corpus
from moeaudio.errors import UsageError
from moeaudio.io_utils import check_output_dir
from moeaudio.options import parse_key_values

__all__ = ["run_prepare"]


def run_prepare(opts: PrepareOptions, progress: bool = True) -> SynthSummary | PrepareReport:
    """Write train/valid/test manifests into the output folder; print the preparer's report."""
    if opts.source == "synth":
        if len(opts.paths) != 1:
            raise UsageError("usage: moeaudio prepare synth OUT")
        check_output_dir(opts.paths[0], "OUT")
        return make_synth_corpus(Path(opts.paths[0]), seed=opts.seed, size=opts.size, progress=progress)
    if len(opts.paths) != 2:
        raise UsageError(f"usage: moeaudio prepare {opts.source} SRC OUT")
    check_output_dir(opts.paths[1], "OUT")
    module = get_source(opts.source)
    report = module.prepare(Path(opts.paths[0]), Path(opts.paths[1]), **parse_key_values(opts.opt, "--opt"))
    print_summary(report)
    return report
