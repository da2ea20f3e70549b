"""`moeaudio transcribe`: run a checkpoint over audio files of any length.

Inputs are files, directories (searched recursively for audio extensions) and glob patterns.
Recordings longer than the encoder accepts (Whisper: 30 s) are split into windows; each cut is
moved to the quietest 20 ms frame in the last seconds before the boundary when that frame is
clearly quiet (a pause between words), else made at the fixed boundary. All windows of all
files are generated in batches, each window keeps its start/end time, and the window texts are
stitched into one transcript per file. Output formats: ``txt``, ``json`` (text + segments),
``srt`` and ``vtt`` (one cue per non-empty window). The real-time factor (processing seconds /
audio seconds) is reported on stderr.
"""

from __future__ import annotations

import glob
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from moeaudio.data.audio import check_audio_file, load_audio, split_windows
from moeaudio.data.tasks import TASK_INSTRUCTIONS
from moeaudio.errors import MissingDataError, UsageError
from moeaudio.eval.generation import generate_all
from moeaudio.io_utils import atomic_write_text, check_output_dir
from moeaudio.runtime.batching import Example
from moeaudio.runtime.checkpoint import load_model, resolve_checkpoint
from moeaudio.runtime.device import inference_dtype, pick_device
from moeaudio.runtime.windows import check_clip_length, max_window_seconds, window_seconds

__all__ = [
    "AUDIO_EXTENSIONS",
    "FORMATS",
    "Segment",
    "Transcript",
    "expand_audio_inputs",
    "format_srt",
    "format_timestamp",
    "format_transcript",
    "format_vtt",
    "TRANSCRIBE_MAX_NEW_TOKENS",
    "max_window_seconds",
    "run_transcribe",
    "split_windows",
    "stitch_windows",
    "window_examples",
]

#: Tokens generated per window (a 30 s window of speech is ~80 words).
TRANSCRIBE_MAX_NEW_TOKENS = 200

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64"}
)
FORMATS: tuple[str, ...] = ("txt", "json", "srt", "vtt")


@dataclass
class Segment:
    """One window: ``start``/``end`` in seconds from the start of the file, and its text."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    path: str
    duration: float
    text: str
    segments: list[Segment] = field(default_factory=list)
    processing_seconds: float = 0.0

    @property
    def rtf(self) -> float:
        return self.processing_seconds / self.duration if self.duration else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rtf"] = self.rtf
        return d


# ------------------------------------------------------------------------------------------ inputs


def expand_audio_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files, directories (recursively, audio extensions only) and globs -> unique files, in order.

    A named file is taken whatever its extension; a pattern or directory that matches no audio
    raises ``MissingDataError`` (a ``FileNotFoundError``) naming it.
    """
    out: list[Path] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            found = []
            for m in matches:
                if m.is_dir():
                    found += sorted(
                        p for p in m.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                    )
                elif m.suffix.lower() in AUDIO_EXTENSIONS:
                    found.append(m)
        else:
            raise MissingDataError(f"{text}: no such file or directory")
        if not found:
            raise MissingDataError(f"{text}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
        out += found
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------------------- windows


Owner = tuple[int, float, float]  # (recording index, window start s, window end s)


def window_examples(
    waves: Sequence[np.ndarray], names: Sequence[str], sr: int, window_s: float, prompt: str
) -> tuple[list[Example], list[Owner]]:
    """Every recording cut into windows (:func:`split_windows`), one example per window, and which
    recording and span each came from; ``moeaudio transcribe`` and ``moeaudio serve`` cut alike."""
    examples: list[Example] = []
    owners: list[Owner] = []
    for k, wave in enumerate(waves):
        for a, b in split_windows(wave, sr, window_s):
            examples.append(Example(prompt, None, wave=wave[a:b], meta={"id": f"{names[k]}@{a / sr:.2f}"}))
            owners.append((k, a / sr, b / sr))
    return examples, owners


def stitch_windows(
    waves: Sequence[np.ndarray],
    names: Sequence[str],
    sr: int,
    owners: Sequence[Owner],
    texts: Sequence[str],
    elapsed: float = 0.0,
) -> list[Transcript]:
    """The window texts put back together: one :class:`Transcript` per recording, a segment per window
    (``elapsed``, the processing time of all of them, is shared out by audio length)."""
    total_audio = sum(len(w) for w in waves) / sr
    transcripts: list[Transcript] = []
    for k, (name, wave) in enumerate(zip(names, waves, strict=True)):
        segments = [
            Segment(round(s, 3), round(e, 3), t.strip())
            for (o, s, e), t in zip(owners, texts, strict=True)
            if o == k
        ]
        duration = len(wave) / sr
        share = elapsed * duration / total_audio if total_audio else 0.0  # batched: time split by length
        transcripts.append(
            Transcript(str(name), duration, " ".join(s.text for s in segments if s.text), segments, share)
        )
    return transcripts


# ----------------------------------------------------------------------------------------- formats


def format_timestamp(seconds: float, sep: str = ",", always_hours: bool = True) -> str:
    """``HH:MM:SS,mmm`` (SRT, ``sep=","``) or ``HH:MM:SS.mmm`` (WebVTT, ``sep="."``)."""
    ms = int(round(max(0.0, seconds) * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _cues(segments: Sequence[Segment]) -> list[Segment]:
    return [s for s in segments if s.text.strip()]


def format_srt(segments: Sequence[Segment]) -> str:
    """SubRip: numbered cues, ``start --> end`` with comma milliseconds, blank line between cues."""
    blocks = [
        f"{i}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{s.text.strip()}\n"
        for i, s in enumerate(_cues(segments), 1)
    ]
    return "\n".join(blocks)


def format_vtt(segments: Sequence[Segment]) -> str:
    """WebVTT: ``WEBVTT`` header, then ``start --> end`` cues with dot milliseconds."""
    blocks = [
        f"{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}\n{s.text.strip()}\n"
        for s in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def format_transcript(t: Transcript, fmt: str, extra: dict[str, Any] | None = None) -> str:
    if fmt == "txt":
        return t.text + "\n"
    if fmt == "json":
        return json.dumps({**t.to_dict(), **(extra or {})}, ensure_ascii=False) + "\n"
    if fmt == "srt":
        return format_srt(t.segments)
    if fmt == "vtt":
        return format_vtt(t.segments)
    raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _output_names(paths: list[Path], fmt: str) -> list[str]:
    """``<stem>.<fmt>`` per input, made unique when two inputs share a stem."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for p in paths:
        name = f"{p.stem}.{fmt}"
        if name in seen:
            seen[name] += 1
            name = f"{p.stem}-{seen[name]}.{fmt}"
        else:
            seen[name] = 0
        names.append(name)
    return names


# -------------------------------------------------------------------------------------------- main


def run_transcribe(
    audio: Sequence[str | Path],
    checkpoint: str | Path | None = None,
    prompt: str | None = None,
    fmt: str = "txt",
    output_dir: str | Path | None = None,
    window: float | None = None,
    batch_size: int = 8,
    *,
    runs_dir: str | Path = "runs",
    max_new_tokens: int = TRANSCRIBE_MAX_NEW_TOKENS,
    num_beams: int = 1,
    ctc_weight: float | None = None,
    device: str | None = None,
    precision: str = "auto",
    progress: bool = False,
    nonfinite: str = "error",
    model=None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> list[Transcript]:
    """Transcribe (or answer ``prompt`` about) every input; write outputs; return the transcripts.

    Without ``output_dir`` the formatted outputs go to ``stdout`` (several inputs are separated by
    ``==> path <==`` lines); with it, one ``<stem>.<fmt>`` file per input. ``model`` skips loading a
    checkpoint (an already built :class:`~moeaudio.model.audio_llm.AudioLLM`). ``nonfinite="repair"``
    replaces NaN/Inf samples by silence with a warning instead of refusing the file.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    if num_beams < 1:
        raise UsageError(f"--num-beams must be >= 1 (got {num_beams})")
    if ctc_weight is not None and not 0.0 <= ctc_weight <= 1.0:
        raise UsageError(f"--ctc-weight must be within 0 and 1 (got {ctc_weight:g})")
    if window is not None and window <= 0:
        raise UsageError(f"--window must be a positive number of seconds (got {window:g})")
    check_output_dir(output_dir, "--output-dir")
    paths = expand_audio_inputs(audio)
    for path in paths:  # every input checked before the model loads: a bad file is named at once
        check_audio_file(path)
    ckpt = None
    if model is None:
        ckpt = resolve_checkpoint(checkpoint, runs_dir)
        target = pick_device(device)
        model = load_model(ckpt, device=target, dtype=inference_dtype(target, precision))
    model.eval()
    if ctc_weight is not None and model.ctc_head is None:
        raise UsageError(
            "--ctc-weight rescores with the adapter's CTC head, which a model trained without a ctc_embed "
            "stage does not have; drop --ctc-weight"
        )
    prompt = prompt or TASK_INSTRUCTIONS["asr"]
    window_s = window_seconds(model, window)

    start_time = time.time()
    sr = model.encoder.sample_rate
    waves = [load_audio(p, sr, nonfinite=nonfinite) for p in paths]
    for path, wave in zip(paths, waves, strict=True):
        check_clip_length(model, wave, path)
    names = [str(p) for p in paths]
    examples, owners = window_examples(waves, names, sr, window_s, prompt)
    texts, _ = generate_all(
        model, examples, batch_size, max_new_tokens, num_beams, progress, ctc_weight=ctc_weight
    )
    elapsed = time.time() - start_time
    transcripts = stitch_windows(waves, names, sr, owners, texts, elapsed)
    total_audio = sum(len(w) for w in waves) / sr

    extra = {"prompt": prompt, "checkpoint": str(ckpt) if ckpt else None, "window_s": window_s}
    if output_dir is not None:
        out_dir = Path(output_dir)
        for t, name in zip(transcripts, _output_names(paths, fmt), strict=True):
            target = atomic_write_text(out_dir / name, format_transcript(t, fmt, extra))
            print(f"{t.path} -> {target}", file=stderr)
    else:
        for t in transcripts:
            if len(transcripts) > 1 and fmt != "json":  # json: one object per line already names the file
                stdout.write(f"==> {t.path} <==\n")
            stdout.write(format_transcript(t, fmt, extra))
        stdout.flush()
    rtf = elapsed / total_audio if total_audio else float("nan")
    print(
        f"transcribed {len(paths)} file(s), {total_audio:.1f} s of audio in {len(examples)} window(s) "
        f"of <= {window_s:g} s, {elapsed:.1f} s: real-time factor {rtf:.3f}",
        file=stderr,
    )
    return transcripts
