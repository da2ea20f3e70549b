"""The differences figure of a study: every arm's paired difference from the baseline, per column.

The table in ``results.md`` holds the same numbers; the figure is for seeing at a glance which cells
differ (interval clear of 0) and in which direction. Differences are drawn so that right is better:
a column where lower is better (WER) is drawn as ``baseline - arm``, and its label says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moeaudio.io_utils import pyplot, save_figure
from moeaudio.reproduce.stats import DIFFERS

__all__ = ["plot_differences"]


def plot_differences(results: Mapping[str, Any], path: str | Path) -> Path | None:
    """A forest plot (``results.json``'s cells) of arm - baseline per column, mean and its interval;
    None when no arm but the baseline has a difference to draw."""
    base = results["baseline"]
    arms = [a for a in results["arms"] if a["name"] != base]
    columns = [c for c in results["columns"] if c["gap"] is None]
    rows: list[tuple[str, list[dict[str, Any] | None]]] = []
    for col in columns:
        sign = 1.0 if col["higher_is_better"] else -1.0
        diffs = []
        for a in arms:
            cell = results["cells"][a["name"]][col["name"]]
            d = cell.get("effect") or cell["diff"]  # effect: item-level and corrected, where computed
            diffs.append(None if not d or d.get("mean") is None else {**d, "sign": sign})
        if any(d is not None for d in diffs):
            unit = " (pts)" if col["unit"] == "%" else ""
            rows.append((col["name"] + (" ↓, flipped" if sign < 0 else "") + unit, diffs))
    if not rows or not arms:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * len(rows) * max(1, len(arms)) ** 0.7))
    height = 0.8 / len(arms)
    colors = plt.get_cmap("tab10").colors
    for j, a in enumerate(arms):
        ys, xs, lo, hi, filled = [], [], [], [], []
        for i, (_, diffs) in enumerate(rows):
            d = diffs[j]
            if d is None:
                continue
            y = i + (j - (len(arms) - 1) / 2) * height
            mean = d["sign"] * d["mean"]
            ends = [d["sign"] * v for v in (d["low"], d["high"]) if v is not None]
            ys.append(y)
            xs.append(mean)
            lo.append(mean - min(ends) if ends else 0.0)
            hi.append(max(ends) - mean if ends else 0.0)
            filled.append(d["verdict"] == DIFFERS)
        color = colors[j % len(colors)]
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="none", ecolor=color, elinewidth=1.2, capsize=2)
        for x, y, f in zip(xs, ys, filled, strict=True):  # filled marker: the corrected verdict is "differs"
            ax.plot(x, y, "o", color=color, markerfacecolor=color if f else "white", markersize=5)
        ax.plot([], [], "o", color=color, label=f"{a['label']} − baseline")
    ax.axvline(0.0, color="0.4", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=8)
    ax.invert_yaxis()
    conf = round(100 * results["confidence"])
    ax.set_xlabel(f"difference from the baseline (right = better); mean and {conf}% interval")
    ax.set_title(f"{results['title']}\nfilled: differs (corrected verdict); open: within noise", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)
