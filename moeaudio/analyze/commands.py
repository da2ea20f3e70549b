"""`moeaudio analyze-routing | analyze-conflict | analyze-probe`: a typed function per analysis, and
the command beside it.

Each ``analyze_*`` function (what :mod:`moeaudio.api` and ``moeaudio reproduce`` call) returns the
results and their JSON view; each ``*_command(opts)`` passes the command's options to it by name and
prints the JSON or renders the tables with the renderers beside each result type
(``routing.render_activation_table``, ``conflict.render_conflict``, ``probe.render_probe_table``).
The measurements on a loaded model are :mod:`moeaudio.analyze.measure`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType

from moeaudio.analyze.conflict import plot_conflict, render_conflict, result_from_json
from moeaudio.analyze.measure import (
    CONFLICT_DOMAINS,
    _routers,
    checkpoint_name,
    conflict_probe,
    domain_examples,
    route_audio,
    routing_report,
)
from moeaudio.analyze.options import ConflictOptions, ProbeOptions, RoutingOptions
from moeaudio.analyze.probe import ProbeResult, plot_probes, probe_tasks, render_probe_table, results_to_json
from moeaudio.analyze.routing import (
    RoutingStats,
    plot_activation_heatmap,
    plot_token_timeline,
    render_activation_table,
    render_timeline,
)
from moeaudio.config import with_settings
from moeaudio.data.audio import NonFinite, check_audio_file, load_audio
from moeaudio.errors import MissingDataError, NoRouterError, UsageError
from moeaudio.io_utils import check_output_file
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.options import print_json
from moeaudio.runtime.checkpoint import Checkpoint, load_model, open_checkpoint, resolve_checkpoint
from moeaudio.runtime.device import pick_device
from moeaudio.runtime.examples import checked_items, load_manifest_examples, manifest_path
from moeaudio.runtime.windows import check_clip_length

__all__ = [
    "analyze_conflict",
    "analyze_probe",
    "analyze_routing_audio",
    "analyze_routing_manifest",
    "conflict_command",
    "probe_command",
    "routing_command",
]


def analyze_routing_audio(
    audio: str | Path,
    checkpoint: str | Path | None = None,
    png: str | Path | None = None,
    layer: int = 0,
    device: str = "cpu",
    nonfinite: NonFinite = "error",
) -> tuple[dict[str, Any], RenderableType]:
    """One recording: per-token routing JSON (``tokens``: ``time``, ``experts``, ``gates``,
    ``probs``), the rich timeline, and optionally the spectrogram-over-routing PNG.

    A recording longer than the encoder accepts is routed window by window (as ``transcribe`` cuts
    it), so the tokens cover all of it; ``duration`` is the audio routed and ``windows`` their spans.
    """
    pick_device(device)
    check_output_file(png, "--png")
    check_audio_file(audio)  # a bad file is named before the model loads
    ckpt = open_checkpoint(resolve_checkpoint(checkpoint))
    model = load_model(ckpt, device)
    _routers(model)
    sr = model.encoder.sample_rate
    wave = load_audio(audio, sr, nonfinite=nonfinite)
    check_clip_length(model, wave, audio)
    routed = route_audio(model, wave, layer=layer)
    data = {"audio": str(audio), "checkpoint": str(ckpt.path), "duration": len(wave) / sr, **routed.to_json()}
    if png is not None:
        plot_token_timeline(
            wave, sr, routed.expert_ids, routed.gates, routed.num_experts, routed.frame_seconds, png
        )
        data["png"] = str(png)
    view = render_timeline(routed.expert_ids, routed.gates, routed.num_experts, routed.frame_seconds)
    return data, view


def _checked_before_loading(
    manifest: str | Path, ckpts: Sequence[Checkpoint], limit: int | None = None
) -> None:
    """The manifest checked against each checkpoint's recipe (tasks, audio) before a model loads."""
    for ckpt in ckpts:
        checked_items(manifest, ckpt.recipe, limit=limit)


def _opened(checkpoints: Sequence[str | Path] | None) -> list[Checkpoint]:
    """The checkpoints asked for (none: the newest under runs/), each checked and its recipe parsed once."""
    return [open_checkpoint(resolve_checkpoint(c)) for c in (checkpoints or [None])]


def _load(ckpt: Checkpoint, device: str, nonfinite: NonFinite) -> AudioLLM:
    """The model, its recipe reading audio with ``nonfinite`` (a new recipe: the checkpoint's is kept)."""
    recipe = with_settings(ckpt.recipe, {"data.nonfinite_audio": nonfinite}, "--repair-audio")
    return load_model(replace(ckpt, recipe=recipe), device)


def analyze_routing_manifest(
    manifest: str | Path,
    checkpoints: Sequence[str | Path] | None = None,
    by: str = "domain",
    batch_size: int = 16,
    png: str | Path | None = None,
    limit: int | None = None,
    layer: int = 0,
    device: str = "cpu",
    progress: bool = False,
    nonfinite: NonFinite = "error",
) -> tuple[dict[str, RoutingStats], dict[str, Any]]:
    """Routing statistics per checkpoint over a manifest, the JSON view and the optional PNG.

    JSON: one checkpoint -> ``activation``, ``load``, ``maxvio``, ``entropy``,
    ``mutual_information`` (+ ``normalized_entropy``, ``tokens_per_group``) at top level; several ->
    ``{name: those keys}``. Every checkpoint must be a MoE (:class:`NoRouterError` otherwise).
    """
    pick_device(device)
    check_output_file(png, "--png")
    ckpts = _opened(checkpoints)
    _checked_before_loading(manifest, ckpts, limit)
    stats: dict[str, RoutingStats] = {}
    for ckpt in ckpts:
        path = ckpt.path
        name = checkpoint_name(path, list(stats))
        model = _load(ckpt, device, nonfinite)
        try:
            _routers(model)
        except NoRouterError as exc:
            raise NoRouterError(f"{path}: {exc}") from None
        examples = load_manifest_examples(model, manifest, progress=progress, limit=limit)
        if not examples:
            raise MissingDataError(f"{manifest}: no usable items for {path}")
        stats[name] = routing_report(model, examples, by, batch_size, layer, progress)
    views = {
        name: {"checkpoint": str(p), **s.to_json()}
        for (name, s), p in zip(stats.items(), [c.path for c in ckpts], strict=True)
    }
    data: dict[str, Any] = next(iter(views.values())) if len(views) == 1 else dict(views)
    if png is not None:
        plot_activation_heatmap(stats, png)
    return stats, data


def analyze_conflict(
    manifest: str | Path,
    checkpoints: Sequence[str | Path] | None = None,
    num_batches: int = 4,
    batch_size: int = 8,
    seed: int = 0,
    lr: float | None = None,
    include_aux: bool = False,
    exact: bool = False,
    png: str | Path | None = None,
    limit: int | None = None,
    device: str = "cpu",
    progress: bool = False,
    nonfinite: NonFinite = "error",
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """:func:`conflict_probe` per checkpoint on a manifest's speech/sound/music items.

    Returns the per-checkpoint results and the JSON view (one checkpoint: top level; several:
    keyed by name). ``png`` draws every checkpoint side by side (``plot_conflict``). ``lr``
    defaults to each checkpoint's ``train.lr``.
    """
    if num_batches < 1 or batch_size < 1:
        raise UsageError(f"--batches and --batch-size must be >= 1 (got {num_batches} and {batch_size})")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise UsageError(f"--lr must be a positive number (got {lr})")
    pick_device(device)
    check_output_file(png, "--png")
    ckpts = _opened(checkpoints)
    _checked_before_loading(manifest, ckpts, limit)
    results: dict[str, dict[str, Any]] = {}
    for ckpt in ckpts:
        path = ckpt.path
        name = checkpoint_name(path, list(results))
        model = _load(ckpt, device, nonfinite)
        by_domain = domain_examples(load_manifest_examples(model, manifest, progress=progress, limit=limit))
        if len(by_domain) < 2:
            raise MissingDataError(
                f"{manifest}: need items of at least two of {CONFLICT_DOMAINS}, found {sorted(by_domain)}"
            )
        res = conflict_probe(
            model, by_domain, num_batches, batch_size, seed, lr, include_aux, exact, progress=progress
        )
        res["checkpoint"] = str(path)
        res["adapter"] = model.recipe.adapter.kind
        results[name] = res
    data: dict[str, Any] = next(iter(results.values())) if len(results) == 1 else dict(results)
    if png is not None:
        key = "influence_exact" if exact else "influence"
        plot_conflict({n: result_from_json(r) for n, r in results.items()}, png, influence_key=key)
    return results, data


def analyze_probe(
    checkpoint: str | Path | None = None,
    train_manifest: str | Path | None = None,
    eval_manifest: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    png: str | Path | None = None,
    device: str = "cpu",
    progress: bool = False,
    nonfinite: NonFinite = "error",
) -> tuple[list[ProbeResult], dict[str, Any]]:
    """Linear probes (:mod:`moeaudio.analyze.probe`) for one checkpoint.

    Manifests default to the checkpoint recipe's train and valid splits. Returns the results and
    their JSON view.
    """
    pick_device(device)
    check_output_file(png, "--png")
    ckpt = open_checkpoint(resolve_checkpoint(checkpoint))
    path, recipe = ckpt.path, ckpt.recipe
    train_path = Path(train_manifest) if train_manifest else manifest_path(recipe, "train")
    eval_path = Path(eval_manifest) if eval_manifest else manifest_path(recipe, "valid")
    for manifest in (train_path, eval_path):
        checked_items(manifest, recipe)
    model = _load(ckpt, device, nonfinite)
    train = load_manifest_examples(model, train_path, progress=progress)
    held_out = load_manifest_examples(model, eval_path, progress=progress)
    results = probe_tasks(model, train, held_out, tasks)
    data = {
        "checkpoint": str(path),
        "train_manifest": str(train_path),
        "eval_manifest": str(eval_path),
        "probes": results_to_json(results),
    }
    if png is not None:
        plot_probes(results, png)
    return results, data


# ----------------------------------------------------------------------------- the commands


def _nonfinite(opts: RoutingOptions | ConflictOptions | ProbeOptions) -> NonFinite:
    return "repair" if opts.repair_audio else "error"


def _show(data: dict[str, Any], tables: list[RenderableType], as_json: bool, png: str | None) -> None:
    if as_json:
        print_json(data)
        return
    console = Console()
    for table in tables:
        console.print(table)
    if png:
        console.print(f"wrote {png}")


def routing_command(opts: RoutingOptions) -> None:
    opts.validate()
    if opts.audio is not None:
        checkpoint = opts.checkpoint[0] if opts.checkpoint else None
        data, view = analyze_routing_audio(
            opts.audio, checkpoint, opts.png, device=opts.device, nonfinite=_nonfinite(opts)
        )
        print_json(data) if opts.as_json else Console().print(view)
        return
    stats, data = analyze_routing_manifest(
        opts.manifest, checkpoints=opts.checkpoint, by=opts.by, batch_size=opts.batch_size, png=opts.png,
        limit=opts.limit, device=opts.device, progress=not opts.as_json, nonfinite=_nonfinite(opts),
    )  # fmt: skip
    tables = []
    for name, st in stats.items():
        table = render_activation_table(st)
        table.title = f"{name}: {table.title}"
        tables.append(table)
    _show(data, tables, opts.as_json, opts.png)


def conflict_command(opts: ConflictOptions) -> None:
    results, data = analyze_conflict(
        opts.manifest, checkpoints=opts.checkpoint, num_batches=opts.batches, batch_size=opts.batch_size,
        seed=opts.seed, lr=opts.lr, include_aux=opts.include_aux, exact=opts.exact, png=opts.png,
        limit=opts.limit, device=opts.device, progress=not opts.as_json, nonfinite=_nonfinite(opts),
    )  # fmt: skip
    _show(data, [render_conflict(results)], opts.as_json, opts.png)


def probe_command(opts: ProbeOptions) -> None:
    tasks = [t.strip() for t in opts.tasks.split(",") if t.strip()] if opts.tasks else None
    results, data = analyze_probe(
        opts.checkpoint, train_manifest=opts.train_manifest, eval_manifest=opts.eval_manifest, tasks=tasks,
        png=opts.png, device=opts.device, progress=not opts.as_json, nonfinite=_nonfinite(opts),
    )  # fmt: skip
    _show(data, [render_probe_table(results)], opts.as_json, opts.png)
