"""From a recipe's data section and its manifests to model-ready :class:`Example`\\ s.

With a frozen encoder and ``data.feature_cache`` set, examples carry cached encoder states
(computed once, keyed by audio content and encoder identity); otherwise they carry waveforms at
the encoder's sample rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from moeaudio.config import Recipe
from moeaudio.data.audio import load_audio
from moeaudio.data.feature_cache import FeatureCache
from moeaudio.data.manifest import Item, check_manifest
from moeaudio.data.synth import make_synth_corpus
from moeaudio.data.tasks import item_prompt
from moeaudio.errors import MissingDataError
from moeaudio.io_utils import check_output_dir
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.model.encoder import min_input_seconds
from moeaudio.runtime.batching import Example

__all__ = [
    "checked_items",
    "ensure_corpus",
    "load_examples",
    "load_manifest_examples",
    "manifest_path",
    "select_items",
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
    model: AudioLLM, manifest: Path, recipe: Recipe, progress: bool = True, items: list[Item] | None = None
) -> list[Example]:
    """Examples for a manifest (or the given, already checked ``items`` of it): cached encoder states
    or waveforms. Without ``items`` the manifest is checked first (:func:`checked_items`)."""
    if items is None:
        keep = set(recipe.data.tasks) if recipe.data.tasks else None
        items = checked_items(manifest, recipe, select=lambda i: keep is None or i.task in keep)
    items = select_items(recipe, items)
    paths = [item.resolve_audio(manifest) for item in items]
    nonfinite = recipe.data.nonfinite_audio
    if recipe.encoder.freeze and recipe.data.feature_cache:
        cache = FeatureCache(recipe.data.feature_cache, model.encoder.identity)
        states = cache.fill(model.encoder, paths, progress=progress, nonfinite=nonfinite)
        waves = [None] * len(items)
    else:
        states = [None] * len(items)
        waves = [load_audio(p, model.encoder.sample_rate, nonfinite=nonfinite) for p in paths]
    return [
        Example(item_prompt(item), item.target, wave=w, states=s, meta=item.to_dict())
        for item, w, s in zip(items, waves, states, strict=True)
    ]


def load_manifest_examples(
    model: AudioLLM, manifest: str | Path, progress: bool = False, limit: int | None = None
) -> list[Example]:
    """Every item of a manifest under the model's own recipe filters; ``limit`` keeps the first N
    items (before filtering). The manifest is checked first (:func:`checked_items`)."""
    manifest = Path(manifest)
    items = checked_items(manifest, model.recipe, limit=limit)
    return load_examples(model, manifest, model.recipe, progress=progress, items=items)
