"""The moeaudio manifest: one JSON object per line, one :class:`Item` per audio/task pair.

Why this shape: every stage (training collator, evaluator, analysis) reads the same jsonl, so a
typo in a hand-edited or converted manifest must fail *here*, early, with the file and line and
a fix, instead of as a KeyError deep in a dataloader worker hours into a run.

Conventions
-----------
* ``audio`` is stored exactly as written. A relative path is relative to the manifest file's
  directory (so a manifest + audio tree can be moved together); use :meth:`Item.resolve_audio`.
* ``target`` is the reference output string (transcript, label text, or for ``mcq`` the text of
  the correct choice).
* ``choices``/``answer``: for multiple choice, ``choices`` lists the option texts (no ``A.``
  prefixes) and ``answer`` is the letter (``"A"``, ``"B"``, ...) of the correct one.
* ``domain`` defaults from the task (:data:`moeaudio.data.tasks.TASK_DOMAINS`), else ``mixed``.

Two levels of checking, both with ``file:line`` in every message:

* :func:`read_manifest` -- each line on its own (JSON, keys, types, domain, choices/answer/target
  agree) and unique ids. A UTF-8 byte-order mark is skipped; other non-UTF-8 bytes are an error.
* :func:`check_manifest` -- what a command needs before it starts, the same checks ``prepare``
  makes: every task known (or named by the user), every selected item's audio present, readable,
  complete and long enough, and ``duration`` filled in from the header where a line lacks it.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from moeaudio.data.audio import AudioDecodeError, check_audio_file
from moeaudio.data.tasks import CHOICE_LETTERS, TASK_DOMAINS, TASK_REGISTRY
from moeaudio.errors import MissingDataError, MoeaudioError
from moeaudio.io_utils import atomic_write_chunks

__all__ = [
    "DOMAINS",
    "Item",
    "ManifestError",
    "REQUIRED_KEYS",
    "check_items",
    "check_manifest",
    "item_from_dict",
    "manifest_relpath",
    "read_manifest",
    "read_numbered",
    "validate_record",
    "write_manifest",
]

DOMAINS: tuple[str, ...] = ("speech", "music", "sound", "mixed")
REQUIRED_KEYS: tuple[str, ...] = ("id", "audio", "task", "target")
_MAX_REPORTED_ERRORS = 20


class ManifestError(MoeaudioError, ValueError):
    """A manifest line is invalid. ``str(err)`` starts with ``<file>:<line>: ``.

    ``errors`` holds every problem found (up to a cap) so a user can fix a file in one pass.
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


@dataclass(kw_only=True)
class Item:
    """One training/eval example. Keyword-only so field additions never shift positional args."""

    id: str
    audio: str
    duration: float | None = None
    sample_rate: int | None = None
    domain: str | None = None
    task: str
    instruction: str | None = None
    target: str
    choices: list[str] | None = None
    answer: str | None = None
    lang: str | None = None
    speaker: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.domain is None:
            self.domain = TASK_DOMAINS.get(self.task, "mixed")
        self.audio = os.fspath(self.audio)

    def resolve_audio(self, manifest_path: str | os.PathLike[str]) -> Path:
        """Absolute-or-cwd-relative path to the audio: relative ``audio`` is joined to the manifest's dir."""
        if os.path.isabs(self.audio):
            return Path(self.audio)
        return Path(os.path.normpath(os.path.join(os.path.dirname(os.fspath(manifest_path)), self.audio)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without ``None``/empty-meta keys (they read back as the defaults)."""
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None and not (k == "meta" and not v)}


VALID_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Item))


def manifest_relpath(audio_file: str | os.PathLike[str], manifest_dir: str | os.PathLike[str]) -> str:
    """Path of ``audio_file`` relative to ``manifest_dir`` with ``/`` separators (portable manifests)."""
    rel = os.path.relpath(os.path.abspath(audio_file), os.path.abspath(manifest_dir))
    return rel.replace(os.sep, "/")


def _type_name(v: Any) -> str:
    return type(v).__name__


def _check_str(rec: dict[str, Any], key: str, *, optional: bool, nonempty: bool = False) -> str | None:
    if key not in rec or (optional and rec[key] is None):
        return None
    v = rec[key]
    if not isinstance(v, str):
        hint = f'; quote it, e.g. "{key}": "{v}"' if isinstance(v, (int, float)) else ""
        return f"key '{key}' must be a string (got {_type_name(v)} {v!r}){hint}"
    if nonempty and not v.strip():
        return f"key '{key}' must be a non-empty string"
    return None


def validate_record(rec: Any) -> list[str]:
    """Return human-readable problems with one decoded manifest line (empty list = valid).

    Messages name the key, what is expected, and what was found, so the caller only has to
    prefix ``file:line``.
    """
    if not isinstance(rec, dict):
        return [f'each line must be a JSON object like {{"id": ..., "audio": ...}} (got {_type_name(rec)})']
    errs: list[str] = []
    for key in rec:
        if key not in VALID_KEYS:
            close = difflib.get_close_matches(str(key), VALID_KEYS, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else "put extra information under 'meta'."
            errs.append(f"unknown key '{key}'; {hint} Valid keys: {', '.join(VALID_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    for k in missing:
        errs.append(f"missing required key '{k}'; every line needs {', '.join(REQUIRED_KEYS)}")
    for key, nonempty in (("id", True), ("audio", True), ("task", True), ("target", False)):
        if key in rec:
            err = _check_str(rec, key, optional=False, nonempty=nonempty)
            if err:
                errs.append(err)
    for key in ("instruction", "lang", "speaker", "answer"):
        err = _check_str(rec, key, optional=True)
        if err:
            errs.append(err)
    dom = rec.get("domain")
    if dom is not None and dom not in DOMAINS:
        close = difflib.get_close_matches(str(dom), DOMAINS, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        errs.append(f"key 'domain' must be one of {', '.join(DOMAINS)} (got {dom!r}){hint}")
    dur = rec.get("duration")
    if dur is not None and (isinstance(dur, bool) or not isinstance(dur, (int, float)) or dur < 0):
        errs.append(f"key 'duration' must be a non-negative number of seconds or null (got {dur!r})")
    sr = rec.get("sample_rate")
    if sr is not None and (isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0):
        errs.append(f"key 'sample_rate' must be a positive integer in Hz or null (got {sr!r})")
    meta = rec.get("meta")
    if meta is not None and not isinstance(meta, dict):
        errs.append(f"key 'meta' must be a JSON object (got {_type_name(meta)})")
    choices = rec.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            errs.append("key 'choices' must be a list of strings or null")
            choices = None
        elif not 2 <= len(choices) <= len(CHOICE_LETTERS):
            errs.append(f"key 'choices' must have 2..{len(CHOICE_LETTERS)} entries (got {len(choices)})")
            choices = None
    ans = rec.get("answer")
    if isinstance(ans, str) and choices:
        letters = CHOICE_LETTERS[: len(choices)]
        if ans not in letters:
            if ans in choices:
                errs.append(
                    f"key 'answer' must be the letter of the correct choice; use '{letters[choices.index(ans)]}' "
                    f"for {ans!r}"
                )
            else:
                errs.append(
                    f"key 'answer' must be one of the letters {', '.join(letters)} for {len(choices)} choices "
                    f"(got {ans!r})"
                )
    elif isinstance(ans, str) and choices is None and "choices" not in rec:
        errs.append("key 'answer' needs 'choices' (answer is the letter of the correct choice)")
    target = rec.get("target")
    if choices and isinstance(target, str) and target.strip():  # "" = answer withheld (a test set)
        texts = [_norm_choice(c) for c in choices]
        if _norm_choice(target) not in texts:
            errs.append(
                f"key 'target' {target!r} is not one of the choices {choices}; for multiple choice the "
                "target is the text of the correct choice"
            )
        elif isinstance(ans, str) and ans in CHOICE_LETTERS[: len(choices)]:
            picked = choices[CHOICE_LETTERS.index(ans)]
            if _norm_choice(picked) != _norm_choice(target):
                errs.append(
                    f"key 'answer' {ans!r} names choice {picked!r} but 'target' is {target!r}; make them agree"
                )
    return errs


def _norm_choice(text: str) -> str:
    return " ".join(text.casefold().split())


def item_from_dict(rec: dict[str, Any]) -> Item:
    """Build an :class:`Item` from a validated record; raises ``ManifestError`` if invalid."""
    errs = validate_record(rec)
    if errs:
        raise ManifestError("; ".join(errs), errs)
    item = Item(**rec)
    if item.meta is None:
        item.meta = {}
    if item.duration is not None:
        item.duration = float(item.duration)
    return item


def _open_lines(p: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 file (a leading byte-order mark skipped); clear errors for
    a missing file, a directory and bytes that are not UTF-8."""
    if not os.path.exists(p):
        raise MissingDataError(f"{p}: manifest not found")
    if os.path.isdir(p):
        raise ManifestError(f"{p}: is a directory; pass the manifest file inside it (e.g. {p}/train.jsonl)")
    with open(p, "rb") as fh:
        raw = fh.read()
    lines = raw.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    out = []
    for lineno, line in enumerate(lines, start=1):
        try:
            out.append((lineno, line.decode("utf-8")))
        except UnicodeDecodeError as e:
            raise ManifestError(
                f"{p}:{lineno}: not UTF-8 text (byte 0x{line[e.start]:02x} at column {e.start + 1}); "
                "a manifest is UTF-8 JSON lines: save it as UTF-8"
            ) from None
    return out


def read_numbered(path: str | os.PathLike[str]) -> list[tuple[int, Item]]:
    """:func:`read_manifest` with each item's line number (for messages that point at a line)."""
    p = os.fspath(path)
    items: list[tuple[int, Item]] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in _open_lines(p):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(
                f"{p}:{lineno}: invalid JSON ({e.msg} at column {e.colno}); each line must be one JSON object"
            )
            continue
        except RecursionError:
            errors.append(
                f"{p}:{lineno}: invalid JSON (nested too deeply); each line must be one JSON object"
            )
            continue
        problems = validate_record(rec)
        if problems:
            errors.extend(f"{p}:{lineno}: {msg}" for msg in problems)
            continue
        if rec["id"] in seen:
            errors.append(
                f"{p}:{lineno}: key 'id' value {rec['id']!r} duplicates line {seen[rec['id']]}; ids must be unique"
            )
            continue
        seen[rec["id"]] = lineno
        items.append((lineno, item_from_dict(rec)))
    _raise_collected(errors)
    return items


def read_manifest(path: str | os.PathLike[str]) -> list[Item]:
    """Read and validate a manifest; raise :class:`ManifestError` listing ``file:line: problem``.

    Blank lines are allowed (editors add them), and so is a UTF-8 byte-order mark. Duplicate ids are
    errors because evaluators key predictions by id. All lines are checked before raising so every
    problem is reported at once.
    """
    return [item for _, item in read_numbered(path)]


def _raise_collected(errors: list[str]) -> None:
    if errors:
        shown = errors[:_MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        msg = "\n".join(shown) + (f"\n... and {more} more errors" if more else "")
        raise ManifestError(msg, errors)


def unknown_task_problem(task: str, known_tasks: Iterable[str] = ()) -> str | None:
    """Why ``task`` cannot be used (None when it can): it is neither registered
    (:data:`~moeaudio.data.tasks.TASK_REGISTRY`) nor one the user named (``known_tasks``)."""
    if task in TASK_REGISTRY or task in set(known_tasks):
        return None
    names = list(TASK_REGISTRY)
    close = difflib.get_close_matches(task, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"unknown task {task!r}; {hint}known tasks: {', '.join(names)}. A task of your own is used only "
        "when you name it (train: data.tasks=[...]; eval: --task NAME)"
    )


def check_items(
    manifest: str | os.PathLike[str],
    numbered: Sequence[tuple[int, Item]],
    *,
    min_seconds: float = 0.0,
) -> None:
    """Check the audio of ``numbered`` items of ``manifest`` as ``prepare`` does (header only: there,
    readable, not empty, complete, at least ``min_seconds`` long) and fill in missing ``duration``
    from the header. Every problem is reported at once, as ``file:line: ...``."""
    p = os.fspath(manifest)
    errors: list[str] = []
    infos: dict[Path, Any] = {}
    for lineno, item in numbered:
        path = item.resolve_audio(p)
        if path not in infos:
            try:
                infos[path] = check_audio_file(path)
            except AudioDecodeError as e:
                infos[path] = e
        info = infos[path]
        where = f"{p}:{lineno}: item {item.id!r}"
        if isinstance(info, AudioDecodeError):
            reason = str(info).removeprefix(f"{path}: ")
            resolved = "" if os.path.isabs(item.audio) else " (resolved against the manifest's folder)"
            errors.append(f"{where}: audio {item.audio!r}{resolved}: {reason}")
            continue
        if item.duration is None:
            item.duration = info.duration
        if info.duration < min_seconds:
            errors.append(
                f"{where}: audio {item.audio!r} is {info.duration:.3f} s long, shorter than the encoder's "
                f"shortest input ({min_seconds:.3f} s); remove the item or use a longer clip"
            )
    _raise_collected(errors)


def check_manifest(
    path: str | os.PathLike[str],
    *,
    known_tasks: Iterable[str] = (),
    select: Callable[[Item], bool] | None = None,
    min_seconds: float = 0.0,
    audio: bool = True,
    limit: int | None = None,
) -> list[Item]:
    """The items of manifest ``path`` that ``select`` keeps (all by default), checked before a command
    uses them: :func:`read_manifest` on every line, every line's task known (registered, or in
    ``known_tasks``), and (``audio``) :func:`check_items` on the kept items. ``limit`` keeps the
    first N items (before ``select``). Raises :class:`ManifestError` naming ``file:line`` and the fix."""
    p = os.fspath(path)
    numbered = read_numbered(p)
    if limit is not None:
        numbered = numbered[:limit]
    known = list(known_tasks or ())
    errors = [
        f"{p}:{lineno}: {problem}"
        for lineno, item in numbered
        if (problem := unknown_task_problem(item.task, known)) is not None
    ]
    _raise_collected(errors)
    kept = [(n, item) for n, item in numbered if select is None or select(item)]
    if audio:
        check_items(p, kept, min_seconds=min_seconds)
    return [item for _, item in kept]


def write_manifest(path: str | os.PathLike[str], items: Iterable[Item]) -> Path:
    """Validate ``items`` and write them as jsonl atomically (readers never see a partial file).

    Streams: each line is written as its item arrives (``items`` may be a generator over millions),
    and every problem is collected, as ``PATH: item N (id 'X'): problem``, and raised as one
    :class:`ManifestError` before the file replaces ``path`` (an existing ``path`` stays as it was).
    """
    return atomic_write_chunks(path, _checked_lines(os.fspath(path), items))


def _checked_lines(path: str, items: Iterable[Item]) -> Iterator[str]:
    """The manifest lines of ``items``, each checked as it passes (:func:`validate_record`, unique
    ids: a set of ids is what is held); raises :class:`ManifestError` with every problem at the end."""
    errors: list[str] = []
    seen: set[str] = set()
    for n, item in enumerate(items, start=1):
        rec = item.to_dict()
        problems = validate_record(rec)
        if rec.get("id") in seen:
            problems.append(f"duplicate id {rec['id']!r}")
        seen.add(rec.get("id"))
        if problems:
            errors.extend(f"{path}: item {n} (id {rec.get('id')!r}): {m}" for m in problems)
        elif not errors:  # after a problem the file is thrown away: only checking goes on
            yield json.dumps(rec, ensure_ascii=False) + "\n"
    if errors:
        raise ManifestError("\n".join(errors[:_MAX_REPORTED_ERRORS]), errors)
