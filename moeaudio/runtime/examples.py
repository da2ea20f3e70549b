"""From a recipe's data section and its manifests to model-ready :class:`Example`\\ s.

With a frozen encoder and ``data.feature_cache`` set, examples carry cached encoder states
(computed once, keyed by audio content and encoder identity); otherwise they carry waveforms at
the encoder's sample rate.

Two ways to hold them: :func:`load_examples` reads every example into memory (fast for small
corpora), :class:`StreamExamples` reads example i when a batch needs it (a map-style dataset over a
:class:`~moeaudio.data.stream.ManifestIndex`; in DataLoader workers when ``data.num_workers`` > 0),
so memory stays flat as the corpus grows. :func:`use_streaming` picks one (``data.loading``).
Evaluation streams the same way through :class:`LazyExamples` (``load_examples(..., lazy=True)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from moeaudio.config import Recipe
from moeaudio.data.audio import audio_info, load_audio
from moeaudio.data.feature_cache import FeatureCache, audio_key, encode
from moeaudio.data.manifest import Item, check_manifest
from moeaudio.data.stream import ManifestIndex
from moeaudio.data.synth import make_synth_corpus
from moeaudio.data.tasks import item_prompt
from moeaudio.errors import MissingDataError
from moeaudio.io_utils import check_output_dir
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.model.encoder import min_input_seconds
from moeaudio.progress import progress_bar
from moeaudio.runtime.batching import Example

__all__ = [
    "LazyExamples",
    "StreamExamples",
    "checked_items",
    "fill_cache_streaming",
    "index_keys",
    "indexed_items",
    "ensure_corpus",
    "load_examples",
    "load_manifest_examples",
    "manifest_path",
    "recipe_items",
    "require_manifest",
    "select_items",
    "use_streaming",
]


def manifest_path(recipe: Recipe, split: str) -> Path:
    """The manifest of ``split`` (train / valid / test): absolute, or relative to ``data.root``."""
    path = Path(getattr(recipe.data, split))
    return path if path.is_absolute() else Path(recipe.data.root) / path


def ensure_corpus(recipe: Recipe, progress: bool = True) -> None:
    """Create the built-in synthetic corpus when the recipe's manifests are missing and allowed."""
    check_output_dir(recipe.data.root, "data.root")
    if recipe.data.feature_cache:
        check_output_dir(recipe.data.feature_cache, "data.feature_cache")
    if manifest_path(recipe, "train").exists():
        return
    if not recipe.data.synth_if_missing:
        raise MissingDataError(
            f"{manifest_path(recipe, 'train')} not found: prepare data first (e.g. `moeaudio prepare synth "
            f"{recipe.data.root}`) or set data.synth_if_missing=true"
        )
    make_synth_corpus(
        Path(recipe.data.root), seed=recipe.data.synth_seed, size=recipe.data.synth_size, progress=progress
    )


def require_manifest(manifest: Path, needed_by: str = "training") -> Path:
    """``manifest``, or a :class:`MissingDataError` naming it and what needs it."""
    if not manifest.exists():
        raise MissingDataError(f"{manifest}: manifest not found; {needed_by} needs it")
    return manifest


def _in_tasks(recipe: Recipe) -> Callable[[Item], bool]:
    """``data.tasks`` as an item filter (None keeps every task)."""
    keep = set(recipe.data.tasks) if recipe.data.tasks else None
    return lambda item: keep is None or item.task in keep


def recipe_items(manifest: Path, recipe: Recipe, needed_by: str = "training") -> list[Item]:
    """The manifest's items of ``data.tasks``, checked (:func:`checked_items`); a missing manifest is
    named with what needs it (:func:`require_manifest`)."""
    return checked_items(require_manifest(manifest, needed_by), recipe, select=_in_tasks(recipe))


def select_items(recipe: Recipe, items: list[Item]) -> list[Item]:
    """The recipe's filters: ``data.tasks`` (None keeps every task) and ``data.max_audio_seconds``
    (an item whose duration is unknown is kept: :func:`checked_items` fills durations in)."""
    keep = set(recipe.data.tasks) if recipe.data.tasks else None
    limit = recipe.data.max_audio_seconds
    return [
        i for i in items if (keep is None or i.task in keep) and (i.duration is None or i.duration <= limit)
    ]


def checked_items(
    manifest: str | Path,
    recipe: Recipe,
    *,
    known_tasks: Iterable[str] = (),
    select: Callable[[Item], bool] | None = None,
    limit: int | None = None,
) -> list[Item]:
    """The items of ``manifest`` a command will use, checked before any work as ``prepare`` checks
    them (:func:`~moeaudio.data.manifest.check_manifest`): every line valid, every task known (or
    in ``data.tasks`` / ``known_tasks``), the kept items' audio there, readable, complete and long
    enough for the recipe's encoder, and their durations filled in. ``limit`` keeps the first N
    lines before ``select``."""
    return check_manifest(
        manifest,
        known_tasks=[*(recipe.data.tasks or ()), *known_tasks],
        select=select,
        min_seconds=min_input_seconds(recipe.encoder),
        limit=limit,
    )


def load_examples(
    model: AudioLLM,
    manifest: Path,
    recipe: Recipe,
    progress: bool = True,
    items: list[Item] | None = None,
    lazy: bool = False,
) -> list[Example] | LazyExamples:
    """Examples for a manifest (or the given, already checked ``items`` of it): cached encoder states
    or waveforms. Without ``items`` the manifest is checked first (:func:`checked_items`).

    ``lazy``: a :class:`LazyExamples` instead, whose audio (states or waveform) is read when an
    example is asked for; missing cache entries are still computed here, shard by shard."""
    if items is None:
        items = checked_items(manifest, recipe, select=_in_tasks(recipe))
    items = select_items(recipe, items)
    paths = [item.resolve_audio(manifest) for item in items]
    durations = [item.duration for item in items]  # read from the headers when the items were checked
    nonfinite = recipe.data.nonfinite_audio
    cache = None
    if uses_cache(recipe):
        cache = FeatureCache.for_encoder(
            recipe.data.feature_cache, model.encoder, nonfinite, recipe.data.cache_shard_mb
        )
    if lazy:
        keys = (
            None
            if cache is None
            else cache.ensure(
                model.encoder, paths, progress=progress, nonfinite=nonfinite, durations=durations
            )
        )
        return LazyExamples(items, paths, model.encoder.sample_rate, nonfinite, cache, keys)
    if cache is not None:
        states = cache.fill(model.encoder, paths, progress=progress, nonfinite=nonfinite, durations=durations)
        waves = [None] * len(items)
    else:
        states = [None] * len(items)
        waves = [load_audio(p, model.encoder.sample_rate, nonfinite=nonfinite) for p in paths]
    return [
        Example(item_prompt(item), item.target, wave=w, states=s, meta=item.to_dict())
        for item, w, s in zip(items, waves, states, strict=True)
    ]


class _ReadOnDemand:
    """What :class:`LazyExamples` and :class:`StreamExamples` share: example i is its text (from
    :meth:`_header`) with its audio read when it is asked for, cached encoder states under the
    item's key, or the waveform decoded from its file when there is no cache."""

    sample_rate: int
    nonfinite: str
    cache: FeatureCache | None

    def _header(self, i: int) -> tuple[Example, Path, str | None]:
        """Example i without audio, its audio file and its cache key (None without a cache)."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> Example:
        head, path, key = self._header(i)
        if self.cache is None:
            wave, states = load_audio(path, self.sample_rate, nonfinite=self.nonfinite), None
        else:
            wave, states = None, self._cached(path, key)
        return Example(head.instruction, head.target, wave=wave, states=states, meta=head.meta)

    def _cached(self, path: Path, key: str | None) -> torch.Tensor:
        states = self.cache.get(key)
        if states is None:
            self.cache.refresh()  # another writer may have added it since this copy was made
            states = self.cache.get(key)
        if states is None:
            raise MissingDataError(
                f"{path}: no cached encoder states under {self.cache.root}; run `moeaudio prepare-"
                "features RECIPE` (or train once without data.loading=stream) to fill the cache"
            )
        return states


class LazyExamples(_ReadOnDemand, Sequence[Example]):
    """Examples whose audio is read when one is asked for (a batch at a time), for evaluation of test
    sets too large to hold: only the items' text stays in memory (:attr:`headers`).

    ``examples[i]`` equals what :func:`load_examples` would hold at i; :meth:`lengths` gives the same
    sort keys as :func:`~moeaudio.runtime.batching.example_length` from headers (cache entries'
    shapes, audio file headers), so batches are the same as in memory and so are the results.
    """

    def __init__(
        self,
        items: Sequence[Item],
        paths: Sequence[Path],
        sample_rate: int,
        nonfinite: str,
        cache: FeatureCache | None,
        keys: Sequence[str] | None,
    ):
        self.headers = [Example(item_prompt(i), i.target, meta=i.to_dict()) for i in items]
        self.paths = list(paths)
        self.sample_rate = sample_rate
        self.nonfinite = nonfinite
        self.cache = cache
        self.keys = None if keys is None else list(keys)

    def __len__(self) -> int:
        return len(self.headers)

    def _header(self, i: int) -> tuple[Example, Path, str | None]:
        return self.headers[i], self.paths[i], None if self.keys is None else self.keys[i]

    def lengths(self) -> list[int]:
        """Each example's :func:`example_length` without holding its audio."""
        if self.cache is not None:
            return [int(self.cache.num_frames(k)) for k in self.keys]
        return [self._num_samples(p) for p in self.paths]

    def _num_samples(self, path: Path) -> int:
        info = audio_info(path)
        if info.sample_rate == self.sample_rate:
            return info.frames
        return len(load_audio(path, self.sample_rate, nonfinite=self.nonfinite))  # resampled length


def load_manifest_examples(
    model: AudioLLM, manifest: str | Path, progress: bool = False, limit: int | None = None
) -> list[Example]:
    """Every item of a manifest under the model's own recipe filters; ``limit`` keeps the first N
    items (before filtering). The manifest is checked first (:func:`checked_items`)."""
    manifest = Path(manifest)
    items = checked_items(manifest, model.recipe, limit=limit)
    return load_examples(model, manifest, model.recipe, progress=progress, items=items)


# ----------------------------------------------------------------------------- streaming


def indexed_items(manifest: Path, recipe: Recipe, *, known_tasks: Iterable[str] = ()) -> ManifestIndex:
    """:func:`checked_items` + :func:`select_items` as a lazy :class:`ManifestIndex` (same checks,
    same items in the same order, ~20 bytes each in memory)."""
    index = ManifestIndex.build(
        manifest,
        known_tasks=[*(recipe.data.tasks or ()), *known_tasks],
        select=_in_tasks(recipe),
        min_seconds=min_input_seconds(recipe.encoder),
    )
    return index.subset(index.durations <= recipe.data.max_audio_seconds)


def uses_cache(recipe: Recipe) -> bool:
    return bool(recipe.encoder.freeze and recipe.data.feature_cache)


def in_memory_bytes(recipe: Recipe, seconds: float) -> float:
    """What :func:`load_examples` would hold for ``seconds`` of audio: float32 encoder states at
    ``encoder.frame_rate`` x frame width, or float32 waveforms at 16 kHz."""
    per_second = recipe.encoder.frame_rate * recipe.encoder.frame_dim if uses_cache(recipe) else 16000
    return 4.0 * per_second * seconds


def use_streaming(recipe: Recipe, seconds: float) -> bool:
    """``data.loading``: memory, stream, or (auto) stream when ``seconds`` of audio would take more
    than ``data.stream_above_gb`` in memory."""
    if recipe.data.loading != "auto":
        return recipe.data.loading == "stream"
    return in_memory_bytes(recipe, seconds) > recipe.data.stream_above_gb * 1e9


class StreamExamples(_ReadOnDemand, torch.utils.data.Dataset):
    """Example i of a :class:`ManifestIndex`, read when asked: cached states (from the shard cache)
    or the waveform, decoded in the process that asks (a DataLoader worker)."""

    def __init__(
        self,
        index: ManifestIndex,
        recipe: Recipe,
        sample_rate: int,
        cache: FeatureCache | None,
        keys: np.ndarray | None = None,
    ):
        self.index = index
        self.sample_rate = sample_rate
        self.nonfinite = recipe.data.nonfinite_audio
        self.cache = cache
        # (items, 16) content keys (index_keys), hashed once here unless the caller already has them:
        # hashing at each read would read the whole audio corpus again every epoch
        self.keys = None if cache is None else keys if keys is not None else index_keys(index, progress=False)

    def __len__(self) -> int:
        return len(self.index)

    def _header(self, i: int) -> tuple[Example, Path, str | None]:
        item = self.index[i]
        key = None if self.keys is None else self.keys[i].tobytes().hex()
        return Example(item_prompt(item), item.target, meta=item.to_dict()), self.index.audio_path(item), key

    def lengths_ms(self) -> np.ndarray:
        """Per-item audio length for the sampler (milliseconds): all it keeps of the corpus."""
        return np.round(self.index.durations * 1000).astype(np.int64)


def index_keys(index: ManifestIndex, progress: bool = True) -> np.ndarray:
    """Every item's cache key (:func:`audio_key`, the audio's content hash) as (items, 16) bytes:
    16 bytes per item, computed once per run instead of once per item read."""
    keys = np.zeros((len(index), 16), dtype=np.uint8)
    with progress_bar("hashing audio", len(index), progress) as advance:
        for i in range(len(index)):
            keys[i] = np.frombuffer(bytes.fromhex(audio_key(index.audio_path(index[i]))), dtype=np.uint8)
            advance(1)
    return keys


def fill_cache_streaming(
    encoder,
    cache: FeatureCache,
    indexes: Iterable[ManifestIndex],
    *,
    keys: Sequence[np.ndarray] | None = None,
    share: tuple[int, int] = (0, 1),
    batch_size: int = 16,
    nonfinite: str | None = None,
    writer: str = "w0",
    progress: bool = True,
) -> dict[str, int]:
    """Encode the clips of ``indexes`` the cache lacks, share ``k`` of ``n`` (every n-th distinct
    clip), writing shards as they fill: nothing but one shard's states is held in memory, and an
    interrupted fill keeps its finished shards. ``keys`` (:func:`index_keys`, one array per index)
    spares hashing the audio again. ``nonfinite`` must be the cache's own (None: the cache's).
    Returns counts of clips seen, encoded and reused."""
    nonfinite = cache.check_nonfinite(nonfinite)  # type: ignore[arg-type]
    k, n = share
    seen: set[str] = set()
    todo: list[tuple[str, Path, float]] = []
    mine = 0
    for j, index in enumerate(indexes):
        for i in range(len(index)):
            path = index.audio_path(index[i])
            key = keys[j][i].tobytes().hex() if keys is not None else audio_key(path)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) % n != k:
                continue
            mine += 1
            if key not in cache:
                todo.append((key, path, float(index.durations[i])))
    todo.sort(key=lambda t: t[2])  # shortest first: a batch pads its clips to about their own length
    if todo:  # this rank's share; the other ranks check theirs against the same disk
        cache.check_room(encoder, sum(t[2] for t in todo) * n)
    w = cache.writer(writer)
    try:
        with progress_bar("encoding audio", len(todo), progress) as advance:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                for (key, _, _), states in zip(
                    chunk, encode(encoder, [p for _, p, _ in chunk], nonfinite), strict=True
                ):
                    w.add(key, states)
                advance(len(chunk))
    finally:
        w.flush()
        cache.refresh()
    return {"clips": mine, "encoded": len(todo), "reused": mine - len(todo), "shards": len(w.written)}
