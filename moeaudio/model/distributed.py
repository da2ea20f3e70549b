"""Data-parallel reductions for model code: ``torch.distributed`` only, identity in one process.

The trainer sets the process group up (``moeaudio.train.distributed``); model code only asks
whether one is there, so the same layer runs unchanged in tests, notebooks and DeepSpeed.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def dist_active() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum a detached statistic over data-parallel ranks (a copy; identity when not distributed)."""
    t = t.detach().clone()
    if dist_active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
