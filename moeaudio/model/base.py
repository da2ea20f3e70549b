"""What every adapter shares: its output type, its base class and the two-layer MLP block.

Kept apart from ``adapters.py`` so that ``moe.py`` (which holds the MoE-Adapter) and
``adapters.py`` (the other kinds and the registry) can both build on it without importing each
other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from moeaudio.model import accounting

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}


@dataclass
class AdapterOutput:
    y: Tensor  # (T, d_out)
    losses: dict[str, Tensor] = field(default_factory=dict)  # named scalars; "total" is what to optimise


class MLP(nn.Module):
    """``Linear(d_in->hidden) -> act -> Linear(hidden->d_out)``; the building block of most adapters."""

    def __init__(
        self, d_in: int, hidden: int, d_out: int, activation: str = "silu", bias: bool = False
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, d_out, bias=bias)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:  # (T, d_in) -> (T, d_out)
        return self.fc2(self.act(self.fc1(x)))


def norm(width: int, enabled: bool = True) -> nn.Module:
    """LayerNorm, or Identity when the recipe switches the norm off (``final_norm: false``)."""
    return nn.LayerNorm(width) if enabled else nn.Identity()


class Adapter(nn.Module):
    """Base class: ``forward(x (T, d_in)) -> AdapterOutput``, plus size accounting.

    The accounting reads parameter shapes only (``moeaudio.model.accounting``), so it works on
    adapters built under ``torch.device("meta")``.
    """

    d_in: int
    d_out: int

    def forward(self, x: Tensor) -> AdapterOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def moe_layers(self) -> list[nn.Module]:
        """The MoE layers inside (each with ``router`` and ``experts``): none but in ``MoEAdapter``."""
        return []

    def param_counts(self) -> dict[str, int]:
        """See ``moeaudio.model.accounting.param_counts``."""
        return accounting.param_counts(self)

    def flops_per_token(self) -> int:
        """See ``moeaudio.model.accounting.flops_per_token``."""
        return accounting.flops_per_token(self)
