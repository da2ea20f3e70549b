"""The `moeaudio` command line. Each command is thin: parse, then call one plain function.

Heavy imports (torch, transformers, deepspeed) happen inside the commands so that
`moeaudio --help` answers instantly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="moeaudio: audio LLMs with a sparse Mixture-of-Experts adapter. Prepare data, train on DeepSpeed, "
    "evaluate, transcribe, and look inside the experts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
recipes_app = typer.Typer(help="List and show the shipped recipes.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: ratios measured side by side in one run.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")
app.add_typer(bench_app, name="bench")

Overrides = Annotated[
    list[str] | None, typer.Argument(help="section.key=value overrides, e.g. adapter.top_k=2")
]


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _load(recipe: str, overrides: list[str] | None):
    from moeaudio.config import RecipeError, load_recipe

    try:
        return load_recipe(recipe, overrides or [])
    except RecipeError as exc:
        _fail(str(exc))


@app.command()
def inspect(
    recipe: Annotated[str, typer.Argument(help="recipe YAML path or shipped name (e.g. quickstart)")],
    overrides: Overrides = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Model summary without training: parameters (total / trainable / active) and adapter FLOPs."""
    from moeaudio.summary import model_summary, print_summary

    summary = model_summary(_load(recipe, overrides))
    if as_json:
        print(json.dumps(summary))
    else:
        print_summary(summary)


@recipes_app.command("list")
def recipes_list() -> None:
    """List the shipped recipes with their descriptions."""
    from rich.console import Console
    from rich.table import Table

    from moeaudio.config import list_recipes, load_recipe

    table = Table("recipe", "adapter", "description")
    for name in list_recipes():
        r = load_recipe(name)
        table.add_row(name, r.adapter.kind, r.description)
    Console().print(table)


@recipes_app.command("show")
def recipes_show(recipe: str, overrides: Overrides = None) -> None:
    """Print a recipe fully resolved (defaults filled in, overrides applied)."""
    print(_load(recipe, overrides).to_yaml())


def _parse_options(options: list[str] | None) -> dict:
    import yaml

    parsed = {}
    for text in options or []:
        if "=" not in text:
            _fail(f"--opt '{text}' must look like key=value (e.g. --opt test_fold=5)")
        key, value = text.split("=", 1)
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def prepare(
    source: Annotated[
        str,
        typer.Argument(
            help="synth, librispeech, commonvoice, esc50, gtzan, ravdess, cremad, "
            "iemocap, vocalsound, mmau, voicebench, jsonl, csv, hf"
        ),
    ],
    paths: Annotated[
        list[str],
        typer.Argument(
            help="[SRC] OUT: the dataset's release folder (not for synth), then the output folder"
        ),
    ],
    seed: Annotated[int, typer.Option(help="synth: random seed")] = 0,
    size: Annotated[str, typer.Option(help="synth: tiny | small | default")] = "default",
    opt: Annotated[
        list[str] | None, typer.Option("--opt", help="preparer option key=value (repeatable)")
    ] = None,
) -> None:
    """Write train/valid/test manifests: the built-in synthetic corpus, or a dataset from its release layout."""
    if source == "synth":
        if len(paths) != 1:
            _fail("usage: moeaudio prepare synth OUT")
        from moeaudio.data.synth import make_synth_corpus

        try:
            make_synth_corpus(Path(paths[0]), seed=seed, size=size, progress=True)
        except ValueError as exc:
            _fail(str(exc))
        return
    if len(paths) != 2:
        _fail(f"usage: moeaudio prepare {source} SRC OUT")
    from moeaudio.data.sources.base import get_source, print_summary

    try:
        module = get_source(source)
        report = module.prepare(Path(paths[0]), Path(paths[1]), **_parse_options(opt))
    except (KeyError, TypeError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc).strip("'\""))
    print_summary(report)


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="input manifest")],
    dst: Annotated[str, typer.Argument(help="output manifest")],
    src_format: Annotated[
        str, typer.Option("--from", help="auto | moeaudio | slam | swift | llamafactory | nemo")
    ] = "auto",
    dst_format: Annotated[
        str, typer.Option("--to", help="moeaudio | slam | swift | llamafactory | nemo")
    ] = "moeaudio",
    task: Annotated[str, typer.Option(help="task for formats that do not carry one")] = "asr",
) -> None:
    """Convert manifests between moeaudio, SLAM-LLM, ms-swift / LLaMA-Factory and NeMo layouts."""
    from moeaudio.data.formats import convert as convert_manifest

    try:
        n = convert_manifest(src, dst, src_format, dst_format, task=task)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    print(f"wrote {n} items to {dst} ({dst_format})")


@app.command()
def train(
    recipe: Annotated[str, typer.Argument(help="recipe YAML path or shipped name (e.g. quickstart)")],
    overrides: Overrides = None,
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", help="run directory (default: train.output_dir)")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the run's last complete checkpoint")
    ] = False,
    nproc: Annotated[int, typer.Option("--nproc", help="local processes (data parallel)")] = 1,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="skip the validation pass at the end")] = False,
) -> None:
    """Train on DeepSpeed (ZeRO 0-3); checkpoints, metrics, TensorBoard, loss PNG, validation table."""
    recipe_obj = _load(recipe, overrides)
    if nproc > 1:
        from moeaudio.train.distributed import launch_local

        args = [recipe, *(overrides or [])]
        args += ["--output-dir", output_dir] if output_dir else []
        args += ["--resume"] if resume else []
        args += ["--no-eval"] if no_eval else []
        raise typer.Exit(launch_local(args, nproc))
    from moeaudio.train.trainer import run_train

    try:
        run_train(recipe_obj, output_dir=output_dir, resume=resume, evaluate=not no_eval)
    except FileNotFoundError as exc:
        _fail(str(exc))


# ----------------------------------------------------------------------------- looking inside
# (analyze-routing, analyze-conflict, analyze-probe, bench adapter: logic in moeaudio.analyze.run / moeaudio.bench)

Checkpoints = Annotated[
    list[str] | None,
    typer.Option("--checkpoint", help="checkpoint dir or run dir (repeatable; default: newest under runs/)"),
]


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=1, allow_nan=True))


@app.command("analyze-routing")
def analyze_routing(
    audio: Annotated[str | None, typer.Argument(help="one recording: per-token routing timeline")] = None,
    manifest: Annotated[
        str | None, typer.Option("--manifest", help="manifest: expert x domain activation, load, MI")
    ] = None,
    checkpoint: Checkpoints = None,
    by: Annotated[str, typer.Option("--by", help="manifest mode: group by domain | task")] = "domain",
    png: Annotated[str | None, typer.Option("--png", help="write the figure to this PNG file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="manifest mode: clips per batch")] = 16,
    limit: Annotated[int | None, typer.Option("--limit", help="manifest mode: first N items only")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda")] = "cpu",
) -> None:
    """Which experts the audio tokens go to: one recording (timeline) or a manifest (activation matrix)."""
    from rich.console import Console

    from moeaudio.analyze import run as analyze

    if (audio is None) == (manifest is None):
        _fail("give either AUDIO or --manifest FILE")
    if by not in ("domain", "task"):
        _fail(f"--by must be domain or task, got {by!r}")
    try:
        if audio is not None:
            if checkpoint and len(checkpoint) > 1:
                _fail("AUDIO mode takes one --checkpoint")
            data, view = analyze.analyze_routing_audio(
                audio, checkpoint[0] if checkpoint else None, png, device=device
            )
            if as_json:
                _print_json(data)
            else:
                Console().print(view)
            return
        stats, data = analyze.analyze_routing_manifest(
            manifest, checkpoint, by, batch_size, png, limit, device=device, progress=not as_json
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        _print_json(data)
        return
    from moeaudio.analyze.routing import render_activation_table

    for name, st in stats.items():
        table = render_activation_table(st)
        table.title = f"{name}: {table.title}"
        Console().print(table)
    if png:
        Console().print(f"wrote {png}")


@app.command("analyze-conflict")
def analyze_conflict(
    manifest: Annotated[str, typer.Option("--manifest", help="manifest with speech / sound / music items")],
    checkpoint: Checkpoints = None,
    batches: Annotated[int, typer.Option("--batches", help="single-domain batches per domain")] = 4,
    batch_size: Annotated[int, typer.Option("--batch-size", help="clips per batch")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="batch sampling seed")] = 0,
    lr: Annotated[
        float | None, typer.Option("--lr", help="SGD step for influence scores (default: recipe train.lr)")
    ] = None,
    include_aux: Annotated[
        bool, typer.Option("--include-aux", help="use lm_loss + balance losses (default: task loss only)")
    ] = False,
    exact: Annotated[bool, typer.Option("--exact", help="also measure influence by taking the step")] = False,
    png: Annotated[str | None, typer.Option("--png", help="write the figure to this PNG file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="first N manifest items only")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda")] = "cpu",
) -> None:
    """Adapter gradient conflict between speech, sound and music batches: cosine and influence matrices."""
    from rich.console import Console

    from moeaudio.analyze import run as analyze

    try:
        results, data = analyze.analyze_conflict(
            manifest,
            checkpoint,
            batches,
            batch_size,
            seed,
            lr,
            include_aux,
            exact,
            png,
            limit,
            device=device,
            progress=not as_json,
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        _print_json(data)
        return
    Console().print(analyze.render_conflict(results))
    if png:
        Console().print(f"wrote {png}")


@app.command("analyze-probe")
def analyze_probe(
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="checkpoint or run dir (default: newest under runs/)")
    ] = None,
    train_manifest: Annotated[
        str | None,
        typer.Option("--train-manifest", help="clips the probes are fitted on (default: recipe's train)"),
    ] = None,
    eval_manifest: Annotated[
        str | None, typer.Option("--eval-manifest", help="held-out clips scored (default: recipe's valid)")
    ] = None,
    tasks: Annotated[
        str | None, typer.Option("--tasks", help="comma-separated tasks (default: every classification task)")
    ] = None,
    png: Annotated[str | None, typer.Option("--png", help="write the bar chart to this PNG file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda")] = "cpu",
) -> None:
    """Linear probes at the encoder and adapter outputs: did the encoder hear it, or did the adapter drop it?"""
    from rich.console import Console

    from moeaudio.analyze import run as analyze
    from moeaudio.analyze.probe import render_probe_table

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        results, data = analyze.analyze_probe(
            checkpoint, train_manifest, eval_manifest, task_list, png, device=device, progress=not as_json
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        _print_json(data)
        return
    Console().print(render_probe_table(results))
    if png:
        Console().print(f"wrote {png}")


@bench_app.command("adapter")
def bench_adapter(
    tokens: Annotated[int, typer.Option("--tokens", help="audio tokens per call")] = 4096,
    d_in: Annotated[int, typer.Option("--d-in", help="adapter input width")] = 1536,
    d_out: Annotated[int, typer.Option("--d-out", help="expert output width")] = 256,
    experts: Annotated[int, typer.Option("--experts", help="routed experts E")] = 8,
    top_k: Annotated[int, typer.Option("--top-k", help="experts per token k")] = 4,
    expert_dim: Annotated[int, typer.Option("--expert-dim", help="expert hidden width h")] = 512,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="float32 | bfloat16 | float16")] = "float32",
    repeats: Annotated[int, typer.Option("--repeats", help="timed rounds (best kept)")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """MoE dispatch backends (loop / sort / grouped) vs the dense FFN of equal total parameters."""
    from moeaudio.bench import DTYPES, render_bench
    from moeaudio.bench import bench_adapter as run_bench

    if dtype not in DTYPES:
        _fail(f"--dtype must be one of {', '.join(DTYPES)}")
    try:
        result = run_bench(tokens, d_in, d_out, experts, top_k, expert_dim, device, dtype, repeats)
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
    if as_json:
        _print_json(result)
        return
    from rich.console import Console

    Console().print(render_bench(result))


@app.command("eval")
def eval_cmd(
    task: Annotated[str, typer.Option("--task", help="asr, emotion, sound, mmau, mmsu, intent, mcq, ...")],
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", help="checkpoint or run dir (default: newest under --runs-dir)"),
    ] = None,
    manifest: Annotated[
        str | None, typer.Option("--manifest", help="manifest (default: the recipe's test, else valid split)")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", help="result JSON (default: CHECKPOINT/eval/TASK.json)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object, nothing else")] = False,
    few_shot: Annotated[int | None, typer.Option("--few-shot", help="train examples shown first")] = None,
    num_beams: Annotated[int | None, typer.Option("--num-beams", help="1 = greedy")] = None,
    max_items: Annotated[int | None, typer.Option("--max-items", help="score only the first N items")] = None,
    modality: Annotated[str, typer.Option("--modality", help="audio | text (spoken-question MCQ)")] = "audio",
    runs_dir: Annotated[str, typer.Option("--runs-dir", help="where to look for checkpoints")] = "runs",
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="items per generate call")] = None,
) -> None:
    """Score one task of a checkpoint; writes results, predictions (and confusion PNG / MMAU file)."""
    import contextlib

    from moeaudio.eval.evaluate import EvalError, eval_json_summary, render_eval, run_eval

    try:
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            result = run_eval(
                task, checkpoint, manifest, output, few_shot=few_shot, num_beams=num_beams,
                max_items=max_items, modality=modality, runs_dir=runs_dir, batch_size=batch_size,
                progress=not as_json,
            )  # fmt: skip
    except (EvalError, FileNotFoundError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(eval_json_summary(result)))
        return
    from rich.console import Console

    console = Console()
    console.print(render_eval(result))
    console.print(f"results: {result['output']}", highlight=False)


@app.command()
def transcribe(
    audio: Annotated[list[str], typer.Argument(help="audio files, directories (recursive) or globs")],
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="checkpoint or run dir (default: newest under runs/)")
    ] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="instruction (default: transcribe)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="txt | json | srt | vtt")] = "txt",
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", help="one file per input (default: stdout)")
    ] = None,
    window: Annotated[
        float | None, typer.Option("--window", help="seconds per window (default 30, the encoder limit)")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="windows per generate call")] = 8,
) -> None:
    """Transcribe recordings of any length (windowed, batched); txt, json, srt or vtt output."""
    from moeaudio.eval.evaluate import EvalError
    from moeaudio.eval.transcribe import run_transcribe

    try:
        run_transcribe(audio, checkpoint, prompt, fmt, output_dir, window, batch_size)
    except (EvalError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def main() -> None:  # pragma: no cover - console entry
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
