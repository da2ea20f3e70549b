"""Length-bucketed, seed-deterministic, resumable batching.

Batches group items of similar length (less padding, faster steps); their order is a pure
function of (seed, epoch), and the sampler's state is (epoch, batches already served), so a
checkpoint can store it and a resumed run sees exactly the batches it would have seen.
Each data-parallel rank takes every world_size-th batch of the same global order.

With ``max_batch_length`` a batch is not a fixed count but as many items as fit under a cap on the
batch as padded (items x longest item, in the units of ``lengths``: e.g. milliseconds of audio for
``data.max_batch_seconds``), the way audio toolkits cap batches by duration: short clips come many
to a batch, long ones few. Still a pure function of (seed, epoch), and every rank gets as many.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class BucketBatchSampler:
    """Yields lists of indices; infinite when ``epochs`` is None (step-based training)."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        bucket: bool = True,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        bucket_factor: int = 50,
        max_batch_length: float | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_batch_length is not None and max_batch_length <= 0:
            raise ValueError("max_batch_length must be > 0")
        self.max_batch_length = max_batch_length
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket = bucket
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.bucket_factor = bucket_factor
        self.epoch = 0
        self.position = 0  # batches of the current epoch already served to this rank

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batch order of one epoch (every rank computes the same list)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        if self.bucket:
            # Sort within windows of bucket_factor batches: similar lengths, still shuffled globally.
            window = self.batch_size * self.bucket_factor
            chunks = [order[i : i + window] for i in range(0, len(order), window)]
            order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")] for c in chunks])
        if self.max_batch_length is None:
            batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        else:
            batches = self._capped(order)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) - len(batches) % self.world_size  # equal batch count on every rank
        return batches[:usable] if usable else batches

    def _capped(self, order: np.ndarray) -> list[list[int]]:
        """Consecutive items of ``order`` packed greedily while items x longest <= the cap (an item
        longer than the cap alone makes a batch)."""
        cap = self.max_batch_length
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for i in order.tolist():
            n = float(self.lengths[i])
            if current and (len(current) + 1) * max(longest, n) > cap:
                batches.append(current)
                current, longest = [], 0.0
            current.append(i)
            longest = max(longest, n)
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            mine = self.epoch_batches(self.epoch)[self.rank :: self.world_size]
            while self.position < len(mine):
                batch = mine[self.position]
                self.position += 1
                yield batch
            self.epoch += 1
            self.position = 0

    def batches_per_epoch(self) -> int:
        return len(self.epoch_batches(0)[self.rank :: self.world_size])

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"sampler state was saved with seed {state['seed']}, this run uses seed {self.seed}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def set_consumed(self, batches: int) -> None:
        """Position the sampler after ``batches`` batches (a resumed run continues from there)."""
        per_epoch = self.batches_per_epoch()
        self.epoch, self.position = divmod(batches, per_epoch)
