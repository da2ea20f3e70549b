"""Tests for the model-agnostic analysis core (routing stats, gradient conflict, influence).

Every expected number is derived by hand from a construction, so a failure points at the
definition rather than at a tolerance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from moeaudio.analyze.conflict import (
    ConflictResult,
    conflict_analysis,
    cosine_matrix,
    flatten_grads,
    plot_conflict,
    unflatten_like,
)
from moeaudio.analyze.routing import (
    gate_matrix,
    per_token_routing,
    plot_activation_heatmap,
    plot_token_timeline,
    render_activation_table,
    render_timeline,
    routing_stats,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = Path(path).read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def _render(renderable) -> str:
    console = Console(record=True, width=160, force_terminal=False)
    console.print(renderable)
    return console.export_text()


# ------------------------------------------------------------------------------------------------
# routing
# ------------------------------------------------------------------------------------------------


def test_separated_domains_give_mi_ln2_and_uniform_load():
    # speech always uses experts {0,1}, music always {2,3}: disjoint experts, equal group sizes.
    ids = torch.tensor([[0, 1]] * 4 + [[3, 2]] * 4)
    groups = ["speech"] * 4 + ["music"] * 4
    st = routing_stats(ids, groups, num_experts=4)
    assert st.groups == ["speech", "music"]
    assert st.activation["speech"] == pytest.approx([1, 1, 0, 0])
    assert st.activation["music"] == pytest.approx([0, 0, 1, 1])
    assert st.load == pytest.approx([0.25] * 4)
    assert sum(st.load) == pytest.approx(1.0)
    assert st.maxvio == pytest.approx(0.0)
    assert st.entropy == pytest.approx(math.log(4))
    assert st.normalized_entropy == pytest.approx(1.0)
    assert st.mutual_information == pytest.approx(math.log(2))
    assert st.tokens_per_group == {"speech": 4, "music": 4}


def test_identical_routing_across_groups_gives_zero_mi():
    ids = torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]])
    st = routing_stats(ids, ["a", "a", "b", "b"], num_experts=4)
    assert st.mutual_information == pytest.approx(0.0, abs=1e-12)
    assert st.activation["a"] == pytest.approx([0.5] * 4)
    assert st.activation["b"] == st.activation["a"]
    assert st.maxvio == pytest.approx(0.0)


def test_imbalanced_load_maxvio_entropy_by_hand():
    # top-1, one group: expert 0 takes 3 of 4 tokens.
    st = routing_stats(np.array([0, 0, 0, 1]), ["x"] * 4, num_experts=4)
    assert st.top_k == 1
    assert st.load == pytest.approx([0.75, 0.25, 0.0, 0.0])
    assert st.maxvio == pytest.approx(0.75 / 0.25 - 1)  # = 2
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert st.entropy == pytest.approx(h)
    assert st.normalized_entropy == pytest.approx(h / math.log(4))
    assert st.mutual_information == pytest.approx(0.0, abs=1e-12)
    # everything on one expert: MaxVio = E - 1
    assert routing_stats([[2]] * 5, ["x"] * 5, 4).maxvio == pytest.approx(3.0)


def test_partial_overlap_mi_and_activation_by_hand():
    # joint slot distribution [[3/8, 1/8], [1/8, 3/8]] with uniform marginals.
    ids = [0, 0, 0, 1, 1, 1, 1, 0]
    groups = ["a"] * 4 + ["b"] * 4
    st = routing_stats(ids, groups, num_experts=2)
    mi = 2 * (3 / 8) * math.log((3 / 8) / (1 / 4)) + 2 * (1 / 8) * math.log((1 / 8) / (1 / 4))
    assert st.mutual_information == pytest.approx(mi)
    assert st.activation == {"a": pytest.approx([0.75, 0.25]), "b": pytest.approx([0.25, 0.75])}
    # activation rows sum to k, load sums to 1 (k=2 case, uneven group sizes, custom order)
    ids2 = torch.tensor([[0, 1], [1, 2], [0, 2]])
    st2 = routing_stats(ids2, ["s", "m", "m"], 3, group_order=["m", "s"])
    assert st2.groups == ["m", "s"]
    assert sum(st2.activation["m"]) == pytest.approx(2.0)
    assert st2.activation["m"] == pytest.approx([0.5, 0.5, 1.0])
    assert st2.load == pytest.approx([2 / 6, 2 / 6, 2 / 6])
    js = st2.to_json()
    assert set(js) == {
        "activation",
        "load",
        "maxvio",
        "entropy",
        "normalized_entropy",
        "mutual_information",
        "tokens_per_group",
    }
    json.dumps(js)


def test_routing_stats_rejects_bad_input():
    with pytest.raises(ValueError):
        routing_stats([[0, 4]], ["a"], 4)
    with pytest.raises(ValueError):
        routing_stats([[0, 1]], ["a", "b"], 4)


def test_per_token_routing_and_gate_matrix():
    ids = torch.tensor([[0, 2], [1, 2], [3, 0]])
    gates = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.9, 0.1]])
    probs = torch.softmax(torch.randn(3, 4), -1)
    recs = per_token_routing(ids, gates, probs, frame_seconds=0.08)
    assert [r["time"] for r in recs] == pytest.approx([0.0, 0.08, 0.16])
    assert recs[2]["experts"] == [3, 0]
    assert recs[2]["gates"] == pytest.approx([0.9, 0.1])
    assert recs[0]["probs"] == pytest.approx(probs[0].tolist())
    assert per_token_routing(ids, gates, None, 0.08)[0]["probs"] is None
    json.dumps(recs)
    m = gate_matrix(ids, gates, 4)
    assert m.shape == (4, 3)
    assert m[:, 0] == pytest.approx([0.7, 0.0, 0.3, 0.0])
    assert m.sum(0) == pytest.approx([1.0, 1.0, 1.0])


def test_routing_pngs_and_rich_views(tmp_path: Path):
    rng = np.random.default_rng(0)
    n_tok, e, k = 40, 8, 4
    ids = torch.stack([torch.randperm(e)[:k] for _ in range(n_tok)])
    gates = torch.softmax(torch.randn(n_tok, k), -1)
    groups = ["speech", "sound", "music", "sound"] * 10
    dense = routing_stats(ids, groups, e)
    moe = routing_stats(torch.tensor([[0, 1, 2, 3]] * n_tok), groups, e)
    p = plot_activation_heatmap({"balanced": dense, "collapsed": moe}, tmp_path / "act.png")
    assert _is_png(p)

    sr = 16000
    wave = np.sin(2 * np.pi * 440 * np.arange(int(n_tok * 0.08 * sr)) / sr) + 0.01 * rng.standard_normal(
        int(n_tok * 0.08 * sr)
    )
    p2 = plot_token_timeline(wave, sr, ids, gates, e, 0.08, tmp_path / "sub" / "timeline.png")
    assert _is_png(p2)

    text = _render(render_timeline(ids, gates, e, 0.08, max_cols=16))
    assert "40 tokens" in text and "3.20 s" in text
    # 8 expert rows, each timeline cell string at most 16 columns wide
    text_full = _render(render_timeline(ids, gates, e, 0.08))
    assert "0.080 s/column" in text_full
    table = _render(render_activation_table(dense))
    assert "speech" in table and "MaxVio" in table and "load" in table


# ------------------------------------------------------------------------------------------------
# gradient conflict
# ------------------------------------------------------------------------------------------------


def test_cosine_matrix_exact_by_construction():
    a = torch.tensor([1.0, 0.0, 0.0, 0.0])
    grads = {
        "a": a,
        "orth": torch.tensor([0.0, 2.0, 0.0, 0.0]),
        "opp": -a,
        "scaled": 3.0 * a,
        "diag": torch.tensor([1.0, 1.0, 0.0, 0.0]),
        "zero": torch.zeros(4),
    }
    cos = cosine_matrix(grads)
    assert cos["a"]["orth"] == 0.0
    assert cos["a"]["opp"] == -1.0
    assert cos["a"]["scaled"] == pytest.approx(1.0, abs=1e-15)
    assert cos["a"]["diag"] == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    assert cos["orth"]["a"] == cos["a"]["orth"]
    assert cos["a"]["a"] == pytest.approx(1.0)
    assert cos["zero"]["a"] == 0.0 and cos["zero"]["zero"] == 0.0


def test_flatten_grads_layouts():
    lin = torch.nn.Linear(3, 2)
    frozen = torch.nn.Parameter(torch.ones(2))
    lin(torch.randn(4, 3)).sum().backward()
    flat = flatten_grads([lin.weight, lin.bias, frozen])
    assert flat.shape == (3 * 2 + 2 + 2,)
    assert torch.equal(flat[:6], lin.weight.grad.reshape(-1))
    assert torch.equal(flat[-2:], torch.zeros(2))  # no grad -> zeros keep the slot
    d = flatten_grads({"b": torch.tensor([2.0]), "a": torch.tensor([1.0])})
    assert d.tolist() == [1.0, 2.0]  # sorted names
    parts = unflatten_like(flat[:8], [lin.weight, lin.bias])
    assert parts[0].shape == lin.weight.shape and torch.equal(parts[1], lin.bias.grad)


def test_conflict_analysis_spread_and_influence_by_construction():
    # Domain A gradients along e1, B along e2 (orthogonal), C = -A direction (opposite).
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    batches = {"A": [e1, 3 * e1], "B": [e2, e2], "C": [-e1]}
    res = conflict_analysis(lambda b: b, None, batches, lr=0.1)
    assert res.num_batches == {"A": 2, "B": 2, "C": 1}
    assert res.cosine["A"]["B"] == 0.0
    assert res.cosine["A"]["C"] == pytest.approx(-1.0)
    # mean grads: A = 2 e1, B = e2, C = -e1
    assert res.influence["A"]["A"] == pytest.approx(0.1 * 4)
    assert res.influence["A"]["C"] == pytest.approx(0.1 * -2)  # step on A raises C's loss: hurts
    assert res.influence["C"]["A"] == pytest.approx(0.1 * -2)
    assert res.influence["A"]["B"] == pytest.approx(0.0)
    assert res.influence_normalized["A"]["C"] == pytest.approx(-2.0)  # <gA,gC>/|gC|^2
    assert res.influence_normalized["C"]["A"] == pytest.approx(-0.5)
    assert res.influence_normalized["B"]["B"] == pytest.approx(1.0)
    assert res.grad_norm["A"] == pytest.approx(2.0)
    sp = res.spread
    assert sp["cross"]["A"]["B"] == {"mean": 0.0, "std": 0.0, "n": 4}
    assert sp["cross"]["A"]["C"]["mean"] == pytest.approx(-1.0) and sp["cross"]["A"]["C"]["n"] == 2
    assert sp["within"]["A"]["mean"] == pytest.approx(1.0) and sp["within"]["A"]["n"] == 1
    assert sp["within"]["C"] == {"mean": None, "std": None, "n": 0}
    js = res.to_json()
    assert {"cosine", "influence", "spread", "num_batches"} <= set(js)
    json.dumps(js)


def test_conflict_analysis_copies_aliased_grad_buffers():
    # grad_fn returns the same .grad buffer each time; stored gradients must not alias it.
    w = torch.nn.Parameter(torch.zeros(2))

    def grad_fn(target):
        w.grad = None if w.grad is None else w.grad.zero_()
        (w * target).sum().backward()
        return w.grad

    res = conflict_analysis(
        grad_fn, None, {"x": [torch.tensor([1.0, 0.0])], "y": [torch.tensor([0.0, 1.0])]}, 1.0
    )
    assert res.cosine["x"]["y"] == pytest.approx(0.0)


def _quadratic_problem(seed: int = 0, dim: int = 6):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    a = m @ m.T / dim + torch.eye(dim, dtype=torch.float64)
    theta = torch.randn(dim, generator=g, dtype=torch.float64)
    centers = {d: [torch.randn(dim, generator=g, dtype=torch.float64) for _ in range(3)] for d in "SMN"}

    def loss_fn(c, p):
        r = p - c
        return 0.5 * r @ a @ r

    def grad_fn(c):
        return a @ (theta - c)

    return a, theta, centers, loss_fn, grad_fn


def test_influence_matches_exact_quadratic_step():
    a, theta, centers, loss_fn, grad_fn = _quadratic_problem()
    lr = 1e-3
    res = conflict_analysis(
        grad_fn, loss_fn, centers, lr, params=theta, exact=True, store_dtype=torch.float64
    )
    means = {d: torch.stack([grad_fn(c) for c in cs]).mean(0) for d, cs in centers.items()}
    for i in centers:
        for j in centers:
            gi, gj = means[i], means[j]
            # L_j(theta) - L_j(theta - lr gi) = lr <gi,gj> - lr^2/2 gi^T A gi  (exact for a quadratic)
            exact = float(lr * gi @ gj - 0.5 * lr**2 * gi @ a @ gi)
            assert res.influence_exact[i][j] == pytest.approx(exact, rel=1e-8, abs=1e-12)
            assert res.influence[i][j] == pytest.approx(float(lr * gi @ gj), rel=1e-10)
            # first-order error is O(lr^2) and bounded by the curvature term
            assert (
                abs(res.influence[i][j] - res.influence_exact[i][j])
                <= 0.5 * lr**2 * float(gi @ a @ gi) + 1e-12
            )
            assert np.sign(res.influence[i][j]) == np.sign(res.influence_exact[i][j]) or abs(exact) < 1e-9
    assert res.loss["S"] == pytest.approx(float(np.mean([loss_fn(c, theta) for c in centers["S"]])))

    # halving lr quarters the first-order error
    res2 = conflict_analysis(
        grad_fn, loss_fn, centers, lr / 2, params=theta, exact=True, store_dtype=torch.float64
    )
    err1 = abs(res.influence["S"]["M"] - res.influence_exact["S"]["M"])
    err2 = abs(res2.influence["S"]["M"] - res2.influence_exact["S"]["M"])
    assert err2 == pytest.approx(err1 / 4, rel=1e-6)


def test_influence_sign_helps_and_hurts():
    # L_j = 0.5 |theta - c_j|^2 at theta = 0: g_j = -c_j. Aligned targets help, opposite ones hurt.
    theta = torch.zeros(2, dtype=torch.float64)
    targets = {
        "up": [torch.tensor([1.0, 0.0], dtype=torch.float64)],
        "down": [torch.tensor([-1.0, 0.0], dtype=torch.float64)],
        "up2": [torch.tensor([2.0, 0.0], dtype=torch.float64)],
    }

    def loss_fn(c, p):
        return 0.5 * float(((p - c) ** 2).sum())

    res = conflict_analysis(lambda c: theta - c, loss_fn, targets, 0.1, params=theta, exact=True)
    assert res.influence["up"]["up2"] > 0 and res.influence_exact["up"]["up2"] > 0
    assert res.influence["up"]["down"] < 0 and res.influence_exact["up"]["down"] < 0


def test_exact_requires_params():
    with pytest.raises(ValueError):
        conflict_analysis(lambda b: b, None, {"a": [torch.ones(2)]}, 0.1, exact=True)


def test_plot_conflict_png(tmp_path: Path):
    a, theta, centers, loss_fn, grad_fn = _quadratic_problem(1)
    moe = conflict_analysis(grad_fn, loss_fn, centers, 1e-2, params=theta, exact=True)
    dense = conflict_analysis(lambda c: -grad_fn(c), None, centers, 1e-2)
    assert isinstance(moe, ConflictResult)
    p = plot_conflict({"dense": dense, "moe": moe}, tmp_path / "conflict.png")
    assert _is_png(p)
    p2 = plot_conflict({"moe": moe}, tmp_path / "exact.png", influence_key="influence_exact")
    assert _is_png(p2)
    with pytest.raises(ValueError):
        plot_conflict({"dense": dense}, tmp_path / "x.png", influence_key="influence_exact")
