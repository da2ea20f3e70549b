"""The paper's MoE-Adapter: a dropless top-k token-choice Mixture-of-Experts between Whisper and the LLM.

Read top to bottom: ``RoutingDecision`` and ``Router`` (which experts, with which weights) ->
``RoutedExperts`` (E stacked MLPs and the dispatch that runs them) -> the balance losses ->
``MoELayer`` (router + experts + losses) -> ``MoEAdapter`` (the paper's block: LN, MoE layer,
shared path) -> ``capture_routing`` and ``end_step`` (for analysis and for the trainer).

Expert i is ``E_i(z) = act(z @ w1[i] + b1[i]) @ w2[i] + b2[i]`` and a token's output is
``sum_{i in topk} g_i * E_i(z)``. Routing is dropless (no capacity factor, no dropped tokens, no
router noise), as in the paper. Shapes use ``T`` tokens, ``E`` experts, ``k`` top-k, ``h`` the
expert hidden width.

Dispatch backends compute the same thing to float rounding (``AdapterConfig.backend``):
  * ``loop``: per expert, gather its tokens, run it, ``index_add`` the weighted result back.
    The simplest; the reference the others are tested against.
  * ``sort``: sort the ``T*k`` (token, expert) slots by expert once, run each expert on a
    contiguous slice, un-permute and combine each token's k slots with one batched matmul
    (deterministic: no atomics, unlike ``index_add`` on CUDA).
  * ``grouped``: ``sort`` with both matmuls done for all experts by one ``grouped_mm`` call;
    it lives in ``dispatch.py`` with the probe that says where it can run.
  * ``auto``: ``grouped`` wherever it is supported, else ``sort``.
Which is fastest depends on machine and sizes: time them with ``moeaudio bench adapter``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from moeaudio.config import AdapterConfig
from moeaudio.model.base import ACTIVATIONS, MLP, Adapter, AdapterOutput, norm
from moeaudio.model.dispatch import grouped_mlp, grouped_unsupported_reason
from moeaudio.model.distributed import all_reduce_sum

SCORE_FUNCS = ("softmax_renorm", "softmax", "sigmoid")
BACKENDS = ("loop", "sort", "grouped")


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
    """Top-k token-choice router, with the optional aux-loss-free balancing bias.

    ``score_func``:
      * ``softmax_renorm`` (the paper): ``g = softmax(mask_topk(logits, -inf))``, i.e. a softmax over
        the k chosen logits, so gates sum to 1.
      * ``softmax`` (Qwen2-MoE, ``norm_topk_prob=False``): gates are the full-softmax probabilities of
        the chosen experts, not renormalised (they sum to < 1).
      * ``sigmoid`` (DeepSeek-V3): independent sigmoid scores, the chosen ones renormalised to sum 1.

    With ``bias_balancing`` the buffer ``expert_bias`` (E,) is added to the scores for the top-k
    *selection only*; gates always come from the unbiased scores, so the bias steers load without
    distorting the mixture (DeepSeek-V3's auxiliary-loss-free balancing).

    The bias update needs the load, so the router counts it: in training mode, while
    ``count_tokens`` is on (by default with ``bias_balancing``; the trainer switches it on for
    every router to log ``load_spread``), each forward adds its choices to ``tokens_per_expert``
    (E,) with ``index_add_``, on the device, without a host sync. Evaluation forwards
    (``model.eval()``) are not training load and are never counted. ``end_step`` consumes the
    count once per optimizer step. Both buffers are always registered, so the state dict does
    not depend on the options, and live in checkpoints.
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
        self.count_tokens = bias_balancing
        self.W_g = nn.Linear(d_in, num_experts, bias=False)
        self.register_buffer("expert_bias", torch.zeros(num_experts))  # (E,)
        self.register_buffer("tokens_per_expert", torch.zeros(num_experts, dtype=torch.long))  # (E,)

    def forward(self, x: Tensor) -> RoutingDecision:  # x: (T, d_in)
        logits = self.W_g(x)  # (T, E)
        scores = logits.float()  # routing maths in float32, whatever the model dtype
        probs = torch.sigmoid(scores) if self.score_func == "sigmoid" else scores.softmax(-1)  # (T, E)
        select = probs + self.expert_bias if self.bias_balancing else probs  # (T, E) selection only
        expert_ids = select.topk(self.top_k, dim=-1).indices  # (T, k)
        gates = self._gates(scores, probs, expert_ids).to(x.dtype)  # (T, k)
        if self.training and self.count_tokens:
            ones = torch.ones_like(expert_ids, dtype=self.tokens_per_expert.dtype).flatten()  # (T*k,)
            self.tokens_per_expert.index_add_(0, expert_ids.flatten(), ones)
        return RoutingDecision(logits=logits, probs=probs, expert_ids=expert_ids, gates=gates)

    def _gates(self, logits: Tensor, probs: Tensor, expert_ids: Tensor) -> Tensor:
        if self.score_func == "softmax_renorm":  # softmax over the k kept logits, as the paper writes it
            return logits.gather(-1, expert_ids).softmax(-1)  # (T, k)
        chosen = probs.gather(-1, expert_ids)  # (T, k)
        if self.score_func == "sigmoid":
            return chosen / chosen.sum(-1, keepdim=True)
        return chosen  # "softmax": not renormalised

    @torch.no_grad()
    def end_step(self) -> Tensor:
        """Close an optimizer step: sum the load over ranks, move the bias, reset the counter.

        A collective: call it on every rank once per optimizer step, after all micro-batches
        (the trainer does, through the module-level ``end_step``). With ``bias_balancing``,
        ``bias += rate * sign(mean - load)``: an overloaded expert's bias falls, an underloaded
        one's rises; every rank sees the same global load, so biases stay identical everywhere.
        Returns that global load (E,) for logging; read ``tokens_per_expert`` first for this
        rank's own count.
        """
        load = all_reduce_sum(self.tokens_per_expert).float()  # (E,)
        if self.bias_balancing:
            self.expert_bias += self.bias_update_rate * torch.sign(load.mean() - load)
        self.tokens_per_expert.zero_()
        return load


# ----------------------------------------------------------------------------- experts


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
        fan_in = {"w1": self.d_in, "w2": self.hidden, "b1": self.d_in, "b2": self.hidden}
        for name, p in self.named_parameters():  # w1, w2, (b1, b2): the order the RNG is drawn in
            nn.init.uniform_(p, -1 / math.sqrt(fan_in[name]), 1 / math.sqrt(fan_in[name]))

    def expert_mlp(self, x: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None) -> Tensor:
        """One expert, ``act(x @ w1 + b1) @ w2 + b2``: x (n, d_in) -> (n, d_out)."""
        h = x @ w1  # (n, h)
        if b1 is not None:
            h = h + b1
        y = self.act(h) @ w2  # (n, d_out)
        return y + b2 if b2 is not None else y

    def _per_expert(self) -> list[tuple[Tensor, Tensor | None, Tensor, Tensor | None]]:
        """Each expert's (w1, b1, w2, b2), cut from the stacked parameters by one ``unbind`` each.

        Why not ``self.w1[e]``: the backward of each such select writes a zero-filled gradient of the
        whole stacked parameter, E of them per step, summed by autograd (at the paper's sizes, 8 x 105
        MB for ``w1`` alone); ``unbind``'s backward stacks the E slices' gradients once.
        """
        stacks = [
            p.unbind(0) if p is not None else [None] * self.num_experts
            for p in (self.w1, self.b1, self.w2, self.b2)
        ]
        return list(zip(*stacks, strict=True))

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
        for e, weights in enumerate(self._per_expert()):
            tok, slot = torch.where(expert_ids == e)  # (n_e,), (n_e,)
            if tok.numel() == 0:
                continue
            y = self.expert_mlp(x[tok], *weights) * gates[tok, slot, None]  # (n_e, d_out)
            out.index_add_(0, tok, y)
        return out

    def _forward_sorted(self, x: Tensor, expert_ids: Tensor, gates: Tensor, grouped: bool) -> Tensor:
        T, k = expert_ids.shape
        flat_ids = expert_ids.flatten()  # (T*k,) slot s belongs to token s // k
        order = torch.argsort(flat_ids, stable=True)  # (T*k,) slots grouped by expert
        counts = torch.bincount(flat_ids, minlength=self.num_experts)  # (E,)
        xs = x.index_select(0, order // k)  # (T*k, d_in) tokens permuted once
        if grouped:
            ys = grouped_mlp(self, xs, flat_ids[order], counts)  # (T*k, d_out)
        else:
            chunks = xs.split(counts.tolist())  # E contiguous slices (host sync for the sizes)
            ys = torch.cat(
                [self.expert_mlp(c, *w) for c, w in zip(chunks, self._per_expert(), strict=True)]
            )  # (T*k, d_out)
        inverse = torch.empty_like(order)  # slot -> its row in sorted order: a scatter, not a 2nd sort
        inverse[order] = torch.arange(order.numel(), device=order.device)
        ys = ys.index_select(0, inverse).view(T, k, self.d_out)  # (T, k, d_out) slot order
        return torch.bmm(gates.unsqueeze(1), ys).squeeze(1)  # (T, d_out)


# ----------------------------------------------------------------------------- balance losses


def switch_balance_loss(
    probs: Tensor,
    expert_ids: Tensor,
    num_experts: int,
    global_batch: bool = False,
    aux_norm: Literal["topk", "switch"] = "topk",
) -> Tensor:
    """Switch-Transformer load-balancing loss ``E * sum_e f_e * P_e``.

    ``P_e``: mean router probability of e. ``f_e`` depends on ``aux_norm`` (``adapter.aux_loss_norm``):

    * ``topk``: share of tokens whose top-k includes e (sums to k over experts). This is exactly
      ``transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func`` for one layer; a
      perfectly balanced router gives k, so one lambda weighs a top-4 arm 4x a top-1 arm.
    * ``switch``: the paper's (and Switch's) fraction of token-*slots* routed to e (sums to 1),
      i.e. the ``topk`` value divided by k; a balanced router gives 1 whatever k, so one lambda
      (``aux_loss_coef``) balances every ``E choose k`` arm with the same strength.

    ``probs`` (T, E) are full-softmax probabilities; sigmoid scores are normalised per token first
    (DeepSeek-V3's convention) so P is a distribution. ``f`` carries no gradient; with
    ``global_batch`` its counts are summed over data-parallel ranks (Qwen's global-batch
    balancing: experts may specialise per micro-batch as long as the global batch is balanced).
    """
    probs = probs / probs.sum(-1, keepdim=True)  # (T, E) no-op for softmax; normalises sigmoid scores
    counts = torch.zeros(num_experts, device=probs.device, dtype=torch.float32)
    counts.index_add_(0, expert_ids.flatten(), torch.ones(expert_ids.numel(), device=probs.device))  # (E,)
    if global_batch:  # one collective for the counts and the token total
        counts = all_reduce_sum(torch.cat([counts, counts.new_tensor([expert_ids.shape[0]])]))  # (E+1,)
        counts, tokens = counts[:-1], counts[-1]
    else:
        tokens = expert_ids.shape[0]
    slots_per_token = expert_ids.shape[-1] if aux_norm == "switch" and expert_ids.dim() > 1 else 1
    f = counts / (tokens * slots_per_token)  # (E,) sums to k (topk) or to 1 (switch)
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
    loss; the others are for logging. Under ZeRO-3 the trainer makes this a leaf module: every rank
    then gathers the same parameters even when it routes no token to some expert (else: a hang).
    """

    def __init__(self, cfg: AdapterConfig, d_in: int, d_out: int) -> None:
        super().__init__()
        self.aux_loss_coef, self.z_loss_coef = cfg.aux_loss_coef, cfg.z_loss_coef
        self.global_batch = cfg.balance_scope == "global_batch"
        self.aux_loss_norm = cfg.aux_loss_norm
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
        aux = switch_balance_loss(
            route.probs, route.expert_ids, self.router.num_experts, self.global_batch, self.aux_loss_norm
        )
        z = router_z_loss(route.logits)
        return {"aux_loss": aux, "z_loss": z, "total": self.aux_loss_coef * aux + self.z_loss_coef * z}


# ----------------------------------------------------------------------------- the adapter block


class MoEAdapter(Adapter):
    """The paper's MoE-Adapter: ``z = LN(x)``, top-k routed experts, then the shared path.

    ``shared_path`` (the paper is ambiguous, both readings are offered):
      * ``sequential`` (the text): experts output d_in; then the aggregation block
        ``LN -> Linear(d_in->aggregation_dim) -> act -> Linear(->d_out)`` (-> final LN).
      * ``parallel`` (matches the parameter table): experts output d_out; the aggregation MLP runs
        on z for every token as an always-on shared expert, summed with the routed output
        (-> final LN).
      * ``none``: experts output d_out (-> final LN).
    So the experts' output width follows from ``shared_path``; there is no setting for it.
    ``num_shared_experts`` adds DeepSeek-style always-on experts of width ``expert_dim`` (output
    width as the routed experts), summed unweighted with the routed output. N of them are stored
    as one MLP of width N * expert_dim, which is the same function as summing N experts.
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
        self.norm_out = norm(d_out, cfg.final_norm)

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

    def moe_layers(self) -> list[MoELayer]:
        return [self.moe]


# ----------------------------------------------------------------------------- helpers


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


def end_step(model: nn.Module) -> dict[str, Tensor]:
    """``Router.end_step`` on every router in ``model``: ``{module name: global load (E,)}``.

    The trainer calls it on every rank once per optimizer step, with or without bias balancing:
    it also resets the counters its ``load_spread`` is computed from.
    """
    return {name: m.end_step() for name, m in model.named_modules() if isinstance(m, Router)}
