"""`moeaudio prepare-features RECIPE`: fill the recipe's frozen-encoder feature cache ahead of training.

Every distinct clip of the recipe's train, valid and test manifests (under its ``data.tasks`` and
``data.max_audio_seconds``) is encoded once into safetensors shards under ``data.feature_cache``
(:mod:`moeaudio.data.feature_cache`), keyed by audio content, encoder identity and every option that
changes the states (``data.nonfinite_audio``).
``--workers N`` runs N processes, worker k taking every N-th distinct clip and writing shards of its
own, so nothing is shared but the directory. Interrupted, it keeps every finished shard, and a
second run encodes only what is missing. Training (``data.loading=stream``, or the in-memory path)
then reads the cache instead of running the encoder.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import torch

from moeaudio.config import Recipe
from moeaudio.data.feature_cache import FeatureCache
from moeaudio.errors import UsageError
from moeaudio.model.encoder import build_encoder
from moeaudio.runtime.examples import ensure_corpus, fill_cache_streaming, indexed_items, manifest_path

__all__ = ["prepare_features"]

SPLITS = ("train", "valid", "test")


def _indexes(recipe: Recipe) -> list[Any]:
    return [indexed_items(m, recipe) for s in SPLITS if (m := manifest_path(recipe, s)).exists()]


def _work(recipe: Recipe, k: int, n: int, threads: int, progress: bool) -> dict[str, Any]:
    """Worker k of n: encode its share of the clips the cache lacks, into its own shards; returns
    its counts, the encoder's identity and the cache's options (which name the cache folder)."""
    torch.set_num_threads(threads)
    encoder = build_encoder(recipe.encoder, seed=recipe.train.seed).eval()
    cache = FeatureCache.for_encoder(
        recipe.data.feature_cache, encoder, recipe.data.nonfinite_audio, recipe.data.cache_shard_mb
    )
    counts = fill_cache_streaming(
        encoder, cache, _indexes(recipe), share=(k, n), nonfinite=recipe.data.nonfinite_audio,
        writer=f"w{k}", progress=progress,
    )  # fmt: skip
    return {**counts, "identity": encoder.identity, "options": cache.options}


def prepare_features(recipe: Recipe, workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Fill the cache; returns clips, encoded, reused, shards written, workers, seconds and where."""
    if not recipe.encoder.freeze or not recipe.data.feature_cache:
        raise UsageError(
            "prepare-features: the recipe caches nothing (it needs encoder.freeze=true and data.feature_cache "
            "set, e.g. data.feature_cache=data/cache)"
        )
    if workers < 1:
        raise UsageError(f"--workers {workers}: give 1 or more")
    start = time.time()
    ensure_corpus(recipe, progress=progress)
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        parts = [_work(recipe, 0, 1, torch.get_num_threads(), progress)]
    else:
        ctx = multiprocessing.get_context("spawn")  # no forked torch state in the workers
        with ctx.Pool(workers) as pool:
            parts = pool.starmap(_work, [(recipe, k, workers, threads, False) for k in range(workers)])
    total = {key: sum(p[key] for p in parts) for key in ("clips", "encoded", "reused", "shards")}
    # the workers built the encoder: no second build (weights loaded again) only for its identity
    cache = FeatureCache(recipe.data.feature_cache, parts[0]["identity"], options=parts[0]["options"])
    return {
        **total,
        "entries": len(cache),
        "workers": workers,
        "seconds": round(time.time() - start, 2),
        "cache": str(cache.root),
    }
