"""A dropless token-choice Mixture-of-Experts layer: router, stacked experts, balance losses.

Reading order: ``RoutingDecision`` -> ``Router`` -> ``RoutedExperts`` (three dispatch backends that
compute the same thing) -> ``MoELayer`` (router + experts + balance losses + aux-loss-free bias)
-> ``capture_routing`` / ``update_all_biases`` / ``benchmark_backends`` helpers.

Every expert is ``E_i(z) = act(z @ w1[i] + b1[i]) @ w2[i] + b2[i]`` and a token's output is
``sum_{i in topk} g_i * E_i(z)``. Routing is dropless (no capacity factor, no dropped tokens, no
router noise), as in the paper. Shapes use ``T`` tokens, ``E`` experts, ``k`` top-k, ``h`` the
expert hidden width.

Backends (same result to float rounding; pick with ``AdapterConfig.backend``):
  * ``loop``: for each expert gather its tokens, run it, ``index_add`` the weighted result back.
    Simplest; the reference the others are tested against.
  * ``sort``: stable-sort the ``T*k`` (token, expert) slots by expert once, run each expert on a
    contiguous slice, un-permute with the inverse permutation and combine the k slots per token
    with one batched matmul (deterministic: no atomics, unlike ``index_add`` on CUDA).
  * ``grouped``: like ``sort`` but the per-expert matmuls are one ``torch.nn.functional.grouped_mm``
    call with offsets (no Python loop, no host sync in the matmuls). In torch 2.13 it runs forward
    and backward on CPU for float32/bfloat16/float16 when every feature width is a multiple of 16
    bytes; on CUDA it depends on the GPU and dtype, so support is probed once per (device, dtype).
  * ``auto``: ``grouped`` wherever it is supported, else ``sort``.

Measured on CPU (torch 2.13, fp32, 2 shared cores; ``benchmark_backends`` defaults: 4096 tokens,
1536 -> 512 -> 256, 8 experts, top-4): ``grouped`` was fastest (forward ~10% and forward+backward
~20% faster than ``sort``); ``loop`` is close to ``sort`` at this size but 3x slower in
forward+backward for many small experts (16 experts of width 64), where per-expert Python
overhead dominates. On GPUs ``grouped`` is the one without per-expert kernel launches or host
syncs; rerun ``moeaudio bench adapter`` on the target machine before relying on a ranking.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from moeaudio.config import AdapterConfig

SCORE_FUNCS = ("softmax_renorm", "softmax", "sigmoid")
BACKENDS = ("loop", "sort", "grouped")
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}


# ----------------------------------------------------------------------------- distributed helpers


def _dist_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: Tensor) -> Tensor:
    """Sum a detached statistic over data-parallel ranks (identity when not distributed)."""
    t = t.detach().clone()
    if _dist_active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ----------------------------------------------------------------------------- router


@dataclass
class RoutingDecision:
    """What the router decided for a batch of tokens (returned by ``Router.forward``)."""

    logits: Tensor  # (T, E)  raw router logits z @ W_g
    probs: Tensor  # (T, E)   full softmax, or the sigmoid scores for score_func="sigmoid" (float32)
    expert_ids: Tensor  # (T, k)  chosen experts, int64
    gates: Tensor  # (T, k)  weights of the chosen experts (never include the balancing bias)

    def detach(self) -> RoutingDecision:
        return RoutingDecision(*(t.detach() for t in (self.logits, self.probs, self.expert_ids, self.gates)))


class Router(nn.Module):
    """Top-k token-choice router.

    ``score_func``:
      * ``softmax_renorm`` (the paper): ``g = softmax(mask_topk(logits, -inf))``, i.e. a softmax over
        the k chosen logits, so gates sum to 1.
      * ``softmax`` (Qwen2-MoE, ``norm_topk_prob=False``): gates are the full-softmax probabilities of
        the chosen experts, not renormalised (they sum to < 1).
      * ``sigmoid`` (DeepSeek-V3): independent sigmoid scores, the chosen ones renormalised to sum 1.

    With ``bias_balancing`` the buffer ``expert_bias`` (E,) is added to the scores (``probs``) for the
    top-k *selection only*; gates are always computed from the unbiased scores, so the bias steers
    load without distorting the mixture (DeepSeek-V3's auxiliary-loss-free balancing).
    With ``bias_balancing``, in training mode the router also counts tokens per expert into
    ``expert_load`` (E,) for ``update_bias``. Both are buffers (always registered, so the state dict
    does not depend on the option) and live in checkpoints.
    """

    def __init__(
        self,
        d_in: int,
        num_experts: int,
        top_k: int,
        score_func: str = "softmax_renorm",
        bias_balancing: bool = False,
        bias_update_rate: float = 1e-3,
    ) -> None:
        super().__init__()
        if score_func not in SCORE_FUNCS:
            raise ValueError(f"score_func must be one of {SCORE_FUNCS}, got {score_func!r}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k={top_k} must be between 1 and num_experts={num_experts}")
        self.num_experts, self.top_k, self.score_func = num_experts, top_k, score_func
        self.bias_balancing, self.bias_update_rate = bias_balancing, bias_update_rate
        self.W_g = nn.Linear(d_in, num_experts, bias=False)
        self.register_buffer("expert_bias", torch.zeros(num_experts))
        self.register_buffer("expert_load", torch.zeros(num_experts, dtype=torch.long))

    def forward(self, x: Tensor) -> RoutingDecision:  # x: (T, d_in)
        logits = self.W_g(x)  # (T, E)
        scores = logits.float()  # routing maths in float32, whatever the model dtype
        probs = torch.sigmoid(scores) if self.score_func == "sigmoid" else scores.softmax(-1)  # (T, E)
        select = probs + self.expert_bias if self.bias_balancing else probs  # (T, E) selection only
        expert_ids = select.topk(self.top_k, dim=-1).indices  # (T, k)
        gates = self._gates(scores, probs, expert_ids).to(x.dtype)  # (T, k)
        if self.training and self.bias_balancing:
            self._count_load(expert_ids)
        return RoutingDecision(logits=logits, probs=probs, expert_ids=expert_ids, gates=gates)

    def _gates(self, logits: Tensor, probs: Tensor, expert_ids: Tensor) -> Tensor:
        if self.score_func == "softmax_renorm":  # softmax over the k kept logits, as the paper writes it
            return logits.gather(-1, expert_ids).softmax(-1)  # (T, k)
        chosen = probs.gather(-1, expert_ids)  # (T, k)
        if self.score_func == "sigmoid":
            return chosen / chosen.sum(-1, keepdim=True)
        return chosen  # "softmax": not renormalised

    @torch.no_grad()
    def _count_load(self, expert_ids: Tensor) -> None:
        # index_add of ones, not bincount: no device-to-host sync on CUDA.
        ones = torch.ones_like(expert_ids, dtype=self.expert_load.dtype).flatten()  # (T*k,)
        self.expert_load.index_add_(0, expert_ids.flatten(), ones)

    @torch.no_grad()
    def update_bias(self) -> Tensor:
        """Move the selection bias towards balance and reset the load counters.

        Call once per optimizer step (after all micro-batches). ``bias += rate * sign(mean - load)``:
        an overloaded expert's bias decreases, an underloaded one's increases. Loads are summed
        over data-parallel ranks first, so every rank applies the same update and biases stay
        identical everywhere. Returns the (global) per-expert load that was used, for logging.
        Without ``bias_balancing`` nothing is counted and the bias stays zero.
        """
        load = _all_reduce_sum(self.expert_load).float()  # (E,)
        if self.bias_balancing:
            self.expert_bias += self.bias_update_rate * torch.sign(load.mean() - load)
        self.expert_load.zero_()
        return load


@contextlib.contextmanager
def capture_routing(model: nn.Module, detach: bool = True) -> Iterator[list[RoutingDecision]]:
    """Record every ``Router``'s decision in ``model`` while the block runs.

    Uses forward hooks, so the forward path is untouched::

        with capture_routing(model) as decisions:
            model(x)
        decisions[0].expert_ids  # (T, k)

    Decisions are appended in call order (one per router call); ``detach`` drops the autograd
    graph so captured tensors do not keep activations alive.
    """
    decisions: list[RoutingDecision] = []

    def hook(_module: nn.Module, _inputs: tuple, output: RoutingDecision) -> None:
        decisions.append(output.detach() if detach else output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Router)]
    try:
        yield decisions
    finally:
        for handle in handles:
            handle.remove()


def update_all_biases(model: nn.Module) -> dict[str, Tensor]:
    """Call ``update_bias`` on every router in ``model`` (the trainer does this once per step)."""
    return {name: m.update_bias() for name, m in model.named_modules() if isinstance(m, Router)}


# ----------------------------------------------------------------------------- experts


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous.

    ``grouped_mm``'s backward rejects stride-0 (expanded) gradients such as the one ``y.sum()``
    produces; materialising them here keeps the backend usable with any loss.
    """

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        return grad.contiguous()


def _grouped_mm(x: Tensor, w: Tensor, offs: Tensor) -> Tensor:
    return _ContiguousGrad.apply(F.grouped_mm(x, w, offs=offs))


@functools.cache
def _grouped_probe(device_type: str, dtype: torch.dtype) -> str | None:
    """Run a tiny grouped_mm forward+backward once; None if it works, else the reason it does not."""
    if not hasattr(F, "grouped_mm"):
        return f"torch {torch.__version__} has no torch.nn.functional.grouped_mm"
    try:
        # constant inputs: the probe must not consume the global RNG (it would shift dropout
        # masks of the first run in a process and break exact resume)
        x = torch.ones(8, 16, device=device_type, dtype=dtype, requires_grad=True)
        w = torch.ones(2, 16, 16, device=device_type, dtype=dtype, requires_grad=True)
        offs = torch.tensor([3, 8], device=device_type, dtype=torch.int32)
        with torch.enable_grad():  # the first call may happen under no_grad (evaluation)
            _grouped_mm(x, w, offs).sum().backward()
    except Exception as exc:  # noqa: BLE001 - any failure means "unsupported here"
        return f"grouped_mm fails on {device_type}/{dtype}: {str(exc).splitlines()[0]}"
    return None


def grouped_unsupported_reason(
    device: torch.device, dtype: torch.dtype, widths: tuple[int, ...]
) -> str | None:
    """Why the ``grouped`` backend cannot run here (None when it can)."""
    if device.type == "meta":
        return "grouped_mm cannot run on the meta device"
    align = 16 // torch.empty((), dtype=dtype).element_size()
    if any(w % align for w in widths):
        return f"grouped_mm needs feature widths {widths} to be multiples of {align} for {dtype} (16-byte strides)"
    return _grouped_probe(device.type, dtype)


class RoutedExperts(nn.Module):
    """E independent two-layer MLPs stored as stacked parameters, so dispatch can batch them.

    ``w1 (E, d_in, h)``, ``w2 (E, h, d_out)`` (+ ``b1 (E, h)``, ``b2 (E, d_out)`` when ``bias``).
    Initialised like ``nn.Linear`` (uniform in +-1/sqrt(fan_in)) so a routed expert starts out
    statistically like a dense layer of the same shape.
    """

    def __init__(
        self,
        num_experts: int,
        d_in: int,
        hidden: int,
        d_out: int,
        activation: str = "silu",
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in (*BACKENDS, "auto"):
            raise ValueError(f"backend must be one of {(*BACKENDS, 'auto')}, got {backend!r}")
        self.num_experts, self.d_in, self.hidden, self.d_out = num_experts, d_in, hidden, d_out
        self.act, self.backend = ACTIVATIONS[activation], backend
        self.w1 = nn.Parameter(torch.empty(num_experts, d_in, hidden))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden, d_out))
        self.b1 = nn.Parameter(torch.empty(num_experts, hidden)) if bias else None
        self.b2 = nn.Parameter(torch.empty(num_experts, d_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p, fan_in in (
            (self.w1, self.d_in),
            (self.w2, self.hidden),
            (self.b1, self.d_in),
            (self.b2, self.hidden),
        ):
            if p is not None:
                nn.init.uniform_(p, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def expert(self, e: int, x: Tensor) -> Tensor:
        """E_e(x) for x (n, d_in) -> (n, d_out)."""
        h = x @ self.w1[e]  # (n, h)
        if self.b1 is not None:
            h = h + self.b1[e]
        y = self.act(h) @ self.w2[e]  # (n, d_out)
        return y + self.b2[e] if self.b2 is not None else y

    def resolve_backend(self, x: Tensor) -> str:
        """The backend that will run for this input (``auto`` resolved; ``grouped`` validated)."""
        if self.backend in ("loop", "sort"):
            return self.backend
        reason = grouped_unsupported_reason(x.device, x.dtype, (self.d_in, self.hidden, self.d_out))
        if self.backend == "auto":
            return "sort" if reason else "grouped"
        if reason is not None:
            raise RuntimeError(
                f"adapter.backend=grouped is not available: {reason}; use backend=sort or auto"
            )
        return "grouped"

    def forward(self, x: Tensor, expert_ids: Tensor, gates: Tensor) -> Tensor:
        """x (T, d_in), expert_ids (T, k), gates (T, k) -> (T, d_out) = sum_k gate * E_id(x)."""
        backend = self.resolve_backend(x)
        if backend == "loop":
            return self._forward_loop(x, expert_ids, gates)
        return self._forward_sorted(x, expert_ids, gates, grouped=backend == "grouped")

    def _forward_loop(self, x: Tensor, expert_ids: Tensor, gates: Tensor) -> Tensor:
        out = x.new_zeros(x.shape[0], self.d_out)  # (T, d_out)
        for e in range(self.num_experts):
            tok, slot = torch.where(expert_ids == e)  # (n_e,), (n_e,)
            if tok.numel() == 0:
                continue
            y = self.expert(e, x[tok]) * gates[tok, slot, None]  # (n_e, d_out)
            out.index_add_(0, tok, y)
        return out

    def _forward_sorted(self, x: Tensor, expert_ids: Tensor, gates: Tensor, grouped: bool) -> Tensor:
        T, k = expert_ids.shape
        flat_ids = expert_ids.flatten()  # (T*k,) slot s belongs to token s // k
        order = torch.argsort(flat_ids, stable=True)  # (T*k,) slots grouped by expert
        counts = torch.bincount(flat_ids, minlength=self.num_experts)  # (E,)
        xs = x.index_select(0, order // k)  # (T*k, d_in) tokens permuted once
        if grouped:
            ys = self._grouped_mlp(xs, flat_ids[order], counts)  # (T*k, d_out)
        else:
            ys = self._sliced_mlp(xs, counts)  # (T*k, d_out)
        ys = ys.index_select(0, torch.argsort(order)).view(T, k, self.d_out)  # (T, k, d_out) slot order
        return torch.bmm(gates.unsqueeze(1), ys).squeeze(1)  # (T, d_out)

    def _sliced_mlp(self, xs: Tensor, counts: Tensor) -> Tensor:
        chunks = xs.split(counts.tolist())  # E contiguous slices (host sync for the sizes)
        return torch.cat([self.expert(e, chunk) for e, chunk in enumerate(chunks)])

    def _grouped_mlp(self, xs: Tensor, sorted_ids: Tensor, counts: Tensor) -> Tensor:
        offs = counts.cumsum(0).to(torch.int32)  # (E,) end row of each expert's group
        h = _grouped_mm(xs, self.w1, offs)  # (T*k, h)
        if self.b1 is not None:
            h = h + self.b1[sorted_ids]
        y = _grouped_mm(self.act(h), self.w2, offs)  # (T*k, d_out)
        return y + self.b2[sorted_ids] if self.b2 is not None else y


# ----------------------------------------------------------------------------- balance losses


def switch_balance_loss(
    probs: Tensor, expert_ids: Tensor, num_experts: int, global_batch: bool = False
) -> Tensor:
    """Switch-Transformer load-balancing loss ``E * sum_e f_e * P_e``.

    ``f_e``: share of tokens whose top-k includes e (sums to k over experts); ``P_e``: mean router
    probability of e. This is exactly ``transformers.models.mixtral.modeling_mixtral.
    load_balancing_loss_func`` for one layer. The paper's ``f_e`` is the fraction of token-*slots*
    (sums to 1), i.e. ours divided by k: the constant factor is absorbed by lambda
    (``aux_loss_coef``). A perfectly balanced router gives k with our convention.

    ``probs`` (T, E) are full-softmax probabilities; sigmoid scores are normalised per token first
    (DeepSeek-V3's convention) so P is a distribution. ``f`` carries no gradient; with
    ``global_batch`` its counts are summed over data-parallel ranks (Qwen's global-batch
    balancing: experts may specialise per micro-batch as long as the global batch is balanced).
    """
    probs = probs / probs.sum(-1, keepdim=True)  # no-op for softmax; normalises sigmoid scores
    counts = torch.zeros(num_experts, device=probs.device, dtype=torch.float32)
    counts.index_add_(0, expert_ids.flatten(), torch.ones(expert_ids.numel(), device=probs.device))  # (E,)
    if global_batch:  # one collective for the counts and the token total
        counts = _all_reduce_sum(torch.cat([counts, counts.new_tensor([expert_ids.shape[0]])]))
        counts, tokens = counts[:-1], counts[-1]
    else:
        tokens = expert_ids.shape[0]
    f = counts / tokens  # (E,)
    P = probs.float().mean(0)  # (E,)
    return num_experts * (f * P).sum()


def router_z_loss(logits: Tensor) -> Tensor:
    """ST-MoE router z-loss ``mean(logsumexp(logits)^2)``: keeps logits small for stable softmax."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


# ----------------------------------------------------------------------------- the layer


class MoELayer(nn.Module):
    """Router + routed experts + balance losses: ``(T, d_in) -> (T, d_out), losses``.

    ``losses`` holds the *unweighted* ``aux_loss`` (Switch) and ``z_loss`` plus ``total`` =
    ``aux_loss_coef * aux_loss + z_loss_coef * z_loss``, the only entry to add to the training
    loss; the others are for logging.
    """

    def __init__(self, cfg: AdapterConfig, d_in: int, d_out: int) -> None:
        super().__init__()
        self.aux_loss_coef, self.z_loss_coef = cfg.aux_loss_coef, cfg.z_loss_coef
        self.global_batch = cfg.balance_scope == "global_batch"
        self.router = Router(
            d_in, cfg.num_experts, cfg.top_k, cfg.score_func, cfg.bias_balancing, cfg.bias_update_rate
        )
        self.experts = RoutedExperts(
            cfg.num_experts, d_in, cfg.expert_dim, d_out, cfg.activation, cfg.bias, cfg.backend
        )

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:  # x: (T, d_in)
        route = self.router(x)
        y = self.experts(x, route.expert_ids, route.gates)  # (T, d_out)
        return y, self.balance_losses(route)

    def balance_losses(self, route: RoutingDecision) -> dict[str, Tensor]:
        if route.logits.shape[0] == 0:  # no audio tokens in this batch: nothing to balance
            zero = route.logits.new_zeros((), dtype=torch.float32)
            return {"aux_loss": zero, "z_loss": zero, "total": zero}
        aux = switch_balance_loss(route.probs, route.expert_ids, self.router.num_experts, self.global_batch)
        z = router_z_loss(route.logits)
        return {"aux_loss": aux, "z_loss": z, "total": self.aux_loss_coef * aux + self.z_loss_coef * z}

    def update_bias(self) -> Tensor:
        """Aux-loss-free balancing step (see ``Router.update_bias``); returns the load used."""
        return self.router.update_bias()


# ----------------------------------------------------------------------------- micro-benchmark


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
    where a backend cannot run; ``"auto"`` maps to ``{"resolves_to": name}``. Used by
    ``moeaudio bench adapter``.
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
