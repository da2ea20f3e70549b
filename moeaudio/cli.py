"""The `moeaudio` command line: the table of commands, nothing else.

Every command follows one convention. Its options are a dataclass in its package's light
``options.py`` (no torch); the command is ``<package>/commands.py``'s ``<name>_command(opts)``, a few
lines over the typed library function beside it (``eval_command`` over ``evaluate``,
``train_command`` over ``train_recipe``, ...) that prints JSON or a table. Flags that are recipe
settings are merged into the recipe in one place (:func:`moeaudio.config.with_settings`).
:func:`moeaudio.options.command` turns an options class into typer parameters plus ``--verbose`` and
prints user faults (:class:`~moeaudio.errors.MoeaudioError`) as one line with exit status 2.

This module only names the commands: a command's module is imported when it runs, so
`moeaudio --help` answers without loading torch (the only lazy imports of the package:
tests/test_layers.py). Shell completion: ``moeaudio --install-completion``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from moeaudio.options import command
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

# (group, name, options "module:class", command "module:function", help). The options modules are
# light and imported at registration; the command's module when the command runs.
COMMANDS: list[tuple[typer.Typer, str, str, str, str]] = [
    (app, "inspect", "moeaudio.options:InspectOptions", "moeaudio.inspection:inspect_command",
     "Model summary without training: parameters (total / trainable / active) and adapter FLOPs."),
    (recipes_app, "list", "moeaudio.options:ListOptions", "moeaudio.inspection:recipes_list_command",
     "List the shipped recipes with their descriptions."),
    (recipes_app, "show", "moeaudio.options:RecipeOptions", "moeaudio.inspection:recipes_show_command",
     "Print a recipe fully resolved (defaults filled in, overrides applied)."),
    (app, "prepare", "moeaudio.data.options:PrepareOptions", "moeaudio.data.commands:prepare_command",
     "Write train/valid/test manifests: the built-in synthetic corpus, or a dataset from its release layout."),
    (app, "prepare-features", "moeaudio.runtime.options:FeaturesOptions", "moeaudio.runtime.commands:features_command",
     "Fill a recipe's frozen-encoder feature cache (shards) ahead of training; resumable, N workers."),
    (app, "convert", "moeaudio.data.options:ConvertOptions", "moeaudio.data.commands:convert_command",
     "Convert manifests between moeaudio, SLAM-LLM, ms-swift / LLaMA-Factory and NeMo layouts; report "
     "how each item's task was decided (the peer's tag, or a guess) and what was kept in meta."),
    (app, "train", "moeaudio.train.options:TrainOptions", "moeaudio.train.commands:train_command",
     "Train on DeepSpeed (ZeRO 0-3); checkpoints, metrics, loggers, loss PNG, validation table (--json: one object)."),
    (app, "eval", "moeaudio.eval.options:EvalOptions", "moeaudio.eval.commands:eval_command",
     "Score one task of a checkpoint; writes results, predictions (and confusion PNG / MMAU file)."),
    (app, "reproduce", "moeaudio.reproduce.options:ReproduceOptions", "moeaudio.reproduce.commands:reproduce_command",
     "Reproduce a table or figure of the paper: train every arm x seed, evaluate, analyse, write results.md."),
    (studies_app, "list", "moeaudio.options:ListOptions", "moeaudio.reproduce.commands:studies_list_command",
     "List the shipped studies: scales, arms (baseline first) and what each reproduces."),
    (app, "transcribe", "moeaudio.eval.options:TranscribeOptions", "moeaudio.eval.commands:transcribe_command",
     "Transcribe recordings of any length (windowed, batched); txt, json, srt or vtt output."),
    (app, "export", "moeaudio.runtime.options:ExportOptions", "moeaudio.runtime.commands:export_command",
     "A self-contained folder: encoder weights, LLM (LoRA merged or as a PEFT adapter), tokenizer, recipe, model card."),
    (app, "analyze-routing", "moeaudio.analyze.options:RoutingOptions", "moeaudio.analyze.commands:routing_command",
     "Which experts the audio tokens go to: one recording (timeline) or a manifest (activation matrix)."),
    (app, "analyze-conflict", "moeaudio.analyze.options:ConflictOptions", "moeaudio.analyze.commands:conflict_command",
     "Adapter gradient conflict between speech, sound and music batches: cosine and influence matrices."),
    (app, "analyze-probe", "moeaudio.analyze.options:ProbeOptions", "moeaudio.analyze.commands:probe_command",
     "Linear probes at the encoder and adapter outputs: did the encoder hear it, or did the adapter drop it?"),
    (bench_app, "adapter", "moeaudio.bench.options:BenchAdapterOptions", "moeaudio.bench.commands:adapter_command",
     "MoE dispatch backends vs the dense FFN of equal total parameters and transformers' Qwen2-MoE."),
    (bench_app, "train", "moeaudio.bench.options:BenchTrainOptions", "moeaudio.bench.commands:train_command",
     "Steps/s, tokens/s and memory of a recipe's training step: cached features vs recomputed, DeepSpeed vs a plain loop."),
    (bench_app, "gpu-smoke", "moeaudio.bench.options:GpuSmokeOptions", "moeaudio.bench.commands:gpu_smoke_command",
     "The paper's Table 1 recipes, cut to a few layers, 20 bf16 ZeRO-2 steps with grouped-GEMM dispatch on one GPU."),
    (app, "serve", "moeaudio.serve.options:ServeOptions", "moeaudio.serve.main:serve",
     "A model behind OpenAI-compatible audio endpoints (/v1/audio/transcriptions, /v1/chat/completions) and a demo page at /."),
]  # fmt: skip
#: Extra typer settings per command name.
SETTINGS: dict[str, dict[str, Any]] = {
    "prepare": {"context_settings": {"help_option_names": ["-h", "--help"]}}
}


def _lazy(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _register(group: typer.Typer, name: str, options: str, run: str, help: str) -> None:
    def run_command(opts: Any) -> Any:
        return _lazy(run)(opts)

    run_command.__doc__ = help
    group.command(name, **SETTINGS.get(name, {}))(command(_lazy(options), run_command))


for entry in COMMANDS:
    _register(*entry)


def main() -> None:  # pragma: no cover - console entry
    keep_freed_memory()  # a command-line run owns its process: see moeaudio/runtime/memory.py
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
