"""``moeaudio bench adapter``: the MoE-Adapter against the dense FFN and transformers' own MoE, in one run.

For each token count, :func:`bench_adapter` times, forward and forward+backward:

* ``moe <backend>``: the routed experts (loop / sort / grouped dispatch) on random top-k routing,
  plus the always-on shared MLP when the configuration has one (``shared_dim``; the paper's
  parallel aggregation path);
* ``dense``: the FFN of **equal total parameters**: ``Linear(d_in -> E*h + shared_dim) -> act ->
  Linear(-> d_out)``, i.e. all experts and the shared path fused into one wide MLP (the paper's
  "same total size" baseline);
* ``transformers <impl>``: transformers' Qwen2-MoE experts module (``Qwen2MoeExperts``; its
  ``grouped_mm`` implementation, or its ``eager`` per-expert loop where that fails) with E experts top-k of
  width h, plus its ``Qwen2MoeMLP`` of width ``shared_dim`` as the shared expert. Its experts are
  gated (SwiGLU: three matrices) and map d_in back to d_in, so its FLOPs differ from ours: it is
  compared by **achieved FLOP/s** (its active FLOPs / its time), not by time.

Every row reports milliseconds, achieved GFLOP/s (active matmul FLOPs / time; forward+backward
counts 3x the forward FLOPs) and the activations saved for backward (MiB; on CUDA also the peak
allocated memory of the forward+backward). Per token count the summary holds:

* ``moe_over_dense``: best MoE forward+backward ms / dense ms (medians), and
  ``moe_over_dense_range``: the lowest and highest of that ratio taken round by round;
* ``flop_limit``: MoE FLOPs / dense FLOPs, the ratio a zero-overhead dispatch would reach;
* ``best_over_transformers``: transformers' best achieved FLOP/s over ours (<= 1: we are at least
  as efficient).

Times are the **median of interleaved rounds** after one warm-up round (every variant runs once per
round, in turn), so background load on a shared machine skews them alike. ``clock="cpu"`` (CPU
only) runs on one thread and times that thread's CPU time: on a machine shared with other jobs,
where wall time with several threads swings by several x, it still measures the work done. No router or norms are
timed (O(width) per token, the same on every side). Numbers are only comparable within one run on
one machine; docs/benchmarks.md keeps earlier measurements.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from moeaudio.errors import UsageError
from moeaudio.model.base import ACTIVATIONS
from moeaudio.model.moe import BACKENDS, RoutedExperts
from moeaudio.runtime.device import pick_device

__all__ = ["DTYPES", "PRESETS", "bench_adapter", "render_bench"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

# routed: the routed experts alone (the MoE does k/E = 50 % of the dense FLOPs).
# paper: the paper's adapter (Whisper-large 4x stacked 2560 -> 2048 LLM; 8 experts top-4 of width
#   1280 beside the 10240-wide parallel aggregation path: 75 % of the dense FLOPs).
# quickstart: recipes/quickstart.yaml's adapter (4 x (384 + 73) = 1828 -> 256, experts 128, path 512).
PRESETS: dict[str, dict[str, Any]] = {
    "routed": {"tokens": (4096,), "d_in": 1536, "d_out": 256, "num_experts": 8, "top_k": 4,
               "expert_dim": 512, "shared_dim": 0},
    "paper": {"tokens": (512, 2048), "d_in": 2560, "d_out": 2048, "num_experts": 8, "top_k": 4,
              "expert_dim": 1280, "shared_dim": 10240},
    "quickstart": {"tokens": (512, 2048), "d_in": 1828, "d_out": 256, "num_experts": 8, "top_k": 4,
                   "expert_dim": 128, "shared_dim": 512},
}  # fmt: skip
TRANSFORMERS_IMPLS = ("grouped_mm", "eager")  # the first that runs here is timed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = ("wall", "cpu")


def _time_once_ms(fn: Callable[[], object], device: torch.device, clock: str = "wall") -> float:
    """Milliseconds of ``fn``: wall time, or (``clock="cpu"``, one thread) this thread's CPU time."""
    now = time.thread_time if clock == "cpu" else time.perf_counter
    _sync(device)
    start = now()
    fn()
    _sync(device)
    return (now() - start) * 1e3


class _Case:
    """One timed variant: a module, its forward, its active forward FLOPs."""

    def __init__(self, module: nn.Module, run: Callable[[Tensor], Tensor], flops: int, x: Tensor) -> None:
        self.module, self.run, self.flops, self.x = module, run, flops, x

    def forward(self) -> None:
        with torch.no_grad():
            self.run(self.x)

    def forward_backward(self) -> None:
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None
        self.run(self.x).float().square().mean().backward()

    def saved_mib(self) -> float:
        """MiB of tensors autograd keeps for backward (each storage once): activation memory."""
        seen: dict[int, int] = {}

        def pack(t: Tensor) -> Tensor:
            if t.layout == torch.strided and not isinstance(t, nn.Parameter):
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = self.run(self.x)
        del y
        params = {p.untyped_storage().data_ptr() for p in self.module.parameters()}
        params.add(self.x.untyped_storage().data_ptr())
        return sum(n for ptr, n in seen.items() if ptr not in params) / 2**20

    def peak_mib(self, device: torch.device) -> float | None:
        if device.type != "cuda":
            return None
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        self.forward_backward()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20


class _Act(nn.Module):
    def __init__(self, activation: str) -> None:
        super().__init__()
        self.fn = ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _mlp(d_in: int, hidden: int, d_out: int, activation: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden, bias=False), _Act(activation), nn.Linear(hidden, d_out, bias=False)
    )


def _transformers_case(
    impl: str, x: Tensor, expert_ids: Tensor, gates: Tensor, cfg: dict[str, Any]
) -> _Case | str:
    """transformers' Qwen2-MoE experts (+ its MLP as the shared expert), or why it cannot run."""
    try:
        from transformers.models.qwen2_moe.configuration_qwen2_moe import Qwen2MoeConfig
        from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeExperts, Qwen2MoeMLP
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        return f"transformers has no Qwen2-MoE: {exc}"
    d, h, E, k, s = cfg["d_in"], cfg["expert_dim"], cfg["num_experts"], cfg["top_k"], cfg["shared_dim"]
    tcfg = Qwen2MoeConfig(hidden_size=d, moe_intermediate_size=h, num_experts=E, num_experts_per_tok=k,
                          shared_expert_intermediate_size=max(s, 1), hidden_act="silu")  # fmt: skip
    tcfg._experts_implementation = impl
    gen = torch.Generator().manual_seed(1)
    module = nn.ModuleDict({"experts": Qwen2MoeExperts(tcfg)})
    if s:
        module["shared"] = Qwen2MoeMLP(tcfg, intermediate_size=s)
    for p in module.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=gen) * p.shape[-1] ** -0.5)
    module = module.to(x.device, x.dtype)

    def run(inp: Tensor) -> Tensor:
        y = module["experts"](inp, expert_ids, gates)
        return y + module["shared"](inp) if s else y

    flops = 2 * x.shape[0] * (k * 3 * d * h + 3 * d * s)  # gate, up, down
    case = _Case(module, run, flops, x)
    try:
        case.forward_backward()
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot run here"
        return f"transformers {impl} fails: {str(exc).splitlines()[0]}"
    return case


def _cases(tokens: int, cfg: dict[str, Any], device: torch.device, dtype: torch.dtype, seed: int):
    d_in, d_out, E, k = cfg["d_in"], cfg["d_out"], cfg["num_experts"], cfg["top_k"]
    h, s = cfg["expert_dim"], cfg["shared_dim"]
    gen = torch.Generator().manual_seed(seed)
    experts = RoutedExperts(E, d_in, h, d_out).to(device=device, dtype=dtype)
    shared = _mlp(d_in, s, d_out, "silu").to(device, dtype) if s else None
    x = torch.randn(tokens, d_in, generator=gen).to(device, dtype).requires_grad_()
    expert_ids = torch.rand(tokens, E, generator=gen).topk(k, dim=-1).indices.to(device)
    gates = torch.rand(tokens, k, generator=gen).softmax(-1).to(device, dtype)
    moe_module = nn.ModuleList([experts] + ([shared] if shared is not None else []))
    moe_flops = 2 * tokens * (k * h * (d_in + d_out) + s * (d_in + d_out))
    dense_flops = 2 * tokens * (E * h + s) * (d_in + d_out)
    cases: dict[str, _Case | str] = {}
    for backend in BACKENDS:
        experts.backend = backend
        try:
            experts.resolve_backend(x)
        except RuntimeError as exc:
            cases[f"moe {backend}"] = str(exc)
            continue

        def run(inp: Tensor, backend: str = backend) -> Tensor:
            experts.backend = backend
            y = experts(inp, expert_ids, gates)
            return y + shared(inp) if shared is not None else y

        cases[f"moe {backend}"] = _Case(moe_module, run, moe_flops, x)
    dense = _mlp(d_in, E * h + s, d_out, "silu").to(device, dtype)
    cases["dense"] = _Case(dense, dense, dense_flops, x)
    reasons = []
    for impl in TRANSFORMERS_IMPLS:
        case = _transformers_case(impl, x, expert_ids, gates, cfg)
        if isinstance(case, _Case):
            cases[f"transformers {impl}"] = case
            break
        reasons.append(case)
    else:
        cases["transformers"] = "; ".join(reasons)
    experts.backend = "auto"
    return cases, experts.resolve_backend(x), moe_flops, dense_flops


def _measure(
    cases: dict[str, _Case | str], device: torch.device, repeats: int, clock: str = "wall"
) -> dict[str, dict[str, Any]]:
    runnable = {name: c for name, c in cases.items() if isinstance(c, _Case)}
    times: dict[str, dict[str, list[float]]] = {n: {"forward": [], "forward_backward": []} for n in runnable}
    for round_ in range(repeats + 1):  # round 0 is the warm-up
        for name, case in runnable.items():
            for key, fn in (("forward", case.forward), ("forward_backward", case.forward_backward)):
                ms = _time_once_ms(fn, device, clock)
                if round_ > 0:
                    times[name][key].append(ms)
    out: dict[str, dict[str, Any]] = {n: {"skipped": c} for n, c in cases.items() if isinstance(c, str)}
    for name, case in runnable.items():
        fwd, fb = (statistics.median(times[name][k]) for k in ("forward", "forward_backward"))
        out[name] = {
            "forward_ms": fwd,
            "forward_backward_ms": fb,
            "forward_gflops": case.flops / fwd / 1e6,
            "forward_backward_gflops": 3 * case.flops / fb / 1e6,
            "saved_mib": case.saved_mib(),
            "peak_mib": case.peak_mib(device),
            "flops": case.flops,
            "rounds_ms": times[name],  # every timed round, in order: ratios can be paired by round
        }
    return out


def paired_range(numerator: list[float], denominator: list[float]) -> list[float]:
    """[min, max] of the per-round ratios ``numerator[i] / denominator[i]``.

    Why: the ratio of two medians hides how much it moved. Rounds are interleaved, so the two times
    of one round met the same machine; when every round's ratio is under a target, the target holds
    whatever the machine did. The ratio of the medians always lies inside this range (if every
    ``a_i >= c * b_i`` then ``median(a) >= c * median(b)``, and likewise for ``<=``).
    """
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return [min(ratios), max(ratios)]


def _token_counts(
    tokens: int | str | list[int] | tuple[int, ...] | None, preset: dict[str, Any]
) -> list[int]:
    if tokens is None:
        return list(preset["tokens"])
    if isinstance(tokens, int):
        return [tokens]
    if isinstance(tokens, str):
        try:
            return [int(t) for t in tokens.split(",") if t.strip()]
        except ValueError:
            raise UsageError(f"--tokens takes comma-separated integers, got {tokens!r}") from None
    return [int(t) for t in tokens]


def bench_adapter(
    tokens: int | str | list[int] | None = None,
    d_in: int | None = None,
    d_out: int | None = None,
    num_experts: int | None = None,
    top_k: int | None = None,
    expert_dim: int | None = None,
    shared_dim: int | None = None,
    preset: str = "routed",
    device: str = "cpu",
    dtype: str | torch.dtype = "float32",
    repeats: int = 5,
    seed: int = 0,
    clock: str = "wall",
) -> dict[str, Any]:
    """Time the MoE backends, the equal-total-parameter dense MLP and transformers' MoE.

    ``preset`` (``routed``, ``paper``, ``quickstart``; see ``PRESETS``) fills every size left None;
    ``tokens`` may be one count or several (a comma-separated string or a list). Returns
    ``{"config", "params", "runs", "summary"}``: ``runs`` has one entry per token count with
    ``backends`` (every variant's ms, GFLOP/s, memory), ``ratios`` (``vs_loop_*``, ``vs_dense_*``
    per MoE backend) and the summary numbers; ``summary`` is ``{tokens: {"moe_over_dense",
    "moe_over_dense_range", "flop_limit", "best_over_transformers", "best_backend"}}``.
    """
    if preset not in PRESETS:
        raise UsageError(f"--preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if clock not in CLOCKS:
        raise UsageError(f"--clock must be one of {list(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and torch.device(device).type != "cpu":
        raise UsageError("--clock cpu measures CPU time: it needs --device cpu")
    if isinstance(dtype, str) and dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    base = PRESETS[preset]
    given = {"d_in": d_in, "d_out": d_out, "num_experts": num_experts, "top_k": top_k,
             "expert_dim": expert_dim, "shared_dim": shared_dim}  # fmt: skip
    cfg = {key: base[key] if value is None else value for key, value in given.items()}
    counts = _token_counts(tokens, base)
    flags = {"d_in": "--d-in", "d_out": "--d-out", "num_experts": "--experts", "expert_dim": "--expert-dim"}
    checks = [("--tokens", min(counts, default=0)), ("--repeats", repeats)]
    for flag, value in [*checks, *((flags[key], cfg[key]) for key in flags)]:
        if value < 1:
            raise UsageError(f"{flag} must be >= 1 (got {value})")
    if cfg["shared_dim"] < 0:
        raise UsageError(f"--shared-dim must be >= 0 (got {cfg['shared_dim']})")
    pick_device(device)  # a device torch does not know, or CUDA absent: an error naming --device
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if not 1 <= cfg["top_k"] <= cfg["num_experts"]:
        raise UsageError(f"--top-k {cfg['top_k']} must be between 1 and experts={cfg['num_experts']}")
    dev = torch.device(device)
    E, k, h, s = cfg["num_experts"], cfg["top_k"], cfg["expert_dim"], cfg["shared_dim"]
    width = cfg["d_in"] + cfg["d_out"]
    runs, summary = [], {}
    threads = torch.get_num_threads()
    for n in counts:
        cases, auto, moe_flops, dense_flops = _cases(n, cfg, dev, torch_dtype, seed)
        if clock == "cpu":  # one thread: its CPU time is the work done, whatever else the machine runs
            torch.set_num_threads(1)
        try:
            res = _measure(cases, dev, repeats, clock)
        finally:
            torch.set_num_threads(threads)
        dense, loop = res["dense"], res.get("moe loop", {})
        ratios: dict[str, dict[str, float | None]] = {}
        for backend in BACKENDS:
            r = res[f"moe {backend}"]
            ratios[backend] = {}
            for key in ("forward", "forward_backward"):
                ms, loop_ms = r.get(f"{key}_ms"), loop.get(f"{key}_ms")
                ratios[backend][f"vs_loop_{key}"] = loop_ms / ms if ms and loop_ms else None
                ratios[backend][f"vs_dense_{key}"] = ms / dense[f"{key}_ms"] if ms else None
        ours = {b: res[f"moe {b}"] for b in BACKENDS if "skipped" not in res[f"moe {b}"]}
        best = min(ours, key=lambda b: ours[b]["forward_backward_ms"])
        theirs = [
            v["forward_backward_gflops"]
            for name, v in res.items()
            if name.startswith("transformers") and "skipped" not in v
        ]
        entry = {
            "moe_over_dense": ours[best]["forward_backward_ms"] / dense["forward_backward_ms"],
            "moe_over_dense_range": paired_range(
                ours[best]["rounds_ms"]["forward_backward"], dense["rounds_ms"]["forward_backward"]
            ),
            "moe_over_dense_forward": min(v["forward_ms"] for v in ours.values()) / dense["forward_ms"],
            "flop_limit": moe_flops / dense_flops,
            "best_over_transformers": max(theirs) / ours[best]["forward_backward_gflops"] if theirs else None,
            "best_backend": best,
        }
        summary[str(n)] = entry
        runs.append({"tokens": n, "auto": auto, "backends": res, "ratios": ratios, **entry})
    return {
        "config": {
            **cfg,
            "preset": preset,
            "tokens": counts,
            "dense_hidden": E * h + s,
            "device": str(device),
            "dtype": str(torch_dtype).replace("torch.", ""),
            "repeats": repeats,
            "clock": clock,
            "threads": 1 if clock == "cpu" else threads,
        },  # fmt: skip
        "params": {
            "moe_total": (E * h + s) * width,
            "moe_active": (k * h + s) * width,
            "dense_total": (E * h + s) * width,
        },
        "runs": runs,
        "summary": summary,
    }


def _fmt(v: float | str | None, spec: str) -> str:
    return "-" if not isinstance(v, float) else format(v, spec)


def render_bench(result: dict[str, Any]):
    """Rich table: per token count, ms, GFLOP/s and memory of every variant, ratios to dense."""
    from rich.table import Table

    cfg, params = result["config"], result["params"]
    shared = f" + shared {cfg['shared_dim']}" if cfg["shared_dim"] else ""
    table = Table(
        title=(
            f"adapter bench ({cfg['preset']}): {cfg['d_in']}->{cfg['expert_dim']}->{cfg['d_out']}, "
            f"{cfg['num_experts']} experts top-{cfg['top_k']}{shared} vs dense hidden {cfg['dense_hidden']} "
            f"({cfg['device']}, {cfg['dtype']})"
        ),
        caption=(
            f"equal total weights: MoE {params['moe_total']:,} ({params['moe_active']:,} active/token), "
            f"dense {params['dense_total']:,}. GFLOP/s: active FLOPs / time (fwd+bwd = 3x fwd). / dense = ms / "
            f"dense ms (<1 cheaper; limit = FLOP ratio). transformers: Qwen2-MoE experts (gated, d_in->d_in), "
            f"compare GFLOP/s. Median of {cfg['repeats']} interleaved rounds ({cfg['clock']} time, "
            f"{cfg['threads']} thread(s)); summary: MoE / dense of the medians (lowest-highest of the "
            "rounds); one run, one machine."
        ),
    )
    cols = (
        "tokens",
        "",
        "fwd ms",
        "fwd+bwd ms",
        "fwd GFLOP/s",
        "fwd+bwd GFLOP/s",
        "saved MiB",
        "fwd / dense",
        "fwd+bwd / dense",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in ("", "tokens") else "right")
    for run in result["runs"]:
        dense = run["backends"]["dense"]
        for name, res in run["backends"].items():
            label = name + (" (auto)" if name == f"moe {run['auto']}" else "")
            if "skipped" in res:
                table.add_row(str(run["tokens"]), label, f"[dim]skipped: {res['skipped']}[/]", *[""] * 6)
                continue
            table.add_row(
                str(run["tokens"]),
                label,
                _fmt(res["forward_ms"], ".1f"),
                _fmt(res["forward_backward_ms"], ".1f"),
                _fmt(res["forward_gflops"], ".0f"),
                _fmt(res["forward_backward_gflops"], ".0f"),
                _fmt(res["saved_mib"], ".0f"),
                _fmt(res["forward_ms"] / dense["forward_ms"], ".2f")
                if name.startswith(("moe", "dense"))
                else "",
                _fmt(res["forward_backward_ms"] / dense["forward_backward_ms"], ".2f")
                if name.startswith(("moe", "dense"))
                else "",
            )
        bot = run["best_over_transformers"]
        lo, hi = run["moe_over_dense_range"]
        table.add_row(
            str(run["tokens"]),
            "[bold]summary[/]",
            f"best {run['best_backend']}",
            "",
            "",
            f"transformers/ours {_fmt(bot, '.2f')}",
            "",
            f"limit {run['flop_limit']:.2f}",
            f"[bold]{run['moe_over_dense']:.2f}[/] ({lo:.2f}-{hi:.2f})",
            end_section=True,
        )
    return table
