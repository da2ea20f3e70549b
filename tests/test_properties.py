"""Property-based tests: whatever a user feeds the readers, they load it or raise our error type.

Three readers take files a user writes by hand or converts from elsewhere: the manifest reader (and
the check every command runs on a manifest), the interop formats of ``moeaudio convert`` (SLAM-LLM,
ms-swift / LLaMA-Factory chat, NeMo), and the recipe loader with its ``section.key=value``
overrides. For arbitrary input -- random bytes, random JSON, records with the right keys and wrong
values, random YAML and overrides -- each must either return a result or raise a
:class:`~moeaudio.errors.MoeaudioError` subclass (which the CLI prints as one line); any other
exception is a bug that would reach the user as a traceback.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moeaudio.config import Recipe, _valid_keys, load_recipe
from moeaudio.data.formats import FORMATS, convert, read_items
from moeaudio.data.manifest import VALID_KEYS, Item, check_manifest, read_manifest
from moeaudio.errors import MoeaudioError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def records(keys: list[str]) -> st.SearchStrategy[dict]:
    """JSON objects with (mostly) the format's own keys and arbitrary values."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=8))
    return st.dictionaries(key, json_values, max_size=len(keys) + 2)


def lines(keys: list[str]) -> st.SearchStrategy[list[str]]:
    """Lines of a jsonl file: records, other JSON, broken JSON, blank lines."""
    line = st.one_of(
        records(keys).map(lambda r: json.dumps(r, allow_nan=True)),
        json_values.map(lambda v: json.dumps(v, allow_nan=True)),
        st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t),
        st.just(""),
    )
    return st.lists(line, max_size=6)


def _content(draw_lines: list[str], bom: bool) -> bytes:
    return (b"\xef\xbb\xbf" if bom else b"") + "\n".join(draw_lines).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _write(workdir: Path, name: str, data: bytes) -> Path:
    path = workdir / name
    path.write_bytes(data)
    return path


def _loads_or_our_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except MoeaudioError:
        return None


# ----------------------------------------------------------------------------------------- manifests


@SETTINGS
@given(body=lines(list(VALID_KEYS)), bom=st.booleans())
def test_manifest_reader_loads_or_raises_our_error(workdir: Path, body: list[str], bom: bool) -> None:
    path = _write(workdir, "m.jsonl", _content(body, bom))
    items = _loads_or_our_error(read_manifest, path)
    if items is not None:
        assert all(isinstance(i, Item) for i in items)
        assert len({i.id for i in items}) == len(items)
    _loads_or_our_error(check_manifest, path)  # with the audio checks and the task registry


@SETTINGS
@given(data=st.binary(max_size=200))
def test_manifest_reader_on_random_bytes(workdir: Path, data: bytes) -> None:
    _loads_or_our_error(read_manifest, _write(workdir, "b.jsonl", data))


# ------------------------------------------------------------------------------------------ formats

FORMAT_KEYS = {
    "slam": ["key", "source", "target", "prompt"],
    "swift": ["messages", "audios", "id", "task", "conversations"],
    "nemo": ["audio_filepath", "duration", "text", "lang", "id"],
}
chat_messages = st.lists(
    st.dictionaries(
        st.sampled_from(["role", "content", "from", "value"]),
        st.one_of(st.sampled_from(["user", "assistant", "system", "human", "gpt"]), json_values),
        max_size=3,
    ),
    max_size=3,
)


@SETTINGS
@given(
    fmt=st.sampled_from(["slam", "swift", "nemo"]),
    body=st.data(),
    suffix=st.sampled_from([".jsonl", ".json"]),
    to=st.sampled_from(sorted(FORMATS)),
)
def test_interop_formats_load_or_raise_our_error(workdir: Path, fmt: str, body, suffix: str, to: str) -> None:
    keys = FORMAT_KEYS[fmt]
    recs = body.draw(st.lists(records(keys), max_size=4))
    if fmt == "swift":  # give the chat layout a fair chance of being well formed
        recs = [{**r, "messages": body.draw(chat_messages)} if body.draw(st.booleans()) else r for r in recs]
    if suffix == ".json" and body.draw(st.booleans()):
        text = json.dumps(recs, allow_nan=True)
    else:
        text = "\n".join(json.dumps(r, allow_nan=True) for r in recs)
    src = _write(workdir, f"in{suffix}", text.encode())
    for source_format in (fmt, "auto"):
        items = _loads_or_our_error(read_items, src, source_format)
        if items is not None:
            assert all(isinstance(i, Item) for i in items)
    _loads_or_our_error(convert, src, workdir / f"out-{to}.jsonl", fmt, to)


@SETTINGS
@given(
    data=st.binary(max_size=200),
    fmt=st.sampled_from(["auto", "slam", "swift", "llamafactory", "nemo", "moeaudio"]),
)
def test_interop_formats_on_random_bytes(workdir: Path, data: bytes, fmt: str) -> None:
    for suffix in (".jsonl", ".json"):
        _loads_or_our_error(read_items, _write(workdir, f"r{suffix}", data), fmt)


# ------------------------------------------------------------------------------------------ recipes

RECIPE_KEYS = _valid_keys(Recipe)


def _nested(pairs: dict[str, object]) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (a clash keeps the first)."""
    out: dict = {}
    for dotted, value in pairs.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node.setdefault(parts[-1], value)
    return out


recipe_values = st.one_of(json_values, st.sampled_from(["moe", "dense", "tiny", "whisper", "wsd", "auto"]))
overrides = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(RECIPE_KEYS), st.text(max_size=10)).map(lambda kv: f"{kv[0]}={kv[1]}"),
        st.text(max_size=20),
    ),
    max_size=3,
)


@SETTINGS
@given(pairs=st.dictionaries(st.sampled_from(RECIPE_KEYS), recipe_values, max_size=6), extra=overrides)
def test_recipe_loader_loads_or_raises_our_error(workdir: Path, pairs: dict, extra: list[str]) -> None:
    raw = _nested(pairs)
    recipe = _loads_or_our_error(load_recipe, raw, extra)
    if recipe is not None:
        assert isinstance(recipe, Recipe)
    try:
        text = yaml.safe_dump(raw, allow_unicode=True)
    except yaml.YAMLError:
        return
    _loads_or_our_error(load_recipe, _write(workdir, "r.yaml", text.encode()), extra)


@SETTINGS
@given(
    data=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace")))
)
def test_recipe_loader_on_random_files(workdir: Path, data: bytes) -> None:
    _loads_or_our_error(load_recipe, _write(workdir, "x.yaml", data))
