"""Learning-rate schedules as multipliers of the peak LR (for torch's LambdaLR).

Warmup-stable-decay (WSD) is what the paper uses: linear warmup, a long flat phase, then a
linear decay over the last ``decay_fraction`` of training. Cosine and constant are offered too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from moeaudio.config import TrainConfig


def lr_multiplier(cfg: TrainConfig) -> Callable[[int], float]:
    total, warmup, floor = cfg.max_steps, cfg.warmup_steps, cfg.min_lr_ratio

    def warm(step: int) -> float | None:
        return (step + 1) / warmup if warmup and step < warmup else None

    if cfg.schedule == "constant":
        return lambda step: warm(step) or 1.0
    if cfg.schedule == "cosine":

        def cosine(step: int) -> float:
            if (w := warm(step)) is not None:
                return w
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return cosine

    decay_steps = max(1, int(round(cfg.decay_fraction * total)))
    decay_start = total - decay_steps

    def wsd(step: int) -> float:
        if (w := warm(step)) is not None:
            return w
        if step < decay_start:
            return 1.0
        return floor + (1 - floor) * max(0.0, (total - step) / decay_steps)

    return wsd
