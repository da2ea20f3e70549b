"""MoE layer and adapters: backends vs an independent reference, balance losses, bias balancing,
parameter accounting at paper scale (meta device), routing capture."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

from moeaudio.config import AdapterConfig
from moeaudio.model.adapters import build_adapter
from moeaudio.model.dispatch import grouped_unsupported_reason
from moeaudio.model.moe import (
    BACKENDS,
    SCORE_FUNCS,
    MoELayer,
    RoutedExperts,
    Router,
    capture_routing,
    end_step,
    router_z_loss,
    switch_balance_loss,
)

T, D_IN, H, D_OUT, E, K = 40, 16, 8, 12, 6, 2  # widths are multiples of 4: grouped_mm can run in fp32


def _skip_unsupported(backend: str, widths: tuple[int, ...] = (D_IN, H, D_OUT)) -> None:
    if backend == "grouped":
        reason = grouped_unsupported_reason(torch.device("cpu"), torch.float32, widths)
        if reason:
            pytest.skip(reason)


def _layer(score_func: str = "softmax_renorm", backend: str = "loop", bias: bool = False, **kw) -> MoELayer:
    cfg = AdapterConfig(
        num_experts=E, top_k=K, expert_dim=H, score_func=score_func, backend=backend, bias=bias, **kw
    )
    torch.manual_seed(0)
    layer = MoELayer(cfg, D_IN, D_OUT)
    with torch.no_grad():  # make router logits spread enough that top-k is never a near-tie
        layer.router.W_g.weight.mul_(4)
    return layer


def reference_moe(x, w_g, w1, b1, w2, b2, score_func: str, k: int) -> torch.Tensor:
    """Every expert on every token, masked by top-k and weighted by the gates (no dispatch)."""
    logits = x @ w_g.T  # (T, E)
    scores = torch.sigmoid(logits) if score_func == "sigmoid" else logits.softmax(-1)
    mask = torch.zeros_like(scores, dtype=torch.bool).scatter(1, scores.topk(k, -1).indices, True)
    if score_func == "softmax_renorm":
        gates = logits.masked_fill(~mask, -math.inf).softmax(-1)
    elif score_func == "softmax":
        gates = scores * mask
    else:
        gates = scores * mask / (scores * mask).sum(-1, keepdim=True)
    outs = []
    for e in range(w1.shape[0]):
        h = x @ w1[e] + (b1[e] if b1 is not None else 0)
        outs.append(F.silu(h) @ w2[e] + (b2[e] if b2 is not None else 0))
    return torch.einsum("te,etd->td", gates, torch.stack(outs))


# ----------------------------------------------------------------------------- (a) backends


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("score_func", SCORE_FUNCS)
def test_layer_matches_reference(score_func: str, backend: str, bias: bool) -> None:
    _skip_unsupported(backend)
    layer = _layer(score_func, backend, bias)
    x = torch.randn(T, D_IN, requires_grad=True)
    y, _ = layer(x)
    cot = torch.randn_like(y)
    (y * cot).sum().backward()

    ex = layer.experts
    params = [layer.router.W_g.weight, ex.w1, ex.w2] + ([ex.b1, ex.b2] if bias else [])
    ref_params = [p.detach().clone().requires_grad_() for p in params]
    w_g, w1, w2 = ref_params[:3]
    b1, b2 = ref_params[3:] if bias else (None, None)
    x_ref = x.detach().clone().requires_grad_()
    y_ref = reference_moe(x_ref, w_g, w1, b1, w2, b2, score_func, K)
    (y_ref * cot).sum().backward()

    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    for p, r in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p.grad, r.grad, atol=1e-5, rtol=1e-5)


def test_grouped_rejects_unaligned_widths_and_auto_falls_back() -> None:
    experts = RoutedExperts(E, 15, H, D_OUT, backend="grouped")  # 15 * 4 bytes is not 16-aligned
    x = torch.randn(T, 15)
    with pytest.raises(RuntimeError, match="grouped is not available"):
        experts.resolve_backend(x)
    experts.backend = "auto"
    assert experts.resolve_backend(x) == "sort"
    assert RoutedExperts(E, D_IN, H, D_OUT).resolve_backend(torch.randn(T, D_IN).double()) == "sort"
    aligned = grouped_unsupported_reason(torch.device("cpu"), torch.float32, (D_IN, H, D_OUT)) is None
    assert RoutedExperts(E, D_IN, H, D_OUT).resolve_backend(torch.randn(T, D_IN)) == (
        "grouped" if aligned else "sort"
    )


# ----------------------------------------------------------------------------- (f) idle experts


@pytest.mark.parametrize("backend", BACKENDS)
def test_expert_with_zero_tokens(backend: str) -> None:
    _skip_unsupported(backend)
    torch.manual_seed(1)
    experts = RoutedExperts(E, D_IN, H, D_OUT, bias=True, backend=backend)
    x = torch.randn(T, D_IN, requires_grad=True)
    # Experts 0, 2 and E-1 get nothing: empty groups at the start, middle and end of the offsets.
    used = torch.tensor([1, 3, 4])
    expert_ids = torch.stack([used[torch.randperm(3)[:K]] for _ in range(T)])  # (T, K) distinct
    gates = torch.rand(T, K).softmax(-1)
    y = experts(x, expert_ids, gates)
    y.square().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    for idle in (0, 2, E - 1):
        assert experts.w1.grad[idle].abs().sum() == 0 and experts.b2.grad[idle].abs().sum() == 0
    experts.backend = "loop"
    torch.testing.assert_close(y, experts(x, expert_ids, gates), atol=1e-5, rtol=1e-5)


def test_no_tokens_at_all() -> None:
    layer = _layer(backend="sort")
    y, losses = layer(torch.zeros(0, D_IN))
    assert y.shape == (0, D_OUT) and float(losses["total"]) == 0.0


# ----------------------------------------------------------------------------- (b, c) losses


def test_switch_loss_matches_transformers() -> None:
    torch.manual_seed(2)
    logits = torch.randn(50, E) * 3
    ids = logits.topk(K, -1).indices
    ours = switch_balance_loss(logits.softmax(-1), ids, E)
    theirs = load_balancing_loss_func((logits,), num_experts=E, top_k=K)
    torch.testing.assert_close(ours, theirs)


def test_switch_normalisation_hand_computed() -> None:
    """E=4, k=2, three tokens routed to {0,1}, {0,2}, {3,0}: counts (3,1,1,1) over 6 slots.
    P = column means (0.4, 0.5/3, 0.4/3, 0.3). switch: f = (1/2, 1/6, 1/6, 1/6), sum f*P = 0.2 +
    (1/6)(0.9/3 + 0.3) = 0.3, loss = 4 * 0.3 = 1.2; topk: f doubles (sums to k=2), loss 2.4."""
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.6, 0.1, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7]])
    ids = torch.tensor([[0, 1], [0, 2], [3, 0]])
    assert switch_balance_loss(probs, ids, 4, aux_norm="switch").item() == pytest.approx(1.2)
    assert switch_balance_loss(probs, ids, 4, aux_norm="topk").item() == pytest.approx(2.4)
    uniform = torch.full((8, 4), 0.25)  # a perfectly balanced router: 1 under switch whatever k, k under topk
    for k in (1, 2, 4):
        balanced = torch.arange(8 * k).remainder(4).view(8, k)
        assert switch_balance_loss(uniform, balanced, 4, aux_norm="switch").item() == pytest.approx(1.0)
        assert switch_balance_loss(uniform, balanced, 4, aux_norm="topk").item() == pytest.approx(k)


def test_layer_uses_aux_loss_norm() -> None:
    x = torch.randn(T, D_IN)
    topk, switch = _layer()(x)[1], _layer(aux_loss_norm="switch")(x)[1]
    torch.testing.assert_close(switch["aux_loss"], topk["aux_loss"] / K)


def test_layer_losses_are_unweighted_and_total_is_weighted() -> None:
    layer = _layer(aux_loss_coef=0.5, z_loss_coef=0.25)
    x = torch.randn(T, D_IN)
    _, losses = layer(x)
    logits = layer.router.W_g(x)
    torch.testing.assert_close(losses["aux_loss"], load_balancing_loss_func((logits,), E, K))
    torch.testing.assert_close(losses["total"], 0.5 * losses["aux_loss"] + 0.25 * losses["z_loss"])
    global_layer = _layer(balance_scope="global_batch")  # no process group: same as micro-batch
    torch.testing.assert_close(global_layer(x)[1]["aux_loss"], losses["aux_loss"])


def test_z_loss_known_values() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -math.inf, -math.inf]])
    # logsumexp: log 4 for both rows
    torch.testing.assert_close(router_z_loss(logits), torch.tensor(math.log(4.0) ** 2))
    assert router_z_loss(torch.zeros(7, 5)).item() == pytest.approx(math.log(5.0) ** 2)


# ----------------------------------------------------------------------------- (d) bias balancing


def _gates_from_scores(router: Router, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    if router.score_func == "softmax_renorm":
        return logits.gather(-1, ids).softmax(-1)
    scores = torch.sigmoid(logits) if router.score_func == "sigmoid" else logits.softmax(-1)
    chosen = scores.gather(-1, ids)
    return chosen / chosen.sum(-1, keepdim=True) if router.score_func == "sigmoid" else chosen


@pytest.mark.parametrize("score_func", SCORE_FUNCS)
def test_bias_changes_selection_not_gates(score_func: str) -> None:
    router = _layer(score_func, bias_balancing=True).router.eval()
    x = torch.randn(T, D_IN)
    before = router(x)
    router.expert_bias[3] = 10.0
    after = router(x)
    assert (after.expert_ids == 3).any(-1).all()  # every token now picks expert 3
    assert not torch.equal(before.expert_ids, after.expert_ids)
    torch.testing.assert_close(after.gates, _gates_from_scores(router, after.logits, after.expert_ids))
    torch.testing.assert_close(after.probs, before.probs)  # bias never enters the scores themselves


def test_update_bias_moves_toward_balance_and_resets_load() -> None:
    router = Router(D_IN, 4, 1, bias_balancing=True, bias_update_rate=0.1)
    router.tokens_per_expert.copy_(torch.tensor([10, 2, 2, 2]))
    load = router.end_step()
    assert load.tolist() == [10, 2, 2, 2]
    assert router.expert_bias.tolist() == pytest.approx([-0.1, 0.1, 0.1, 0.1])
    assert router.tokens_per_expert.sum() == 0
    assert {"expert_bias", "tokens_per_expert"} <= set(router.state_dict())  # checkpointed


def test_load_counted_only_in_training_with_bias_balancing() -> None:
    plain = _layer().train()
    plain(torch.randn(T, D_IN))
    assert plain.router.tokens_per_expert.sum() == 0
    layer = _layer(bias_balancing=True)
    layer.eval()(torch.randn(T, D_IN))
    assert layer.router.tokens_per_expert.sum() == 0
    layer.train()(torch.randn(T, D_IN))
    assert layer.router.tokens_per_expert.sum() == T * K


def test_bias_balancing_evens_out_a_skewed_router() -> None:
    torch.manual_seed(3)
    router = Router(D_IN, 8, 2, bias_balancing=True, bias_update_rate=0.01).train()
    with torch.no_grad():  # tokens share a common direction that experts 0 and 1 are aligned with
        router.W_g.weight[:2] += 0.2

    loads = []
    for _ in range(300):
        router(torch.randn(256, D_IN) + 0.5)
        loads.append(end_step(router)[""])  # {module name: load}; the router is the root

    def spread(window: list[torch.Tensor]) -> float:  # max/mean of the load summed over a window
        load = torch.stack(window).sum(0)
        return float(load.max() / load.mean())

    assert spread(loads[:10]) > 2.0
    assert spread(loads[-50:]) < 1.15
    assert router.expert_bias[:2].max() < router.expert_bias[2:].min()


# ----------------------------------------------------------------------------- (e) parameter budget


PAPER = dict(num_experts=8, top_k=4, expert_dim=1280, aggregation_dim=10240, bias=False)


def _meta_counts(**kw) -> dict[str, int]:
    with torch.device("meta"):
        adapter = build_adapter(AdapterConfig(**kw), 2560, 2048)
    assert all(p.is_meta for p in adapter.parameters())
    return adapter.param_counts()


def test_paper_parameter_budget_parallel() -> None:
    c = _meta_counts(kind="moe", shared_path="parallel", **PAPER)
    assert c["linear_weights"] == 94_371_840 == 8 * 1280 * (2560 + 2048) + 10240 * (2560 + 2048)
    assert c["active_linear_weights"] == 70_778_880 == (4 * 1280 + 10240) * (2560 + 2048)
    assert c["router"] == 20_480
    assert c["norm"] == 2 * 2560 + 2 * 2048 and c["bias"] == 0
    assert c["total"] == 94_371_840 + 20_480 + c["norm"]
    assert c["active"] == 70_778_880 + 20_480 + c["norm"]


def test_paper_parameter_budget_dense_and_sequential() -> None:
    dense = _meta_counts(kind="dense", hidden_dim=20480, bias=False)
    assert dense["linear_weights"] == dense["active_linear_weights"] == 94_371_840
    seq = _meta_counts(kind="moe", shared_path="sequential", **PAPER)
    assert seq["linear_weights"] == 8 * 1280 * (2560 + 2560) + 10240 * (2560 + 2048)
    assert seq["active_linear_weights"] == 4 * 1280 * (2560 + 2560) + 10240 * (2560 + 2048)


def test_bias_and_shared_experts_accounting() -> None:
    c = _meta_counts(kind="moe", shared_path="none", num_shared_experts=2, **{**PAPER, "bias": True})
    routed_w, shared_w = 8 * 1280 * (2560 + 2048), 2 * 1280 * (2560 + 2048)
    assert c["linear_weights"] == routed_w + shared_w
    assert c["active_linear_weights"] == routed_w // 2 + shared_w
    routed_b, shared_b = 8 * (1280 + 2048), 2 * 1280 + 2048
    assert c["bias"] == routed_b + shared_b and c["active_bias"] == routed_b // 2 + shared_b


def test_flops_per_token() -> None:
    with torch.device("meta"):
        adapter = build_adapter(AdapterConfig(shared_path="parallel", **PAPER), 2560, 2048)
    assert adapter.flops_per_token() == 2 * (70_778_880 + 20_480) + 2 * 4 * 2048


# ----------------------------------------------------------------------------- adapters


@pytest.mark.parametrize(
    "kw",
    [
        dict(kind="linear"),
        dict(kind="mlp", hidden_dim=24),
        dict(kind="dense", hidden_dim=24, final_norm=False),
        dict(kind="moe", shared_path="sequential", aggregation_dim=24),
        dict(kind="moe", shared_path="parallel", aggregation_dim=24, bias=True),
        dict(kind="moe", shared_path="none", num_shared_experts=2, score_func="sigmoid"),
    ],
)
def test_adapter_kinds(kw: dict) -> None:
    adapter = build_adapter(AdapterConfig(num_experts=E, top_k=K, expert_dim=H, **kw), D_IN, D_OUT)
    out = adapter(torch.randn(T, D_IN))
    assert out.y.shape == (T, D_OUT)
    if kw["kind"] == "moe":
        assert set(out.losses) == {"aux_loss", "z_loss", "total"}
        (out.y.sum() + out.losses["total"]).backward()
        assert adapter.moe.router.W_g.weight.grad is not None
    else:
        assert out.losses == {}
    counts = adapter.param_counts()
    assert counts["total"] == sum(p.numel() for p in adapter.parameters())


# ----------------------------------------------------------------------------- (g) routing capture


def test_capture_routing_shapes() -> None:
    adapter = build_adapter(
        AdapterConfig(num_experts=E, top_k=K, expert_dim=H, aggregation_dim=24), D_IN, D_OUT
    )
    with capture_routing(adapter) as decisions:
        adapter(torch.randn(T, D_IN))
        adapter(torch.randn(5, D_IN))
    adapter(torch.randn(3, D_IN))  # hooks are gone after the block
    assert len(decisions) == 2
    d = decisions[0]
    assert d.logits.shape == d.probs.shape == (T, E)
    assert d.expert_ids.shape == d.gates.shape == (T, K)
    assert d.expert_ids.dtype == torch.long and not d.gates.requires_grad
    torch.testing.assert_close(d.gates.sum(-1), torch.ones(T))
    assert decisions[1].expert_ids.shape == (5, K)


def test_hand_set_router_routes_token_i_to_experts_i_and_next() -> None:
    n = 4
    layer = MoELayer(AdapterConfig(num_experts=n, top_k=2, expert_dim=4), n, n)
    with torch.no_grad():  # logits[e] for token i (one-hot x = e_i): 10 if e == i, 5 if e == i + 1
        w = torch.zeros(n, n)
        for i in range(n):
            w[i, i], w[(i + 1) % n, i] = 10.0, 5.0
        layer.router.W_g.weight.copy_(w)
    with capture_routing(layer) as decisions:
        layer(torch.eye(n))
    (d,) = decisions
    assert d.expert_ids.tolist() == [[i, (i + 1) % n] for i in range(n)]
    expected = torch.tensor([1 / (1 + math.exp(-5)), 1 / (1 + math.exp(5))])
    torch.testing.assert_close(d.gates, expected.expand(n, 2))
