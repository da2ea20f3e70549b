"""Shared machinery for dataset preparers (``moeaudio.data.sources.<name>.prepare``).

Every preparer does the same three things after parsing its dataset's layout: check that each
audio file actually decodes, turn absolute audio paths into paths relative to the output dir,
and write ``out/<split>.jsonl`` plus a report. Doing that here keeps the per-dataset modules to
"parse the layout" only, and guarantees one behaviour everywhere: **bad files are skipped and
listed with a reason, never dropped silently and never fatal** (real releases contain broken
files, e.g. GTZAN ``jazz.00054.wav`` or the empty CREMA-D ``1076_MTI_SAD_XX.wav``).

Common options accepted by every ``prepare(src, out, **options)``:

* ``verify``: ``"info"`` (default; read the header with ``soundfile.info`` -> duration,
  sample rate, catches unreadable/empty files), ``"decode"`` (also decode all samples; slow
  but catches truncated data), or ``"none"`` (only check the file exists; no duration).
* ``workers``: threads used to probe files (default 4; libsndfile releases the GIL).
* ``limit``: keep at most this many items per split (smoke tests / debugging).
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from moeaudio.data.audio import AudioDecodeError, check_audio_file, load_audio
from moeaudio.data.manifest import Item, manifest_relpath, validate_record, write_manifest
from moeaudio.data.tasks import TASK_DOMAINS, TASK_INSTRUCTIONS
from moeaudio.errors import MissingDataError, OptionError, UnknownNameError, UsageError
from moeaudio.io_utils import atomic_write_text

__all__ = [
    "COMMON_OPTIONS",
    "Candidate",
    "PrepareReport",
    "SOURCES",
    "finalize",
    "get_source",
    "prepare_source",
    "print_summary",
    "probe_audio",
]

COMMON_OPTIONS = ("verify", "workers", "limit")
VERIFY_MODES = ("info", "decode", "none")
REPORT_NAME = "prepare_report.json"


@dataclass
class Candidate:
    """An item a preparer wants to emit; ``item.audio`` holds the absolute audio path for now."""

    split: str
    item: Item


@dataclass
class PrepareReport:
    """What a preparer wrote, and what it skipped and why. Saved as ``out/prepare_report.json``."""

    source: str
    src: str
    out: str
    splits: dict[str, int] = field(default_factory=dict)
    hours: dict[str, float] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    domains: dict[str, int] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    manifests: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total_items(self) -> int:
        return sum(self.splits.values())

    @property
    def total_hours(self) -> float:
        return sum(self.hours.values())

    def skip(self, path: str | os.PathLike[str], reason: str) -> None:
        """Record an input that was not turned into an item (file or record id, and why)."""
        self.skipped.append((os.fspath(path), reason))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "src": self.src,
            "out": self.out,
            "total_items": self.total_items,
            "total_hours": round(self.total_hours, 4),
            "splits": self.splits,
            "hours": {k: round(v, 4) for k, v in self.hours.items()},
            "tasks": self.tasks,
            "domains": self.domains,
            "labels": self.labels,
            "manifests": self.manifests,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def print_summary(self, console: Any = None, max_skipped: int = 10) -> None:
        print_summary(self, console=console, max_skipped=max_skipped)


def print_summary(report: PrepareReport, console: Any = None, max_skipped: int = 10) -> None:
    """Rich table: items/hours per split, tasks, domains, and the first skipped files with reasons."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(
        title=f"{report.source}: {report.total_items} items, {report.total_hours:.2f} h -> {report.out}"
    )
    table.add_column("split")
    table.add_column("items", justify="right")
    table.add_column("hours", justify="right")
    table.add_column("manifest")
    for split in sorted(report.splits):
        table.add_row(
            split,
            str(report.splits[split]),
            f"{report.hours.get(split, 0.0):.3f}",
            report.manifests.get(split, ""),
        )
    console.print(table)
    console.print("tasks: " + ", ".join(f"{k}={v}" for k, v in sorted(report.tasks.items())))
    console.print("domains: " + ", ".join(f"{k}={v}" for k, v in sorted(report.domains.items())))
    if report.skipped:
        console.print(f"[yellow]skipped {len(report.skipped)} inputs[/yellow] (all listed in {REPORT_NAME}):")
        for path, reason in report.skipped[:max_skipped]:
            console.print(f"  {path}: {reason}")
        if len(report.skipped) > max_skipped:
            console.print(f"  ... and {len(report.skipped) - max_skipped} more")


def probe_audio(
    path: str | os.PathLike[str], verify: str = "info"
) -> tuple[float | None, int | None, str | None]:
    """Check one audio file; return ``(duration_s, sample_rate, None)`` or ``(None, None, reason)``.

    The header check is :func:`moeaudio.data.audio.check_audio_file`, the one every command runs
    on its audio (directory, empty, not audio, header only, truncated WAV); ``decode`` also decodes
    the samples with :func:`~moeaudio.data.audio.load_audio` (undecodable data, NaN/Inf samples).
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        return None, None, "is a directory, not an audio file" if os.path.isdir(p) else "missing file"
    if verify == "none":
        return None, None, None
    try:
        info = check_audio_file(p)
    except AudioDecodeError as e:
        return None, None, str(e).removeprefix(f"{p}: ")
    if verify == "decode":
        try:
            data = load_audio(p, None)
        except AudioDecodeError as e:
            return None, None, f"decode failed: {str(e).removeprefix(f'{p}: ')}"
        return data.shape[0] / info.sample_rate, info.sample_rate, None
    return info.frames / info.sample_rate, info.sample_rate, None


def _check_common(options: Mapping[str, Any], source: str) -> None:
    for key in options:
        if key not in COMMON_OPTIONS:
            close = difflib.get_close_matches(key, COMMON_OPTIONS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise OptionError(
                f"{source}.prepare(): unknown option '{key}'{hint} (see the module docstring for options)"
            )


def finalize(
    source: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    candidates: Iterable[Candidate],
    skipped: Iterable[tuple[str, str]] = (),
    *,
    verify: str = "info",
    workers: int = 4,
    limit: int | None = None,
    label_tasks: Iterable[str] | None = None,
) -> PrepareReport:
    """Probe audio, relativise paths, write ``out/<split>.jsonl`` and the report; return the report.

    Items sharing an audio file (e.g. emotion + gender items of one clip) probe it once. Within a
    split items are sorted by id so reruns produce byte-identical manifests.
    """
    if verify not in VERIFY_MODES:
        raise UsageError(f"verify must be one of {', '.join(VERIFY_MODES)} (got {verify!r})")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = PrepareReport(source=source, src=os.fspath(src), out=os.fspath(out_dir))
    report.skipped.extend(skipped)

    by_split: dict[str, list[Item]] = defaultdict(list)
    for cand in candidates:
        problems = validate_record(cand.item.to_dict())  # the checks every reader of the manifest makes
        if problems:
            report.skip(cand.item.id, "; ".join(problems))
            continue
        by_split[cand.split].append(cand.item)
    for split in by_split:
        by_split[split].sort(key=lambda it: it.id)
        if limit is not None:
            by_split[split] = by_split[split][:limit]

    paths = sorted({it.audio for items in by_split.values() for it in items})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = dict(zip(paths, pool.map(lambda p: probe_audio(p, verify), paths), strict=True))
    for p in paths:
        if results[p][2] is not None:
            report.skip(p, results[p][2])

    label_tasks = set(label_tasks) if label_tasks is not None else None
    tasks: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    for split in sorted(by_split):
        kept: list[Item] = []
        seconds = 0.0
        for it in by_split[split]:
            dur, sr, reason = results[it.audio]
            if reason is not None:
                continue
            it.duration = round(dur, 4) if dur is not None else it.duration
            it.sample_rate = sr if sr is not None else it.sample_rate
            seconds += it.duration or 0.0
            it.audio = manifest_relpath(it.audio, out_dir)
            kept.append(it)
            tasks[it.task] += 1
            domains[it.domain or "mixed"] += 1
            if it.task not in ("asr", "mcq") and (label_tasks is None or it.task in label_tasks):
                labels[it.task][it.target] += 1
        manifest = out_dir / f"{split}.jsonl"
        write_manifest(manifest, kept)
        report.splits[split] = len(kept)
        report.hours[split] = seconds / 3600.0
        report.manifests[split] = manifest.name
    report.tasks = dict(tasks)
    report.domains = dict(domains)
    report.labels = {t: dict(sorted(c.items())) for t, c in labels.items()}
    report.save(out_dir / REPORT_NAME)
    return report


def run_finalize(
    source: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    candidates: Iterable[Candidate],
    skipped: Iterable[tuple[str, str]],
    options: Mapping[str, Any],
) -> PrepareReport:
    """``finalize`` after validating that ``options`` only holds common options (clear error otherwise)."""
    _check_common(options, source)
    return finalize(source, src, out, candidates, skipped, **options)


def source_dir(src: str | os.PathLike[str], *candidates: str) -> Path:
    """Return ``src`` or the first existing ``src/<candidate>`` (users may pass the parent of the release dir)."""
    root = Path(src)
    if not root.exists():
        raise MissingDataError(f"{root}: source directory does not exist")
    for c in candidates:
        if (root / c).exists():
            return root / c
    return root


# ------------------------------------------------------------------------------ registry
_SOURCE_MODULES: dict[str, str] = {
    "librispeech": "librispeech",
    "commonvoice": "commonvoice",
    "esc50": "esc50",
    "gtzan": "gtzan",
    "ravdess": "ravdess",
    "cremad": "cremad",
    "iemocap": "iemocap",
    "vocalsound": "vocalsound",
    "mmau": "mmau",
    "voicebench": "voicebench",
    "jsonl": "jsonl",
    "csv": "csvfile",
    "hf": "hf",
}


class _LazySources(Mapping[str, ModuleType]):
    """``{name: module}`` that imports a preparer only when asked (``hf`` pulls in ``datasets``)."""

    def __getitem__(self, name: str) -> ModuleType:
        if name not in _SOURCE_MODULES:
            close = difflib.get_close_matches(name, list(_SOURCE_MODULES), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UnknownNameError(f"unknown source {name!r}{hint} Known: {', '.join(_SOURCE_MODULES)}")
        return importlib.import_module(f"moeaudio.data.sources.{_SOURCE_MODULES[name]}")

    def __iter__(self) -> Iterator[str]:
        return iter(_SOURCE_MODULES)

    def __len__(self) -> int:
        return len(_SOURCE_MODULES)


SOURCES: Mapping[str, ModuleType] = _LazySources()


def get_source(name: str) -> ModuleType:
    """The preparer module for ``name`` (KeyError with a nearest-name suggestion)."""
    return SOURCES[name]


def prepare_source(
    name: str, src: str | os.PathLike[str], out: str | os.PathLike[str], **options: Any
) -> PrepareReport:
    """``SOURCES[name].prepare(Path(src), Path(out), **options)``."""
    return get_source(name).prepare(Path(src), Path(out), **options)


def block_split(keys: Iterable[str], valid_ratio: float, test_ratio: float) -> dict[str, str]:
    """Deterministic speaker-independent split: sorted keys, last ``test_ratio`` -> test, previous ``valid_ratio`` -> valid.

    Used for corpora without an official split (RAVDESS, CREMA-D, VocalSound fallback) so
    results are reproducible across machines without shipping split files.
    """
    ordered = sorted(set(keys))
    n = len(ordered)
    n_test = round(n * test_ratio)
    n_valid = round(n * valid_ratio)
    out: dict[str, str] = {}
    for i, k in enumerate(ordered):
        out[k] = "test" if i >= n - n_test else "valid" if i >= n - n_test - n_valid else "train"
    return out


def emit_tasks(
    cands: list[Candidate],
    split: str,
    base_id: str,
    audio: str,
    tasks: Iterable[str],
    targets: Mapping[str, str | None],
    **fields: Any,
) -> None:
    """Append one Candidate per requested task (``emotion`` keeps ``base_id``; others get ``/<task>``).

    Several label tasks per clip (emotion, gender) share one audio file; ids stay unique.
    """
    for i, task in enumerate(tasks):
        target = targets.get(task)
        if target is None:
            continue
        cands.append(
            Candidate(
                split,
                Item(
                    id=base_id if i == 0 else f"{base_id}/{task}",
                    audio=audio,
                    domain=TASK_DOMAINS.get(task, "speech"),
                    task=task,
                    instruction=TASK_INSTRUCTIONS.get(task),
                    target=target,
                    **{k: dict(v) if isinstance(v, dict) else v for k, v in fields.items()},
                ),
            )
        )
