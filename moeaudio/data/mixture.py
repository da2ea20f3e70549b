"""Weighted mixtures of prepared corpora: which source each micro-batch comes from.

A paper-scale run trains on several prepared manifests at once (``data.mixture``: LibriSpeech,
Common Voice, ESC-50, GTZAN, ...), each with a sampling weight. :class:`MixtureBatchSampler` keeps
every source's own length-bucketed order (:class:`~moeaudio.data.loader.BucketBatchSampler`, its
epochs repeating independently, so a small corpus cycles while a large one is still in its first
pass) and decides, per global micro-batch, which source serves it:

* global micro-batch ``j`` comes whole from source ``c_j``, drawn with probability ``weight / sum``
  from a generator seeded by ``(seed, j // BLOCK)``: a pure function of the seed and ``j``;
* it is the ``m``-th batch of that source's order, ``m`` = how many earlier micro-batches came from
  that source;
* rank ``r`` of ``W`` serves ``j = r, r + W, r + 2W, ...``.

Why whole batches from one source: items of one corpus have similar lengths and the same task mix,
so bucketing still pads little; the optimizer step (``grad_accum x W`` micro-batches) mixes the
sources. Why draws rather than a fixed interleave: the counts follow the weights (within binomial
noise: 10k draws at weight 0.5 stay within 1 percentage point at 2 standard deviations) without any
periodic pattern for the model to pick up.

The state is the number of micro-batches this rank has served; the sources' positions are
recomputed from the draws (a ``bincount`` per block), so resume is exact. The micro-batches making
up one optimizer step are the same at any world size with the same global batch (``W x grad_accum``
constant): 8 GPUs and 16 see the same examples in the same steps.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

import numpy as np

from moeaudio.data.loader import BucketBatchSampler

__all__ = ["BLOCK", "MixtureBatchSampler", "normalised_weights"]

BLOCK = 8192  # source draws generated together (one generator per block of global micro-batches)
_STREAM = 0x6D6978  # "mix": keeps these draws apart from every other use of the seed


def normalised_weights(weights: Sequence[float]) -> np.ndarray:
    """``weights / sum(weights)``; every weight must be a finite number > 0."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not len(w) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"mixture weights must be finite numbers > 0, one per source; got {list(weights)}")
    return w / w.sum()


class MixtureBatchSampler:
    """Yields lists of indices into the sources concatenated in order (source s's item i is
    ``offsets[s] + i``); infinite (step-based training)."""

    def __init__(
        self,
        lengths: Sequence[Sequence[float]],
        weights: Sequence[float],
        batch_size: int,
        seed: int = 0,
        bucket: bool = True,
        rank: int = 0,
        world_size: int = 1,
        max_batch_length: float | None = None,
    ):
        if len(lengths) != len(weights):
            raise ValueError(f"{len(lengths)} sources but {len(weights)} weights")
        empty = [s for s, ls in enumerate(lengths) if not len(ls)]
        if empty:
            raise ValueError(f"mixture source(s) {empty} have no items")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        small = [s for s, ls in enumerate(lengths) if max_batch_length is None and len(ls) < batch_size]
        if small:
            raise ValueError(
                f"mixture source(s) {small} have fewer items than one micro-batch ({batch_size})"
            )
        self.batch_size, self.max_batch_length = batch_size, max_batch_length
        self.weights = normalised_weights(weights)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.sources = [
            BucketBatchSampler(
                ls, batch_size, seed=seed + 1009 * (s + 1), bucket=bucket, max_batch_length=max_batch_length
            )
            for s, ls in enumerate(lengths)
        ]
        self.offsets = np.concatenate([[0], np.cumsum([len(ls) for ls in lengths])[:-1]]).astype(np.int64)
        self.position = 0  # micro-batches this rank has served
        self._epoch_cache: dict[int, tuple[int, list[list[int]]]] = {}  # source -> (epoch, its batches)
        self._epoch_starts: list[list[int]] = [[0] for _ in lengths]  # source -> first batch of each epoch

    # --------------------------------------------------------------------------- the draws

    def _block(self, b: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _STREAM, b])
        return rng.choice(len(self.weights), size=BLOCK, p=self.weights)

    def sources_of(self, start: int, stop: int) -> np.ndarray:
        """The source of every global micro-batch ``start <= j < stop``."""
        if stop <= start:
            return np.zeros(0, dtype=np.int64)
        blocks = [self._block(b) for b in range(start // BLOCK, (stop - 1) // BLOCK + 1)]
        first = (start // BLOCK) * BLOCK
        return np.concatenate(blocks)[start - first : stop - first]

    def _counts_before(self, j: int) -> np.ndarray:
        """Micro-batches each source served before global micro-batch ``j``."""
        return np.bincount(self.sources_of(0, j), minlength=len(self.weights)).astype(np.int64)

    # --------------------------------------------------------------------------- batches

    def _epoch(self, s: int, epoch: int) -> list[list[int]]:
        """Source ``s``'s batches of one epoch; with a fixed batch size a short batch is topped up with
        the first items of the epoch's order (every micro-batch full, so the global batch is what the
        recipe says, and no item is left out: with length bucketing the short batch holds the
        longest clips, which dropping it would never train on)."""
        batches = self.sources[s].epoch_batches(epoch)
        if self.max_batch_length is None:
            pool = [i for b in batches for i in b]
            for b in batches:
                if len(b) < self.batch_size:
                    b.extend([i for i in pool if i not in b][: self.batch_size - len(b)])
        return batches

    def _source_batch(self, s: int, m: int) -> list[int]:
        """Batch ``m`` of source ``s``'s own order (its epochs one after another), as global indices.
        Epochs may differ in batch count (``max_batch_length`` packs per epoch), hence the starts."""
        starts = self._epoch_starts[s]
        while starts[-1] <= m:
            starts.append(starts[-1] + len(self._epoch(s, len(starts) - 1)))
        epoch = bisect.bisect_right(starts, m) - 1
        cached = self._epoch_cache.get(s)
        if cached is None or cached[0] != epoch:
            cached = self._epoch_cache[s] = (epoch, self._epoch(s, epoch))
        return [int(self.offsets[s]) + i for i in cached[1][m - starts[epoch]]]

    def __iter__(self) -> Iterator[list[int]]:
        j = self.position * self.world_size + self.rank
        counts = self._counts_before(j)
        while True:
            block_end = (j // BLOCK + 1) * BLOCK
            draws = self.sources_of(j, block_end)
            for offset, s in enumerate(draws.tolist()):
                g = j + offset
                if g % self.world_size == self.rank:
                    batch = self._source_batch(s, int(counts[s]))
                    counts[s] += 1
                    self.position += 1
                    yield batch
                else:
                    counts[s] += 1
            j = block_end

    # --------------------------------------------------------------------------- resume

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"sampler state was saved with seed {state['seed']}, this run uses seed {self.seed}"
            )
        self.position = int(state["position"])

    def set_consumed(self, batches: int) -> None:
        """Position the sampler after ``batches`` micro-batches served to this rank."""
        self.position = int(batches)
