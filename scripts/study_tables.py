"""Markdown tables of a study's results.json, as docs/reproduction.md shows them.

    python scripts/study_tables.py runs/studies/table1-cpu/results.json [--columns MMAU,asr WER]
    python scripts/study_tables.py runs/studies/table3-cpu/results.json --analysis routing

Every number is read from results.json (what `moeaudio reproduce` wrote); nothing is recomputed.
Cells: mean ± sample sd over seeds; difference rows: arm − baseline, mean [95% interval] verdict.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def _num(v: float | None, digits: int = 1, sign: bool = False) -> str:
    return "—" if v is None else (f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}")


def _cell(x: dict[str, Any] | None, seeds: int, digits: int) -> str:
    if not x or x["mean"] is None:
        return "—"
    out = _num(x["mean"], digits) + ("" if x["std"] is None else f" ± {_num(x['std'], digits)}")
    return out + (f" (n={x['n']})" if x["n"] != seeds else "")


def _diff(d: dict[str, Any] | None, digits: int) -> str:
    if not d or d["n"] == 0:
        return "—"
    if d["low"] is None:
        return f"{_num(d['mean'], digits, True)} (n={d['n']})"
    return f"{_num(d['mean'], digits, True)} [{_num(d['low'], digits, True)}, {_num(d['high'], digits, True)}] {d['verdict']}"


def _rows(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def columns_table(results: dict[str, Any], columns: list[str] | None = None, digits: int = 1) -> str:
    """Arms x columns, then one difference row per non-baseline arm."""
    cols = [c for c in results["columns"] if not c["gap"] and (columns is None or c["name"] in columns)]
    seeds = len(results["seeds"])
    head = ["arm", *(c["name"] + ("" if c["higher_is_better"] else " ↓") for c in cols)]
    rows = []
    for a in results["arms"]:
        rows.append(
            [a["label"], *(_cell(results["cells"][a["name"]][c["name"]], seeds, digits) for c in cols)]
        )
    for a in results["arms"]:
        if a["name"] != results["baseline"]:
            cells = results["cells"][a["name"]]
            rows.append(
                [f"{a['label']} − baseline", *(_diff(cells[c["name"]]["diff"], digits) for c in cols)]
            )
    return _rows(head, rows)


def analysis_table(results: dict[str, Any], name: str, digits: int = 3) -> str:
    """Quantities x arms of one analysis, with each arm's difference from the reference arm."""
    an = next(a for a in results["analyses"] if a["name"] == name)
    ref = an.get("reference_arm")
    arms = [a for a in an["arms"] if a not in an.get("skipped", {})]
    others = [a for a in arms if a != ref]
    head = ["quantity", *arms, *(f"{a} − {ref}" for a in others if ref in arms)]
    seeds = len(results["seeds"])
    rows = []
    for q, per in an["quantities"].items():
        row = [q, *(_cell(per.get(a), seeds, digits) for a in arms)]
        if ref in arms:
            row += [_diff((per.get(a) or {}).get("diff"), digits) for a in others]
        rows.append(row)
    return _rows(head, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--columns", help="comma-separated column names (default: all)")
    parser.add_argument("--analysis", help="an analysis's table instead of the columns'")
    args = parser.parse_args()
    results = json.load(open(args.results))
    if args.analysis:
        print(analysis_table(results, args.analysis))
    else:
        print(columns_table(results, args.columns.split(",") if args.columns else None))


if __name__ == "__main__":
    main()
