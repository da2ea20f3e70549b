"""Converters between the moeaudio manifest and other toolkits' jsonl formats.

Why: we want to train/evaluate the same prepared data with SLAM-LLM, ms-swift / LLaMA-Factory
and NeMo baselines without re-running preparation, and to import their manifests.

Formats (one JSON object per line; ``.json`` files holding a list are also read, and written
when the destination ends in ``.json``):

* ``moeaudio`` - :mod:`moeaudio.data.manifest` (lossless).
* ``slam`` - SLAM-LLM: ``{"key", "source", "target", "prompt"}`` (``source`` = audio path); also its
  examples' other layouts: ``task-type`` / ``task`` tags, ``path`` (aispeech), and the CoVoST 2 speech
  translation rows ``{"audio", "prompt": "<|de|>", "gt", "source": "covost_ende"}``.
* ``swift`` / ``llamafactory`` - chat format:
  ``{"messages": [{"role": "user", "content": "<audio>PROMPT"}, {"role": "assistant",
  "content": TARGET}], "audios": [path], "id": ID}`` (optional leading ``system`` message;
  ``id`` is an extra column both toolkits ignore); ShareGPT ``conversations`` with ``from``/``value``
  (``human``, ``gpt``, ``observation``, ``function_call``) and ms-swift's ``query``/``response`` rows too.
* ``nemo`` - NeMo ASR: ``{"audio_filepath", "duration", "text"}`` (+ ``lang`` when known); also
  ``taskname``/``task``, ``source_lang``/``target_lang`` (Canary) and ``question``/``context`` + ``answer``.

Task and domain: what a peer's record is (captioning, translation, ...) comes from its own task tag
(SLAM-LLM's ``<AAC>``, NeMo's ``taskname``), else is guessed from the prompt text, a dataset name in
the audio path (Clotho, LibriSpeech, ...) or ``--task`` (:func:`moeaudio.data.peers.map_task`). Each
item records how in ``meta.converted`` (``{"from", "task", "guessed"}``), fields that have no place in
an :class:`Item` are kept in ``meta``, and :func:`convert_manifest` returns a :class:`ConversionReport`
that counts the decisions and the guesses.

Paths: readers return items whose ``audio`` is absolute (a relative path in the source file is
taken relative to that file's directory, NeMo's convention). Writers emit paths relative to the
destination file for ``moeaudio`` and absolute for the external formats (their loaders resolve
relative paths against the working directory), overridable with ``relative=``. :func:`convert_manifest`
keeps a path that was absolute in the source absolute (a relative one becomes relative to the output),
so a manifest that names ``/data/clotho/x.wav`` still does when it is moved.

Non-moeaudio formats are lossy: fields they cannot carry (domain, meta, choices) are dropped;
multiple-choice options are folded into the prompt text via :func:`moeaudio.data.tasks.item_prompt`.

Streaming: :func:`convert_manifest` reads a jsonl source a line at a time and writes each record to
the destination as it arrives (a temp file renamed into place at the end, so a conversion that fails
on its last line leaves an existing destination as it was); the report is counted on the way, so
converting millions of lines holds memory constant (a moeaudio destination keeps the set of ids, to
refuse duplicates). Not streamed: a ``.json`` source holding a JSON list (parsed whole) and a
``moeaudio`` source (:func:`moeaudio.data.manifest.read_manifest` checks it whole; training streams
those itself). :func:`detect_format` reads the first record only; :func:`read_items` returns a list.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import repeat
from pathlib import Path
from typing import Any

from moeaudio.data.manifest import (
    Item,
    ManifestError,
    manifest_relpath,
    read_manifest,
    validate_record,
    write_manifest,
)
from moeaudio.data.peers import (
    LANGUAGE_CODES,
    TaskDecision,
    default_instruction,
    is_task_tag,
    map_task,
    parse_language_tag,
)
from moeaudio.data.tasks import item_prompt
from moeaudio.errors import MissingDataError, UsageError
from moeaudio.io_utils import atomic_write_chunks, check_output_file, iter_user_lines, read_user_text

__all__ = [
    "FORMATS",
    "ConversionReport",
    "Format",
    "convert",
    "convert_manifest",
    "detect_format",
    "read_items",
    "write_items",
]

AUDIO_TOKEN = "<audio>"


@dataclass(frozen=True)
class Format:
    """A manifest dialect: how to turn one record into an Item and back."""

    name: str
    description: str
    from_record: Callable[[dict[str, Any], int, str | None], Item]  # (record, index, --task or None)
    to_record: Callable[[Item, str], dict[str, Any]]  # (item, audio path string)
    relative_by_default: bool = False


# ---------------------------------------------------------------- record converters
def _decided(item: Item, fmt: str, decision: TaskDecision) -> Item:
    """Record on the item how its task was decided (``meta.converted``)."""
    item.meta["converted"] = {"from": fmt, "task": decision.how, "guessed": decision.guessed}
    return item


def _rest(rec: dict[str, Any], used: set[str]) -> dict[str, Any]:
    """The record's fields that have no place in an Item: they are kept in ``meta``."""
    return {k: v for k, v in rec.items() if k not in used and v not in (None, "", [])}


def _slam_from(rec: dict[str, Any], idx: int, task: str | None) -> Item:
    """A SLAM-LLM row: ``prompt`` is a task tag there (its dataset code reads it as the task and takes
    the prompt text from the config), unless it is plain text (as our own slam writer emits)."""
    st_layout = "gt" in rec and "audio" in rec  # CoVoST 2: "source" names the dataset, not the audio
    audio_key = (
        "audio"
        if st_layout
        else next((k for k in ("source", "path", "audio", "source_wav") if k in rec), None)
    )
    if audio_key is None:
        raise KeyError("source")
    target_key = next((k for k in ("target", "gt", "target_text") if k in rec), None)
    prompt = rec.get("prompt")
    prompt = str(prompt) if prompt not in (None, "") else None
    meta: dict[str, Any] = {}
    lang = LANGUAGE_CODES.get(str(rec.get("audio_language", "")).lower())
    target = str(rec.get(target_key, "")) if target_key else ""
    language = parse_language_tag(prompt)
    if (
        language is not None
    ):  # CoVoST 2 speech translation: "<|de|>", or "TRANSCRIPT<|de|>" (given transcript)
        given, tgt = language
        src_lang = _covost_source_language(rec.get("source")) or lang or "en"
        meta["target_lang"] = tgt
        if given:
            meta["transcript"] = given
        split = parse_language_tag(target)
        if split is not None and split[1] == tgt:  # gt = TRANSCRIPT<|de|>TRANSLATION: keep the translation
            meta.setdefault("transcript", split[0])
            target = target[target.index(f"<|{tgt}|>") + len(tgt) + 4 :].strip()
        is_asr = tgt == src_lang and not given
        decision = TaskDecision(
            "asr" if is_asr else "translation",
            "speech",
            default_instruction("asr" if is_asr else "translation", tgt),
            f"SLAM-LLM language tag '<|{tgt}|>' (prompt)",
            False,
        )
        lang = lang or src_lang
        meta["source_task"] = prompt
    else:
        tags = [(k, str(rec[k])) for k in ("task-type", "task") if rec.get(k) not in (None, "")]
        if prompt and is_task_tag(prompt):
            tags.append(("prompt", prompt))
        decision = map_task(
            tags=tags, prompt=prompt, paths=(str(rec[audio_key]), str(rec.get("key", ""))), default=task,
            peer="SLAM-LLM",
        )  # fmt: skip
        if tags:
            meta["source_task"] = tags[0][1]
    used = {audio_key, target_key, "key", "prompt", "task-type", "task"}
    used |= {"audio_language"} if lang else set()
    meta.update(_rest(rec, used))
    item = Item(
        id=str(rec.get("key", idx)),
        audio=str(rec[audio_key]),
        task=decision.task,
        domain=decision.domain,
        instruction=decision.instruction,
        target=target,
        lang=lang,
        meta=meta,
    )
    return _decided(item, "slam", decision)


def _covost_source_language(source: Any) -> str | None:
    """``covost_en`` / ``covost_ende`` (SLAM-LLM's CoVoST 2 rows) -> ``en``."""
    text = str(source or "")
    return text[7:9] if text.startswith("covost_") and len(text) >= 9 else None


def _slam_to(item: Item, audio: str) -> dict[str, Any]:
    return {
        "key": item.id,
        "source": audio,
        "target": item.target,
        "prompt": item_prompt(item),
    }


_CHAT_ROLES = {"human": "user", "gpt": "assistant", "observation": "tool", "function_call": "tool_call"}


def _chat_from(rec: dict[str, Any], idx: int, task: str | None) -> Item:
    """ms-swift / LLaMA-Factory: the first user turn (its ``<audio>`` removed) is the instruction, the
    first assistant turn after it the target; any further turns are kept in ``meta.extra_turns``."""
    if "messages" not in rec and "conversations" not in rec and "query" in rec:  # ms-swift query/response
        msgs = [
            {"role": "user", "content": rec["query"]},
            {"role": "assistant", "content": rec.get("response", "")},
        ]
        if rec.get("system"):
            msgs.insert(0, {"role": "system", "content": rec["system"]})
    else:
        msgs = rec.get("messages") or rec.get("conversations")
    if not isinstance(msgs, list):
        raise ValueError("expected a 'messages' list")
    audios = rec.get("audios") or rec.get("audio") or []
    if isinstance(audios, str):
        audios = [audios]
    if len(audios) != 1:
        raise ValueError(f"expected exactly one entry in 'audios' (got {len(audios)})")

    def role(m: dict[str, Any]) -> str:
        r = str(m.get("role", m.get("from", "")))
        return _CHAT_ROLES.get(r, r)

    def content(m: dict[str, Any]) -> str:
        return str(m.get("content", m.get("value", "")))

    turns = [(role(m), content(m)) for m in msgs]
    user_at = next((i for i, (r, _) in enumerate(turns) if r == "user"), None)
    answer_at = next(
        (i for i, (r, _) in enumerate(turns) if r == "assistant" and (user_at is None or i > user_at)), None
    )
    system = next((c for r, c in turns if r == "system"), None) or rec.get("system")
    user = turns[user_at][1] if user_at is not None else ""
    prompt = user.replace(AUDIO_TOKEN, "", 1).strip()
    meta: dict[str, Any] = {"system": system} if system else {}
    extra = [
        {"role": r, "content": c}
        for i, (r, c) in enumerate(turns)
        if i not in (user_at, answer_at) and r != "system"
    ]
    if extra:
        meta["extra_turns"] = extra
    explicit = [("task", str(rec["task"]))] if rec.get("task") not in (None, "") else []
    decision = map_task(tags=explicit, prompt=prompt or None, paths=(str(audios[0]),), default=task, peer="")
    if explicit and decision.guessed:  # a task column of our own vocabulary (not a peer tag): take it
        decision = TaskDecision(
            explicit[0][1], None, prompt or default_instruction(explicit[0][1]), "task column", False
        )
    meta.update(
        _rest(
            rec, {"messages", "conversations", "query", "response", "audios", "audio", "id", "task", "system"}
        )
    )
    item = Item(
        id=str(rec.get("id", idx)),
        audio=str(audios[0]),
        task=decision.task,
        domain=decision.domain,
        instruction=prompt or decision.instruction,
        target=turns[answer_at][1] if answer_at is not None else "",
        meta=meta,
    )
    return _decided(item, "chat", decision)


def _chat_to(item: Item, audio: str) -> dict[str, Any]:
    msgs: list[dict[str, str]] = []
    if item.meta.get("system"):
        msgs.append({"role": "system", "content": str(item.meta["system"])})
    msgs.append({"role": "user", "content": AUDIO_TOKEN + item_prompt(item)})
    msgs.append({"role": "assistant", "content": item.target})
    # "id" is not part of the schema; ms-swift and LLaMA-Factory drop unknown columns, and keeping
    # it lets predictions be joined back to the manifest.
    return {"id": item.id, "messages": msgs, "audios": [audio]}


def _nemo_from(rec: dict[str, Any], idx: int, task: str | None) -> Item:
    """NeMo: ASR rows (``text``), Canary rows (``taskname``, ``source_lang``/``target_lang``) and
    instruction rows (``question``/``context``/``prompt`` + ``answer``). ``offset`` is kept in meta:
    moeaudio reads whole files (:class:`ConversionReport` notes such items)."""
    dur = rec.get("duration")
    question_key = next((k for k in ("question", "context", "prompt") if rec.get(k) not in (None, "")), None)
    question = str(rec[question_key]) if question_key else None
    tags = [(k, str(rec[k])) for k in ("taskname", "task") if rec.get(k) not in (None, "")]
    decision = map_task(
        tags=tags, prompt=question, paths=(str(rec["audio_filepath"]),), default=task, peer="NeMo"
    )
    target_lang = rec.get("target_lang")
    instruction = decision.instruction
    if decision.task == "translation" and not question:
        instruction = default_instruction("translation", target_lang)
    target_key = "answer" if "answer" in rec else "text"
    used = {"audio_filepath", "duration", target_key, "lang", "id", "taskname", "task", question_key}
    meta = _rest(rec, used)
    if tags:
        meta["source_task"] = tags[0][1]
    item = Item(
        id=str(rec.get("id", idx)),
        audio=str(rec["audio_filepath"]),
        duration=float(dur) if dur is not None else None,
        task=decision.task,
        domain=decision.domain,
        instruction=instruction,
        target=str(rec.get(target_key, "")),
        lang=rec.get("lang") or rec.get("source_lang"),
        meta=meta,
    )
    return _decided(item, "nemo", decision)


def _nemo_to(item: Item, audio: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"audio_filepath": audio, "duration": item.duration, "text": item.target}
    if item.lang:
        rec["lang"] = item.lang
    return rec


def _native_from(
    rec: dict[str, Any], idx: int, task: str | None
) -> Item:  # pragma: no cover - native uses read_manifest
    raise NotImplementedError


FORMATS: dict[str, Format] = {
    "moeaudio": Format("moeaudio", "moeaudio manifest (lossless)", _native_from, lambda i, a: {}, True),
    "slam": Format("slam", "SLAM-LLM jsonl: key, source, target, prompt", _slam_from, _slam_to),
    "swift": Format("swift", "ms-swift messages + audios (<audio> placeholder)", _chat_from, _chat_to),
    "llamafactory": Format(
        "llamafactory", "LLaMA-Factory sharegpt/openai messages + audios", _chat_from, _chat_to
    ),
    "nemo": Format("nemo", "NeMo ASR manifest: audio_filepath, duration, text", _nemo_from, _nemo_to),
}


def _get_format(name: str) -> Format:
    if name not in FORMATS:
        raise UsageError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[name]


def _iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number or list index, record) pairs from a jsonl or a .json list, as they are read; every
    record must be a JSON object (:class:`ManifestError` naming the file and line otherwise).

    A jsonl file is read a line at a time. A ``.json`` file holding a JSON list is read and parsed
    whole (``json.loads`` has no incremental form); for a very large source, convert to jsonl first.
    """
    if path.suffix == ".json" and _holds_json_list(path):
        records, unit = _json_list_records(path), "entry"
    else:
        records, unit = _jsonl_records(path), "line"
    for n, rec in records:
        if not isinstance(rec, dict):
            raise ManifestError(f"{path}:{n}: {unit} {n} must be a JSON object (got {type(rec).__name__})")
        yield n, rec


def _holds_json_list(path: Path) -> bool:
    """Whether the file's first non-blank text opens a JSON list (read up to that line only)."""
    with contextlib.closing(iter_user_lines(path, "manifest")) as lines:
        return next((line.lstrip().startswith("[") for _, line in lines if line.strip()), False)


def _json_list_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(1-based index, value) of a ``.json`` file holding a list: necessarily read whole."""
    try:
        data = json.loads(read_user_text(path, "manifest"))
    except (json.JSONDecodeError, RecursionError) as e:
        where = f"{path}:{e.lineno}" if isinstance(e, json.JSONDecodeError) else str(path)
        raise ManifestError(f"{where}: invalid JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
    return enumerate(data, start=1)


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a jsonl file, parsed as it is read."""
    for lineno, line in iter_user_lines(path, "manifest"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise ManifestError(f"{path}:{lineno}: invalid JSON (nested too deeply)") from None
        yield lineno, rec


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guess the format from the first record's keys (swift and llamafactory are identical: 'swift').

    Only the first record of a jsonl file is parsed (a ``.json`` list is parsed whole): the rest of a
    large file is checked when it is converted."""
    with contextlib.closing(_iter_records(Path(path))) as records:
        first = next(records, None)  # the first record only: a large file is not read further
    if first is None:
        raise UsageError(f"{path}: empty file, cannot detect its format")
    keys = set(first[1])
    if "messages" in keys or "conversations" in keys or {"query", "response"} <= keys:
        return "swift"
    if "audio_filepath" in keys:
        return "nemo"
    if "key" in keys and keys & {"source", "path", "source_wav"}:
        return "slam"
    if {"audio", "gt"} <= keys:  # SLAM-LLM's CoVoST 2 speech translation rows
        return "slam"
    if {"id", "audio", "task"} <= keys:
        return "moeaudio"
    raise UsageError(f"{path}: cannot detect format from keys {sorted(keys)}; pass it explicitly")


def _abs_audio(audio: str, base: Path) -> str:
    return audio if os.path.isabs(audio) else os.path.normpath(os.path.join(os.path.abspath(base), audio))


def _open_source(path: Path, fmt: str, task: str | None) -> tuple[str, Iterator[tuple[Item, bool]]]:
    """(format, a stream of (item with an absolute audio path, whether that path was absolute in the
    source)). The format is detected and the file checked now; records are read as the stream is."""
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a manifest file")
    if not path.is_file():
        raise MissingDataError(f"{path}: no such manifest file")
    fmt = detect_format(path) if fmt == "auto" else fmt
    spec = _get_format(fmt)
    if fmt == "moeaudio":
        # Read whole: read_manifest checks ids across the file. Training reads large moeaudio manifests
        # lazily through moeaudio/data/stream.py, so converting one is the rare case this does not stream.
        base = path.absolute()
        return fmt, (
            (replace(it, audio=os.fspath(it.resolve_audio(base))), os.path.isabs(it.audio))
            for it in read_manifest(path)
        )
    return fmt, _peer_items(path, spec, task)


def _peer_items(path: Path, spec: Format, task: str | None) -> Iterator[tuple[Item, bool]]:
    """The records of a peer's file as checked Items (absolute audio; was it absolute), one at a time."""
    for lineno, rec in _iter_records(path):
        try:
            item = spec.from_record(rec, lineno - 1, task)
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise ManifestError(f"{path}:{lineno}: not a valid {spec.name} record ({what})") from None
        absolute = os.path.isabs(item.audio)
        item.audio = _abs_audio(item.audio, path.parent)
        problems = validate_record(item.to_dict())  # the values, as a manifest line would be checked
        if problems:
            raise ManifestError(f"{path}:{lineno}: not a valid {spec.name} record ({'; '.join(problems)})")
        yield item, absolute


def read_items(path: str | os.PathLike[str], fmt: str = "auto", *, task: str | None = None) -> list[Item]:
    """Read a file in ``fmt`` into Items with absolute audio paths.

    ``task`` is given to records of formats that carry no task tag (slam, nemo, chat); without it the
    task is guessed from the prompt text or the audio path, else ``asr`` (:func:`moeaudio.data.peers.map_task`).
    """
    return [item for item, _ in _open_source(Path(path), fmt, task)[1]]


def write_items(
    path: str | os.PathLike[str],
    items: list[Item],
    fmt: str,
    *,
    relative: bool | None = None,
    audio_root: str | os.PathLike[str] | None = None,
    keep_absolute: Sequence[bool] | None = None,
) -> Path:
    """Write ``items`` in ``fmt`` atomically.

    Relative ``item.audio`` values are first resolved against ``audio_root`` (default: cwd);
    then written relative to the output file if ``relative`` (default: only for moeaudio),
    else absolute. ``keep_absolute[i]`` keeps item i's path absolute even where paths are written
    relative (it was absolute in the source).
    """
    pairs = zip(items, repeat(False)) if keep_absolute is None else zip(items, keep_absolute, strict=True)
    return _write_stream(Path(path), pairs, fmt, relative=relative, audio_root=audio_root)


def _write_stream(
    p: Path,
    pairs: Iterable[tuple[Item, bool]],
    fmt: str,
    *,
    relative: bool | None,
    audio_root: str | os.PathLike[str] | None,
) -> Path:
    """:func:`write_items` on a stream of (item, keep its path absolute): each record is written as it
    arrives, to a temp file renamed onto ``p`` at the end (an error leaves ``p`` as it was)."""
    spec = _get_format(fmt)
    rel = spec.relative_by_default if relative is None else relative
    root = Path(audio_root) if audio_root is not None else Path.cwd()

    def audio_str(item: Item, keep: bool) -> str:
        a = _abs_audio(item.audio, root)
        return manifest_relpath(a, p.parent) if rel and not keep else a

    if fmt == "moeaudio":  # checks each item as it passes (ids, values) and raises before the rename
        return write_manifest(p, (replace(it, audio=audio_str(it, keep)) for it, keep in pairs))
    recs = (spec.to_record(it, audio_str(it, keep)) for it, keep in pairs)
    if p.suffix == ".json":
        return atomic_write_chunks(p, _json_list_chunks(recs))
    return atomic_write_chunks(p, (json.dumps(r, ensure_ascii=False) + "\n" for r in recs))


def _json_list_chunks(recs: Iterable[dict[str, Any]]) -> Iterator[str]:
    """``json.dumps(list(recs), ensure_ascii=False, indent=2) + "\\n"``, byte for byte, one record at a
    time: each record is dumped with ``indent=2`` and shifted one level in (JSON text has no raw
    newlines but its own indentation, strings escape theirs), ``[]`` when there is none."""
    empty = True
    for rec in recs:
        yield "[\n  " if empty else ",\n  "
        yield json.dumps(rec, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        empty = False
    yield "[]\n" if empty else "\n]\n"


@dataclass
class ConversionReport:
    """What :func:`convert_manifest` did: counts per task and domain, how each was decided, what was guessed."""

    src: str
    dst: str
    src_format: str
    dst_format: str
    items: int = 0
    tasks: dict[str, int] = field(default_factory=dict)  # "task/domain" -> items
    decisions: dict[str, int] = field(default_factory=dict)  # "task/domain <- how" -> items
    guessed: int = 0  # items whose task was guessed (no tag in the source)
    kept_in_meta: list[str] = field(default_factory=list)  # source fields kept in meta
    absolute_paths: int = 0  # audio paths that were absolute in the source and stay so
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The human summary the CLI prints."""
        out = [
            f"wrote {self.items} items to {self.dst} ({self.dst_format}) from {self.src} ({self.src_format})"
        ]
        for decision, n in sorted(self.decisions.items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:>6}  {decision}")
        if self.guessed:
            out.append(
                f"guessed: the task of {self.guessed} of {self.items} items (no task tag in the source); "
                "check them, or pass --task"
            )
        if self.kept_in_meta:
            out.append(f"kept in meta: {', '.join(self.kept_in_meta)}")
        return out + [f"note: {n}" for n in self.notes]


@dataclass
class _Tally:
    """The counts of a :class:`ConversionReport`, added up as the items stream past (no item list)."""

    items: int = 0
    tasks: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    guessed: int = 0
    kept: set[str] = field(default_factory=set)
    absolute: int = 0
    offsets: int = 0
    arks: int = 0
    translation: bool = False

    def watch(self, pairs: Iterable[tuple[Item, bool]]) -> Iterator[tuple[Item, bool]]:
        """Pass ``pairs`` on unchanged, counting each (item, was absolute) on its way."""
        for item, absolute in pairs:
            self.add(item, absolute)
            yield item, absolute

    def add(self, it: Item, absolute: bool) -> None:
        """Count one item: its task/domain, how that was decided, what was kept, what to note."""
        converted = it.meta.get("converted", {})
        key = f"{it.task}/{it.domain}"
        self.items += 1
        self.tasks[key] += 1
        how = converted.get("task", "moeaudio manifest")
        self.decisions[f"{key} <- {'guessed from ' if converted.get('guessed') else ''}{how}"] += 1
        self.guessed += bool(converted.get("guessed"))
        self.kept |= {k for k in it.meta if k != "converted"} if converted else set()
        self.absolute += absolute
        self.offsets += "offset" in it.meta
        self.arks += ".ark:" in it.audio
        self.translation |= it.task == "translation"

    def report(self, src: Path, dst: Path, src_format: str, dst_format: str) -> ConversionReport:
        """The report of the items counted so far (the notes in a fixed order)."""
        report = ConversionReport(str(src), str(dst), src_format, dst_format, self.items)
        report.tasks, report.decisions = dict(self.tasks), dict(self.decisions)
        report.guessed, report.absolute_paths = self.guessed, self.absolute
        report.kept_in_meta = sorted(self.kept)
        if self.offsets:
            report.notes.append(
                f"{self.offsets} items have an 'offset' (kept in meta): moeaudio reads whole files"
            )
        if self.arks:
            report.notes.append(
                f"{self.arks} audio paths point into Kaldi .ark files, which moeaudio cannot read"
            )
        if self.translation:
            report.notes.append(
                "task 'translation' is carried for training; moeaudio eval has no translation scorer"
            )
        return report


def convert_manifest(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    src_format: str = "auto",
    dst_format: str = "moeaudio",
    *,
    task: str | None = None,
    relative: bool | None = None,
) -> ConversionReport:
    """Convert ``src`` (in ``src_format``, or auto-detected) to ``dst`` in ``dst_format``.

    Audio paths that were absolute in ``src`` stay absolute; relative ones are written relative to
    ``dst`` where the format writes relative paths (moeaudio). ``task`` is the task of records that
    carry no task tag (default: guessed, else ``asr``). Returns what was mapped and what was guessed.
    """
    src_path, dst_path = Path(src), Path(dst)
    fmt, pairs = _open_source(src_path, src_format, task)
    check_output_file(dst, "DST")
    tally = _Tally()
    try:
        _write_stream(
            dst_path, tally.watch(_reading(src_path, pairs)), dst_format, relative=relative, audio_root=None
        )
    except OSError as e:
        raise UsageError(f"{dst}: cannot write ({e.strerror or e})") from None
    return tally.report(src_path, dst_path, fmt, dst_format)


def _reading(src: Path, pairs: Iterator[tuple[Item, bool]]) -> Iterator[tuple[Item, bool]]:
    """``pairs``, with an ``OSError`` while reading the source named as the source's: the source is
    read while the destination is written, and a write error is reported as the destination's."""
    try:
        yield from pairs
    except OSError as e:
        raise UsageError(f"{src}: cannot read ({e.strerror or e})") from None


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    src_format: str = "auto",
    dst_format: str = "moeaudio",
    *,
    task: str | None = None,
    relative: bool | None = None,
) -> int:
    """:func:`convert_manifest`, returning only the item count."""
    return convert_manifest(src, dst, src_format, dst_format, task=task, relative=relative).items
