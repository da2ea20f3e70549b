"""`moeaudio inspect` (and `recipes list | show`): the model a recipe describes, sized without
training or downloading.

The adapter is built on the meta device (no memory, so paper scale is free); encoder and LLM
sizes come from their configs when those are available offline, else from the widths the
recipe declares.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from moeaudio.config import Recipe, list_recipes, load_recipe
from moeaudio.data.feature_cache import state_bytes_per_second
from moeaudio.data.mixture import normalised_weights
from moeaudio.errors import MissingDataError
from moeaudio.model.adapters import build_adapter
from moeaudio.model.encoder import FrameStacker, encoder_config
from moeaudio.model.llm import llm_meta_param_count
from moeaudio.model.whisper_offline import OFFLINE_WHISPER_ID
from moeaudio.options import InspectOptions, ListOptions, RecipeOptions, print_json, warn
from moeaudio.runtime.budget import resolve_budget
from moeaudio.runtime.examples import manifest_path, uses_cache
from moeaudio.runtime.stage_plan import stage_summary
from moeaudio.runtime.vocabulary import corpus_tokenizer


def adapter_summary(recipe: Recipe) -> dict[str, Any]:
    with torch.device("meta"):
        stacker = FrameStacker(recipe.encoder.frame_dim, recipe.encoder.stack, recipe.encoder.projection_dim)
        adapter = build_adapter(recipe.adapter, stacker.out_dim, recipe.llm.hidden_size)
    counts = adapter.param_counts()
    frontend = sum(p.numel() for p in stacker.parameters())
    return {
        "adapter_kind": recipe.adapter.kind,
        "adapter_in_dim": stacker.out_dim,
        "adapter_out_dim": recipe.llm.hidden_size,
        "adapter_params_total": counts["total"],
        "adapter_params_active": counts["active"],
        "adapter_params_breakdown": {k: v for k, v in counts.items() if k not in ("total", "active")},
        "adapter_flops_per_audio_token": adapter.flops_per_token(),
        "frontend_params": frontend,
        "audio_tokens_per_second": recipe.encoder.frame_rate / recipe.encoder.stack,
    }


def encoder_param_count(recipe: Recipe) -> int | None:
    """Encoder parameters from its config (no weights loaded, :func:`encoder_config`, the config
    training builds it from); None when that is not available offline."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    try:
        config = encoder_config(recipe.encoder)
    except (OSError, ImportError, ValueError):
        return None
    if getattr(config, "model_type", "") != "whisper":
        return None
    with torch.device("meta"):
        encoder = WhisperEncoder(config)
    return sum(p.numel() for p in encoder.parameters())


def _llm_params(recipe: Recipe) -> int | None:
    """The LLM's size; with ``llm.vocab: corpus`` it follows the train split (None before it exists)."""
    if recipe.llm.vocab != "corpus":
        return llm_meta_param_count(recipe.llm)
    try:
        return llm_meta_param_count(recipe.llm, len(corpus_tokenizer(recipe)))
    except MissingDataError:
        return None


def training_summary(recipe: Recipe, world_size: int = 1) -> dict[str, Any]:
    """The budget on ``world_size`` ranks (:func:`resolve_budget`), the mixture's normalised weights and
    the feature cache's size per hour of audio (what a cached run will ask of the disk)."""
    mixture = recipe.data.mixture or []
    weights = normalised_weights([m.weight for m in mixture]) if mixture else []
    cache = uses_cache(recipe)
    per_second = state_bytes_per_second(recipe.encoder.frame_dim, recipe.encoder.frame_rate)
    return {
        "budget": resolve_budget(recipe, world_size).as_dict(),
        "mixture": [
            {"name": m.name, "manifest": m.manifest, "weight": m.weight, "share": round(float(w), 6)}
            for m, w in zip(mixture, weights, strict=True)
        ],
        "feature_cache": {
            "folder": recipe.data.feature_cache if cache else None,
            "bytes_per_audio_hour": per_second * 3600,
        },
    }


def model_summary(recipe: Recipe, world_size: int = 1) -> dict[str, Any]:
    """Everything `inspect --json` prints; the budget as launched on ``world_size`` ranks."""
    summary = adapter_summary(recipe)
    summary["encoder_params"] = encoder_param_count(recipe)
    summary["llm_params"] = _llm_params(recipe)
    summary["trainable"] = {
        "encoder": not recipe.encoder.freeze,
        "adapter": True,
        "llm": "lora" if recipe.llm.lora_r > 0 else not recipe.llm.freeze,
    }
    summary["stages"] = stage_summary(recipe)  # [] for a recipe without train.stages
    summary["training"] = training_summary(recipe, world_size)
    summary["recipe"] = recipe.model_dump(mode="json")
    summary["warnings"] = availability_warnings(recipe, summary)
    return summary


def availability_warnings(recipe: Recipe, summary: dict[str, Any]) -> list[str]:
    """What `inspect` could not size because a named model is not available offline: said, not hidden
    behind a blank (``train`` will need to download it, or fail naming the key)."""
    out = []
    for key, name, count in (
        ("encoder.name", recipe.encoder.name, summary["encoder_params"]),
        ("llm.name", recipe.llm.name, summary["llm_params"]),
    ):
        if count is None and name not in ("tiny", OFFLINE_WHISPER_ID):
            out.append(
                f"{key} {name!r} is not available offline (not a local model directory, not in the Hugging Face "
                "cache): its parameters are not counted, and `moeaudio train` will have to download it (or "
                "fail, naming this key, when offline)"
            )
    if recipe.llm.vocab == "corpus" and summary["llm_params"] is None:
        out.append(
            f"llm.vocab=corpus sizes the LLM's vocabulary from the train split ({manifest_path(recipe, 'train')}), "
            "which is not there yet: its parameters are not counted"
        )
    return out


def print_summary(summary: dict[str, Any]) -> None:
    """Rich tables: parameters per part, then the adapter breakdown, then the resolved recipe."""
    import yaml

    def fmt(n: int | None) -> str:
        return "unknown offline" if n is None else f"{n:,}"

    console = Console()
    parts = Table("part", "parameters", "trainable", "active per audio token", title="model")
    parts.add_row("encoder", fmt(summary["encoder_params"]), str(summary["trainable"]["encoder"]), "all")
    parts.add_row("frame stacking / projection", fmt(summary["frontend_params"]), "True", "all")
    parts.add_row(
        f"adapter ({summary['adapter_kind']})",
        fmt(summary["adapter_params_total"]),
        "True",
        fmt(summary["adapter_params_active"]),
    )
    parts.add_row("llm", fmt(summary["llm_params"]), str(summary["trainable"]["llm"]), "all")
    console.print(parts)
    detail = Table("adapter", "value", title="adapter detail")
    for key, value in summary["adapter_params_breakdown"].items():
        detail.add_row(key, fmt(value))
    detail.add_row("in -> out width", f"{summary['adapter_in_dim']} -> {summary['adapter_out_dim']}")
    detail.add_row("FLOPs per audio token", fmt(summary["adapter_flops_per_audio_token"]))
    detail.add_row("audio tokens per second", f"{summary['audio_tokens_per_second']:g}")
    console.print(detail)
    if summary.get("stages"):
        stages = Table(
            "stage", "objective", "trains", "tasks", "steps", "lr", "micro-batch", title="training stages"
        )
        for row in summary["stages"]:
            tasks = row["tasks"] if isinstance(row["tasks"], str) else ", ".join(row["tasks"])
            stages.add_row(
                row["stage"], row["objective"], ", ".join(row["trains"]), tasks, str(row["steps"]),
                f"{row['lr']:g}", str(row["micro_batch_size"]),
            )  # fmt: skip
        console.print(stages)
    training = summary["training"]
    budget = training["budget"]
    table = Table("training", "value", title=f"budget on {budget['world_size']} rank(s)")
    table.add_row(
        "global batch (examples per step)", str(budget["global_batch_size"] or "varies (max_batch_seconds)")
    )
    table.add_row(
        "micro-batch x grad_accum x ranks",
        f"{budget['micro_batch_size']} x {budget['grad_accum']} x {budget['world_size']}",
    )
    table.add_row("steps", f"{budget['max_steps']:,} (from {budget['steps_from']})")
    if budget["total_tokens"] is not None:
        table.add_row(
            "tokens (steps x per step)",
            f"{budget['total_tokens']:,.0f} ({budget['tokens_per_step']:,.0f} per step)",
        )
    for m in training["mixture"]:
        table.add_row(f"mixture: {m['name']}", f"{m['share']:.1%} of micro-batches ({m['manifest']})")
    cache = training["feature_cache"]
    table.add_row(
        "feature cache",
        "off (the encoder runs in the step)"
        if cache["folder"] is None
        else f"{cache['folder']}: {cache['bytes_per_audio_hour'] / 1e9:.2f} GB per hour of audio",
    )
    console.print(table)
    console.print("[bold]resolved recipe[/]")
    console.print(yaml.safe_dump(summary["recipe"], sort_keys=False), highlight=False)


# ----------------------------------------------------------------------------- the commands


def inspect_command(opts: InspectOptions) -> None:
    summary = model_summary(load_recipe(opts.recipe, opts.overrides or []), opts.world_size)
    print(json.dumps(summary)) if opts.as_json else print_summary(summary)
    for warning in summary["warnings"]:
        warn(warning)


def recipes_list_command(opts: ListOptions) -> None:
    rows = [(name, (r := load_recipe(name)).adapter.kind, r.description) for name in list_recipes()]
    if opts.as_json:
        print_json([{"recipe": n, "adapter": a, "description": d} for n, a, d in rows])
        return
    table = Table("recipe", "adapter", "description")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def recipes_show_command(opts: RecipeOptions) -> None:
    print(load_recipe(opts.recipe, opts.overrides or []).to_yaml())
