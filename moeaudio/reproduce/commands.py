"""`moeaudio reproduce` and `moeaudio studies list`: the options in, results (or a list) out."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from moeaudio.options import ListOptions, print_json
from moeaudio.reproduce.options import ReproduceOptions
from moeaudio.reproduce.runner import reproduce
from moeaudio.reproduce.study import list_studies, load_study

__all__ = ["reproduce_command", "studies_list_command"]


def reproduce_command(opts: ReproduceOptions) -> None:
    result = reproduce(opts)
    if opts.print_commands:
        print(result["commands"], end="")  # stdout: the commands alone, for a pipe or a file
        Console(stderr=True).print(
            f"wrote {result['path']} and {result['slurm']} (Slurm array)", highlight=False
        )
        return
    out, missing = result["output"], result["missing_runs"]
    Console().print(
        f"results: {out}/results.md, {out}/results.json"
        + (f"; not finished: {', '.join(missing)}" if missing else ""),
        highlight=False,
    )


def studies_list_command(opts: ListOptions) -> None:
    rows = []
    for name in list_studies():
        s = load_study(name)
        arms = [s.baseline, *(a for a in s.arm_names if a != s.baseline)]
        rows.append(
            {"study": name, "scales": list(s.scales), "arms": arms, "seeds": len(s.seeds), "title": s.title}
        )
    if opts.as_json:
        print_json(rows)
        return
    table = Table("study", "scales", "arms", "seeds", "title")
    for r in rows:
        table.add_row(r["study"], ", ".join(r["scales"]), ", ".join(r["arms"]), str(r["seeds"]), r["title"])
    Console().print(table)
