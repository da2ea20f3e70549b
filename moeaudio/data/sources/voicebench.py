"""VoiceBench (``hlt-lab/voicebench`` on the HF Hub) MCQ subsets -> ``mcq`` manifests + wavs.

Layout (a snapshot of the dataset repo, e.g. ``huggingface-cli download --repo-type dataset
hlt-lab/voicebench --local-dir <src>``)::

    <src>/mmsu/<split>-00000-of-0000N.parquet        # splits = 12 MMLU-Pro domains (biology, law, ...)
    <src>/openbookqa/test-00000-of-00001.parquet
    columns: audio {bytes, path} (struct), prompt (the question and options as text),
             reference (answer letter "A".."D"), optional id/question_id and other text columns

Audio bytes are decoded with soundfile (not ``datasets``' torchcodec decoder) and written to
``out/audio/<subset>/<split>-<id>.wav``; reruns reuse wavs already written. One manifest per
subset (``out/mmsu.jsonl``, ``out/openbookqa.jsonl``); the parquet split goes to
``meta.split`` (for mmsu that is the subject). The spoken question already contains the
options, so ``meta.choices_in_audio`` is True and ``meta.text_prompt`` keeps the text form for
the text-vs-speech modality-gap evaluation. ``choices``/``answer`` are parsed from
``prompt``/``reference``; rows that cannot be parsed are skipped and reported.

Columns that hold a list of labels in some rows (e.g. a one-element ``category`` list) are flattened
with :func:`~moeaudio.data.tasks.scalar_label` before they reach ``meta``, as are ``prompt`` and
``reference``.

Options: ``subsets`` (default ``("mmsu", "openbookqa")``), ``target_sr`` (None = keep the
released rate), ``overwrite`` (False), plus the common options of
:mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from moeaudio.data.audio import AudioDecodeError, decode_audio_bytes, save_audio
from moeaudio.data.manifest import Item
from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize
from moeaudio.data.tasks import answer_letter, scalar_label, split_choices
from moeaudio.errors import MissingDataError

NAME = "voicebench"
INSTRUCTION = (
    "Listen to the multiple-choice question and answer it. Reply with the letter of the correct option."
)
_ID_COLUMNS = ("id", "question_id", "qid", "idx")


def _parquet_files(root: Path, subset: str) -> list[Path]:
    files = sorted((root / subset).rglob("*.parquet")) if (root / subset).is_dir() else []
    if not files:
        files = sorted(p for p in root.rglob("*.parquet") if subset in p.relative_to(root).parts[:-1])
    return files


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=64):
        yield from batch.to_pylist()


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def prepare(
    src: Path,
    out: Path,
    *,
    subsets: Sequence[str] = ("mmsu", "openbookqa"),
    target_sr: int | None = None,
    overwrite: bool = False,
    **options: Any,
) -> PrepareReport:
    """Decode audio to wavs under ``out/audio`` and emit one ``mcq`` item per parsable row."""
    root, out = Path(src), Path(out)
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for subset in subsets:
        files = _parquet_files(root, subset)
        if not files:
            raise MissingDataError(
                f"{root}: no parquet files for subset {subset!r} (expected {subset}/*.parquet)"
            )
        for path in files:
            split = path.name.split("-")[0] if "-" in path.name else path.stem
            for idx, row in enumerate(_rows(path)):
                rid = next((str(row[c]) for c in _ID_COLUMNS if row.get(c) not in (None, "")), f"{idx:05d}")
                where = f"{path}#{idx}"
                prompt = str(scalar_label(row.get("prompt")) or "")
                parsed = split_choices(prompt)
                if parsed is None:
                    skipped.append((where, "could not parse lettered choices from 'prompt'"))
                    continue
                question, choices = parsed
                reference = scalar_label(row.get("reference"))
                letter = answer_letter(str(reference or ""), choices)
                if letter is None:
                    skipped.append((where, f"reference {row.get('reference')!r} matches no choice"))
                    continue
                audio = row.get("audio") or {}
                wav_path = out / "audio" / subset / f"{_safe(split)}-{_safe(rid)}.wav"
                if overwrite or not wav_path.is_file():
                    data = audio.get("bytes") if isinstance(audio, dict) else None
                    if not data:
                        skipped.append((where, "row has no audio bytes"))
                        continue
                    try:
                        wav, sr = decode_audio_bytes(data, target_sr, name=where)
                    except AudioDecodeError as e:
                        skipped.append((where, str(e).split(": ", 1)[-1]))
                        continue
                    save_audio(wav_path, wav, sr)
                meta: dict[str, Any] = {
                    "subset": subset,
                    "split": split,
                    "row_id": rid,
                    "text_prompt": prompt,
                    "question": question,
                    "choices_in_audio": True,
                }
                for k, v in row.items():
                    if k in ("audio", "prompt", "reference"):
                        continue
                    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in v):
                        v = scalar_label(v)  # a label stored as a list in some rows
                    if isinstance(v, (str, int, float, bool)):
                        meta.setdefault(k, v)
                cands.append(
                    Candidate(
                        subset,
                        Item(
                            id=f"{NAME}/{subset}/{_safe(split)}-{_safe(rid)}",
                            audio=str(wav_path),
                            domain="speech",
                            task="mcq",
                            instruction=INSTRUCTION,
                            target=choices[ord(letter) - 65],
                            choices=choices,
                            answer=letter,
                            lang="en",
                            meta=meta,
                        ),
                    )
                )
    return run_finalize(NAME, src, out, cands, skipped, options)
