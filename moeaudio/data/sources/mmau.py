"""MMAU (Massive Multi-task Audio Understanding benchmark) -> ``mcq`` manifests.

Layout (GitHub ``Sakshi113/MMAU`` JSON + the released audio archives)::

    <src>/mmau-test-mini.json      # JSON list; also mmau-test.json (answers withheld)
    <src>/test-mini-audios/<id>.wav
    entry: {"id", "audio_id": "./test-mini-audios/<id>.wav", "question", "choices": [...],
            "answer": "<choice text>", "dataset", "task": "sound|music|speech",
            "split": "test-mini", "category", "sub-category", "difficulty"}

Label fields (``task``, ``category``, ``sub-category``, ``difficulty``, ``dataset``, ``split``) are strings
in most entries and one-element lists in some of the released test-mini (``"category": ["Reasoning"]``);
each goes through :func:`~moeaudio.data.tasks.scalar_label`, so a breakdown never shows
``['Reasoning']`` as a category of its own (several values are joined with ``"; "``).

``audio_id`` is resolved relative to the JSON file's directory. The split is the entry's
``split`` field, else the file stem without the ``mmau`` prefix. Domain = the ``task`` field.
``answer`` is turned into a choice letter (``Item.answer``) and ``target`` holds the choice
text; entries whose answer matches no choice are skipped and reported. Entries without an
answer (the public test set) keep ``target=""`` and ``answer=None``.

Options: ``files`` (JSON names/paths; default every ``*.json`` in ``src``), plus the common
options of :mod:`moeaudio.data.sources.base`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import DOMAINS, Item
from moeaudio.data.sources.base import Candidate, PrepareReport, run_finalize
from moeaudio.data.tasks import TASK_INSTRUCTIONS, answer_letter, scalar_label
from moeaudio.errors import MissingDataError, UsageError
from moeaudio.io_utils import read_user_text

NAME = "mmau"


def prepare(
    src: Path, out: Path, *, files: Sequence[str | Path] | None = None, **options: Any
) -> PrepareReport:
    """One ``mcq`` item per benchmark entry."""
    root = Path(src)
    paths = [root / f for f in files] if files is not None else sorted(root.glob("*.json"))
    if not paths:
        raise MissingDataError(f"{root}: no MMAU *.json benchmark files found")
    cands: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for path in paths:
        try:
            data = json.loads(read_user_text(path, "MMAU JSON file"))
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(data, list):
            raise UsageError(f"{path}: expected a JSON list of MMAU entries")
        default_split = re.sub(r"^mmau[-_]?", "", Path(path).stem) or "test"
        for n, e in enumerate(data):
            where = f"{path}:{e.get('id', n)}" if isinstance(e, dict) else f"{path}:{n}"
            if (
                not isinstance(e, dict)
                or not e.get("audio_id")
                or not e.get("question")
                or not e.get("choices")
            ):
                skipped.append((where, "entry lacks audio_id, question or choices"))
                continue
            choices = [str(c) for c in e["choices"]]
            answer = scalar_label(e.get("answer"))
            letter = answer_letter(str(answer), choices, prefer="text") if answer not in (None, "") else None
            if answer not in (None, "") and letter is None:
                skipped.append((where, f"answer {answer!r} is not one of the choices"))
                continue
            domain = str(scalar_label(e.get("task")) or "mixed").lower()
            split = str(scalar_label(e.get("split")) or default_split).replace("_", "-")
            meta = {
                k.replace("-", "_"): scalar_label(e[k])
                for k in ("dataset", "category", "sub-category", "difficulty")
                if scalar_label(e.get(k)) is not None
            }
            if domain not in DOMAINS:
                meta["mmau_task"] = e.get("task")
                domain = "mixed"
            cands.append(
                Candidate(
                    split,
                    Item(
                        id=f"{NAME}/{e.get('id', n)}",
                        audio=os.path.normpath(
                            os.path.join(os.path.abspath(Path(path).parent), str(e["audio_id"]))
                        ),
                        domain=domain,
                        task="mcq",
                        instruction=str(e["question"]).strip() or TASK_INSTRUCTIONS["mcq"],
                        target=choices[ord(letter) - 65] if letter else "",
                        choices=choices,
                        answer=letter,
                        meta=meta,
                    ),
                )
            )
    return run_finalize(NAME, src, out, cands, skipped, options)
