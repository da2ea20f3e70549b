"""A training run's data, in two steps around building the model.

:func:`check_train_data` runs before the model exists: the corpus made when allowed (rank 0 first),
the train manifest checked and its items selected (in memory or as a lazy index when streaming),
the valid manifest checked when the run ends with a validation. :func:`train_examples` runs after:
the examples the sampler draws from and their lengths, the feature cache filled on the way (with
several ranks, rank 0 fills it first and the others only read it; when streaming each rank fills its
share of the missing clips).

Both take the training's ``barrier`` (a no-op on one rank) instead of importing the train layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from moeaudio.config import MixtureSource, Recipe
from moeaudio.data.feature_cache import FeatureCache
from moeaudio.data.manifest import Item
from moeaudio.data.stream import ManifestIndex
from moeaudio.errors import MissingDataError
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.runtime.batching import Example, example_length
from moeaudio.runtime.examples import (
    StreamExamples,
    ensure_corpus,
    fill_cache_streaming,
    index_keys,
    indexed_items,
    load_examples,
    manifest_path,
    recipe_items,
    require_manifest,
    use_streaming,
    uses_cache,
)

__all__ = ["TrainData", "check_train_data", "mixture_manifest", "train_examples"]

Barrier = Callable[[], None]


@dataclass
class TrainData:
    """The checked train split: its items in memory, or (streaming) a lazy index of them."""

    manifest: Path
    items: list[Item] | None  # in memory
    index: ManifestIndex | None  # streamed
    # data.mixture: one TrainData per source (its own recipe: the source's data.tasks), the weights,
    # and (once train_examples ran) each source's example count, in the order they are concatenated
    sources: list[tuple[MixtureSource, Recipe, TrainData]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @property
    def streaming(self) -> bool:
        return self.index is not None or any(part.streaming for _, _, part in self.sources)

    @property
    def weights(self) -> list[float]:
        return [source.weight for source, _, _ in self.sources]


def check_train_data(
    recipe: Recipe, rank: int, barrier: Barrier, *, check_valid: bool = False, quiet: bool = False
) -> TrainData:
    """Every input the run will read, checked before the model is built (see the module docstring);
    ``check_valid``: the valid manifest too (the validation at the end needs it)."""
    if recipe.data.mixture:
        return _check_mixture(recipe, rank, barrier, check_valid=check_valid, quiet=quiet)
    if rank == 0:
        ensure_corpus(recipe, progress=not quiet)
    barrier()
    manifest = manifest_path(recipe, "train")
    # a lazy index first unless told to load it all: its durations decide whether to stream
    index = None if recipe.data.loading == "memory" else indexed_items(require_manifest(manifest), recipe)
    streaming = index is not None and use_streaming(recipe, float(index.durations.sum()))
    items = None
    if index is None:
        items = recipe_items(manifest, recipe)
    elif not streaming:
        items = [index[i] for i in range(len(index))]
        index.close()
    if check_valid:
        recipe_items(manifest_path(recipe, "valid"), recipe, "the validation at the end (or pass --no-eval)")
    return TrainData(manifest, items, index if streaming else None)


def mixture_manifest(recipe: Recipe, source: MixtureSource) -> Path:
    """A mixture source's manifest: absolute, or relative to ``data.root``."""
    path = Path(source.manifest)
    return path if path.is_absolute() else Path(recipe.data.root) / path


def _check_mixture(
    recipe: Recipe, rank: int, barrier: Barrier, *, check_valid: bool, quiet: bool
) -> TrainData:
    """:func:`check_train_data` for each ``data.mixture`` source, each with its own ``tasks``."""
    sources = []
    for source in recipe.data.mixture or []:
        manifest = mixture_manifest(recipe, source)
        if not manifest.exists():
            raise MissingDataError(
                f"data.mixture source '{source.name}': {manifest} not found; prepare it with its preparer "
                f"(`moeaudio prepare <source> SRC {manifest.parent}`) or remove the source from the recipe"
            )
        settings = {"train": str(manifest.absolute()), "mixture": None, "synth_if_missing": False}
        if source.tasks is not None:
            settings["tasks"] = source.tasks
        sub = recipe.model_copy(update={"data": recipe.data.model_copy(update=settings)})
        sources.append((source, sub, check_train_data(sub, rank, barrier, quiet=quiet)))
    if check_valid:
        recipe_items(manifest_path(recipe, "valid"), recipe, "the validation at the end (or pass --no-eval)")
    return TrainData(sources[0][2].manifest, None, None, sources=sources)


def train_examples(
    data: TrainData,
    model: AudioLLM,
    recipe: Recipe,
    rank: int,
    world: int,
    barrier: Barrier,
    quiet: bool = False,
) -> tuple[Sequence[Example], Sequence[int]]:
    """The examples the sampler draws from and each one's length for it: milliseconds of audio when
    streaming or under ``data.max_batch_seconds``, else :func:`example_length`. A mixture's sources
    come one after another (their sizes in ``data.sizes``, for the mixture sampler)."""
    if data.sources:
        parts = [
            train_examples(part, model, sub, rank, world, barrier, quiet) for _, sub, part in data.sources
        ]
        data.sizes = [len(examples) for examples, _ in parts]
        joined: Sequence[Example] = torch.utils.data.ConcatDataset([examples for examples, _ in parts])  # type: ignore[arg-type]
        return joined, [n for _, lengths in parts for n in lengths]
    if data.index is not None:
        examples: Sequence[Example] = _stream(data.index, model, recipe, rank, world, barrier, quiet)
        lengths: Sequence[int] = examples.lengths_ms()  # type: ignore[attr-defined]
    else:
        # rank 0 fills the feature cache first so the other ranks only read it
        if rank == 0:
            examples = load_examples(model, data.manifest, recipe, progress=not quiet, items=data.items)
        barrier()
        if rank != 0:
            examples = load_examples(model, data.manifest, recipe, progress=False, items=data.items)
        lengths = (
            [round(1000 * e.meta["duration"]) for e in examples]
            if recipe.data.max_batch_seconds
            else [example_length(e) for e in examples]
        )
    if not len(examples):
        tasks = f" of data.tasks={recipe.data.tasks}" if recipe.data.tasks else ""
        raise MissingDataError(
            f"{data.manifest}: no training items{tasks} of at most "
            f"data.max_audio_seconds={recipe.data.max_audio_seconds:g} s; check data.tasks and the manifest"
        )
    return examples, lengths


def _stream(
    index: ManifestIndex,
    model: AudioLLM,
    recipe: Recipe,
    rank: int,
    world: int,
    barrier: Barrier,
    quiet: bool,
) -> StreamExamples:
    """The streaming dataset. With the feature cache, every rank first encodes its share of the clips
    the cache lacks (its own shards), then all read all."""
    cache = keys = None
    if uses_cache(recipe):
        cache = FeatureCache.for_encoder(
            recipe.data.feature_cache, model.encoder, recipe.data.nonfinite_audio, recipe.data.cache_shard_mb
        )
        keys = index_keys(index, progress=not quiet)  # hashed once here, not at every read
        fill_cache_streaming(
            model.encoder, cache, [index], keys=[keys], share=(rank, world),
            nonfinite=recipe.data.nonfinite_audio, writer=f"rank{rank}", progress=not quiet,
        )  # fmt: skip
        barrier()
        cache.refresh()
    return StreamExamples(index, recipe, model.encoder.sample_rate, cache, keys)
