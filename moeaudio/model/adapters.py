"""Adapters between audio tokens and the LLM: linear | mlp | dense | moe, and ``build_adapter``.

Every adapter maps already-flattened valid audio tokens ``x (T, d_in)`` (padding removed by the
caller) to ``AdapterOutput(y (T, d_out), losses)``; ``losses`` is empty except for the MoE, whose
``losses["total"]`` is the coefficient-weighted balance loss to add to the LM loss. The MoE-Adapter
itself lives in ``moe.py``, with its router and experts; the shared pieces (``Adapter``,
``AdapterOutput``, ``MLP``) in ``base.py``.

Every adapter also reports ``param_counts()`` and ``flops_per_token()`` (``accounting.py``), which
only read parameter shapes, so a paper-scale adapter built under ``torch.device("meta")`` can be
sized without allocating memory (``moeaudio inspect``).
"""

from __future__ import annotations

from torch import Tensor, nn

from moeaudio.config import AdapterConfig
from moeaudio.model.base import MLP, Adapter, AdapterOutput, norm
from moeaudio.model.moe import MoEAdapter


class LinearAdapter(Adapter):
    """One Linear (Qwen2-Audio-style projector). No norm: it follows the reference design."""

    def __init__(self, cfg: AdapterConfig, d_in: int, d_out: int) -> None:
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.proj = nn.Linear(d_in, d_out, bias=cfg.bias)

    def forward(self, x: Tensor) -> AdapterOutput:
        return AdapterOutput(self.proj(x))


class MLPAdapter(Adapter):
    """Linear -> act -> Linear of width ``hidden_dim`` (SLAM-LLM-style projector, no norms)."""

    def __init__(self, cfg: AdapterConfig, d_in: int, d_out: int) -> None:
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.mlp = MLP(d_in, cfg.hidden_dim, d_out, cfg.activation, cfg.bias)

    def forward(self, x: Tensor) -> AdapterOutput:
        return AdapterOutput(self.mlp(x))


class DenseAdapter(Adapter):
    """The paper's dense baseline ``LN -> Linear(d_in->hidden_dim) -> act -> Linear(->d_out) -> LN``.

    With ``hidden_dim=20480`` at paper scale it has the MoE-Adapter's 94.4M total parameters, all
    active: the "same total size" comparison of the paper's Table 1.
    """

    def __init__(self, cfg: AdapterConfig, d_in: int, d_out: int) -> None:
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.norm_in = nn.LayerNorm(d_in)
        self.mlp = MLP(d_in, cfg.hidden_dim, d_out, cfg.activation, cfg.bias)
        self.norm_out = norm(d_out, cfg.final_norm)

    def forward(self, x: Tensor) -> AdapterOutput:  # (T, d_in) -> (T, d_out)
        return AdapterOutput(self.norm_out(self.mlp(self.norm_in(x))))


ADAPTERS: dict[str, type[Adapter]] = {
    "linear": LinearAdapter,
    "mlp": MLPAdapter,
    "dense": DenseAdapter,
    "moe": MoEAdapter,
}


def build_adapter(cfg: AdapterConfig, d_in: int, d_out: int) -> Adapter:
    """The adapter ``cfg.kind`` mapping audio tokens of width d_in to LLM embeddings of width d_out.

    ``top_k`` is range-checked by ``Router`` (for a recipe, already by its validation).
    """
    return ADAPTERS[cfg.kind](cfg, d_in, d_out)
