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


def main() -> None:  # pragma: no cover - console entry
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
