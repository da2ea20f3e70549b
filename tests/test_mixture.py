"""The weighted mixture sampler: counts follow the weights, resume is exact, world size does not
change what a step sees."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moeaudio.data.mixture import MixtureBatchSampler

SIZES = (300, 120, 45)  # a small source cycles many epochs while the large one is in its first few
WEIGHTS = (5.0, 3.0, 2.0)


def _lengths() -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [rng.integers(100, 3000, n).tolist() for n in SIZES]


def _sampler(**kw) -> MixtureBatchSampler:
    return MixtureBatchSampler(_lengths(), WEIGHTS, batch_size=4, seed=7, **kw)


def _source(batch: list[int]) -> int:
    bounds = np.cumsum(SIZES)
    sources = {int(np.searchsorted(bounds, i, side="right")) for i in batch}
    assert len(sources) == 1, "a micro-batch comes whole from one source"
    return sources.pop()


def test_counts_follow_weights_over_10k_draws() -> None:
    """10,000 micro-batches: each source's share within 2 percentage points of its weight (the
    binomial standard deviation at share 0.5 is 0.5 points, so this is 4 sigma)."""
    batches = list(itertools.islice(iter(_sampler()), 10_000))
    counts = np.bincount([_source(b) for b in batches], minlength=3)
    shares = counts / counts.sum()
    np.testing.assert_allclose(shares, np.asarray(WEIGHTS) / sum(WEIGHTS), atol=0.02)
    # every source's batches walk its own epochs: each item of the smallest source served about as often
    small = np.concatenate([b for b in batches if _source(b) == 2]) - SIZES[0] - SIZES[1]
    per_item = np.bincount(small, minlength=SIZES[2])
    assert per_item.min() > 0.9 * per_item.mean() and per_item.max() < 1.1 * per_item.mean()
    assert all(len(b) == 4 for b in batches)  # full micro-batches: a source's short last batch is topped up


def test_resume_is_exact() -> None:
    straight = list(itertools.islice(iter(_sampler()), 400))
    first = _sampler()
    head = list(itertools.islice(iter(first), 150))
    resumed = _sampler()
    resumed.load_state_dict(first.state_dict())
    assert head + list(itertools.islice(iter(resumed), 250)) == straight
    again = _sampler()
    again.set_consumed(150)  # what the trainer does: step x grad_accum micro-batches
    assert list(itertools.islice(iter(again), 250)) == straight[150:]


def test_capped_batches_resume_across_uneven_epochs() -> None:
    straight = list(itertools.islice(iter(_sampler(max_batch_length=6000)), 300))
    resumed = _sampler(max_batch_length=6000)
    resumed.set_consumed(211)
    assert list(itertools.islice(iter(resumed), 89)) == straight[211:]


@pytest.mark.parametrize("world", [2, 4])
def test_same_global_batches_at_any_world_size(world: int) -> None:
    """Rank r serves global micro-batches r, r+W, ...: interleaved, the ranks give the 1-rank order."""
    single = list(itertools.islice(iter(_sampler()), 96))
    ranks = [
        list(itertools.islice(iter(_sampler(rank=r, world_size=world)), 96 // world)) for r in range(world)
    ]
    assert [b for group in zip(*ranks, strict=True) for b in group] == single


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="finite numbers > 0"):
        MixtureBatchSampler(_lengths(), (1.0, 0.0, 1.0), batch_size=4)
    with pytest.raises(ValueError, match="no items"):
        MixtureBatchSampler([[1, 2], []], (1.0, 1.0), batch_size=4)
