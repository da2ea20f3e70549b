"""From a recipe's data section to model-ready Examples (with cached encoder states when frozen)."""

from __future__ import annotations

from pathlib import Path

from moeaudio.config import Recipe
from moeaudio.data.manifest import Item, read_manifest
from moeaudio.model.audio_llm import AudioLLM, Example


def manifest_path(recipe: Recipe, split: str) -> Path:
    name = getattr(recipe.data, split)
    path = Path(name)
    return path if path.is_absolute() else Path(recipe.data.root) / path


def ensure_corpus(recipe: Recipe, progress: bool = True) -> None:
    """Create the built-in synthetic corpus when the recipe's manifests are missing and allowed."""
    if manifest_path(recipe, "train").exists():
        return
    if not recipe.data.synth_if_missing:
        raise FileNotFoundError(
            f"{manifest_path(recipe, 'train')} not found: prepare data first (e.g. `moeaudio prepare synth "
            f"{recipe.data.root}`) or set data.synth_if_missing=true"
        )
    from moeaudio.data.synth import make_synth_corpus

    make_synth_corpus(
        Path(recipe.data.root), seed=recipe.data.synth_seed, size=recipe.data.synth_size, progress=progress
    )


def select_items(recipe: Recipe, items: list[Item]) -> list[Item]:
    keep = set(recipe.data.tasks) if recipe.data.tasks else None
    return [
        i for i in items if (keep is None or i.task in keep) and i.duration <= recipe.data.max_audio_seconds
    ]


def item_instruction(item: Item) -> str:
    from moeaudio.data.tasks import item_prompt

    return item_prompt(item)


def load_examples(
    model: AudioLLM, manifest: Path, recipe: Recipe, progress: bool = True, items: list[Item] | None = None
) -> list[Example]:
    """Examples for a manifest: cached encoder states (frozen encoder + cache dir) or waveforms."""
    from moeaudio.data.audio import load_audio

    items = select_items(recipe, items if items is not None else read_manifest(manifest))
    paths = [item.resolve_audio(manifest) for item in items]
    if recipe.encoder.freeze and recipe.data.feature_cache:
        from moeaudio.data.feature_cache import FeatureCache

        cache = FeatureCache(recipe.data.feature_cache, model.encoder.identity)
        states = cache.fill(model.encoder, paths, progress=progress)
        waves = [None] * len(items)
    else:
        states = [None] * len(items)
        waves = [load_audio(p, model.encoder.sample_rate) for p in paths]
    return [
        Example(item_instruction(item), item.target, wave=w, states=s, meta=item.to_dict())
        for item, w, s in zip(items, waves, states, strict=True)
    ]


def example_length(example: Example) -> int:
    return int(example.states.shape[0]) if example.states is not None else len(example.wave)
