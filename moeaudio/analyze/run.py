"""Model wiring for the analyses: checkpoints + audio/manifests -> routing and gradient conflict.

``routing.py`` and ``conflict.py`` are pure functions on tensors and callables; this module runs a
loaded ``AudioLLM`` to produce their inputs and is what the ``moeaudio analyze-routing`` /
``analyze-conflict`` commands call:

* :func:`route_audio` / :func:`route_examples` -- which experts every audio token went to (router
  decisions captured with :func:`moeaudio.model.moe.capture_routing` on the model's audio path only;
  the LLM does not run).
* :func:`routing_report` -- expert x domain (or task) activation, load, MaxVio, entropy and MI over a
  manifest, batched.
* :func:`conflict_probe` -- adapter-gradient cosines and influence between single-domain batches;
  the trainer can call it every ``train.conflict_every`` steps, the CLI calls it per checkpoint.

The conflict loss is the **task loss only** (``model(batch)["lm_loss"]``, next-token prediction on
the response), as in the paper's figure; the balance/z losses are excluded unless
``include_aux=True`` (then ``model(batch)["loss"]``, what the optimiser sees).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from moeaudio.analyze.conflict import ConflictResult, conflict_analysis, unflatten_like
from moeaudio.analyze.routing import RoutingStats, per_token_routing, routing_stats

if TYPE_CHECKING:  # pragma: no cover - typing only
    from moeaudio.model.audio_llm import AudioBatch, AudioLLM, Example

__all__ = [
    "CONFLICT_DOMAINS",
    "NoRouterError",
    "TokenRouting",
    "checkpoint_name",
    "conflict_probe",
    "domain_examples",
    "load_analysis_model",
    "load_manifest_examples",
    "resolve_checkpoint",
    "route_audio",
    "route_examples",
    "routing_report",
    "sample_domain_batches",
]

#: Domains compared by the conflict analysis, in display order (``mixed`` is never used: its
#: clips contain several domains at once, so they cannot say which domain a gradient comes from).
CONFLICT_DOMAINS: tuple[str, ...] = ("speech", "sound", "music")


class NoRouterError(ValueError):
    """The model's adapter has no router (dense, mlp or linear adapter): nothing to route."""


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------


def resolve_checkpoint(checkpoint: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """``checkpoint`` as given, or the newest checkpoint under ``runs_dir`` when None.

    A run directory (with ``checkpoints/``) resolves to its latest complete checkpoint.
    """
    from moeaudio.train.checkpoint import find_latest_run_checkpoint, latest_checkpoint

    if checkpoint is None:
        found = find_latest_run_checkpoint(runs_dir)
        if found is None:
            raise FileNotFoundError(f"no checkpoint under {runs_dir}/; pass --checkpoint DIR")
        return found
    path = Path(checkpoint)
    if (path / "checkpoints").is_dir():
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def load_analysis_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> AudioLLM:
    """``train.checkpoint.load_model`` in eval mode (no dropout, routers do not count load)."""
    from moeaudio.train.checkpoint import load_model

    return load_model(checkpoint, device=device).eval()


def checkpoint_name(checkpoint: str | Path, taken: Sequence[str] = ()) -> str:
    """Display name: the recipe's ``name`` (else the directory name), made unique against ``taken``."""
    path = Path(checkpoint)
    name = path.name
    recipe = path / "recipe.yaml"
    if recipe.exists():
        import yaml

        data = yaml.safe_load(recipe.read_text()) or {}
        name = str(data.get("name") or name)
    base, i = name, 2
    while name in taken:
        name, i = f"{base}#{i}", i + 1
    return name


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _routers(model: AudioLLM) -> list[torch.nn.Module]:
    from moeaudio.model.moe import Router

    routers = [m for m in model.adapter.modules() if isinstance(m, Router)]
    if not routers:
        raise NoRouterError(
            f"adapter kind {model.recipe.adapter.kind!r} has no router: routing analysis needs a MoE "
            "checkpoint (adapter.kind=moe)"
        )
    return routers


# ----------------------------------------------------------------------------------------------
# routing
# ----------------------------------------------------------------------------------------------


@dataclass
class TokenRouting:
    """Router decisions for the audio tokens of one example (valid tokens only, in time order)."""

    expert_ids: torch.Tensor  # (tokens, k) int64
    gates: torch.Tensor  # (tokens, k) float32
    probs: torch.Tensor  # (tokens, E) float32
    num_experts: int
    frame_seconds: float  # seconds per audio token: encoder.stack / encoder.frame_rate

    def to_json(self) -> dict[str, Any]:
        """``tokens``: one record per audio token (``time``, ``experts``, ``gates``, ``probs``)."""
        return {
            "num_experts": self.num_experts,
            "top_k": int(self.expert_ids.shape[1]),
            "frame_seconds": self.frame_seconds,
            "num_tokens": int(self.expert_ids.shape[0]),
            "tokens": per_token_routing(self.expert_ids, self.gates, self.probs, self.frame_seconds),
        }


def frame_seconds(model: AudioLLM) -> float:
    """Duration of one audio token: ``stack / frame_rate`` (0.08 s at the paper's 4 x 50 Hz)."""
    return float(model.stacker.stack) / float(model.encoder.frame_rate)


@torch.no_grad()
def _route_batch(model: AudioLLM, batch: AudioBatch, layer: int) -> list[tuple[torch.Tensor, ...]]:
    """Run the audio path only and split the chosen router's decision per example."""
    from moeaudio.model.moe import capture_routing

    router = _routers(model)[layer]
    with capture_routing(router) as decisions:
        model.encode_audio(batch.to(_device(model)))
    if len(decisions) != 1:
        raise RuntimeError(f"expected one router call per batch, got {len(decisions)}")
    d = decisions[0]
    lengths = model.stacker.token_lengths(batch.frame_lengths).tolist()
    parts = zip(
        d.expert_ids.cpu().split(lengths),
        d.gates.float().cpu().split(lengths),
        d.probs.float().cpu().split(lengths),
        strict=True,
    )
    return list(parts)


def _progress(enabled: bool, description: str, total: int):
    """A rich progress bar on stderr (a no-op context when disabled)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )

    class _Ctx:
        def __enter__(self) -> Callable[[int], None]:
            progress.start()
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        def __exit__(self, *exc: object) -> None:
            progress.stop()

    return _Ctx()


def route_examples(
    model: AudioLLM,
    examples: Sequence[Example],
    batch_size: int = 16,
    layer: int = 0,
    progress: bool = False,
) -> list[TokenRouting]:
    """Router decisions for every example (same order as ``examples``), batched by length.

    Examples may carry waveforms or cached encoder states (``load_examples`` with a feature
    cache); only the encoder, stacker and adapter run. ``layer`` picks the router when the adapter
    has several.
    """
    from moeaudio.model.audio_llm import Collator
    from moeaudio.train.data import example_length

    _routers(model)  # fail early on dense adapters
    collate = Collator(model)
    order = sorted(range(len(examples)), key=lambda i: example_length(examples[i]))
    out: list[TokenRouting | None] = [None] * len(examples)
    num_experts, fs = _routers(model)[layer].num_experts, frame_seconds(model)
    with _progress(progress, "routing", len(examples)) as advance:
        for s in range(0, len(order), max(1, batch_size)):
            idx = order[s : s + max(1, batch_size)]
            batch = collate([_no_target(examples[i]) for i in idx])
            for i, (ids, gates, probs) in zip(idx, _route_batch(model, batch, layer), strict=True):
                out[i] = TokenRouting(ids, gates, probs, num_experts, fs)
            advance(len(idx))
    return [r for r in out if r is not None]


def _no_target(example: Example) -> Example:
    """The routing pass does not need the response: drop it (examples without a target work too)."""
    from dataclasses import replace

    return replace(example, target=None)


def route_audio(model: AudioLLM, wave: np.ndarray, layer: int = 0) -> TokenRouting:
    """Which experts every audio token of one waveform (at the encoder's sample rate) went to."""
    from moeaudio.model.audio_llm import Example

    return route_examples(model, [Example("", None, wave=np.asarray(wave, dtype=np.float32))], layer=layer)[0]


def load_manifest_examples(
    model: AudioLLM, manifest: str | Path, progress: bool = False, limit: int | None = None
) -> list[Example]:
    """Examples of a manifest via ``train.data.load_examples`` (feature cache when the recipe has one).

    The checkpoint's recipe filters apply (``data.tasks``, ``data.max_audio_seconds``).
    ``limit`` keeps the first N items (before filtering).
    """
    from moeaudio.data.manifest import read_manifest
    from moeaudio.train.data import load_examples

    manifest = Path(manifest)
    items = read_manifest(manifest)
    if limit is not None:
        items = items[:limit]
    return load_examples(model, manifest, model.recipe, progress=progress, items=items)


def _group_of(example: Example, by: str) -> str:
    if by not in ("domain", "task"):
        raise ValueError(f"--by must be domain or task, got {by!r}")
    return str(example.meta.get(by) or "unknown")


def routing_report(
    model: AudioLLM,
    examples: Sequence[Example],
    by: str = "domain",
    batch_size: int = 16,
    layer: int = 0,
    progress: bool = False,
) -> RoutingStats:
    """Expert x group activation, load, MaxVio, entropy and MI over ``examples``' audio tokens.

    Groups are the examples' ``meta[by]`` (``domain`` or ``task``); groups are ordered speech,
    sound, music, mixed, then any other in order of appearance.
    """
    routed = route_examples(model, examples, batch_size=batch_size, layer=layer, progress=progress)
    ids = torch.cat([r.expert_ids for r in routed])
    groups: list[str] = []
    for ex, r in zip(examples, routed, strict=True):
        groups += [_group_of(ex, by)] * int(r.expert_ids.shape[0])
    order = [*CONFLICT_DOMAINS, "mixed"] if by == "domain" else None
    return routing_stats(ids, groups, routed[0].num_experts, group_order=order)


# ----------------------------------------------------------------------------------------------
# gradient conflict
# ----------------------------------------------------------------------------------------------


def domain_examples(
    examples: Sequence[Example], domains: Sequence[str] | None = None
) -> dict[str, list[Example]]:
    """Split examples by ``meta["domain"]``: ``domains`` in that order (default speech, sound, music),
    skipping ``mixed`` and domains without examples."""
    wanted = list(domains) if domains is not None else list(CONFLICT_DOMAINS)
    out: dict[str, list[Example]] = {d: [] for d in wanted if d != "mixed"}
    for ex in examples:
        d = ex.meta.get("domain")
        if d in out:
            out[d].append(ex)
    return {d: v for d, v in out.items() if v}


def sample_domain_batches(
    examples_by_domain: Mapping[str, Sequence[Example]], num_batches: int, batch_size: int, seed: int = 0
) -> dict[str, list[list[Example]]]:
    """``num_batches`` single-domain batches of ``batch_size`` examples per domain, deterministic.

    Each domain draws from its own ``numpy`` generator seeded with ``seed`` (so a domain's batches
    do not depend on which other domains are analysed): a random permutation, cut into batches,
    without repeats while the domain has enough examples (further permutations are appended when
    it does not). Examples need a ``target`` (the loss is on the response).
    """
    if num_batches < 1 or batch_size < 1:
        raise ValueError("num_batches and batch_size must be >= 1")
    out: dict[str, list[list[Example]]] = {}
    for d, exs in examples_by_domain.items():
        exs = [e for e in exs if e.target]
        if not exs:
            raise ValueError(f"domain {d!r} has no examples with a target")
        rng = np.random.default_rng(seed)
        need = num_batches * batch_size
        idx = np.concatenate([rng.permutation(len(exs)) for _ in range(-(-need // len(exs)))])[:need]
        out[str(d)] = [
            [exs[i] for i in idx[b * batch_size : (b + 1) * batch_size]] for b in range(num_batches)
        ]
    return out


def _adapter_params(model: AudioLLM) -> tuple[list[str], list[torch.nn.Parameter]]:
    named = [(n, p) for n, p in model.adapter.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the adapter has no trainable parameters")
    return [n for n, _ in named], [p for _, p in named]


def conflict_probe(
    model: AudioLLM,
    examples_by_domain: Mapping[str, Sequence[Example]],
    num_batches: int = 4,
    batch_size: int = 8,
    seed: int = 0,
    lr: float | None = None,
    include_aux: bool = False,
    exact: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Gradient conflict between domains for the adapter at the model's current weights.

    For every domain, ``num_batches`` single-domain batches (:func:`sample_domain_batches`) give
    the gradient of the task loss (``lm_loss``; ``include_aux`` uses the full training loss
    ``loss`` = lm_loss + weighted balance losses) w.r.t. the adapter's trainable parameters; the
    result is :meth:`ConflictResult.to_json` of :func:`conflict_analysis` (``cosine``,
    ``influence``, ``influence_normalized``, ``spread``, ``num_batches``, ``grad_norm``, ...) plus
    ``loss_key``. ``lr`` (influence step) defaults to ``recipe.train.lr``; ``exact`` also takes
    the SGD step for real (``influence_exact``).

    Safe to call from the training loop: gradients come from ``torch.autograd.grad``, so the
    parameters' ``.grad`` (and DeepSpeed's accumulation) are untouched; the model runs in eval mode
    (no dropout, routers do not count load) and its train/eval mode is restored; torch's global RNG
    is not consumed. Not supported under ZeRO-3 (partitioned parameters). Forward hooks on the
    routers (e.g. the trainer's load monitor) do see the probe's batches.
    """
    from moeaudio.model.audio_llm import Collator

    batches = sample_domain_batches(examples_by_domain, num_batches, batch_size, seed)
    collate = Collator(model)
    names, params = _adapter_params(model)
    key = "loss" if include_aux else "lm_loss"
    device = _device(model)
    lr = float(model.recipe.train.lr if lr is None else lr)
    was_training = model.training
    model.eval()
    total = sum(len(b) for b in batches.values())
    try:
        with _progress(progress, "gradients", total) as advance:

            def grad_fn(batch: list[Example]) -> list[torch.Tensor]:
                with torch.enable_grad():
                    loss = model(collate(batch).to(device))[key]
                    grads = torch.autograd.grad(loss, params, allow_unused=True)
                advance(1)
                return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]

            loss_fn = None
            flat = None
            if exact:
                flat = torch.cat([p.detach().reshape(-1) for p in params])
                loss_fn = _functional_loss(model, names, params, collate, key, device)
            result: ConflictResult = conflict_analysis(
                grad_fn, loss_fn, batches, lr, params=flat, exact=exact
            )
    finally:
        model.train(was_training)
    out = result.to_json()
    out["loss_key"] = key
    out["batch_size"] = batch_size
    out["seed"] = seed
    # Fewer distinct examples than batches x batch_size means batches repeat clips: the within-domain
    # spread then overstates agreement.
    out["examples_per_domain"] = {str(d): len(v) for d, v in examples_by_domain.items()}
    return out


def _functional_loss(
    model: AudioLLM,
    names: list[str],
    params: list[torch.nn.Parameter],
    collate: Callable[[list[Example]], AudioBatch],
    key: str,
    device: torch.device,
) -> Callable[[list[Example], torch.Tensor], float]:
    from torch.func import functional_call

    def loss_fn(batch: list[Example], flat: torch.Tensor) -> float:
        override = {f"adapter.{n}": t for n, t in zip(names, unflatten_like(flat, params), strict=True)}
        with torch.no_grad():
            return float(functional_call(model, override, (collate(batch).to(device),))[key])

    return loss_fn


# ----------------------------------------------------------------------------------------------
# command entry points (the CLI only parses options and prints)
# ----------------------------------------------------------------------------------------------


def analyze_routing_audio(
    audio: str | Path,
    checkpoint: str | Path | None = None,
    png: str | Path | None = None,
    layer: int = 0,
    device: str = "cpu",
) -> tuple[dict[str, Any], Any]:
    """One recording: per-token routing JSON (``tokens``: ``time``, ``experts``, ``gates``,
    ``probs``), the rich timeline, and optionally the spectrogram-over-routing PNG."""
    from moeaudio.analyze.routing import plot_token_timeline, render_timeline
    from moeaudio.data.audio import load_audio

    ckpt = resolve_checkpoint(checkpoint)
    model = load_analysis_model(ckpt, device)
    _routers(model)
    sr = model.encoder.sample_rate
    wave = load_audio(audio, sr)
    routed = route_audio(model, wave, layer=layer)
    data = {"audio": str(audio), "checkpoint": str(ckpt), "duration": len(wave) / sr, **routed.to_json()}
    if png is not None:
        plot_token_timeline(
            wave, sr, routed.expert_ids, routed.gates, routed.num_experts, routed.frame_seconds, png
        )
        data["png"] = str(png)
    view = render_timeline(routed.expert_ids, routed.gates, routed.num_experts, routed.frame_seconds)
    return data, view


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
) -> tuple[dict[str, RoutingStats], dict[str, Any]]:
    """Routing statistics per checkpoint over a manifest, the JSON view and the optional PNG.

    JSON: one checkpoint -> ``activation``, ``load``, ``maxvio``, ``entropy``,
    ``mutual_information`` (+ ``normalized_entropy``, ``tokens_per_group``) at top level; several ->
    ``{name: those keys}``. Every checkpoint must be a MoE (:class:`NoRouterError` otherwise).
    """
    from moeaudio.analyze.routing import plot_activation_heatmap

    paths = [resolve_checkpoint(c) for c in (checkpoints or [None])]
    stats: dict[str, RoutingStats] = {}
    for path in paths:
        name = checkpoint_name(path, list(stats))
        model = load_analysis_model(path, device)
        try:
            _routers(model)
        except NoRouterError as exc:
            raise NoRouterError(f"{path}: {exc}") from None
        examples = load_manifest_examples(model, manifest, progress=progress, limit=limit)
        if not examples:
            raise ValueError(f"{manifest}: no usable items for {path}")
        stats[name] = routing_report(model, examples, by, batch_size, layer, progress)
    views = {
        name: {"checkpoint": str(p), **s.to_json()} for (name, s), p in zip(stats.items(), paths, strict=True)
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
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """:func:`conflict_probe` per checkpoint on a manifest's speech/sound/music items.

    Returns the per-checkpoint results and the JSON view (one checkpoint: top level; several:
    keyed by name). ``png`` draws every checkpoint side by side (``plot_conflict``). ``lr``
    defaults to each checkpoint's ``train.lr``.
    """
    from moeaudio.analyze.conflict import plot_conflict

    paths = [resolve_checkpoint(c) for c in (checkpoints or [None])]
    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        name = checkpoint_name(path, list(results))
        model = load_analysis_model(path, device)
        by_domain = domain_examples(load_manifest_examples(model, manifest, progress=progress, limit=limit))
        if len(by_domain) < 2:
            raise ValueError(
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


def result_from_json(data: Mapping[str, Any]) -> ConflictResult:
    """Rebuild a :class:`ConflictResult` from :meth:`ConflictResult.to_json` (e.g. for plotting)."""
    return ConflictResult(
        domains=list(data["domains"]),
        lr=float(data["lr"]),
        cosine=data["cosine"],
        influence=data["influence"],
        influence_normalized=data["influence_normalized"],
        spread=data["spread"],
        num_batches=dict(data["num_batches"]),
        grad_norm=dict(data["grad_norm"]),
        influence_exact=data.get("influence_exact"),
        loss=data.get("loss"),
    )


def render_conflict(results: Mapping[str, Mapping[str, Any]]):
    """Rich tables: per checkpoint the cosine and influence matrices and the batch spread."""
    from rich.console import Group
    from rich.table import Table

    tables = []
    for name, r in results.items():
        doms = r["domains"]
        for key, fmt in (("cosine", "+.4f"), ("influence_normalized", "+.4f"), ("influence", "+.3e")):
            t = Table(title=f"{name} ({r.get('adapter', '?')}): {key} [{r.get('loss_key', 'lm_loss')}]")
            t.add_column("")
            for d in doms:
                t.add_column(d, justify="right")
            for a in doms:
                t.add_row(a, *(format(r[key][a][b], fmt) for b in doms))
            tables.append(t)
        t = Table(title=f"{name}: single-batch cosine spread (mean +- std, n)")
        need = r.get("batch_size", 0) * max(r["num_batches"].values())
        few = [d for d, n in r.get("examples_per_domain", {}).items() if n < need]
        if few:
            t.caption = (
                f"[yellow]{', '.join(few)}: fewer clips than batches x batch size (batches repeat clips)[/]"
            )
        t.add_column("pair")
        t.add_column("cosine", justify="right")
        within = r["spread"]["within"]
        cross = r["spread"]["cross"]
        rows = [(f"{d} / {d}", within[d]) for d in doms]
        rows += [(f"{a} / {b}", cross[a][b]) for i, a in enumerate(doms) for b in doms[i + 1 :]]
        for label, s in rows:
            cell = "-" if s["mean"] is None else f"{s['mean']:+.4f} +- {s['std']:.4f} (n={s['n']})"
            t.add_row(label, cell)
        tables.append(t)
    return Group(*tables)


def analyze_probe(
    checkpoint: str | Path | None = None,
    train_manifest: str | Path | None = None,
    eval_manifest: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    png: str | Path | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[list[Any], dict[str, Any]]:
    """Linear probes (:mod:`moeaudio.analyze.probe`) for one checkpoint.

    Manifests default to the checkpoint recipe's train and valid splits. Returns the results and
    their JSON view.
    """
    from moeaudio.analyze.probe import plot_probes, probe_tasks, results_to_json
    from moeaudio.train.data import manifest_path

    path = resolve_checkpoint(checkpoint)
    model = load_analysis_model(path, device)
    train_path = Path(train_manifest) if train_manifest else manifest_path(model.recipe, "train")
    eval_path = Path(eval_manifest) if eval_manifest else manifest_path(model.recipe, "valid")
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
