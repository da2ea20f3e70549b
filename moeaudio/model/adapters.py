"""Adapters between audio tokens and the LLM: linear | mlp | dense | moe.

Every adapter maps already-flattened valid audio tokens ``x (T, d_in)`` (padding removed by the
caller) to ``AdapterOutput(y (T, d_out), losses)``; ``losses`` is empty except for the MoE, whose
``losses["total"]`` is the coefficient-weighted balance loss to add to the LM loss.

Every adapter also reports ``param_counts()`` and ``flops_per_token()``, which only read
parameter shapes, so a paper-scale adapter built under ``torch.device("meta")`` can be sized
without allocating memory (``moeaudio inspect``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from moeaudio.config import AdapterConfig
from moeaudio.model.moe import ACTIVATIONS, MoELayer, RoutedExperts, Router


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


def _norm(width: int, enabled: bool = True) -> nn.Module:
    return nn.LayerNorm(width) if enabled else nn.Identity()


class Adapter(nn.Module):
    """Base class: parameter and FLOP accounting shared by every adapter kind."""

    d_in: int
    d_out: int

    def forward(self, x: Tensor) -> AdapterOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_counts(self) -> dict[str, int]:
        """Parameter counts: ``total``, ``active`` (per audio token) and a breakdown by kind.

        Kinds: ``linear_weights`` (matmul weights, incl. stacked expert weights), ``router``
        (W_g), ``norm`` (LayerNorm weight+bias), ``bias`` (linear biases). ``active_linear_weights``
        and ``active_bias`` count routed-expert parameters at top_k/E (a token uses k of E
        experts); router, norms and shared paths are always active.
        """
        counts = dict.fromkeys(("linear_weights", "router", "norm", "bias"), 0)
        active = dict.fromkeys(("linear_weights", "bias"), 0)
        routed = {id(m.experts): m.router.top_k for m in self.modules() if isinstance(m, MoELayer)}
        router_params = {id(p) for m in self.modules() if isinstance(m, Router) for p in m.parameters()}
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                kind = "router" if id(p) in router_params else _param_kind(module, name)
                counts[kind] += p.numel()
                if kind in active:  # a routed expert's parameters serve a token top_k/E of the time
                    top_k = routed.get(id(module))
                    active[kind] += p.numel() if top_k is None else p.numel() // module.num_experts * top_k
        total = sum(counts.values())
        inactive = counts["linear_weights"] + counts["bias"] - active["linear_weights"] - active["bias"]
        return {
            "total": total,
            "active": total - inactive,
            **counts,
            "active_linear_weights": active["linear_weights"],
            "active_bias": active["bias"],
        }

    def flops_per_token(self) -> int:
        """Forward matmul FLOPs for one audio token: ``2 * (active linear weights + router)``
        plus ``2 * k * width`` for the gate-weighted combine of the k expert outputs.

        Norms, activations, biases and the softmax/top-k are ignored (O(width), not O(width^2)).
        """
        counts = self.param_counts()
        flops = 2 * (counts["active_linear_weights"] + counts["router"])
        for m in self.modules():
            if isinstance(m, MoELayer):
                flops += 2 * m.router.top_k * m.experts.d_out
        return flops


def _param_kind(module: nn.Module, name: str) -> str:
    if isinstance(module, nn.LayerNorm):
        return "norm"
    if (isinstance(module, nn.Linear) and name == "bias") or (
        isinstance(module, RoutedExperts) and name[0] == "b"
    ):
        return "bias"
    return "linear_weights"


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
        self.norm_out = _norm(d_out, cfg.final_norm)

    def forward(self, x: Tensor) -> AdapterOutput:  # (T, d_in) -> (T, d_out)
        return AdapterOutput(self.norm_out(self.mlp(self.norm_in(x))))


class MoEAdapter(Adapter):
    """The paper's MoE-Adapter: ``z = LN(x)``, top-k routed experts, then the shared path.

    ``shared_path`` (the paper is ambiguous, both readings are offered):
      * ``sequential`` (the text): experts output d_in; then the aggregation block
        ``LN -> Linear(d_in->aggregation_dim) -> act -> Linear(->d_out)`` (-> final LN).
      * ``parallel`` (matches the parameter table): experts output d_out; the aggregation MLP runs
        on z for every token as an always-on shared expert, summed with the routed output
        (-> final LN).
      * ``none``: experts output d_out (-> final LN).
    ``num_shared_experts`` adds DeepSeek-style always-on experts of width ``expert_dim`` (output
    width as the routed experts), summed unweighted with the routed output. N of them are stored
    as one MLP of width N * expert_dim, which is the same function as summing N experts.
    ``cfg.expert_out`` is not read: the expert output width follows from ``shared_path``.
    """

    def __init__(self, cfg: AdapterConfig, d_in: int, d_out: int) -> None:
        super().__init__()
        self.d_in, self.d_out, self.shared_path = d_in, d_out, cfg.shared_path
        expert_out = d_in if cfg.shared_path == "sequential" else d_out
        self.norm_in = nn.LayerNorm(d_in)
        self.moe = MoELayer(cfg, d_in, expert_out)
        self.shared_experts = (
            MLP(d_in, cfg.num_shared_experts * cfg.expert_dim, expert_out, cfg.activation, cfg.bias)
            if cfg.num_shared_experts > 0
            else None
        )
        if cfg.shared_path == "sequential":
            self.aggregation = nn.Sequential(
                nn.LayerNorm(d_in), MLP(d_in, cfg.aggregation_dim, d_out, cfg.activation, cfg.bias)
            )
        elif cfg.shared_path == "parallel":
            self.aggregation = MLP(d_in, cfg.aggregation_dim, d_out, cfg.activation, cfg.bias)
        else:
            self.aggregation = None
        self.norm_out = _norm(d_out, cfg.final_norm)

    def forward(self, x: Tensor) -> AdapterOutput:  # x: (T, d_in)
        z = self.norm_in(x)  # (T, d_in)
        h, losses = self.moe(z)  # (T, expert_out)
        if self.shared_experts is not None:
            h = h + self.shared_experts(z)
        if self.shared_path == "sequential":
            y = self.aggregation(h)  # (T, d_out)
        elif self.shared_path == "parallel":
            y = h + self.aggregation(z)  # (T, d_out)
        else:
            y = h
        return AdapterOutput(self.norm_out(y), losses)

    def update_bias(self) -> Tensor:
        """Aux-loss-free balancing step; the trainer calls it once per optimizer step."""
        return self.moe.update_bias()


ADAPTERS: dict[str, type[Adapter]] = {
    "linear": LinearAdapter,
    "mlp": MLPAdapter,
    "dense": DenseAdapter,
    "moe": MoEAdapter,
}


def build_adapter(cfg: AdapterConfig, d_in: int, d_out: int) -> Adapter:
    """The adapter ``cfg.kind`` mapping audio tokens of width d_in to LLM embeddings of width d_out."""
    if cfg.kind == "moe" and not 1 <= cfg.top_k <= cfg.num_experts:
        raise ValueError(
            f"adapter.top_k={cfg.top_k} must be between 1 and adapter.num_experts={cfg.num_experts}"
        )
    return ADAPTERS[cfg.kind](cfg, d_in, d_out)
