"""Routing analysis for MoE adapters: pure functions on routing decisions.

Everything here works on the router's outputs only (``expert_ids`` of shape ``(tokens, k)``,
``gates`` of the same shape, optionally full router ``probs`` of shape ``(tokens, E)``), so it
does not depend on the model class. The model wiring collects those tensors; this module turns
them into the numbers and figures of the paper's routing analysis:

* per-group (domain) activation rate of each expert -- the paper's routing figure, where a
  balanced MoE-Adapter shows most cells at 41-57% and, without the balance loss, two experts take
  97-98% of tokens;
* load balance (share of token-slots per expert, MaxVio, entropy of the load);
* mutual information between expert choice and group: how much routing "disentangles" domains
  (0 = routing ignores the domain, ``ln(#groups)`` = each domain owns disjoint experts).

Plotting uses matplotlib with the Agg backend and is imported lazily so the numeric part stays
importable (and fast) on machines without a display; terminal views use ``rich``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from moeaudio.io_utils import pyplot, save_figure

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rich.console import RenderableType
    from rich.table import Table

__all__ = [
    "RoutingStats",
    "routing_stats",
    "per_token_routing",
    "gate_matrix",
    "plot_activation_heatmap",
    "plot_token_timeline",
    "render_timeline",
    "render_activation_table",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[Sequence[float]] | Sequence[float]


def _as_2d(x: ArrayLike, name: str, dtype: torch.dtype) -> torch.Tensor:
    """Coerce ids/gates to a CPU ``(tokens, k)`` tensor; a 1-D input means top-1 routing."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().to("cpu", dtype)
    if t.dim() == 1:
        t = t.unsqueeze(1)
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape (tokens, k); got {tuple(t.shape)}")
    return t


def _check_ids(ids: torch.Tensor, num_experts: int) -> None:
    if num_experts <= 0:
        raise ValueError(f"num_experts must be positive; got {num_experts}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_experts):
        raise ValueError(
            f"expert ids must lie in [0, {num_experts}); got range [{int(ids.min())}, {int(ids.max())}]. "
            "Drop padding tokens before calling."
        )


@dataclass
class RoutingStats:
    """Summary of one checkpoint's routing over a labelled set of audio tokens.

    ``activation[g][e]`` is the share of group ``g``'s tokens whose top-k set contains expert
    ``e`` (so a row sums to ``k``, not 1 -- this is what the paper plots). ``load[e]`` is the share
    of all token-slots (tokens x k) sent to ``e`` and sums to 1. Information quantities are in nats.
    """

    num_experts: int
    top_k: int
    groups: list[str]
    activation: dict[str, list[float]]
    load: list[float]
    maxvio: float
    entropy: float
    normalized_entropy: float
    mutual_information: float
    tokens_per_group: dict[str, int]
    #: Joint token-slot counts ``counts[g][e]``; kept so stats can be merged or re-derived.
    counts: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON view (the keys the CLI and reports rely on)."""
        return {
            "activation": {g: list(v) for g, v in self.activation.items()},
            "load": list(self.load),
            "maxvio": self.maxvio,
            "entropy": self.entropy,
            "normalized_entropy": self.normalized_entropy,
            "mutual_information": self.mutual_information,
            "tokens_per_group": dict(self.tokens_per_group),
        }


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def routing_stats(
    expert_ids: ArrayLike,
    groups: Sequence[str],
    num_experts: int,
    group_order: Sequence[str] | None = None,
) -> RoutingStats:
    """Compute activation rates, load balance and expert/group mutual information.

    Args:
        expert_ids: ``(tokens, k)`` chosen experts per audio token (a 1-D array means ``k=1``).
            Ids must lie in ``[0, num_experts)``; remove padding tokens first.
        groups: one label per token (e.g. ``"speech"``, ``"sound"``, ``"music"``).
        num_experts: number of routed experts ``E``.
        group_order: optional display order of groups; defaults to first appearance.

    Why these definitions: activation counts a token once per expert (duplicates in a row are
    collapsed) because the paper's figure asks "how often is expert e used for domain g". Load,
    MaxVio and entropy are over token-slots because that is what the balance loss
    (``f_e``) and compute per expert see. MaxVio = ``max_e load_e / mean_e load_e - 1`` is 0 for a
    perfectly balanced router and ``E - 1`` when one expert takes everything. The mutual
    information ``I(expert; group)`` uses the joint distribution of token-slots over
    (group, expert); it is 0 when every group routes identically and ``H(group)`` (``ln 2`` for
    two equal groups) when groups use disjoint experts.
    """
    ids = _as_2d(expert_ids, "expert_ids", torch.long)
    _check_ids(ids, num_experts)
    n_tok, k = ids.shape
    labels = [str(g) for g in groups]
    if len(labels) != n_tok:
        raise ValueError(f"got {len(labels)} group labels for {n_tok} tokens")
    if n_tok == 0 or k == 0:
        raise ValueError("routing_stats needs at least one token with at least one expert")

    order = list(dict.fromkeys(labels))
    if group_order is not None:
        missing = [g for g in order if g not in group_order]
        order = [g for g in group_order if g in set(order)] + missing
    gidx = {g: i for i, g in enumerate(order)}
    g_of_tok = torch.tensor([gidx[g] for g in labels], dtype=torch.long)

    num_groups = len(order)
    # Joint slot counts (group, expert) and per-token membership (deduplicated).
    slot_counts = torch.zeros(num_groups * num_experts, dtype=torch.long)
    slot_counts.index_add_(
        0,
        (g_of_tok.unsqueeze(1) * num_experts + ids).reshape(-1),
        torch.ones(n_tok * k, dtype=torch.long),
    )
    slot_counts = slot_counts.view(num_groups, num_experts)
    member = torch.zeros(n_tok, num_experts, dtype=torch.bool)
    member.scatter_(1, ids, True)
    tok_counts = torch.zeros(num_groups, num_experts, dtype=torch.long)
    tok_counts.index_add_(0, g_of_tok, member.long())
    tokens_per_group = torch.bincount(g_of_tok, minlength=num_groups)

    joint = slot_counts.double().numpy()
    total = joint.sum()
    p_joint = joint / total
    p_expert = p_joint.sum(0)
    p_group = p_joint.sum(1)

    ent = _entropy(p_expert)
    norm_ent = ent / math.log(num_experts) if num_experts > 1 else 1.0
    mean_load = 1.0 / num_experts
    maxvio = float(p_expert.max() / mean_load - 1.0)
    mi = _entropy(p_group) + ent - _entropy(p_joint.reshape(-1))
    mi = max(mi, 0.0)  # clip tiny negative round-off

    activation = {
        g: (tok_counts[i].double() / max(int(tokens_per_group[i]), 1)).tolist() for g, i in gidx.items()
    }
    return RoutingStats(
        num_experts=num_experts,
        top_k=k,
        groups=order,
        activation=activation,
        load=p_expert.tolist(),
        maxvio=maxvio,
        entropy=ent,
        normalized_entropy=norm_ent,
        mutual_information=float(mi),
        tokens_per_group={g: int(tokens_per_group[i]) for g, i in gidx.items()},
        counts={g: slot_counts[i].tolist() for g, i in gidx.items()},
    )


def per_token_routing(
    expert_ids: ArrayLike,
    gates: ArrayLike,
    probs: ArrayLike | None,
    frame_seconds: float,
    times: ArrayLike | None = None,
) -> list[dict[str, Any]]:
    """List one record per audio token for JSON dumps of a single utterance.

    ``time`` is the token's start in seconds (``times[t]`` when given, e.g. for a recording routed
    window by window; else token ``t`` covers ``[t * frame_seconds, (t + 1) * frame_seconds)``;
    0.08 s at the paper's 12.5 Hz), ``experts``
    and ``gates`` are the top-k choice in the router's order, and ``probs`` is the full softmax
    over experts (``None`` when the caller did not keep it) -- handy to see near-ties.
    """
    ids = _as_2d(expert_ids, "expert_ids", torch.long)
    g = _as_2d(gates, "gates", torch.float64)
    if g.shape != ids.shape:
        raise ValueError(f"gates shape {tuple(g.shape)} != expert_ids shape {tuple(ids.shape)}")
    p = _as_2d(probs, "probs", torch.float64) if probs is not None else None
    if p is not None and p.shape[0] != ids.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} rows for {ids.shape[0]} tokens")
    starts = (
        np.asarray(times, dtype=np.float64).reshape(-1)
        if times is not None
        else np.arange(ids.shape[0]) * frame_seconds
    )
    if starts.shape[0] != ids.shape[0]:
        raise ValueError(f"times has {starts.shape[0]} entries for {ids.shape[0]} tokens")
    out = []
    for t in range(ids.shape[0]):
        out.append(
            {
                "time": round(float(starts[t]), 6),
                "experts": ids[t].tolist(),
                "gates": g[t].tolist(),
                "probs": p[t].tolist() if p is not None else None,
            }
        )
    return out


def gate_matrix(expert_ids: ArrayLike, gates: ArrayLike, num_experts: int) -> np.ndarray:
    """Scatter top-k gates into a dense ``(num_experts, tokens)`` matrix (0 where not routed).

    The expert x time picture is what both the PNG timeline and the terminal view draw.
    """
    ids = _as_2d(expert_ids, "expert_ids", torch.long)
    g = _as_2d(gates, "gates", torch.float64)
    if g.shape != ids.shape:
        raise ValueError(f"gates shape {tuple(g.shape)} != expert_ids shape {tuple(ids.shape)}")
    _check_ids(ids, num_experts)
    dense = torch.zeros(ids.shape[0], num_experts, dtype=torch.float64)
    dense.scatter_add_(1, ids, g)
    return dense.T.numpy()


# ----------------------------------------------------------------------------------------------
# Figures (matplotlib, lazily imported, Agg backend)
# ----------------------------------------------------------------------------------------------


def plot_activation_heatmap(stats_by_name: dict[str, RoutingStats], path: str | Path) -> Path:
    """Write the paper-style routing figure: one panel per checkpoint, side by side.

    Experts run along x, groups along y and each cell is annotated with the activation rate in %.
    All panels share the 0-100% colour scale so e.g. "with vs without balance loss" compare by eye.
    """
    if not stats_by_name:
        raise ValueError("stats_by_name is empty")
    plt = pyplot()
    n = len(stats_by_name)
    width = sum(max(3.0, 0.6 * s.num_experts + 1.5) for s in stats_by_name.values())
    height = 1.6 + 0.5 * max(len(s.groups) for s in stats_by_name.values())
    fig, axes = plt.subplots(1, n, figsize=(width, height), squeeze=False)
    im = None
    for ax, (name, st) in zip(axes[0], stats_by_name.items(), strict=True):
        mat = np.array([st.activation[g] for g in st.groups]) * 100.0
        im = ax.imshow(mat, vmin=0.0, vmax=100.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(st.num_experts), [str(e) for e in range(st.num_experts)])
        ax.set_yticks(range(len(st.groups)), st.groups)
        ax.set_xlabel("expert")
        ax.set_title(f"{name}\nMaxVio {st.maxvio:.2f}  MI {st.mutual_information:.3f}", fontsize=9)
        for (r, c), v in np.ndenumerate(mat):
            ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7, color="w" if v < 60 else "k")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="activation rate (%)", fraction=0.03)
    return save_figure(fig, path)


def plot_token_timeline(
    wave: np.ndarray,
    sr: int,
    expert_ids: ArrayLike,
    gates: ArrayLike,
    num_experts: int,
    frame_seconds: float,
    path: str | Path,
) -> Path:
    """Write a spectrogram (top) over an expert x time gate-weight heatmap (bottom).

    Both panels share one time axis in seconds so a reader can line routing changes up with
    acoustic events (speech onset, music, silence). The spectrogram is a log-power STFT from
    ``matplotlib.specgram`` (no extra audio dependency); token ``t`` is drawn over
    ``[t * frame_seconds, (t + 1) * frame_seconds)``.
    """
    plt = pyplot()
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    mat = gate_matrix(expert_ids, gates, num_experts)
    n_tok = mat.shape[1]
    t_end = max(n_tok * frame_seconds, len(wave) / float(sr) if sr > 0 else 0.0)

    fig, (ax_s, ax_r) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(max(6.0, min(18.0, 1.0 + 1.2 * t_end)), 5.0),
        gridspec_kw={"height_ratios": [1.2, 1.0]},
    )
    if wave.size >= 16:
        nfft = int(min(1024, 2 ** int(np.floor(np.log2(max(16, min(wave.size, int(0.025 * sr) or 16)))))))
        nfft = max(nfft, 16)
        with np.errstate(divide="ignore"):  # digital silence: log10(0) = -inf, drawn as the floor
            ax_s.specgram(wave, NFFT=nfft, Fs=sr, noverlap=nfft // 2, cmap="magma", scale="dB")
    ax_s.set_ylabel("Hz")
    ax_s.set_title("spectrogram (log power)", fontsize=9)

    im = ax_r.imshow(
        mat,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        cmap="Blues",
        vmin=0.0,
        vmax=max(1e-9, float(mat.max()) if mat.size else 1.0),
        extent=(0.0, n_tok * frame_seconds, -0.5, num_experts - 0.5),
    )
    ax_r.set_yticks(range(num_experts))
    ax_r.set_ylabel("expert")
    ax_r.set_xlabel("time (s)")
    ax_r.set_xlim(0.0, t_end if t_end > 0 else 1.0)
    fig.colorbar(im, ax=[ax_s, ax_r], label="gate weight", fraction=0.025)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# Terminal views (rich)
# ----------------------------------------------------------------------------------------------

_GLYPHS = " ·░▒▓█"


def _glyph(w: float, vmax: float) -> str:
    if w <= 0.0 or vmax <= 0.0:
        return _GLYPHS[0]
    level = 1 + int(min(w / vmax, 1.0) * (len(_GLYPHS) - 2) + 1e-9)
    return _GLYPHS[min(level, len(_GLYPHS) - 1)]


def render_timeline(
    expert_ids: ArrayLike,
    gates: ArrayLike,
    num_experts: int,
    frame_seconds: float,
    max_cols: int = 120,
) -> RenderableType:
    """Terminal expert x time view: one row per expert, one column per (group of) token(s).

    Glyph density follows the gate weight (blank = not routed). Long utterances are binned to at
    most ``max_cols`` columns by averaging gates per bin, so the view fits a terminal while still
    showing which experts switch on where.
    """
    from rich.table import Table
    from rich.text import Text

    mat = gate_matrix(expert_ids, gates, num_experts)
    n_tok = mat.shape[1]
    max_cols = max(1, int(max_cols))
    n_cols = min(n_tok, max_cols)
    if n_cols and n_tok > n_cols:
        edges = np.linspace(0, n_tok, n_cols + 1).round().astype(int)
        mat = np.stack([mat[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:], strict=True)], 1)
    bin_s = (n_tok / n_cols) * frame_seconds if n_cols else frame_seconds
    vmax = float(mat.max()) if mat.size else 0.0

    table = Table(
        title=f"routing timeline: {n_tok} tokens, {n_tok * frame_seconds:.2f} s, {bin_s:.3f} s/column",
        show_header=True,
        box=None,
        pad_edge=False,
    )
    table.add_column("expert", justify="right", style="bold")
    table.add_column("time ->", no_wrap=True)
    table.add_column("share", justify="right")
    for e in range(num_experts):
        row = "".join(_glyph(float(w), vmax) for w in mat[e])
        used = float((mat[e] > 0).mean()) if n_cols else 0.0
        table.add_row(str(e), Text(row, style="cyan"), f"{100 * used:.0f}%")
    return table


def render_activation_table(stats: RoutingStats) -> Table:
    """Terminal version of the routing figure: groups x experts activation in %, plus load."""
    from rich.table import Table

    table = Table(
        title="expert activation rate (% of group tokens)",
        caption=(
            f"MaxVio {stats.maxvio:.3f} | load entropy {stats.entropy:.3f} nats "
            f"({stats.normalized_entropy:.1%} of max) | MI(expert; group) {stats.mutual_information:.3f} nats"
        ),
    )
    table.add_column("group")
    table.add_column("tokens", justify="right")
    for e in range(stats.num_experts):
        table.add_column(f"E{e}", justify="right")
    for g in stats.groups:
        cells = []
        for v in stats.activation[g]:
            pct = 100.0 * v
            style = "bold green" if pct >= 50 else ("dim" if pct < 5 else "")
            cells.append(f"[{style}]{pct:.1f}[/]" if style else f"{pct:.1f}")
        table.add_row(g, str(stats.tokens_per_group[g]), *cells)
    table.add_section()
    table.add_row("load", str(sum(stats.tokens_per_group.values())), *(f"{100 * v:.1f}" for v in stats.load))
    return table
