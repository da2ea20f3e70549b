"""Parameter and FLOP accounting for adapters, from parameter shapes only.

Nothing here reads parameter values, so a paper-scale adapter built under
``torch.device("meta")`` is sized without allocating memory (``moeaudio inspect``). Routed
experts are found through ``adapter.moe_layers()`` (each with a ``router`` and ``experts``), so
this module needs no MoE import and ``Adapter`` can delegate to it.
"""

from __future__ import annotations

from torch import nn


def param_counts(adapter: nn.Module) -> dict[str, int]:
    """Parameter counts: ``total``, ``active`` (per audio token) and a breakdown by kind.

    Kinds: ``linear_weights`` (matmul weights, incl. stacked expert weights), ``router``
    (W_g), ``norm`` (LayerNorm weight+bias), ``bias`` (linear biases). ``active_linear_weights``
    and ``active_bias`` count routed-expert parameters at top_k/E (a token uses k of E
    experts); router, norms and shared paths are always active.
    """
    layers = adapter.moe_layers()
    routed = {id(m.experts): m.router.top_k for m in layers}  # routed experts -> top_k
    router_params = {id(p) for m in layers for p in m.router.parameters()}
    counts = dict.fromkeys(("linear_weights", "router", "norm", "bias"), 0)
    active = dict.fromkeys(("linear_weights", "bias"), 0)
    for module in adapter.modules():
        for name, p in module.named_parameters(recurse=False):
            kind = "router" if id(p) in router_params else _param_kind(module, name, id(module) in routed)
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


def flops_per_token(adapter: nn.Module) -> int:
    """Forward matmul FLOPs for one audio token: ``2 * (active linear weights + router)``
    plus ``2 * k * width`` for the gate-weighted combine of the k expert outputs.

    Norms, activations, biases and the softmax/top-k are ignored (O(width), not O(width^2)).
    """
    counts = param_counts(adapter)
    flops = 2 * (counts["active_linear_weights"] + counts["router"])
    for m in adapter.moe_layers():
        flops += 2 * m.router.top_k * m.experts.d_out
    return flops


def _param_kind(module: nn.Module, name: str, routed_experts: bool) -> str:
    if isinstance(module, nn.LayerNorm):
        return "norm"
    if (isinstance(module, nn.Linear) and name == "bias") or (routed_experts and name[0] == "b"):
        return "bias"  # routed experts' stacked biases are b1, b2
    return "linear_weights"
