"""Feature cache (hit/miss/invalidation/resume) and the length-bucketed, resumable sampler."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from moeaudio.config import EncoderConfig
from moeaudio.data.feature_cache import FeatureCache, audio_key
from moeaudio.data.loader import BucketBatchSampler
from moeaudio.model.encoder import build_encoder


@pytest.fixture(scope="module")
def encoder():
    enc = build_encoder(EncoderConfig(name="tiny", d_model=64), seed=0)
    return enc.eval()


def _clips(folder: Path, n: int = 4) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"clip{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(8000 + 1600 * i)).astype(np.float32), 16000)
        paths.append(path)
    return paths


def test_cache_miss_then_hit_with_identical_states(encoder, tmp_path: Path) -> None:
    paths = _clips(tmp_path)
    cache = FeatureCache(tmp_path / "cache", encoder.identity)
    first = cache.fill(encoder, paths, batch_size=3, progress=False)
    assert (cache.hits, cache.misses) == (0, 4)
    second = cache.fill(encoder, paths, progress=False)
    assert (cache.hits, cache.misses) == (4, 4)
    for a, b, p in zip(first, second, paths, strict=True):
        assert torch.equal(a, b)
        assert a.shape == (encoder.output_length(sf.info(p).frames), encoder.d_model)
    # cached states equal a fresh encoding of the clip alone
    from moeaudio.data.audio import load_audio

    with torch.no_grad():
        alone = encoder(encoder.prepare([load_audio(paths[2])]))[0]
    torch.testing.assert_close(second[2], alone, atol=1e-5, rtol=1e-5)


def test_cache_encodes_shortest_first(encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing clips are encoded in order of duration, so a batch pads its clips to about their own
    length; the states come back in the caller's order all the same."""
    import moeaudio.data.feature_cache as feature_cache

    paths = _clips(tmp_path, 6)[::-1]  # longest first
    batches: list[list[str]] = []
    real_encode = feature_cache.encode
    monkeypatch.setattr(
        feature_cache,
        "encode",
        lambda enc, ps, nf: batches.append([p.name for p in ps]) or real_encode(enc, ps, nf),
    )
    states = FeatureCache(tmp_path / "cache", encoder.identity).fill(
        encoder, paths, batch_size=2, progress=False
    )
    assert batches == [["clip0.wav", "clip1.wav"], ["clip2.wav", "clip3.wav"], ["clip4.wav", "clip5.wav"]]
    assert [s.shape[0] for s in states] == [encoder.output_length(sf.info(p).frames) for p in paths]
    # durations the caller already has (a checked manifest's) order the encoding without a header read
    batches.clear()
    monkeypatch.setattr(feature_cache, "audio_info", lambda p: pytest.fail(f"header of {p} read again"))
    given = [float(i) for i in range(6)]  # paths[0] (the longest clip) said to be the shortest
    FeatureCache(tmp_path / "other", encoder.identity).fill(
        encoder, paths, batch_size=2, progress=False, durations=given
    )
    assert batches == [["clip5.wav", "clip4.wav"], ["clip3.wav", "clip2.wav"], ["clip1.wav", "clip0.wav"]]


def test_cache_invalidated_by_content_and_encoder(encoder, tmp_path: Path) -> None:
    paths = _clips(tmp_path)
    cache = FeatureCache(tmp_path / "cache", encoder.identity)
    cache.fill(encoder, paths, progress=False)
    # same name, new content -> miss for that file only
    sf.write(paths[1], np.zeros(8000, dtype=np.float32), 16000)
    cache.fill(encoder, paths, progress=False)
    assert (cache.hits, cache.misses) == (3, 5)
    # a copy under another name is a hit (keyed by content, not path)
    shutil.copy(paths[0], tmp_path / "copy.wav")
    assert audio_key(tmp_path / "copy.wav") == audio_key(paths[0])
    # another encoder identity -> a separate cache: everything misses
    other = build_encoder(EncoderConfig(name="tiny", d_model=64), seed=1)
    assert other.identity != encoder.identity
    fresh = FeatureCache(tmp_path / "cache", other.identity)
    fresh.fill(other.eval(), paths, progress=False)
    assert (fresh.hits, fresh.misses) == (0, 4)


def test_interrupted_fill_resumes(encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _clips(tmp_path, n=6)
    cache = FeatureCache(tmp_path / "cache", encoder.identity)
    calls = {"n": 0}
    real_forward = type(encoder).forward

    def failing_forward(self, inputs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the user hits ctrl-c during the second batch
        return real_forward(self, inputs)

    monkeypatch.setattr(type(encoder), "forward", failing_forward)
    with pytest.raises(KeyboardInterrupt):
        cache.fill(encoder, paths, batch_size=2, progress=False)
    monkeypatch.setattr(type(encoder), "forward", real_forward)
    resumed = FeatureCache(tmp_path / "cache", encoder.identity)
    resumed.fill(encoder, paths, batch_size=2, progress=False)
    assert (resumed.hits, resumed.misses) == (2, 4)  # the finished first batch is reused
    assert not list((tmp_path / "cache").rglob("*.tmp*"))  # no half-written entries


def test_sampler_buckets_by_length_and_is_deterministic() -> None:
    lengths = list(np.random.default_rng(0).integers(10, 1000, size=200))
    a = BucketBatchSampler(lengths, batch_size=8, seed=3, bucket_factor=5)
    b = BucketBatchSampler(lengths, batch_size=8, seed=3, bucket_factor=5)
    assert a.epoch_batches(0) == b.epoch_batches(0)
    assert a.epoch_batches(0) != a.epoch_batches(1)  # reshuffled every epoch
    assert BucketBatchSampler(lengths, 8, seed=4).epoch_batches(0) != a.epoch_batches(0)
    batches = a.epoch_batches(0)
    assert sorted(i for batch in batches for i in batch) == list(range(200))  # each item once per epoch
    spread = np.mean([np.ptp([lengths[i] for i in batch]) for batch in batches])
    unbucketed = BucketBatchSampler(lengths, 8, seed=3, bucket=False).epoch_batches(0)
    spread_plain = np.mean([np.ptp([lengths[i] for i in batch]) for batch in unbucketed])
    assert spread < 0.25 * spread_plain  # bucketing really groups similar lengths


def test_sampler_state_resumes_exactly_and_ranks_partition() -> None:
    lengths = list(range(50, 150))
    full = BucketBatchSampler(lengths, batch_size=7, seed=0)
    stream = iter(full)
    expected = [next(stream) for _ in range(40)]  # crosses epoch boundaries (15 batches/epoch)
    resumed = BucketBatchSampler(lengths, batch_size=7, seed=0)
    resumed.set_consumed(23)
    stream = iter(resumed)
    assert [next(stream) for _ in range(17)] == expected[23:]
    state = full.state_dict()
    again = BucketBatchSampler(lengths, batch_size=7, seed=0)
    again.load_state_dict(state)
    assert (again.epoch, again.position) == (full.epoch, full.position)
    with pytest.raises(ValueError, match="seed"):
        BucketBatchSampler(lengths, batch_size=7, seed=1).load_state_dict(state)
    ranks = [
        BucketBatchSampler(lengths, 7, seed=0, rank=r, world_size=2).epoch_batches(0)[r::2] for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1])
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}


def test_cache_shards_round_trip_and_read_old_npy(encoder, tmp_path: Path) -> None:
    """Entries go to safetensors shards of the configured size, read back bit for bit (also by a
    fresh cache object that indexes the shards' headers); a pre-shard per-clip .npy is still read."""
    paths = _clips(tmp_path, n=6)
    cache = FeatureCache(tmp_path / "cache", encoder.identity, shard_mb=1)
    cache.shard_bytes = 30_000  # a few clips per shard
    states = cache.fill(encoder, paths, batch_size=2, progress=False)
    shards = sorted((tmp_path / "cache" / encoder.identity / "shards").glob("shard-*.safetensors"))
    assert 2 <= len(shards) < 6
    assert not list((tmp_path / "cache").rglob("*.npy"))
    fresh = FeatureCache(tmp_path / "cache", encoder.identity)
    assert len(fresh) == 6
    for p, st in zip(paths, states, strict=True):
        assert torch.equal(fresh.get(audio_key(p)), st)
    # an old cache's entry: <key[:2]>/<key>.npy beside the shards
    old = tmp_path / "old.wav"
    sf.write(old, np.full(8000, 0.01, dtype=np.float32), 16000)
    npy = fresh.path_for(audio_key(old))
    npy.parent.mkdir(parents=True)
    np.save(npy, np.ones((3, 64), dtype=np.float32))
    assert audio_key(old) in fresh and torch.equal(fresh.get(audio_key(old)), torch.ones(3, 64))
    assert fresh.get("0" * 32) is None and "0" * 32 not in fresh


def test_sampler_caps_batches_by_padded_length() -> None:
    """max_batch_length: items x longest <= cap in every batch, each item once per epoch, the same
    batches for the same (seed, epoch), equal counts on every rank, and more short items per batch."""
    lengths = list(np.random.default_rng(1).integers(100, 3000, size=300))
    cap = 12_000
    a = BucketBatchSampler(lengths, batch_size=8, seed=5, max_batch_length=cap, bucket_factor=10)
    batches = a.epoch_batches(0)
    assert all(len(b) * max(lengths[i] for i in b) <= cap for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert a.epoch_batches(0) == BucketBatchSampler(
        lengths, 8, seed=5, max_batch_length=cap, bucket_factor=10
    ).epoch_batches(0)
    assert a.epoch_batches(1) != batches
    sizes = {}
    for b in batches:
        sizes.setdefault(max(lengths[i] for i in b) < 1000, []).append(len(b))
    assert np.mean(sizes[True]) > 2 * np.mean(sizes[False])  # short clips come many to a batch
    # an item longer than the cap is a batch of its own
    solo = BucketBatchSampler([10, 50_000, 20], 4, max_batch_length=1000).epoch_batches(0)
    assert [1] in solo and all(len(b) * max([10, 50_000, 20][i] for i in b) <= 1000 for b in solo if b != [1])
    r0 = BucketBatchSampler(lengths, 8, seed=5, max_batch_length=cap, rank=0, world_size=2)
    r1 = BucketBatchSampler(lengths, 8, seed=5, max_batch_length=cap, rank=1, world_size=2)
    assert r0.batches_per_epoch() == r1.batches_per_epoch()
    seen0 = {i for b in r0.epoch_batches(0)[0::2] for i in b}
    seen1 = {i for b in r1.epoch_batches(0)[1::2] for i in b}
    assert not seen0 & seen1
    # resume: set_consumed(k) continues with the batch an uninterrupted iterator serves next
    it = iter(BucketBatchSampler(lengths, 8, seed=5, max_batch_length=cap))
    served = [next(it) for _ in range(len(batches) + 3)]
    resumed = BucketBatchSampler(lengths, 8, seed=5, max_batch_length=cap)
    resumed.set_consumed(len(batches) + 1)
    assert next(iter(resumed)) == served[len(batches) + 1]
