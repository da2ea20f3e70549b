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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.func import functional_call

from moeaudio.analyze.conflict import ConflictResult, conflict_analysis, unflatten_like
from moeaudio.analyze.routing import RoutingStats, per_token_routing, routing_stats
from moeaudio.data.audio import split_windows
from moeaudio.errors import MissingDataError, NoRouterError, UsageError
from moeaudio.model.audio_llm import AudioBatch, AudioLLM
from moeaudio.model.moe import Router, capture_routing
from moeaudio.progress import progress_bar
from moeaudio.runtime.batching import Collator, Example, iter_batches
from moeaudio.runtime.windows import window_seconds

__all__ = [
    "CONFLICT_DOMAINS",
    "CONFLICT_PARTS",
    "PART_PREFIX",
    "adapter_part",
    "TokenRouting",
    "checkpoint_name",
    "conflict_probe",
    "domain_examples",
    "route_audio",
    "route_examples",
    "routing_report",
    "sample_domain_batches",
    "training_conflict",
]

#: Domains compared by the conflict analysis, in display order (``mixed`` is never used: its
#: clips contain several domains at once, so they cannot say which domain a gradient comes from).
CONFLICT_DOMAINS: tuple[str, ...] = ("speech", "sound", "music")


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------


def checkpoint_name(checkpoint: str | Path, taken: Sequence[str] = ()) -> str:
    """Display name: the recipe's ``name`` (else the directory name), made unique against ``taken``."""
    path = Path(checkpoint)
    name = path.name
    recipe = path / "recipe.yaml"
    if recipe.exists():
        data = yaml.safe_load(recipe.read_text()) or {}
        name = str(data.get("name") or name)
    base, i = name, 2
    while name in taken:
        name, i = f"{base}#{i}", i + 1
    return name


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _routers(model: AudioLLM) -> list[torch.nn.Module]:
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
    times: torch.Tensor | None = None  # (tokens,) start of each token in s; None: t * frame_seconds
    windows: list[tuple[float, float]] | None = None  # (start s, end s) of each window routed

    def to_json(self) -> dict[str, Any]:
        """``tokens``: one record per audio token (``time``, ``experts``, ``gates``, ``probs``)."""
        out = {
            "num_experts": self.num_experts,
            "top_k": int(self.expert_ids.shape[1]),
            "frame_seconds": self.frame_seconds,
            "num_tokens": int(self.expert_ids.shape[0]),
            "tokens": per_token_routing(
                self.expert_ids, self.gates, self.probs, self.frame_seconds, self.times
            ),
        }
        if self.windows is not None:
            out["windows"] = [[round(a, 3), round(b, 3)] for a, b in self.windows]
        return out


def frame_seconds(model: AudioLLM) -> float:
    """Duration of one audio token: ``stack / frame_rate`` (0.08 s at the paper's 4 x 50 Hz)."""
    return float(model.stacker.stack) / float(model.encoder.frame_rate)


@torch.no_grad()
def _route_batch(model: AudioLLM, batch: AudioBatch, layer: int) -> list[tuple[torch.Tensor, ...]]:
    """Run the audio path only and split the chosen router's decision per example."""
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
    num_experts, fs = _routers(model)[layer].num_experts, frame_seconds(model)  # fails early on dense
    collator = Collator(model)

    def collate(batch: list[Example]) -> AudioBatch:  # the routing pass needs no response
        return collator([replace(e, target=None) for e in batch])

    out: list[TokenRouting | None] = [None] * len(examples)
    with progress_bar("routing", len(examples), progress) as advance:
        for idx, batch in iter_batches(examples, batch_size, collate, _device(model)):
            for i, (ids, gates, probs) in zip(idx, _route_batch(model, batch, layer), strict=True):
                out[i] = TokenRouting(ids, gates, probs, num_experts, fs)
            advance(len(idx))
    return [r for r in out if r is not None]


def route_audio(
    model: AudioLLM, wave: np.ndarray, layer: int = 0, window_s: float | None = None
) -> TokenRouting:
    """Which experts every audio token of one waveform (at the encoder's sample rate) went to.

    A recording longer than the encoder accepts (Whisper: 30 s) is cut into windows as
    ``transcribe`` cuts it (:func:`moeaudio.data.audio.split_windows`, ``window_s`` or the encoder's
    limit) and every window is routed, so the tokens cover the whole recording; each token's
    ``times`` entry is its start in the recording.
    """
    wave = np.asarray(wave, dtype=np.float32)
    sr = model.encoder.sample_rate
    spans = split_windows(wave, sr, window_seconds(model, window_s)) if len(wave) else [(0, 0)]
    examples = [Example("", None, wave=wave[a:b]) for a, b in spans]
    parts = route_examples(model, examples, batch_size=8, layer=layer)
    if len(parts) == 1:
        return replace(parts[0], windows=[(0.0, len(wave) / sr)])
    fs = parts[0].frame_seconds
    times = torch.cat(
        [
            a / sr + torch.arange(int(r.expert_ids.shape[0]), dtype=torch.float64) * fs
            for (a, _), r in zip(spans, parts, strict=True)
        ]
    )
    return TokenRouting(
        torch.cat([r.expert_ids for r in parts]),
        torch.cat([r.gates for r in parts]),
        torch.cat([r.probs for r in parts]),
        parts[0].num_experts,
        fs,
        times=times,
        windows=[(a / sr, b / sr) for a, b in spans],
    )


def _group_of(example: Example, by: str) -> str:
    if by not in ("domain", "task"):
        raise UsageError(f"--by must be domain or task, got {by!r}")
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
        raise UsageError("num_batches and batch_size must be >= 1")
    out: dict[str, list[list[Example]]] = {}
    for d, exs in examples_by_domain.items():
        exs = [e for e in exs if e.target]
        if not exs:
            raise MissingDataError(f"domain {d!r} has no examples with a target")
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
    routers (e.g. ``capture_routing``) do see the probe's batches; the routers' own token counters do
    not (eval mode), and the trainer resets them after the probe.
    """
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
        with progress_bar("gradients", total, progress) as advance:

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


#: Adapter parameter groups the training-time probe reports apart: the routed experts, and the shared
#: path (every other adapter weight but the router: norms, the aggregation / shared path, shared
#: experts; all of a dense adapter). ``all`` is the whole adapter, router included.
CONFLICT_PARTS: tuple[str, ...] = ("all", "shared", "routed")
#: Metric prefix of :func:`training_conflict`'s per-part cosines in the training log.
PART_PREFIX = "conflict_by_part"


def adapter_part(name: str) -> str | None:
    """``routed`` for a routed expert's weight, None for the router, ``shared`` for the rest."""
    parts = name.split(".")
    if "router" in parts:
        return None
    if "experts" in parts and not any("shared" in p for p in parts):
        return "routed"
    return "shared"


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine in float64, clipped to [-1, 1] (two identical gradients give exactly 1, not 1 + 1e-7)."""
    a, b = a.double(), b.double()
    na, nb = float(a.norm()), float(b.norm())
    return max(-1.0, min(1.0, float(torch.dot(a, b)) / (na * nb))) if na > 0 and nb > 0 else 0.0


def training_conflict(
    model: AudioLLM, examples_by_domain: Mapping[str, Sequence[Example]], batch_size: int, seed: int = 0
) -> dict[str, float]:
    """Gradient agreement between domains during training, per part of the adapter, with a noise floor.

    Two disjoint single-domain batches per domain (:func:`sample_domain_batches`) give the adapter's
    task-loss gradients (``lm_loss``; the parameters' ``.grad`` untouched, eval mode, mode restored).
    From them, for every part of :data:`CONFLICT_PARTS` the adapter has:

    * ``conflict_by_part/<part>/<a>-<b>``: the mean cosine between single-batch gradients of domains
      ``a`` and ``b`` (4 pairs);
    * ``conflict_by_part/<part>/floor/<d>``: the cosine between domain ``d``'s two batches, the noise
      floor: what two batches agree when nothing conflicts but sampling noise. Why single batches on both
      sides: a cross-domain cosine is only conflict when it sits below what the same domain reaches with
      equally noisy gradients; mean gradients of more batches would raise both;
    * ``conflict_by_part/<part>/floor``: the floor's mean over domains;

    and ``conflict/<a>-<b>``: the cosine of the two domains' mean gradients over the whole adapter (the
    figure's number, as `moeaudio analyze-conflict` computes it).
    """
    batches = sample_domain_batches(examples_by_domain, 2, batch_size, seed)
    collate = Collator(model)
    names, params = _adapter_params(model)
    device = _device(model)
    was_training = model.training
    model.eval()
    grads: dict[str, list[list[torch.Tensor]]] = {}
    try:
        for d, domain_batches in batches.items():
            for batch in domain_batches:
                with torch.enable_grad():
                    loss = model(collate(batch).to(device))["lm_loss"]
                    g = torch.autograd.grad(loss, params, allow_unused=True)
                flat = [
                    torch.zeros_like(p) if gi is None else gi.detach()
                    for gi, p in zip(g, params, strict=True)
                ]
                grads.setdefault(d, []).append([x.reshape(-1).float().cpu() for x in flat])
    finally:
        model.train(was_training)
    groups = {
        "all": list(range(len(names))),
        "shared": [i for i, n in enumerate(names) if adapter_part(n) == "shared"],
        "routed": [i for i, n in enumerate(names) if adapter_part(n) == "routed"],
    }
    domains = sorted(grads)
    out: dict[str, float] = {}
    for part in CONFLICT_PARTS:
        idx = groups[part]
        if not idx:
            continue
        vec = {d: [torch.cat([b[i] for i in idx]) for b in grads[d]] for d in domains}
        floors = []
        for k, a in enumerate(domains):
            floor = _cosine(vec[a][0], vec[a][1])
            out[f"{PART_PREFIX}/{part}/floor/{a}"] = floor
            floors.append(floor)
            for b in domains[k + 1 :]:
                pairs = [_cosine(x, y) for x in vec[a] for y in vec[b]]
                out[f"{PART_PREFIX}/{part}/{a}-{b}"] = sum(pairs) / len(pairs)
                if part == "all":
                    out[f"conflict/{a}-{b}"] = _cosine(sum(vec[a]), sum(vec[b]))
        out[f"{PART_PREFIX}/{part}/floor"] = sum(floors) / len(floors)
    return out


def _functional_loss(
    model: AudioLLM,
    names: list[str],
    params: list[torch.nn.Parameter],
    collate: Callable[[list[Example]], AudioBatch],
    key: str,
    device: torch.device,
) -> Callable[[list[Example], torch.Tensor], float]:
    def loss_fn(batch: list[Example], flat: torch.Tensor) -> float:
        override = {f"adapter.{n}": t for n, t in zip(names, unflatten_like(flat, params), strict=True)}
        with torch.no_grad():
            return float(functional_call(model, override, (collate(batch).to(device),))[key])

    return loss_fn
