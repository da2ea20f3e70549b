"""``moeaudio bench adapter``: MoE dispatch backends and the equal-size dense layer, timed in one run.

:func:`benchmark_backends` times the routed experts (loop / sort / grouped) on random top-k
routing; :func:`bench_adapter` adds the dense FFN of **equal total parameters**
(``Linear(d_in -> E*h) -> act -> Linear(E*h -> d_out)``, i.e. the E experts fused into one wide
MLP, the paper's "same total size" baseline) timed the same way (best of ``repeats`` after one
warm-up), in the same process right after, and reports ratios:

* ``vs_loop``: ``loop_ms / backend_ms`` -- speed-up of each backend over the reference loop;
* ``vs_dense``: ``backend_ms / dense_ms`` -- MoE cost relative to the dense layer (the MoE does
  ``k/E`` of the dense matmul FLOPs, plus dispatch overhead).

Numbers are only comparable within one run on one machine; no router or norms are timed (the
same for both sides: O(width) per token). docs/benchmarks.md keeps earlier measurements.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from moeaudio.errors import UsageError
from moeaudio.model.base import ACTIVATIONS
from moeaudio.model.moe import BACKENDS, RoutedExperts
from moeaudio.runtime.device import pick_device

__all__ = ["DTYPES", "bench_adapter", "benchmark_backends", "render_bench", "time_dense"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def _time_once_ms(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def benchmark_backends(
    tokens: int = 4096,
    d_in: int = 1536,
    d_out: int = 256,
    num_experts: int = 8,
    top_k: int = 4,
    expert_dim: int = 512,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, float | str]]:
    """Time each dispatch backend on random routing (milliseconds, best of ``repeats``).

    Backends are timed in interleaved rounds (after one warm-up round) and the minimum is kept,
    so background load on a shared machine skews them alike. Returns
    ``{backend: {"forward_ms": .., "forward_backward_ms": ..}}`` or ``{backend: {"skipped": reason}}``
    where a backend cannot run; ``"auto"`` maps to ``{"resolves_to": name}``.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    experts = RoutedExperts(num_experts, d_in, expert_dim, d_out).to(device=device, dtype=dtype)
    x = torch.randn(tokens, d_in, generator=gen).to(device, dtype).requires_grad_()
    expert_ids = torch.rand(tokens, num_experts, generator=gen).topk(top_k, dim=-1).indices.to(device)
    gates = torch.rand(tokens, top_k, generator=gen).softmax(-1).to(device, dtype)

    def forward() -> None:
        with torch.no_grad():
            experts(x, expert_ids, gates)

    def forward_backward() -> None:
        experts.zero_grad(set_to_none=True)
        x.grad = None
        experts(x, expert_ids, gates).square().mean().backward()

    results: dict[str, dict[str, float | str]] = {}
    runnable = []
    for backend in BACKENDS:
        experts.backend = backend
        try:
            experts.resolve_backend(x)
            runnable.append(backend)
            results[backend] = {"forward_ms": math.inf, "forward_backward_ms": math.inf}
        except RuntimeError as exc:
            results[backend] = {"skipped": str(exc)}
    for round_ in range(repeats + 1):  # round 0 is the warm-up
        for backend in runnable:
            experts.backend = backend
            for key, fn in (("forward_ms", forward), ("forward_backward_ms", forward_backward)):
                ms = _time_once_ms(fn, device)
                if round_ > 0:
                    results[backend][key] = min(results[backend][key], ms)
    experts.backend = "auto"
    results["auto"] = {"resolves_to": experts.resolve_backend(x)}
    return results


def time_dense(
    tokens: int,
    d_in: int,
    d_out: int,
    hidden: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
    seed: int = 0,
    activation: str = "silu",
) -> dict[str, float]:
    """Forward and forward+backward time (ms, best of ``repeats`` after a warm-up) of a dense MLP."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    fc1 = torch.nn.Linear(d_in, hidden, bias=False).to(device, dtype)
    fc2 = torch.nn.Linear(hidden, d_out, bias=False).to(device, dtype)
    act = ACTIVATIONS[activation]
    x = torch.randn(tokens, d_in, generator=gen).to(device, dtype).requires_grad_()

    def forward() -> None:
        with torch.no_grad():
            fc2(act(fc1(x)))

    def forward_backward() -> None:
        fc1.zero_grad(set_to_none=True)
        fc2.zero_grad(set_to_none=True)
        x.grad = None
        fc2(act(fc1(x))).square().mean().backward()

    best = {"forward_ms": math.inf, "forward_backward_ms": math.inf}
    for round_ in range(repeats + 1):  # round 0 is the warm-up
        for key, fn in (("forward_ms", forward), ("forward_backward_ms", forward_backward)):
            ms = _time_once_ms(fn, device)
            if round_ > 0:
                best[key] = min(best[key], ms)
    return best


def bench_adapter(
    tokens: int = 4096,
    d_in: int = 1536,
    d_out: int = 256,
    num_experts: int = 8,
    top_k: int = 4,
    expert_dim: int = 512,
    device: str = "cpu",
    dtype: str | torch.dtype = "float32",
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Time every MoE backend and the equal-total-parameter dense MLP; return times and ratios.

    Returns ``{"config", "params", "backends", "dense", "ratios"}``; ``ratios[backend]`` holds
    ``vs_loop_forward``, ``vs_loop_forward_backward``, ``vs_dense_forward`` and
    ``vs_dense_forward_backward`` (None where the backend or loop was skipped).
    """
    if isinstance(dtype, str) and dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    for flag, value in (
        ("--tokens", tokens),
        ("--d-in", d_in),
        ("--d-out", d_out),
        ("--experts", num_experts),
        ("--expert-dim", expert_dim),
        ("--repeats", repeats),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1 (got {value})")
    pick_device(device)  # a device torch does not know, or CUDA absent: an error naming --device
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if not 1 <= top_k <= num_experts:
        raise UsageError(f"--top-k {top_k} must be between 1 and experts={num_experts}")
    backends = benchmark_backends(
        tokens, d_in, d_out, num_experts, top_k, expert_dim, device, torch_dtype, repeats, seed
    )
    dense_hidden = num_experts * expert_dim
    dense = time_dense(tokens, d_in, d_out, dense_hidden, device, torch_dtype, repeats, seed)
    expert_weights = num_experts * expert_dim * (d_in + d_out)
    ratios: dict[str, dict[str, float | None]] = {}
    loop = backends.get("loop", {})
    for name in BACKENDS:
        res = backends.get(name, {})
        r: dict[str, float | None] = {}
        for key in ("forward", "forward_backward"):
            ms = res.get(f"{key}_ms")
            loop_ms = loop.get(f"{key}_ms")
            r[f"vs_loop_{key}"] = (
                loop_ms / ms if isinstance(ms, float) and isinstance(loop_ms, float) else None
            )
            r[f"vs_dense_{key}"] = ms / dense[f"{key}_ms"] if isinstance(ms, float) else None
        ratios[name] = r
    return {
        "config": {
            "tokens": tokens,
            "d_in": d_in,
            "d_out": d_out,
            "experts": num_experts,
            "top_k": top_k,
            "expert_dim": expert_dim,
            "dense_hidden": dense_hidden,
            "device": str(device),
            "dtype": str(torch_dtype).replace("torch.", ""),
            "repeats": repeats,
        },
        "params": {
            "moe_total": expert_weights,
            "moe_active": expert_weights // num_experts * top_k,
            "dense_total": dense_hidden * (d_in + d_out),
        },
        "backends": backends,
        "dense": dense,
        "ratios": ratios,
    }


def _fmt(v: float | str | None, spec: str) -> str:
    return "-" if not isinstance(v, float) else format(v, spec)


def render_bench(result: dict[str, Any]):
    """Rich table: ms per backend and the dense layer, with the two kinds of ratio."""
    from rich.table import Table

    cfg, params = result["config"], result["params"]
    table = Table(
        title=(
            f"adapter bench: {cfg['tokens']} tokens, {cfg['d_in']}->{cfg['expert_dim']}->{cfg['d_out']}, "
            f"{cfg['experts']} experts top-{cfg['top_k']} vs dense hidden {cfg['dense_hidden']} "
            f"({cfg['device']}, {cfg['dtype']})"
        ),
        caption=(
            f"equal total weights: MoE {params['moe_total']:,} ({params['moe_active']:,} active/token), "
            f"dense {params['dense_total']:,}. x loop = loop ms / ms (>1 faster); "
            f"/ dense = ms / dense ms (<1 cheaper). Best of {cfg['repeats']}; one run, one machine."
        ),
    )
    for col in ("", "fwd ms", "fwd+bwd ms", "fwd x loop", "fwd+bwd x loop", "fwd / dense", "fwd+bwd / dense"):
        table.add_column(col, justify="left" if not col else "right")
    auto = result["backends"].get("auto", {}).get("resolves_to")
    for name in BACKENDS:
        res = result["backends"].get(name, {})
        label = f"moe {name}" + (" (auto)" if name == auto else "")
        if "skipped" in res:
            table.add_row(label, f"[dim]skipped: {res['skipped']}[/]", *[""] * 5)
            continue
        r = result["ratios"][name]
        table.add_row(
            label,
            _fmt(res.get("forward_ms"), ".2f"),
            _fmt(res.get("forward_backward_ms"), ".2f"),
            _fmt(r["vs_loop_forward"], ".2f"),
            _fmt(r["vs_loop_forward_backward"], ".2f"),
            _fmt(r["vs_dense_forward"], ".2f"),
            _fmt(r["vs_dense_forward_backward"], ".2f"),
        )
    d = result["dense"]
    table.add_row(
        "dense", _fmt(d["forward_ms"], ".2f"), _fmt(d["forward_backward_ms"], ".2f"), "", "", "1.00", "1.00"
    )
    return table
