"""Items and the corpus: make one item per planned spec, write its wav, and write the manifests.

Determinism: every item draws from its own ``Generator(PCG64(SeedSequence(seed, spawn_key=...)))``
keyed by (split, job, index), so the bytes of an item do not depend on the order items are made in, on
the number of worker processes, or on the other sizes. The same seed gives byte-identical wavs and
manifests; the splits use independent streams.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from moeaudio.data.manifest import validate_record
from moeaudio.data.synth.dsp import SR, _active_rms, _fade, _normalize
from moeaudio.data.synth.hard import make_hard
from moeaudio.data.synth.items import _Made, _Spec
from moeaudio.data.synth.labels import (
    _JOB_INDEX,
    ALL_TASKS,
    CHORD_QUALITIES,
    HARD_JOB_LABELS,
    HARD_JOBS,
    HELD_OUT_MIN,
    INSTRUMENTS,
    INTENTS,
    SIZES,
    SPLIT_COUNTS,
    SPLITS,
    SYNTH_TASKS,
    TEMPO_BPM,
    TEST_MIN,
)
from moeaudio.data.synth.mcq import _MCQ_CATEGORIES, _make_mcq
from moeaudio.data.synth.music import CHORD_TASK_ROOTS, _render_music
from moeaudio.data.synth.open_asr import _make_open_asr
from moeaudio.data.synth.sounds import NOISE_TYPES, _render_noise, _render_sound
from moeaudio.data.synth.speech import _MAX_S, _pad_speech, _pick_voice, _speak, _speech_kind
from moeaudio.data.synth.spoken_qa import _make_spoken_qa
from moeaudio.data.tts import synthesize
from moeaudio.errors import UsageError
from moeaudio.io_utils import atomic_path, atomic_write_text

_HARD_JOB_NAMES = frozenset(name for name, _, _ in HARD_JOBS)

#: Speech-over-background ratios (dB) of the mixed clips (speech active RMS / background RMS).
SNRS_DB: tuple[int, ...] = (0, 5, 10)

# --------------------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------------------


def _item_rng(seed: int, split: str, job: str, index: int) -> np.random.Generator:
    """An independent stream per item; the key uses stable CRCs, not Python's salted ``hash``."""
    key = (SPLITS.index(split), zlib.crc32(job.encode()), index)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _make_speech(rng: np.random.Generator, spec: _Spec, task: str) -> _Made:
    if task == "intent":
        voice, vmeta = _pick_voice(rng, spec.split)
        for _ in range(8):
            text = str(rng.choice(INTENTS[spec.label]))
            audio = _pad_speech(rng, synthesize(text, voice, sample_rate=SR)[0])
            if len(audio) <= int(_MAX_S * SR):
                break
        meta = {**vmeta, "text": text, "text_kind": "command", "intent": spec.label}
        return _Made(audio, spec.label, meta, speaker=vmeta["voice"], lang="en")
    gender = spec.label if task == "gender" else None
    rate = spec.label if task == "speaking_rate" else None
    audio, text, voice, meta = _speak(rng, spec.split, _speech_kind(rng), gender, rate)
    if rate is not None:
        meta["speaking_rate"] = rate
    target = text if task == "asr" else spec.label
    return _Made(audio, target, meta, speaker=meta["voice"], lang="en")


def _make_music(rng: np.random.Generator, spec: _Spec, task: str) -> _Made:
    instrument = spec.label if task == "instrument" else str(rng.choice(INSTRUMENTS))
    quality = spec.label if task == "chord" else str(rng.choice(list(CHORD_QUALITIES)))
    tempo = spec.label if task == "tempo" else str(rng.choice(list(TEMPO_BPM)))
    duration = rng.uniform(3.0, 4.0) if task == "tempo" else rng.uniform(2.0, 4.0)
    roots = CHORD_TASK_ROOTS if task == "chord" else None
    audio, meta = _render_music(rng, instrument, quality, tempo, duration, roots)
    return _Made(audio, spec.label, meta)


def _make_sound(rng: np.random.Generator, spec: _Spec) -> _Made:
    audio, meta = _render_sound(rng, spec.label, rng.uniform(1.5, 4.0))
    return _Made(audio, spec.label, meta)


def _make_mixed(rng: np.random.Generator, spec: _Spec, task: str) -> _Made:
    """Speech over music or noise at a set SNR (speech active RMS over background RMS)."""
    background = spec.label if task == "background" else str(rng.choice(["music", "noise"]))
    speech, text, voice, meta = _speak(rng, spec.split, _speech_kind(rng))
    n = len(speech)
    speech = speech / (np.max(np.abs(speech)) + 1e-9)
    if background == "music":
        bg, bmeta = _render_music(rng, str(rng.choice(INSTRUMENTS)), str(rng.choice(list(CHORD_QUALITIES))),
                                  str(rng.choice(list(TEMPO_BPM))), n / SR)  # fmt: skip
        bg = np.pad(bg, (0, max(0, n - len(bg))))[:n]
        bmeta = {"background_" + k: v for k, v in bmeta.items()}
    else:
        kind = str(rng.choice(NOISE_TYPES))
        bg, bmeta = _render_noise(rng, kind, n), {"background_noise": kind}
    snr = int(rng.choice(SNRS_DB))
    bg = _fade(bg, 0.02)
    bg_rms = float(np.sqrt(np.mean(bg**2))) + 1e-12
    mix = speech + bg * (_active_rms(speech) / bg_rms) * 10 ** (-snr / 20.0)
    meta = {
        **meta,
        "background": background,
        "snr_db": snr,
        "snr_ref": "speech active RMS / background RMS",
        **bmeta,
    }
    target = text if task == "asr" else background
    return _Made(mix, target, meta, speaker=meta["voice"], lang="en")


def _make(rng: np.random.Generator, spec: _Spec) -> _Made:
    task, domain = _JOB_INDEX[spec.job]
    if spec.job in _HARD_JOB_NAMES:
        return make_hard(rng, spec, task, domain)
    if task == "spoken_qa":
        return _make_spoken_qa(rng, spec)
    if spec.job == "speech_open_asr":
        return _make_open_asr(rng, spec)
    if task == "mcq":
        return _make_mcq(rng, spec, domain)
    if domain == "speech":
        return _make_speech(rng, spec, task)
    if domain == "music":
        return _make_music(rng, spec, task)
    if domain == "sound":
        return _make_sound(rng, spec)
    return _make_mixed(rng, spec, task)


def _item_id(spec: _Spec) -> str:
    return f"synth-{spec.split}-{spec.job}-{spec.index:05d}"


def _build_item(args: tuple[str, int, _Spec]) -> dict[str, Any]:
    """Make, normalise and write one clip; return its manifest row. Runs in worker processes."""
    out, seed, spec = args
    rng = _item_rng(seed, spec.split, spec.job, spec.index)
    made = _make(rng, spec)
    audio = _normalize(np.asarray(made.audio, dtype=np.float64), rng)
    task, domain = _JOB_INDEX[spec.job]
    rel = f"audio/{spec.split}/{domain}/{_item_id(spec)}.wav"
    path = Path(out) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=False) as tmp:
        sf.write(tmp, audio, SR, format="WAV", subtype="PCM_16")
    row = {
        "id": _item_id(spec),
        "audio": rel,
        "duration": round(len(audio) / SR, 6),
        "sample_rate": SR,
        "domain": domain,
        "task": task,
        "instruction": made.instruction or ALL_TASKS[task]["instruction"],
        "target": made.target,
        "choices": made.choices,
        "answer": made.answer,
        "lang": made.lang,
        "speaker": made.speaker,
        "meta": {"job": spec.job, **_json_safe(made.meta)},
    }
    return row


def _json_safe(meta: dict[str, Any]) -> dict[str, Any]:
    """Round floats so manifests are compact and free of platform-dependent last digits."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, float | np.floating):
            out[k] = round(float(v), 4)
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------------------
# Planning, parallel generation, summary
# --------------------------------------------------------------------------------------------------------


def _split_counts(total: int, size: str, job: str | None = None) -> dict[str, int]:
    """Train gets ``total`` minus 2 x 10 %; valid and test each get at least ``HELD_OUT_MIN[size]``.

    The held-out floor only adds clips (train is unchanged, and every item has its own random
    stream), so a larger floor extends valid/test without touching what is trained on.
    """
    if (size, job) in SPLIT_COUNTS:
        return dict(SPLIT_COUNTS[(size, job)])
    held = max(2, round(0.1 * total))
    held_out = max(held, HELD_OUT_MIN[size])
    return {"train": total - 2 * held, "valid": held_out, "test": max(held_out, TEST_MIN.get(size, 0))}


def _job_labels(job: str) -> tuple[str, ...] | None:
    task, domain = _JOB_INDEX[job]
    if job in HARD_JOB_LABELS:
        return HARD_JOB_LABELS[job]
    if task == "mcq":
        return _MCQ_CATEGORIES[domain]
    if task == "spoken_qa":  # the correct option's letter: balanced answer positions
        return tuple("ABCD")
    return ALL_TASKS[task]["labels"]


_PLAN_INDEX = 2**32 - 1  # stream key for the planner's label order; never an item index


def _plan(seed: int, size: str, jobs: Collection[str] | None = None) -> list[_Spec]:
    """All item specs, in manifest order. Class labels go round-robin over a per-(split, job) shuffled
    label order, so every class is present as soon as a split has as many items as classes.

    ``jobs`` keeps only those jobs' items (their specs, and so their bytes, are what the full plan has)."""
    specs: list[_Spec] = []
    for split in SPLITS:
        for job, total in SIZES[size].items():
            if not total or (jobs is not None and job not in jobs):
                continue
            labels = _job_labels(job)
            order = list(labels) if labels else []
            if order:
                perm = _item_rng(seed, split, job, _PLAN_INDEX).permutation(len(order))
                order = [order[i] for i in perm]
            for i in range(_split_counts(total, size, job)[split]):
                specs.append(_Spec(split, job, i, order[i % len(order)] if order else None))
    return specs


@dataclass
class SynthSummary:
    """What :func:`make_synth_corpus` produced (``counts[split][domain][task]`` = clips)."""

    out: Path
    seed: int
    size: str
    n_clips: int
    hours: float
    seconds: float  # wall-clock generation time (not written to summary.json: it would break determinism)
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    hours_per_split: dict[str, float] = field(default_factory=dict)
    manifests: dict[str, Path] = field(default_factory=dict)


def _iter_rows(out: Path, seed: int, specs: list[_Spec], workers: int) -> Iterator[dict[str, Any]]:
    """Rows in completion order; a spawn pool keeps eSpeak's global state out of the parent's fork."""
    args = [(str(out), seed, s) for s in specs]
    if workers <= 1:
        yield from map(_build_item, args)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_build_item, args, chunksize=8)


def _summarize(rows_by_split: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    counts: dict[str, dict[str, dict[str, int]]] = {}
    hours: dict[str, float] = {}
    for split, rows in rows_by_split.items():
        c: dict[str, dict[str, int]] = {}
        for r in rows:
            c.setdefault(r["domain"], {}).setdefault(r["task"], 0)
            c[r["domain"]][r["task"]] += 1
        counts[split] = {d: dict(sorted(t.items())) for d, t in sorted(c.items())}
        hours[split] = round(sum(r["duration"] for r in rows) / 3600.0, 4)
    return {"counts": counts, "hours": hours}


def _summary_rows(counts: dict[str, dict[str, dict[str, int]]]) -> list[tuple[str, str, list[int]]]:
    keys = sorted({(d, t) for s in counts.values() for d, ts in s.items() for t in ts})
    return [(d, t, [counts[s].get(d, {}).get(t, 0) for s in SPLITS]) for d, t in keys]


def _summary_md(summary: dict[str, Any]) -> str:
    lines = [
        f"# Synthetic corpus (size={summary['size']}, seed={summary['seed']})",
        "",
        "| domain | task | " + " | ".join(SPLITS) + " | total | chance |",
        "|---|---|" + "---:|" * (len(SPLITS) + 2),
    ]
    for d, t, ns in _summary_rows(summary["counts"]):
        ch = ALL_TASKS[t]["chance"]
        lines.append(
            f"| {d} | {t} | "
            + " | ".join(map(str, ns))
            + f" | {sum(ns)} | {'-' if ch is None else f'{ch:.3f}'} |"
        )
    n = [summary["clips"][s] for s in SPLITS]
    lines.append("| **all** | | " + " | ".join(map(str, n)) + f" | {sum(n)} | |")
    lines.append(
        "| hours | | "
        + " | ".join(f"{summary['hours'][s]:.3f}" for s in SPLITS)
        + f" | {summary['total_hours']:.3f} | |"
    )
    return "\n".join(lines) + "\n"


def _print_table(summary: dict[str, Any], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"synth corpus size={summary['size']} seed={summary['seed']} ({seconds:.1f} s)")
    for col in ("domain", "task", *SPLITS, "total", "chance"):
        table.add_column(col, justify="left" if col in ("domain", "task") else "right")
    for d, t, ns in _summary_rows(summary["counts"]):
        ch = ALL_TASKS[t]["chance"]
        table.add_row(d, t, *map(str, ns), str(sum(ns)), "-" if ch is None else f"{ch:.3f}")
    n = [summary["clips"][s] for s in SPLITS]
    table.add_row("all", "", *map(str, n), str(sum(n)), "", style="bold")
    table.add_row(
        "hours", "", *(f"{summary['hours'][s]:.3f}" for s in SPLITS), f"{summary['total_hours']:.3f}", ""
    )
    Console().print(table)


def _default_workers(size: str) -> int:
    # tiny: process start-up (~1 s per spawned worker) costs more than it saves.
    return 1 if size == "tiny" else max(1, min(2, os.cpu_count() or 1))


def make_synth_corpus(
    out: Path,
    seed: int = 0,
    size: str = "default",
    progress: bool = True,
    *,
    workers: int | None = None,
    jobs: Collection[str] | None = None,
) -> SynthSummary:
    """Generate the corpus into ``out`` and return its summary.

    Writes ``out/audio/<split>/<domain>/*.wav`` (16 kHz mono PCM_16), ``out/{train,valid,test}.jsonl``
    (audio paths relative to ``out``), ``out/summary.json`` and ``out/summary.md``. The manifests are
    written last and atomically, so a manifest never points at a clip that is missing. ``progress=False``
    is silent (no bar, no table). ``workers`` defaults to 2 processes (1 for ``tiny``); the output bytes
    do not depend on it. ``jobs`` (job names of the size, e.g. ``["speech_qa"]``) generates only those
    jobs' clips, each byte-identical to its clip in the full corpus (for tests and partial rebuilds).
    """
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    unknown = sorted(set(jobs or ()) - set(SIZES[size]))
    if unknown:
        raise UsageError(f"size {size!r} has no job {', '.join(unknown)}; its jobs: {', '.join(SIZES[size])}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    specs = _plan(seed, size, jobs)
    order = {_item_id(s): i for i, s in enumerate(specs)}
    rows: list[dict[str, Any]] = []
    stream = _iter_rows(out, seed, specs, workers or _default_workers(size))
    if progress:
        from rich.progress import track

        stream = track(stream, total=len(specs), description=f"synth {size}")
    for row in stream:
        problems = validate_record(row)
        if problems:
            raise RuntimeError(f"synth item {row['id']} is not a valid manifest record: {problems}")
        rows.append(row)
    rows.sort(key=lambda r: order[r["id"]])
    by_split = {s: [r for r in rows if r["id"].startswith(f"synth-{s}-")] for s in SPLITS}
    manifests: dict[str, Path] = {}
    for split, split_rows in by_split.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split_rows)
        manifests[split] = atomic_write_text(out / f"{split}.jsonl", text)
    stats = _summarize(by_split)
    size_tasks = {_JOB_INDEX[job][0] for job, total in SIZES[size].items() if total}
    summary = {
        "size": size,
        "seed": seed,
        "sample_rate": SR,
        "clips": {s: len(by_split[s]) for s in SPLITS},
        "total_clips": len(rows),
        "hours": stats["hours"],
        "total_hours": round(sum(stats["hours"].values()), 4),
        "counts": stats["counts"],
        "speakers": {s: sorted({r["speaker"] for r in by_split[s] if r["speaker"]}) for s in SPLITS},
        "chance": {t: spec["chance"] for t, spec in ALL_TASKS.items() if t in SYNTH_TASKS or t in size_tasks},
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", _summary_md(summary))
    seconds = time.perf_counter() - start
    if progress:
        _print_table(summary, seconds)
    return SynthSummary(
        out=out,
        seed=seed,
        size=size,
        n_clips=len(rows),
        hours=summary["total_hours"],
        seconds=seconds,
        counts=stats["counts"],
        hours_per_split=stats["hours"],
        manifests=manifests,
    )
