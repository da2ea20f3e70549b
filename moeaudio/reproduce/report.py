"""``results.json`` and ``results.md`` of a study: our numbers over seeds beside the paper's.

Pure functions of what the runs wrote (their ``done.json`` records and analysis JSON), so a report can
be rebuilt, and checked, without a model. The statistics are :mod:`moeaudio.reproduce.stats`: every cell is
``mean +- std`` over seeds. Every arm's difference from the baseline (``effect``) is judged with the
per-item scores where the eval files hold them (a paired two-way bootstrap over seeds and test items:
training noise and test-set sampling), else seed by seed (t); the study's ``primary`` column is judged
alone, the arm's other columns are Holm-corrected together, and each gets its minimum detectable
effect. Accuracies are shown in % (x100), as the paper prints them; the statistics are computed on the
shown scale.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from moeaudio.reproduce.plan import StudyPlan
from moeaudio.reproduce.stats import (
    DIFFERS,
    NOT_AVAILABLE,
    WITHIN_NOISE,
    align_items,
    holm,
    minimum_detectable_effect,
    paired_difference,
    paired_item_bootstrap,
    paired_t_pvalue,
    summarize,
)
from moeaudio.reproduce.study import Column, Study

__all__ = [
    "ItemData",
    "analysis_quantities",
    "column_effects",
    "build_results",
    "column_values",
    "render_markdown",
]

#: Domains the paper's figures compare (``mixed`` clips hold several at once).
DOMAINS = ("speech", "sound", "music")
#: Cosine pairs in the paper's wording and order; other pairs follow.
PAPER_PAIRS = (("music", "sound"), ("speech", "music"), ("sound", "speech"))
#: Activation band the paper says most cells of a balanced MoE-Adapter sit in.
BALANCED_BAND = (0.41, 0.57)
#: Per-item scores of the runs: arm -> column -> seed -> {item id: (numerator, denominator)}.
ItemData = Mapping[str, Mapping[str, Mapping[int, Mapping[str, tuple[float, float]]]]]
ITEM_METHOD = "items x seeds bootstrap"
SEED_METHOD = "seeds only (t)"


# ----------------------------------------------------------------------------- evaluation cells


def column_values(
    study: Study, scale: str, records: Mapping[str, Mapping[str, Any] | None], arm: str
) -> dict[str, dict[int, float]]:
    """``{column: {seed: value}}`` of one arm, on the shown scale (x100 for percent columns).

    ``records`` maps run keys (``arm/seed-S``) to their done records (None: not finished). Gap
    columns are ``a - b`` for the seeds that have both parts.
    """
    out: dict[str, dict[int, float]] = {}
    columns = study.columns_at(scale)
    for col in columns:
        if col.gap is not None:
            continue
        values: dict[int, float] = {}
        for key, record in records.items():
            if record is None or not key.startswith(f"{arm}/"):
                continue
            value = record.get("values", {}).get(col.name)
            if value is not None and math.isfinite(value):
                values[int(record["seed"])] = float(value) * (100.0 if col.percent else 1.0)
        out[col.name] = values
    for col in columns:
        if col.gap is not None:
            a, b = (out.get(part, {}) for part in col.gap)
            out[col.name] = {s: a[s] - b[s] for s in sorted(set(a) & set(b))}
    return out


def _paper_value(study: Study, arm_name: str, col: Column) -> float | str | None:
    arm = study.arm(arm_name)
    if col.name in arm.paper:
        return arm.paper[col.name]
    if col.gap is not None:
        a, b = (arm.paper.get(part) for part in col.gap)
        if isinstance(a, int | float) and isinstance(b, int | float):
            return round(a - b, 4)
    if col.name in arm.paper_delta:  # the paper prints only the difference: add it to the baseline's
        base = study.arm(study.baseline).paper.get(col.name)
        if isinstance(base, int | float):
            return round(base + arm.paper_delta[col.name], 4)
    return None


def _paper_delta(study: Study, arm_name: str, col: Column) -> float | None:
    arm = study.arm(arm_name)
    if arm_name == study.baseline:
        return None
    if col.name in arm.paper_delta:
        return arm.paper_delta[col.name]
    mine, base = _paper_value(study, arm_name, col), _paper_value(study, study.baseline, col)
    if isinstance(mine, int | float) and isinstance(base, int | float):
        return round(mine - base, 4)
    return None


def _cell(values: dict[int, float], baseline: dict[int, float] | None, confidence: float) -> dict[str, Any]:
    """``n``, ``mean``, ``std``, ``values`` (by seed) and ``diff`` (paired, None for the baseline)."""
    cell: dict[str, Any] = {"n": 0, "mean": None, "std": None}
    if values:
        summary = summarize([values[s] for s in sorted(values)])
        cell.update(n=summary.n, mean=summary.mean, std=summary.std)
    cell["values"] = {str(s): v for s, v in sorted(values.items())}
    diff = paired_difference(values, baseline, confidence) if baseline is not None else None
    cell["diff"] = diff.to_json() if diff is not None else None
    return cell


def _raw_effect(
    study: Study, arm: str, col: Column, values: dict[str, dict[int, float]], items: ItemData
) -> dict[str, Any]:
    """The effect of one column before correction: item-level where both arms have per-item scores."""
    scale = 100.0 if col.percent else 1.0
    arm_items, base_items = items.get(arm, {}).get(col.name), items.get(study.baseline, {}).get(col.name)
    aligned = align_items(arm_items, base_items) if arm_items and base_items else None
    if aligned is not None:
        seeds, _, num_a, num_b, den = aligned
        d = paired_item_bootstrap(num_a, num_b, den, seeds=seeds, confidence=study.confidence, scale=scale)
        return {
            "method": ITEM_METHOD,
            "mean": d.mean,
            "low": d.low,
            "high": d.high,
            "p": d.p_value,
            "se": d.se,
            "n_seeds": d.n_seeds,
            "n_items": d.n_items,
            "items_differing": d.items_differing,
            "n_boot": d.n_boot,
        }
    diff = paired_difference(values["arm"], values["baseline"], study.confidence)
    if diff is None:
        return {"method": SEED_METHOD, "mean": None, "low": None, "high": None, "p": None, "se": None,
                "n_seeds": 0, "n_items": None}  # fmt: skip
    se = None if diff.std is None else diff.std / diff.n**0.5
    return {
        "method": SEED_METHOD,
        "mean": diff.mean,
        "low": diff.low,
        "high": diff.high,
        "p": paired_t_pvalue(diff),
        "se": se,
        "n_seeds": diff.n,
        "n_items": None,
    }


def column_effects(
    study: Study,
    scale: str,
    arm: str,
    by_arm: Mapping[str, Mapping[str, dict[int, float]]],
    items: ItemData,
) -> dict[str, dict[str, Any]]:
    """Every column's effect of ``arm`` against the baseline: mean, interval, p, the corrected p and
    verdict, and the minimum detectable effect (see :mod:`moeaudio.reproduce.stats`).

    The primary column is judged at ``alpha = 1 - confidence`` alone; the other columns with a p-value
    form one Holm family, and their minimum detectable effect is at ``alpha / m`` (Holm's first step).
    """
    alpha = 1.0 - study.confidence
    primary = study.primary_column(scale)
    columns = study.columns_at(scale)
    base = by_arm.get(study.baseline, {})
    raw = {
        c.name: _raw_effect(
            study,
            arm,
            c,
            {"arm": by_arm.get(arm, {}).get(c.name, {}), "baseline": base.get(c.name, {})},
            items,
        )
        for c in columns
    }
    family = [c.name for c in columns if c.name != primary and raw[c.name]["p"] is not None]
    adjusted = dict(zip(family, holm([raw[n]["p"] for n in family]), strict=True))
    out = {}
    for c in columns:
        e = raw[c.name]
        is_primary = c.name == primary
        level = alpha if is_primary else alpha / max(1, len(family))
        p_adj = e["p"] if is_primary else adjusted.get(c.name)
        verdict = NOT_AVAILABLE if p_adj is None else DIFFERS if p_adj < alpha else WITHIN_NOISE
        direction = None
        if verdict == DIFFERS and e["mean"]:
            direction = "better" if (e["mean"] > 0) == c.higher_is_better else "worse"
        out[c.name] = {
            **e,
            "primary": is_primary,
            "correction": "none (primary)" if is_primary else f"Holm over {len(family)} columns",
            "p_adjusted": p_adj,
            "verdict": verdict,
            "direction": direction,
            "mde_alpha": level,
            "mde": None if e["se"] is None else minimum_detectable_effect(e["se"], level),
        }
    return out


# ----------------------------------------------------------------------------- analyses


def _pair_name(a: str, b: str) -> str:
    for x, y in PAPER_PAIRS:
        if {a, b} == {x, y}:
            return f"{x}-{y}"
    return f"{a}-{b}"


def analysis_quantities(
    kind: str, data: Mapping[str, Any], influence: str = "influence_normalized"
) -> dict[str, float]:
    """The numbers results.md compares for one checkpoint's analysis JSON.

    routing (activation rates of the speech, sound and music tokens): the mean activation of each
    domain's two most-used experts (the paper: 97-98 % without the balance loss), the share of
    (domain, expert) cells in the 41-57 % band (the paper: most, with it), the expert/domain mutual
    information (nats; all groups) and MaxVio. conflict: the gradient cosine of every domain pair and
    the influence of every ordered pair (``influence``: which matrix).
    """
    out: dict[str, float] = {}
    if kind == "routing":
        act = data["activation"]
        rows = [act[d] for d in DOMAINS if d in act] or list(act.values())
        top2 = [sum(sorted(r, reverse=True)[:2]) / min(2, len(r)) for r in rows]
        cells = [v for r in rows for v in r]
        lo, hi = BALANCED_BAND
        out["two most-used experts, activation (%)"] = 100.0 * sum(top2) / len(top2)
        out["cells at 41-57 % (%)"] = 100.0 * sum(lo <= v <= hi for v in cells) / len(cells)
        out["expert-domain mutual information (nats)"] = float(data["mutual_information"])
        out["MaxVio"] = float(data["maxvio"])
        return out
    if kind == "conflict":
        domains = [d for d in data["domains"]]
        done = set()
        for x, y in [*PAPER_PAIRS, *((a, b) for a in domains for b in domains if a != b)]:
            if x in domains and y in domains and frozenset((x, y)) not in done:
                done.add(frozenset((x, y)))
                out[f"cosine {_pair_name(x, y)}"] = float(data["cosine"][x][y])
        matrix = data[influence]
        for a in domains:
            for b in domains:
                if a != b:
                    out[f"influence {a}->{b}"] = float(matrix[a][b])
        return out
    raise ValueError(f"unknown analysis kind {kind!r}")


def _analysis_results(
    plan: StudyPlan,
    analyses: Mapping[str, Mapping[str, Mapping[int, Mapping[str, Any]]]],
    figures: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    out = []
    for an in plan.study.analyses:
        arms = [a for a in an.arms if a in plan.arms]
        per_arm = analyses.get(an.name, {})
        values: dict[str, dict[str, dict[int, float]]] = {}  # quantity -> arm -> seed -> value
        skipped: dict[str, str] = {}
        for arm in arms:
            for seed, data in per_arm.get(arm, {}).items():
                if "skipped" in data:
                    skipped[arm] = data["skipped"]
                    continue
                for q, v in analysis_quantities(an.kind, data, an.influence).items():
                    values.setdefault(q, {}).setdefault(arm, {})[int(seed)] = v
        reference = next((a for a in arms if a not in skipped), None)
        quantities = {}
        for q, by_arm in values.items():
            base = by_arm.get(reference) if reference else None
            quantities[q] = {
                arm: _cell(by_arm.get(arm, {}), base if arm != reference else None, plan.study.confidence)
                for arm in arms
                if arm not in skipped
            }
        out.append(
            {
                "name": an.name,
                "kind": an.kind,
                "title": an.title,
                "arms": arms,
                "reference_arm": reference,
                "split": an.split,
                "influence": an.influence if an.kind == "conflict" else None,
                "skipped": skipped,
                "quantities": quantities,
                "paper": {a: dict(v) for a, v in an.paper.items()},
                "paper_note": an.paper_note,
                **dict(figures.get(an.name, {})),
            }
        )
    return out


# ----------------------------------------------------------------------------- results


def build_results(
    plan: StudyPlan,
    records: Mapping[str, Mapping[str, Any] | None],
    analyses: Mapping[str, Mapping[str, Mapping[int, Mapping[str, Any]]]] | None = None,
    figures: Mapping[str, Mapping[str, Any]] | None = None,
    items: ItemData | None = None,
    weights: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """Everything ``results.json`` holds (and ``results.md`` shows).

    ``records``: run key -> done record or None; ``analyses``: analysis name -> arm -> seed -> JSON;
    ``figures``: analysis name -> ``{"figure": path relative to the study folder, "figure_seed": s}``;
    ``items``: per-item scores (:data:`ItemData`; without them every effect is seed-level);
    ``weights``: arm -> adapter linear weights ``{"total", "active"}`` of the model at this scale.
    """
    study, scale = plan.study, plan.scale
    columns = study.columns_at(scale)
    by_arm = {arm: column_values(study, scale, records, arm) for arm in plan.arms}
    base_values = by_arm.get(study.baseline, {})
    cells: dict[str, dict[str, Any]] = {}
    for arm in plan.arms:
        cells[arm] = {}
        for col in columns:
            baseline = None if arm == study.baseline else base_values.get(col.name, {})
            cell = _cell(by_arm[arm].get(col.name, {}), baseline, study.confidence)
            cell["paper"] = _paper_value(study, arm, col)
            cell["paper_delta"] = _paper_delta(study, arm, col)
            cells[arm][col.name] = cell
        if arm != study.baseline:
            for name, effect in column_effects(study, scale, arm, by_arm, items or {}).items():
                cells[arm][name]["effect"] = effect
    arms = []
    for arm in plan.arms:
        a = study.arm(arm)
        runs = [r for r in plan.runs_of(arm)]
        done = [records.get(r.key) for r in runs]
        arms.append(
            {
                "name": arm,
                "label": a.label,
                "adapter_weights": dict((weights or {}).get(arm, {})) or None,
                "recipe": runs[0].recipe_ref if runs else study.recipe_ref(a, scale),
                "overrides": study.arm_overrides(a, scale),
                "paper_note": a.paper_note,
                "runs": [
                    {
                        "seed": r.seed,
                        "run_dir": str(r.run_dir),
                        "checkpoint": d.get("checkpoint"),
                        "train_seconds": d.get("train_seconds"),
                        "eval_seconds": d.get("eval_seconds"),
                    }
                    for r, d in zip(runs, done, strict=True)
                    if d is not None
                ],
                "missing_seeds": [r.seed for r, d in zip(runs, done, strict=True) if d is None],
            }
        )
    return {
        "study": study.name,
        "title": study.title,
        "description": study.description,
        "paper_source": study.paper_source,
        "scale": scale,
        "output": str(plan.output),
        "seeds": list(plan.seeds),
        "baseline": study.baseline,
        "primary": study.primary_column(scale),
        "confidence": study.confidence,
        "overrides": list(plan.extra),
        "columns": [
            {
                "name": c.name,
                "task": c.task.at(scale),
                "modality": c.modality,
                "metric": c.metric,
                "higher_is_better": c.higher_is_better,
                "unit": "%" if c.percent else "",
                "gap": list(c.gap) if c.gap else None,
                "note": c.note,
            }
            for c in columns
        ],
        "arms": arms,
        "cells": cells,
        "analyses": _analysis_results(plan, analyses or {}, figures or {}),
        "missing_runs": [r.key for r in plan.runs if records.get(r.key) is None],
        "notes": list(study.notes),
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------------------- markdown


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 10_000_000 else f"{n / 1e6:.2f}M"


def ours_label(arm: Mapping[str, Any]) -> str:
    """The arm's label with its own adapter weights, total / active per audio token (this scale's model)."""
    w = arm.get("adapter_weights")
    if not w:
        return arm["label"]
    return f"{arm['label']} ({_millions(w['total'])} weights, {_millions(w['active'])} active)"


def _num(value: float | None, digits: int, sign: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text.replace("-", "−")


def _digits(unit: str) -> int:
    return 2 if unit == "%" else 3


def _ours(cell: Mapping[str, Any], unit: str, seeds: int) -> str:
    if not cell.get("n"):
        return "not run"
    d = _digits(unit)
    text = (
        _num(cell["mean"], d) if cell["std"] is None else f"{_num(cell['mean'], d)} ± {_num(cell['std'], d)}"
    )
    return text + (f" (n={cell['n']})" if cell["n"] < seeds else "")


def _diff(cell: Mapping[str, Any], unit: str) -> str:
    effect = cell.get("effect")
    if effect is not None:
        return _effect(effect, unit)
    diff = cell.get("diff")
    if not diff:
        return "not run"
    d = _digits(unit)
    if diff["half_width"] is None:
        return f"{_num(diff['mean'], d, sign=True)} (one seed: n/a)"
    return (
        f"{_num(diff['mean'], d, sign=True)} [{_num(diff['low'], d, sign=True)}, "
        f"{_num(diff['high'], d, sign=True)}] {diff['verdict']}"
    )


def _verdict(effect: Mapping[str, Any]) -> str:
    text = effect["verdict"] + (f", {effect['direction']}" if effect.get("direction") else "")
    return f"**{text}**" if effect["verdict"] == DIFFERS else text


def _effect(effect: Mapping[str, Any], unit: str) -> str:
    """``effect [low, high] verdict`` of a column (the corrected verdict)."""
    if effect["mean"] is None:
        return "not run"
    d = _digits(unit)
    if effect["low"] is None:
        return f"{_num(effect['mean'], d, sign=True)} (one seed: n/a)"
    return (
        f"{_num(effect['mean'], d, sign=True)} [{_num(effect['low'], d, sign=True)}, "
        f"{_num(effect['high'], d, sign=True)}] {_verdict(effect)}"
    )


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _evidence(effect: Mapping[str, Any]) -> str:
    if effect["method"] == ITEM_METHOD:
        return (
            f"{effect['n_seeds']} seeds × {effect['n_items']} items "
            f"({effect['items_differing']} seed-item pairs differ)"
        )
    return f"{effect['n_seeds']} seeds, no per-item records (t over seeds)"


def _verdict_table(results: Mapping[str, Any], arm: Mapping[str, Any]) -> list[str]:
    """Per column of one arm: effect, interval, p, corrected p, verdict, minimum detectable effect."""
    conf = round(100 * results["confidence"])
    rows = []
    for c in results["columns"]:
        e = results["cells"][arm["name"]][c["name"]].get("effect")
        if e is None or e["mean"] is None:
            continue
        d = _digits(c["unit"])
        name = (
            c["name"] + (" ↓" if not c["higher_is_better"] else "") + (" (primary)" if e["primary"] else "")
        )
        interval = (
            "—" if e["low"] is None else f"[{_num(e['low'], d, sign=True)}, {_num(e['high'], d, sign=True)}]"
        )
        rows.append(
            [
                f"**{name}**" if e["primary"] else name,
                _num(e["mean"], d, sign=True),
                interval,
                _p(e["p"]),
                _p(e["p_adjusted"]) + ("" if e["primary"] else " (Holm)"),
                _verdict(e),
                "—" if e["mde"] is None else _num(e["mde"], d),
                _evidence(e),
            ]
        )
    head = [
        "column",
        "effect",
        f"{conf}% interval",
        "p",
        "corrected p",
        "verdict",
        "MDE (80 % power)",
        "evidence",
    ]
    return _table(head, rows)


def _paper(value: Any, digits: int = 2, sign: bool = False) -> str:
    """The paper's number as it prints it (2 decimals in the tables, 3 in the figures), or its words."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return _num(float(value), digits, sign=sign)


def _header(columns: Sequence[Mapping[str, Any]]) -> list[str]:
    names = []
    for c in columns:
        name = c["name"] + ("" if c["higher_is_better"] else " ↓")
        names.append(name)
    return names


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def render_markdown(results: Mapping[str, Any]) -> str:
    """``results.md``: the paper's layout (arms x columns), differences, figures, runs, notes."""
    seeds = len(results["seeds"])
    conf = round(100 * results["confidence"])
    columns = results["columns"]
    arms = results["arms"]
    cells = results["cells"]
    base = results["baseline"]
    label = {a["name"]: a["label"] for a in arms}
    lines = [f"# {results['title']}", "", results["description"], ""]
    lines += [
        f"Study `{results['study']}` at **{results['scale']}** scale; seeds "
        f"{', '.join(map(str, results['seeds']))}; baseline arm `{base}`"
        + (f"; overrides for every arm: `{' '.join(results['overrides'])}`" if results["overrides"] else "")
        + f". Written {results['generated']}.",
        "",
        f"Each cell: mean ± sample standard deviation over seeds (n shown when fewer seeds finished). "
        f"Differences: arm − baseline, paired by seed and by test item (same seed, data, budget and "
        f"test set). Where the eval files hold per-item scores, the {conf}% interval and the p-value come "
        "from a paired bootstrap that resamples seeds and, independently, test items (training noise and "
        "test-set sampling; an item both arms get right or wrong adds nothing); otherwise from the t "
        "distribution over seeds (training noise only). The primary column"
        + (f" (**{results['primary']}**)" if results.get("primary") else "")
        + " is judged alone; the other columns of an arm are Holm-corrected together. **differs** when "
        f"the (corrected) p-value is below {1 - results['confidence']:.2f}, **within noise** otherwise. "
        "MDE: the smallest true difference detected with 80 % power at this number of seeds and items "
        "(at the column's level: Holm's first step for corrected columns). Accuracy columns in %; ↓ marks "
        "a column where lower is better."
        + (f" Paper numbers: {results['paper_source']}." if results["paper_source"] else ""),
        "",
    ]
    if results["missing_runs"]:
        lines += [f"**Not finished:** {', '.join(results['missing_runs'])}.", ""]
    if columns:
        head = ["Adapter", *_header(columns)]
        rows = []
        for a in arms:
            row_cells = cells[a["name"]]
            rows.append(
                [f"{ours_label(a)} — ours", *(_ours(row_cells[c["name"]], c["unit"], seeds) for c in columns)]
            )
            paper = [_paper(row_cells[c["name"]]["paper"]) for c in columns]
            if any(p != "—" for p in paper) or a["paper_note"]:
                note = f" ({a['paper_note']})" if a["paper_note"] else ""
                rows.append([f"{a['label']} — paper{note}", *paper])
        lines += ["## Results in the paper's layout", "", *_table(head, rows), ""]
        rows = []
        for a in arms:
            if a["name"] == base:
                continue
            row_cells = cells[a["name"]]
            rows.append(
                [f"{ours_label(a)} — ours", *(_diff(row_cells[c["name"]], c["unit"]) for c in columns)]
            )
            paper = [_paper(row_cells[c["name"]]["paper_delta"], sign=True) for c in columns]
            if any(p != "—" for p in paper):
                rows.append([f"{a['label']} — paper", *paper])
        if rows:
            lines += [f"## Differences from the baseline ({label[base]})", "", *_table(head, rows), ""]
            if results.get("differences_figure"):
                lines += [f"![differences from the baseline]({results['differences_figure']})", ""]
        for a in arms:
            if a["name"] != base:
                lines += [f"## Verdicts: {a['label']} − {label[base]}", "", *_verdict_table(results, a), ""]
        described = [c for c in columns if c["note"] or c["task"]]
        if described:
            lines += ["Columns: " + "; ".join(_describe(c) for c in described) + ".", ""]
    for an in results["analyses"]:
        lines += _render_analysis(an, label, conf, seeds)
    lines += _render_training_conflict(results.get("conflict_over_training"), label)
    lines += ["## Runs", ""]
    rows = []
    for a in arms:
        train = [r["train_seconds"] for r in a["runs"] if r["train_seconds"] is not None]
        evals = [r["eval_seconds"] for r in a["runs"] if r["eval_seconds"] is not None]
        rows.append(
            [
                f"`{a['name']}`",
                a["recipe"] + (f" `{' '.join(a['overrides'])}`" if a["overrides"] else ""),
                f"{len(a['runs'])} of {seeds}"
                + (f" (missing {a['missing_seeds']})" if a["missing_seeds"] else ""),
                _num(sum(train) / len(train) / 60, 1) if train else "—",
                _num(sum(evals) / len(evals) / 60, 1) if evals else "—",
            ]
        )
    lines += _table(["arm", "recipe and overrides", "seeds finished", "train min/run", "eval min/run"], rows)
    lines += [""]
    if results["notes"]:
        lines += ["## Notes", "", *(f"- {n}" for n in results["notes"]), ""]
    return "\n".join(lines)


def _render_training_conflict(data: Mapping[str, Any] | None, label: Mapping[str, str]) -> list[str]:
    """The conflict-over-training figure (``train.conflict_every``) and its first and last probes."""
    if not data:
        return []
    lines = [
        "## Figure: gradient conflict during training",
        "",
        f"![conflict over training]({data['figure']})",
        "",
        "Every `train.conflict_every` steps: the cosine between single-batch adapter gradients of two "
        "domains (speech, sound, music; mean over the pairs), and the noise floor, the cosine between two "
        "disjoint batches of the same domain (mean over domains); the shared path (every adapter weight "
        "but the router and the routed experts; all of a dense adapter) and the routed experts apart. "
        "Across-domain cosines below the floor are conflict beyond sampling noise. Mean over seeds.",
        "",
    ]
    rows = []
    for arm, steps in data["curves"].items():
        ordered = sorted(steps, key=int)
        first, last = steps[ordered[0]], steps[ordered[-1]]
        for part in first:
            if part not in last:
                continue
            rows.append(
                [
                    label.get(arm, arm),
                    part,
                    f"{data['seeds'].get(arm, 0)}",
                    f"{ordered[0]}: {_num(first[part]['cross'], 3, sign=True)} / {_num(first[part]['floor'], 3, sign=True)}",
                    f"{ordered[-1]}: {_num(last[part]['cross'], 3, sign=True)} / {_num(last[part]['floor'], 3, sign=True)}",
                ]
            )
    head = ["arm", "adapter part", "seeds", "first probe: across / floor", "last probe: across / floor"]
    return lines + _table(head, rows) + [""]


def _describe(c: Mapping[str, Any]) -> str:
    what = f"`{c['task']}`" + (" as text" if c["modality"] == "text" else "") if c["task"] else ""
    if c["gap"]:
        what = f"{c['gap'][0]} − {c['gap'][1]}"
    return f"{c['name']} = {what}" + (f" ({c['note']})" if c["note"] else "")


def _render_analysis(an: Mapping[str, Any], label: Mapping[str, str], conf: int, seeds: int) -> list[str]:
    lines = [f"## Figure: {an['title']}", ""]
    if an.get("figure"):
        lines += [
            f"![{an['name']}]({an['figure']})",
            "",
            f"The figure shows seed {an['figure_seed']}, arms side by side; the table is over every seed.",
            "",
        ]
    for arm, why in an["skipped"].items():
        lines += [f"`{arm}`: {why}", ""]
    arms = [a for a in an["arms"] if a not in an["skipped"]]
    ref = an["reference_arm"]
    if an["quantities"]:
        head = ["quantity", *(f"{label[a]} (ours)" for a in arms)]
        head += [f"{label[a]} − {label[ref]}" for a in arms if a != ref]
        head += [f"{label[a]} (paper)" for a in arms if a in an["paper"]]
        rows = []
        for q, by_arm in an["quantities"].items():
            row = [q]
            row += [_ours(by_arm[a], "", seeds) for a in arms]
            row += [_diff(by_arm[a], "") for a in arms if a != ref]
            row += [_paper(an["paper"][a].get(q), digits=3) for a in arms if a in an["paper"]]
            rows.append(row)
        lines += _table(head, rows) + [""]
        note = f"Differences: paired over seeds, {conf}% t interval." if len(arms) > 1 else ""
        if an["kind"] == "conflict":
            note += (
                f" Influence: `{an['influence']}`; `a->b` > 0: a step on domain a's gradient lowers "
                "domain b's loss."
            )
        lines += [note.strip(), ""] if note else []
    if an["paper_note"]:
        lines += [f"The paper: {an['paper_note']}", ""]
    return lines
