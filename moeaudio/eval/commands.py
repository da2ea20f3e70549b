"""`moeaudio eval | transcribe`: the options in, a result (JSON, a table or transcripts) out."""

from __future__ import annotations

import contextlib
import json
import sys

from rich.console import Console

from moeaudio.errors import UsageError
from moeaudio.eval.evaluate import eval_json_summary, evaluate, render_eval
from moeaudio.eval.options import EvalOptions, TranscribeOptions
from moeaudio.eval.transcribe import Transcript, run_transcribe

__all__ = ["eval_command", "transcribe_command"]


def eval_command(opts: EvalOptions) -> None:
    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        result = evaluate(opts, progress=not opts.as_json)
    if opts.as_json:
        print(json.dumps(eval_json_summary(result)))
        return
    console = Console()
    console.print(render_eval(result))
    console.print(f"results: {result['output']}", highlight=False)


def transcribe_command(opts: TranscribeOptions) -> list[Transcript]:
    """:func:`run_transcribe` with the command's options (it writes the transcripts itself)."""
    if opts.as_json and opts.fmt not in ("txt", "json"):
        raise UsageError(f"--json is --format json; it cannot be combined with --format {opts.fmt}")
    fmt = "json" if opts.as_json else opts.fmt
    return run_transcribe(
        opts.audio, opts.checkpoint, opts.prompt, fmt, opts.output_dir, opts.window, opts.batch_size,
        device=opts.device, precision=opts.precision, nonfinite="repair" if opts.repair_audio else "error",
        num_beams=opts.num_beams, ctc_weight=opts.ctc_weight,
    )  # fmt: skip
