"""Gradient-conflict and cross-domain influence analysis, model-agnostic.

The paper's claim is that a dense adapter receives *conflicting* gradients from speech, sound and
music, while the MoE-Adapter's domain gradients agree (its gradient-conflict figure: dense
music-sound cosine -0.020 vs MoE +0.029) and an update on one domain stops hurting the others
(its influence figure). This module measures both from plain callables, so it works for any
model, adapter or toy problem:

* ``grad_fn(batch) -> Tensor (P,) | dict[str, Tensor] | list[Tensor]`` returns the gradient of
  the training loss on ``batch`` with respect to the analysed parameters (the adapter), at the
  current parameters. Non-flat returns are flattened with :func:`flatten_grads`. The batch is
  opaque here; if the domain matters to the loss, put it in the batch.
* ``loss_fn(batch, params) -> float | Tensor`` evaluates the loss with the analysed parameters
  replaced by the flat vector ``params`` (see :func:`unflatten_like` and
  ``torch.func.functional_call``). Only needed for ``exact=True``.

Sign convention (used for every influence number here): **positive influence means that an SGD
step on domain i reduces (helps) domain j's loss; negative means it hurts.**

* ``influence[i][j] = lr * <g_i, g_j>`` -- the first-order estimate of
  ``L_j(theta) - L_j(theta - lr * g_i)``, where ``g_d`` is the mean gradient over domain d's
  batches and ``L_j`` the mean loss over j's batches.
* ``influence_normalized[i][j] = <g_i, g_j> / |g_j|^2`` -- the same first-order loss decrease,
  as a fraction of the decrease j gets from a step on its own gradient (diagonal = 1). It is
  independent of ``lr`` and of the overall gradient scale, so it compares dense vs MoE fairly.
* ``influence_exact[i][j] = L_j(theta) - L_j(theta - lr * g_i)`` measured with ``loss_fn``
  (``exact=True``); it matches ``influence`` up to ``O(lr^2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Group
from rich.table import Table

from moeaudio.io_utils import pyplot, save_figure

__all__ = [
    "ConflictResult",
    "GradFn",
    "LossFn",
    "conflict_analysis",
    "conflict_curve_summary",
    "plot_conflict_over_training",
    "cosine_matrix",
    "flatten_grads",
    "unflatten_like",
    "plot_conflict",
]

GradOutput = torch.Tensor | Mapping[str, torch.Tensor] | Sequence[torch.Tensor]
GradFn = Callable[[Any], GradOutput]
LossFn = Callable[[Any, torch.Tensor], float | torch.Tensor]


def flatten_grads(params: GradOutput | Iterable[torch.Tensor]) -> torch.Tensor:
    """Concatenate gradients into one detached flat vector ``(P,)``.

    Accepts a flat tensor (returned as is, flattened), a mapping name -> gradient (taken in sorted
    name order, so two calls on differently ordered dicts line up), or an iterable whose items
    are either parameters (``nn.Parameter`` / tensors with ``requires_grad``: their ``.grad`` is
    used, zeros when ``None`` so frozen-for-this-batch experts keep their slot) or plain gradient
    tensors. A fixed layout matters because cosines compare vectors coordinate by coordinate.
    """
    if isinstance(params, torch.Tensor):
        return params.detach().reshape(-1)
    if isinstance(params, Mapping):
        items: list[torch.Tensor] = [params[k] for k in sorted(params)]
    else:
        items = list(params)
    flat: list[torch.Tensor] = []
    for p in items:
        if isinstance(p, torch.nn.Parameter) or p.requires_grad:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
        else:
            g = p
        flat.append(g.detach().reshape(-1))
    if not flat:
        raise ValueError("flatten_grads got no tensors")
    return torch.cat(flat)


def unflatten_like(vec: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector back into tensors shaped like ``params`` (inverse of flattening a list).

    Lets a ``loss_fn`` map the flat ``params`` override onto named parameters, e.g.
    ``dict(zip(names, unflatten_like(vec, tensors)))`` for ``torch.func.functional_call``.
    """
    sizes = [p.numel() for p in params]
    if vec.numel() != sum(sizes):
        raise ValueError(f"vector has {vec.numel()} entries, params need {sum(sizes)}")
    return [c.view_as(p) for c, p in zip(torch.split(vec, sizes), params, strict=True)]


def _cos(dot: float, na: float, nb: float) -> float:
    """Cosine from a dot product and squared norms; 0 for a zero vector (no direction, no conflict)."""
    if na <= 0.0 or nb <= 0.0:
        return 0.0
    return float(dot / math.sqrt(na * nb))


def cosine_matrix(grads: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Pairwise cosine similarity of flat gradient vectors, computed in float64.

    Returns ``cos[a][b]`` for every pair including the diagonal (1.0, or 0.0 for a zero vector).
    """
    names = list(grads)
    vecs = [flatten_grads(grads[n]).double() for n in names]
    if len({v.numel() for v in vecs}) > 1:
        raise ValueError("gradients have different sizes")
    gram = _gram(vecs)
    return _cos_from_gram(gram, names, list(range(len(names))))


def _gram(vecs: Sequence[torch.Tensor], chunk: int = 1 << 22) -> np.ndarray:
    """Float64 Gram matrix of flat vectors, chunked along P to bound temporary memory."""
    n = len(vecs)
    gram = torch.zeros(n, n, dtype=torch.float64)
    if n == 0:
        return gram.numpy()
    p = vecs[0].numel()
    for s in range(0, p, chunk):
        block = torch.stack([v[s : s + chunk].to("cpu", torch.float64) for v in vecs])
        gram += block @ block.T
    return gram.numpy()


def _cos_from_gram(gram: np.ndarray, names: list[str], idx: list[int]) -> dict[str, dict[str, float]]:
    return {
        a: {b: _cos(gram[i, j], gram[i, i], gram[j, j]) for b, j in zip(names, idx, strict=True)}
        for a, i in zip(names, idx, strict=True)
    }


@dataclass
class ConflictResult:
    """Gradient agreement between domains for one checkpoint.

    ``cosine`` compares the domains' mean gradients; ``spread`` says how much that could be noise:
    ``spread["cross"][i][j]`` and ``spread["within"][d]`` hold the ``mean``/``std`` (population)
    and count ``n`` of cosines between single-batch gradients of different domains, resp. of the
    same domain. Within-domain agreement is the reference level for "no conflict"; ``None`` marks
    a statistic with no pairs. See the module docstring for the influence sign convention.
    """

    domains: list[str]
    lr: float
    cosine: dict[str, dict[str, float]]
    influence: dict[str, dict[str, float]]
    influence_normalized: dict[str, dict[str, float]]
    spread: dict[str, Any]
    num_batches: dict[str, int]
    grad_norm: dict[str, float]
    influence_exact: dict[str, dict[str, float]] | None = None
    loss: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON view; ``cosine``, ``influence``, ``spread`` and ``num_batches`` always present."""
        return {
            "domains": list(self.domains),
            "lr": self.lr,
            "cosine": self.cosine,
            "influence": self.influence,
            "influence_normalized": self.influence_normalized,
            "influence_exact": self.influence_exact,
            "spread": self.spread,
            "num_batches": dict(self.num_batches),
            "grad_norm": dict(self.grad_norm),
            "loss": self.loss,
            "sign_convention": "influence[i][j] > 0: an SGD step on domain i lowers domain j's loss",
        }


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}


def conflict_analysis(
    grad_fn: GradFn,
    loss_fn: LossFn | None,
    batches_by_domain: Mapping[str, Sequence[Any]],
    lr: float,
    *,
    params: torch.Tensor | None = None,
    exact: bool = False,
    store_device: str | torch.device = "cpu",
    store_dtype: torch.dtype = torch.float32,
) -> ConflictResult:
    """Measure cross-domain gradient conflict and one-step influence.

    Args:
        grad_fn: ``grad_fn(batch)`` -> gradient of the loss on ``batch`` w.r.t. the analysed
            parameters at the current point (flat tensor, dict or list; see :func:`flatten_grads`).
            Must not update the parameters.
        loss_fn: ``loss_fn(batch, params_flat)`` -> scalar loss with the analysed parameters set to
            ``params_flat``. Only used (and required) when ``exact=True``.
        batches_by_domain: domain name -> its batches (e.g. speech-only, sound-only, music-only).
        lr: SGD step size for the influence scores.
        params: current flat parameter vector ``theta``; required when ``exact=True``.
        exact: also take the step ``theta - lr * g_i`` for real and measure every domain's loss
            change with ``loss_fn`` (costs ``(D + 1) * sum_j B_j`` loss evaluations).
        store_device, store_dtype: where the per-batch gradients are kept. All of them are held at
            once (``sum_j B_j * P`` values) because the spread needs every pair; use
            ``torch.bfloat16`` or fewer batches for large adapters.

    Why the mean gradient per domain: the paper's figure is about the direction a domain pushes
    the shared parameters during training, i.e. the expected gradient; single-batch gradients are
    dominated by noise, which the spread quantifies separately. Everything except the exact mode
    is derived from one Gram matrix of the per-batch gradients, since the mean gradients' dot
    products are block averages of it.
    """
    domains = [str(d) for d in batches_by_domain]
    if not domains:
        raise ValueError("batches_by_domain is empty")
    if exact and (loss_fn is None or params is None):
        raise ValueError("exact=True needs loss_fn and params (the current flat parameter vector)")

    vecs: list[torch.Tensor] = []
    owner: list[int] = []
    num_batches: dict[str, int] = {}
    size: int | None = None
    for di, d in enumerate(batches_by_domain):
        batches = list(batches_by_domain[d])
        if not batches:
            raise ValueError(f"domain {d!r} has no batches")
        num_batches[str(d)] = len(batches)
        for b in batches:
            # copy=True: grad_fn may hand back views of .grad buffers that the next call overwrites.
            g = flatten_grads(grad_fn(b)).to(store_device, store_dtype, copy=True)
            if size is None:
                size = g.numel()
            elif g.numel() != size:
                raise ValueError(f"grad_fn returned {g.numel()} values, expected {size}")
            vecs.append(g)
            owner.append(di)

    gram = _gram(vecs)
    own = np.asarray(owner)
    n_dom = len(domains)
    # Mean-gradient Gram: <mean_i, mean_j> = average of the (i, j) block of the batch Gram.
    mg = np.zeros((n_dom, n_dom))
    for i in range(n_dom):
        for j in range(n_dom):
            mg[i, j] = gram[np.ix_(own == i, own == j)].mean()

    cosine = _cos_from_gram(mg, domains, list(range(n_dom)))
    influence = {a: {b: float(lr * mg[i, j]) for j, b in enumerate(domains)} for i, a in enumerate(domains)}
    influence_norm = {
        a: {b: (float(mg[i, j] / mg[j, j]) if mg[j, j] > 0 else 0.0) for j, b in enumerate(domains)}
        for i, a in enumerate(domains)
    }
    grad_norm = {d: float(math.sqrt(max(mg[i, i], 0.0))) for i, d in enumerate(domains)}

    # Per-batch spread: cross-domain vs within-domain single-batch cosines.
    nb = len(vecs)
    pair_cos: dict[tuple[int, int], list[float]] = {}
    for a in range(nb):
        for b in range(a + 1, nb):
            key = (min(own[a], own[b]), max(own[a], own[b]))
            pair_cos.setdefault(key, []).append(_cos(gram[a, b], gram[a, a], gram[b, b]))
    cross = {
        a: {b: _stats(pair_cos.get((min(i, j), max(i, j)), [])) for j, b in enumerate(domains) if j != i}
        for i, a in enumerate(domains)
    }
    within = {d: _stats(pair_cos.get((i, i), [])) for i, d in enumerate(domains)}
    spread = {"cross": cross, "within": within}

    result = ConflictResult(
        domains=domains,
        lr=float(lr),
        cosine=cosine,
        influence=influence,
        influence_normalized=influence_norm,
        spread=spread,
        num_batches=num_batches,
        grad_norm=grad_norm,
    )
    if exact:
        assert loss_fn is not None and params is not None
        result.influence_exact, result.loss = _exact_influence(
            loss_fn, batches_by_domain, domains, vecs, own, params, lr
        )
    return result


@torch.no_grad()
def _exact_influence(
    loss_fn: LossFn,
    batches_by_domain: Mapping[str, Sequence[Any]],
    domains: list[str],
    vecs: list[torch.Tensor],
    own: np.ndarray,
    params: torch.Tensor,
    lr: float,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Take the SGD step on a copy of ``params`` per source domain and measure every loss change."""
    theta = params.detach().reshape(-1)
    keys = list(batches_by_domain)

    def mean_loss(j: int, p: torch.Tensor) -> float:
        vals = [float(loss_fn(b, p)) for b in batches_by_domain[keys[j]]]
        return float(np.mean(vals))

    base = [mean_loss(j, theta.clone()) for j in range(len(domains))]
    out: dict[str, dict[str, float]] = {}
    for i, a in enumerate(domains):
        idx = np.nonzero(own == i)[0]
        g = torch.stack([vecs[k].to(theta.device, torch.float64) for k in idx]).mean(0)
        stepped = (theta.double() - lr * g).to(theta.dtype)
        out[a] = {b: base[j] - mean_loss(j, stepped) for j, b in enumerate(domains)}
    return out, {d: base[j] for j, d in enumerate(domains)}


# ----------------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------------


def _offdiag_absmax(mats: list[np.ndarray]) -> float:
    vals = [np.abs(m[~np.eye(m.shape[0], dtype=bool)]) for m in mats if m.shape[0] > 1]
    vmax = max((float(v.max()) for v in vals if v.size), default=0.0)
    return vmax if vmax > 0 else 1.0


def plot_conflict(
    results_by_name: Mapping[str, ConflictResult],
    path: str | Path,
    influence_key: str = "influence",
) -> Path:
    """Write the paper-style conflict figure: cosine heatmaps (top row) and influence (bottom row).

    One column per checkpoint (e.g. dense vs MoE), values printed in every cell. Colours use a
    diverging map centred on 0 with one symmetric scale per row taken from the *off-diagonal*
    cells, because the diagonal (cosine 1, self-influence) would otherwise wash out the small
    cross-domain values the figure is about. Influence cells read "row domain's update -> effect on
    column domain's loss", positive = helps. ``influence_key`` picks ``influence``,
    ``influence_normalized`` or ``influence_exact``.
    """
    if not results_by_name:
        raise ValueError("results_by_name is empty")
    plt = pyplot()

    names = list(results_by_name)

    def mat(r: ConflictResult, key: str) -> np.ndarray:
        m = getattr(r, key)
        if m is None:
            raise ValueError(f"result has no {key!r} (run conflict_analysis with exact=True)")
        return np.array([[m[a][b] for b in r.domains] for a in r.domains], dtype=np.float64)

    rows = [("cosine", "gradient cosine"), (influence_key, f"{influence_key} (row update -> column loss)")]
    mats = {key: [mat(results_by_name[n], key) for n in names] for key, _ in rows}
    n = len(names)
    size = max(len(r.domains) for r in results_by_name.values())
    fig, axes = plt.subplots(
        2,
        n,
        figsize=(1.2 + (1.1 * size + 1.2) * n, 2 * (0.9 * size + 1.4)),
        squeeze=False,
        layout="constrained",
    )
    # Diagonal drawn grey (masked): it is not part of the colour scale.
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.88")
    for r_i, (key, title) in enumerate(rows):
        vmax = _offdiag_absmax(mats[key])
        im = None
        for c_i, name in enumerate(names):
            ax = axes[r_i][c_i]
            res = results_by_name[name]
            m = mats[key][c_i]
            off = np.ma.masked_where(np.eye(m.shape[0], dtype=bool), m)
            im = ax.imshow(off, cmap=cmap, vmin=-vmax, vmax=vmax)
            k = len(res.domains)
            ax.set_xticks(range(k), res.domains, rotation=30, ha="right")
            ax.set_yticks(range(k), res.domains)
            ax.set_title(f"{name}: {title}", fontsize=9)
            for (y, x), v in np.ndenumerate(m):
                color = "0.25" if x == y else ("w" if abs(v) > 0.6 * vmax else "k")
                ax.text(
                    x,
                    y,
                    f"{v:+.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:+.1e}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=color,
                )
        if im is not None:
            fig.colorbar(im, ax=axes[r_i].tolist(), fraction=0.03)
    return save_figure(fig, path)


def result_from_json(data: Mapping[str, Any]) -> ConflictResult:
    """Rebuild a :class:`ConflictResult` from :meth:`ConflictResult.to_json` (e.g. for plotting)."""
    return ConflictResult(
        domains=list(data["domains"]),
        lr=float(data["lr"]),
        cosine=data["cosine"],
        influence=data["influence"],
        influence_normalized=data["influence_normalized"],
        spread=data["spread"],
        num_batches=dict(data["num_batches"]),
        grad_norm=dict(data["grad_norm"]),
        influence_exact=data.get("influence_exact"),
        loss=data.get("loss"),
    )


def render_conflict(results: Mapping[str, Mapping[str, Any]]) -> Group:
    """Rich tables: per checkpoint the cosine and influence matrices and the batch spread."""
    tables = []
    for name, r in results.items():
        doms = r["domains"]
        for key, fmt in (("cosine", "+.4f"), ("influence_normalized", "+.4f"), ("influence", "+.3e")):
            t = Table(title=f"{name} ({r.get('adapter', '?')}): {key} [{r.get('loss_key', 'lm_loss')}]")
            t.add_column("")
            for d in doms:
                t.add_column(d, justify="right")
            for a in doms:
                t.add_row(a, *(format(r[key][a][b], fmt) for b in doms))
            tables.append(t)
        t = Table(title=f"{name}: single-batch cosine spread (mean +- std, n)")
        need = r.get("batch_size", 0) * max(r["num_batches"].values())
        few = [d for d, n in r.get("examples_per_domain", {}).items() if n < need]
        if few:
            t.caption = (
                f"[yellow]{', '.join(few)}: fewer clips than batches x batch size (batches repeat clips)[/]"
            )
        t.add_column("pair")
        t.add_column("cosine", justify="right")
        within = r["spread"]["within"]
        cross = r["spread"]["cross"]
        rows = [(f"{d} / {d}", within[d]) for d in doms]
        rows += [(f"{a} / {b}", cross[a][b]) for i, a in enumerate(doms) for b in doms[i + 1 :]]
        for label, s in rows:
            cell = "-" if s["mean"] is None else f"{s['mean']:+.4f} +- {s['std']:.4f} (n={s['n']})"
            t.add_row(label, cell)
        tables.append(t)
    return Group(*tables)


#: Titles of the adapter parts in the conflict-over-training figure (keys of the training log).
PART_TITLES = {"all": "whole adapter", "shared": "shared path", "routed": "routed experts"}


def conflict_curve_summary(
    record: Mapping[str, float], prefix: str = "conflict_by_part"
) -> dict[str, dict[str, float]]:
    """One training-log record's per-part numbers: ``{part: {"cross": mean cosine over domain pairs,
    "floor": mean same-domain cosine}}`` (parts without both are left out)."""
    out: dict[str, dict[str, float]] = {}
    for part in PART_TITLES:
        head = f"{prefix}/{part}/"
        cross = [
            v for k, v in record.items() if k.startswith(head) and "-" in k[len(head) :] and "/floor" not in k
        ]
        floor = record.get(f"{head}floor")
        if cross and floor is not None:
            out[part] = {"cross": float(np.mean(cross)), "floor": float(floor)}
    return out


def plot_conflict_over_training(
    curves: Mapping[str, Mapping[int, Mapping[str, Mapping[str, float]]]], path: str | Path, title: str = ""
) -> Path | None:
    """Cross-domain gradient cosine over training steps per arm (solid), with each arm's same-domain
    noise floor (dashed, same colour), one panel per adapter part.

    ``curves``: arm label -> step -> :func:`conflict_curve_summary` of that step (e.g. averaged over
    seeds). Cross-domain cosines below the floor are conflict beyond sampling noise. None when there
    is nothing to draw.
    """
    parts = [p for p in PART_TITLES if any(p in rec for steps in curves.values() for rec in steps.values())]
    if not parts:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts), 3.4), squeeze=False, sharey=True)
    colors = plt.get_cmap("tab10").colors
    for ax, part in zip(axes[0], parts, strict=True):
        for k, (arm, steps) in enumerate(curves.items()):
            xs = sorted(s for s, rec in steps.items() if part in rec)
            if not xs:
                continue
            color = colors[k % len(colors)]
            ax.plot(
                xs,
                [steps[s][part]["cross"] for s in xs],
                "-o",
                color=color,
                markersize=3,
                label=f"{arm}: across domains",
            )
            ax.plot(
                xs,
                [steps[s][part]["floor"] for s in xs],
                "--",
                color=color,
                label=f"{arm}: same domain (floor)",
            )
        ax.axhline(0.0, color="0.5", linewidth=0.7)
        ax.set_title(PART_TITLES[part], fontsize=9)
        ax.set_xlabel("training step")
    axes[0][0].set_ylabel("gradient cosine (single batches)")
    # one legend naming every arm (a dense adapter has no routed-experts panel, so no one panel has
    # all), below the panels so that it hides no curve; one column per arm
    labelled = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, handle)
    fig.legend(
        labelled.values(),
        labelled.keys(),
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=max(1, len(curves)),
        frameon=False,
    )
    fig.suptitle(title or "Gradient agreement between domains during training", fontsize=10)
    return save_figure(fig, path)
