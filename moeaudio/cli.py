"""The `moeaudio` command line: thin typer commands over plain functions.

Each command's options are one dataclass declared beside the function that does the work
(``EvalOptions`` in ``moeaudio.eval.evaluate``, ``TrainOptions`` in ``moeaudio.train.launch``, ...);
:func:`moeaudio.options.command` turns it into typer parameters and prints user faults
(:class:`~moeaudio.errors.MoeaudioError`) as one line with exit status 2, and gives every command
``--verbose`` (library warnings are hidden otherwise, :mod:`moeaudio.logs`). What remains here is
choosing between JSON and a table. This is the only module that imports moeaudio lazily, so that
`moeaudio --help` answers without loading torch. Shell completion: ``moeaudio --install-completion``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from typing import Any

import typer

from moeaudio.options import argument, command, option, print_json, warn
from moeaudio.runtime.memory import keep_freed_memory

app = typer.Typer(
    help="moeaudio: audio LLMs with a sparse Mixture-of-Experts adapter. Prepare data, train on DeepSpeed, "
    "evaluate, transcribe, and look inside the experts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
recipes_app = typer.Typer(help="List and show the shipped recipes.", no_args_is_help=True)
studies_app = typer.Typer(
    help="The paper's tables and figures as studies (`moeaudio reproduce`).", no_args_is_help=True
)
bench_app = typer.Typer(help="Benchmarks: ratios measured side by side in one run.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")
app.add_typer(studies_app, name="studies")
app.add_typer(bench_app, name="bench")


def _console():
    from rich.console import Console

    return Console()


def _register(target: typer.Typer, name: str, options_cls: Any, run: Any, **settings: Any) -> None:
    target.command(name, **settings)(command(options_cls, run))


# ----------------------------------------------------------------------------- recipes and data


@dataclass
class RecipeOptions:
    """A recipe and its overrides (``recipes show``)."""

    recipe: str = argument(help="recipe YAML path or shipped name (e.g. quickstart)")
    overrides: list[str] | None = argument(None, "section.key=value overrides, e.g. adapter.top_k=2")


@dataclass
class InspectOptions(RecipeOptions):
    """A recipe, its overrides, and the output form (``inspect``)."""

    as_json: bool = option(False, "print one JSON object", flag="--json")
    world_size: int = option(
        1, "ranks the run will launch on: the global batch, accumulation and steps it resolves to"
    )


def inspect_cmd(opts: InspectOptions) -> None:
    """Model summary without training: parameters (total / trainable / active) and adapter FLOPs."""
    from moeaudio.config import load_recipe
    from moeaudio.inspection import model_summary, print_summary

    summary = model_summary(load_recipe(opts.recipe, opts.overrides or []), opts.world_size)
    print(json.dumps(summary)) if opts.as_json else print_summary(summary)
    for warning in summary["warnings"]:
        warn(warning)


@dataclass
class ListOptions:
    """``recipes list``: the output form."""

    as_json: bool = option(False, "print one JSON list", flag="--json")


def recipes_list(opts: ListOptions) -> None:
    """List the shipped recipes with their descriptions."""
    from rich.table import Table

    from moeaudio.config import list_recipes, load_recipe

    rows = [(name, (r := load_recipe(name)).adapter.kind, r.description) for name in list_recipes()]
    if opts.as_json:
        print_json([{"recipe": n, "adapter": a, "description": d} for n, a, d in rows])
        return
    table = Table("recipe", "adapter", "description")
    for row in rows:
        table.add_row(*row)
    _console().print(table)


def recipes_show(opts: RecipeOptions) -> None:
    """Print a recipe fully resolved (defaults filled in, overrides applied)."""
    from moeaudio.config import load_recipe

    print(load_recipe(opts.recipe, opts.overrides or []).to_yaml())


def studies_list(opts: ListOptions) -> None:
    """List the shipped studies: scales, arms (baseline first) and what each reproduces."""
    from rich.table import Table

    from moeaudio.reproduce.study import list_studies, load_study

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
    _console().print(table)


def prepare_cmd(opts: Any) -> None:
    """Write train/valid/test manifests: the built-in synthetic corpus, or a dataset from its release layout."""
    from dataclasses import asdict

    if opts.source == "features":
        return prepare_features_cmd(opts)
    from moeaudio.data.prepare import run_prepare

    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        report = run_prepare(opts, progress=not opts.as_json)
    if opts.as_json:
        print_json(report.to_dict() if hasattr(report, "to_dict") else asdict(report))


def prepare_features_cmd(opts: Any) -> None:
    """`prepare features RECIPE [overrides]`: the recipe's frozen-encoder features, in cache shards."""
    from moeaudio.config import load_recipe
    from moeaudio.errors import UsageError
    from moeaudio.runtime.features import prepare_features

    if not opts.paths:
        raise UsageError("usage: moeaudio prepare features RECIPE [section.key=value ...] [--workers N]")
    recipe = load_recipe(opts.paths[0], opts.paths[1:])
    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        report = prepare_features(recipe, workers=opts.workers, progress=not opts.as_json)
    if opts.as_json:
        print_json(report)
        return
    print(
        f"{report['clips']} clips: {report['encoded']} encoded, {report['reused']} already cached; "
        f"{report['shards']} new shards, {report['entries']} entries in {report['cache']} "
        f"({report['workers']} workers, {report['seconds']:.1f} s)"
    )


def convert_cmd(opts: Any) -> None:
    """Convert manifests between moeaudio, SLAM-LLM, ms-swift / LLaMA-Factory and NeMo layouts; report
    how each item's task was decided (the peer's tag, or a guess) and what was kept in meta."""
    from moeaudio.data.formats import convert_manifest

    report = convert_manifest(opts.src, opts.dst, opts.src_format, opts.dst_format, task=opts.task)
    print_json(report.to_dict()) if opts.as_json else print("\n".join(report.lines()))


# ----------------------------------------------------------------------------- train, eval, transcribe


def train_cmd(opts: Any) -> None:
    """Train on DeepSpeed (ZeRO 0-3); checkpoints, metrics, loggers, loss PNG, validation table (--json: one object)."""
    from moeaudio.train.launch import train_main

    train_main(opts)


def eval_cmd(opts: Any) -> None:
    """Score one task of a checkpoint; writes results, predictions (and confusion PNG / MMAU file)."""
    from moeaudio.eval.evaluate import eval_json_summary, evaluate, render_eval

    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        result = evaluate(opts, progress=not opts.as_json)
    if opts.as_json:
        print(json.dumps(eval_json_summary(result)))
        return
    _console().print(render_eval(result))
    _console().print(f"results: {result['output']}", highlight=False)


def transcribe_cmd(opts: Any) -> None:
    """Transcribe recordings of any length (windowed, batched); txt, json, srt or vtt output."""
    from moeaudio.eval.transcribe import transcribe_command

    transcribe_command(opts)


def reproduce_cmd(opts: Any) -> None:
    """Reproduce a table or figure of the paper: train every arm x seed, evaluate, analyse, write results.md."""
    from rich.console import Console

    from moeaudio.reproduce.runner import reproduce

    result = reproduce(opts)
    if opts.print_commands:
        print(result["commands"], end="")  # stdout: the commands alone, for a pipe or a file
        Console(stderr=True).print(
            f"wrote {result['path']} and {result['slurm']} (Slurm array)", highlight=False
        )
        return
    out, missing = result["output"], result["missing_runs"]
    _console().print(
        f"results: {out}/results.md, {out}/results.json"
        + (f"; not finished: {', '.join(missing)}" if missing else ""),
        highlight=False,
    )


def export_cmd(opts: Any) -> None:
    """A self-contained folder: encoder weights, LLM (LoRA merged or as a PEFT adapter), tokenizer, recipe, model card."""
    from moeaudio.runtime.export import export_checkpoint

    with contextlib.redirect_stdout(sys.stderr) if opts.as_json else contextlib.nullcontext():
        manifest = export_checkpoint(opts.checkpoint, opts.out, lora=opts.lora, overwrite=opts.overwrite)
    if opts.as_json:
        print_json(manifest)
        return
    _console().print(
        f"exported {manifest['source_checkpoint']} to {manifest['out']} "
        f"({len(manifest['files'])} files; model card: {manifest['out']}/README.md)",
        highlight=False,
    )


# ----------------------------------------------------------------------------- looking inside


def _nonfinite(opts: Any) -> str:
    return "repair" if opts.repair_audio else "error"


def analyze_routing_cmd(opts: Any) -> None:
    """Which experts the audio tokens go to: one recording (timeline) or a manifest (activation matrix)."""
    from moeaudio.analyze import commands
    from moeaudio.analyze.routing import render_activation_table

    opts.validate()
    if opts.audio is not None:
        checkpoint = opts.checkpoint[0] if opts.checkpoint else None
        data, view = commands.analyze_routing_audio(
            opts.audio, checkpoint, opts.png, device=opts.device, nonfinite=_nonfinite(opts)
        )
        print_json(data) if opts.as_json else _console().print(view)
        return
    stats, data = commands.analyze_routing_manifest(
        opts.manifest, opts.checkpoint, opts.by, opts.batch_size, opts.png, opts.limit,
        device=opts.device, progress=not opts.as_json, nonfinite=_nonfinite(opts),
    )  # fmt: skip
    if opts.as_json:
        print_json(data)
        return
    for name, st in stats.items():
        table = render_activation_table(st)
        table.title = f"{name}: {table.title}"
        _console().print(table)
    if opts.png:
        _console().print(f"wrote {opts.png}")


def analyze_conflict_cmd(opts: Any) -> None:
    """Adapter gradient conflict between speech, sound and music batches: cosine and influence matrices."""
    from moeaudio.analyze.commands import analyze_conflict
    from moeaudio.analyze.conflict import render_conflict

    results, data = analyze_conflict(
        opts.manifest, opts.checkpoint, opts.batches, opts.batch_size, opts.seed, opts.lr, opts.include_aux,
        opts.exact, opts.png, opts.limit, device=opts.device, progress=not opts.as_json,
        nonfinite=_nonfinite(opts),
    )  # fmt: skip
    if opts.as_json:
        print_json(data)
        return
    _console().print(render_conflict(results))
    if opts.png:
        _console().print(f"wrote {opts.png}")


def analyze_probe_cmd(opts: Any) -> None:
    """Linear probes at the encoder and adapter outputs: did the encoder hear it, or did the adapter drop it?"""
    from moeaudio.analyze.commands import analyze_probe
    from moeaudio.analyze.probe import render_probe_table

    tasks = [t.strip() for t in opts.tasks.split(",") if t.strip()] if opts.tasks else None
    results, data = analyze_probe(
        opts.checkpoint, opts.train_manifest, opts.eval_manifest, tasks, opts.png,
        device=opts.device, progress=not opts.as_json, nonfinite=_nonfinite(opts),
    )  # fmt: skip
    if opts.as_json:
        print_json(data)
        return
    _console().print(render_probe_table(results))
    if opts.png:
        _console().print(f"wrote {opts.png}")


@dataclass
class BenchAdapterOptions:
    """What `moeaudio bench adapter` takes (every field but ``as_json`` is a ``bench_adapter`` argument)."""

    preset: str = option(
        "routed", "sizes: routed (experts alone) | paper (with the 10240 shared path) | quickstart"
    )
    tokens: str | None = option(
        None, "audio tokens per call, comma-separated for several (default: the preset's)"
    )
    d_in: int | None = option(None, "adapter input width (default: the preset's)")
    d_out: int | None = option(None, "expert output width (default: the preset's)")
    num_experts: int | None = option(None, "routed experts E (default: the preset's)", flag="--experts")
    top_k: int | None = option(None, "experts per token k (default: the preset's)")
    expert_dim: int | None = option(None, "expert hidden width h (default: the preset's)")
    shared_dim: int | None = option(None, "always-on shared MLP width, 0 for none (default: the preset's)")
    device: str = option("cpu", "cpu | cuda")
    dtype: str = option("float32", "float32 | bfloat16 | float16")
    repeats: int = option(5, "timed rounds after one warm-up (median kept)")
    clock: str = option("wall", "wall | cpu (one thread, its CPU time: steady on a busy machine)")
    as_json: bool = option(False, "print one JSON object", flag="--json")


def bench_adapter_cmd(opts: BenchAdapterOptions) -> None:
    """MoE dispatch backends vs the dense FFN of equal total parameters and transformers' Qwen2-MoE."""
    from dataclasses import asdict

    from moeaudio.bench.adapter import bench_adapter, render_bench

    result = bench_adapter(**{k: v for k, v in asdict(opts).items() if k != "as_json"})
    print_json(result) if opts.as_json else _console().print(render_bench(result))


def bench_train_cmd(opts: Any) -> None:
    """Steps/s, tokens/s and memory of a recipe's training step: cached features vs recomputed, DeepSpeed vs a plain loop."""
    from moeaudio.bench.train_step import bench_train, render_bench_train
    from moeaudio.config import load_recipe

    recipe = load_recipe(opts.recipe, opts.overrides or [])
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints; stdout is for the result
        result = bench_train(recipe, steps=opts.steps, rounds=opts.rounds, warmup=opts.warmup)
    print_json(result) if opts.as_json else _console().print(render_bench_train(result))


def serve_cmd(opts: Any) -> None:
    """A model behind OpenAI-compatible audio endpoints (/v1/audio/transcriptions, /v1/chat/completions) and a demo page at /."""
    from moeaudio.serve.main import serve

    serve(opts)


# ----------------------------------------------------------------------------- registration
# Options classes are imported here, at registration, only from light modules: the heavy work
# modules (torch, transformers, deepspeed) load when a command runs.


def _lazy(module: str, name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(module), name)


_register(app, "inspect", InspectOptions, inspect_cmd)
_register(recipes_app, "list", ListOptions, recipes_list)
_register(recipes_app, "show", RecipeOptions, recipes_show)
_register(app, "prepare", _lazy("moeaudio.data.options", "PrepareOptions"), prepare_cmd,
          context_settings={"help_option_names": ["-h", "--help"]})  # fmt: skip
_register(app, "convert", _lazy("moeaudio.data.options", "ConvertOptions"), convert_cmd)
_register(app, "train", _lazy("moeaudio.train.options", "TrainOptions"), train_cmd)
_register(app, "eval", _lazy("moeaudio.eval.options", "EvalOptions"), eval_cmd)
_register(app, "reproduce", _lazy("moeaudio.reproduce.options", "ReproduceOptions"), reproduce_cmd)
_register(studies_app, "list", ListOptions, studies_list)
_register(app, "transcribe", _lazy("moeaudio.eval.options", "TranscribeOptions"), transcribe_cmd)
_register(app, "export", _lazy("moeaudio.runtime.options", "ExportOptions"), export_cmd)
_register(app, "analyze-routing", _lazy("moeaudio.analyze.options", "RoutingOptions"), analyze_routing_cmd)
_register(app, "analyze-conflict", _lazy("moeaudio.analyze.options", "ConflictOptions"), analyze_conflict_cmd)
_register(app, "analyze-probe", _lazy("moeaudio.analyze.options", "ProbeOptions"), analyze_probe_cmd)
_register(bench_app, "adapter", BenchAdapterOptions, bench_adapter_cmd)
_register(bench_app, "train", _lazy("moeaudio.train.options", "BenchTrainOptions"), bench_train_cmd)
_register(app, "serve", _lazy("moeaudio.serve.options", "ServeOptions"), serve_cmd)


def main() -> None:  # pragma: no cover - console entry
    keep_freed_memory()  # a command-line run owns its process: see moeaudio/runtime/memory.py
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
