"""`moeaudio eval`: score one task of a checkpoint and write a self-describing result file.

Five steps, one function each: :func:`plan` (checkpoint, recipe, data and decoding settings),
:func:`build_examples` (audio or text examples, few-shot shots), :func:`generate` (greedy or beam),
:func:`score` (the task kind's handler) and :func:`write_results`, which writes side by side:

* ``<checkpoint>/eval/<task>.json``: task, prompts, normaliser, decoding settings, checkpoint and
  manifest sha256, package versions, date, n, metrics, chance levels, throughput;
* ``<task>.predictions.jsonl``: one line per item (target, raw generation, extracted answer);
* ``<task>.confusion.png`` for classification, ``<task>.mmau.json`` (the MMAU benchmark's own
  format: its JSON items plus ``model_output``) for MMAU.

``--modality text`` evaluates the text version of spoken questions (``meta.text_prompt``, VoiceBench)
with no audio in the prompt, so the speech-vs-text modality gap can be reported; its files get a
``.text`` infix so both results sit side by side. ``--scoring loglik`` answers multiple-choice and
classification items with the candidate of highest log-likelihood (:mod:`moeaudio.eval.ranking`)
instead of generating; its files get a ``.loglik`` infix. ``--scoring cloze`` asks the question without its
options and ranks the option texts (or labels) as continuations (:mod:`moeaudio.eval.cloze`); its files
get a ``.cloze`` infix. A spoken-question task evaluated with audio is also scored in writing (same
items, same scoring, same LLM), and the audio result holds the modality gap
(:mod:`moeaudio.eval.modality_gap`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from moeaudio.config import Recipe, with_settings
from moeaudio.data.manifest import Item
from moeaudio.errors import EvalDataError, EvalError
from moeaudio.eval.cloze import cloze_candidates, cloze_examples
from moeaudio.eval.generation import generate_all
from moeaudio.eval.handlers import TaskHandler, handler_for
from moeaudio.eval.long_audio import LONG_AUDIO_POLICIES, LongAudio, prepare_long_audio, windowed_predictions
from moeaudio.eval.metrics import plot_confusion, summarize_numbers
from moeaudio.eval.modality_gap import add_modality_gap, gap_rows, is_spoken_question, text_twin_output
from moeaudio.eval.options import EvalOptions
from moeaudio.eval.ranking import best_per_character, candidates_for, rank_all, scored_answers
from moeaudio.eval.shots import apply_template, load_shot_pool, pick_shots
from moeaudio.eval.tasks import EvalTask, closed_label_set, get_task, prepare_hint
from moeaudio.io_utils import FileLock, atomic_write_text, check_output_file
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.checkpoint import WEIGHTS, Checkpoint, load_model, open_checkpoint, resolve_checkpoint
from moeaudio.runtime.device import inference_dtype, pick_device
from moeaudio.runtime.examples import LazyExamples, checked_items, load_examples, manifest_path, use_streaming

__all__ = [
    "EvalDataError",
    "EvalError",
    "EvalOptions",
    "eval_json_summary",
    "evaluate",
    "file_sha256",
    "package_versions",
    "render_eval",
    "resolve_manifest",
    "run_eval",
    "select_shots",
]

#: What ``--scoring`` accepts: generated answers, or the candidates ranked with the options listed
#: (loglik) or left out of the prompt (cloze).
SCORINGS = ("generate", "loglik", "cloze")

#: Instruction put before VoiceBench's text prompt in ``--modality text`` (mirrors the spoken version).
TEXT_MCQ_INSTRUCTION = "Answer the multiple-choice question. Reply with the letter of the correct option."


# ------------------------------------------------------------------------------------- provenance


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names: Sequence[str] = ("moeaudio", "torch", "transformers", "deepspeed")) -> dict:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ------------------------------------------------------------------------------------- step 1: plan


@dataclass
class EvalPlan:
    """Everything decided before the model runs."""

    spec: EvalTask
    handler: TaskHandler
    checkpoint: Path
    source: Checkpoint  # checked and parsed once; load_model builds the model from it
    recipe: Recipe  # the checkpoint's, with eval's data settings (a copy)
    manifest: Path
    items: list[Item]  # the items scored (after max_items)
    n_available: int
    modality: str
    scoring: str  # generate | loglik | cloze
    few_shot: int
    num_beams: int
    batch_size: int
    max_new_tokens: int
    seed: int
    device: torch.device
    dtype: torch.dtype  # bf16 on a GPU, fp32 on CPU (--precision auto)
    output: Path
    n_longer_than_training_max: int  # scored all the same: n stays honest
    shot_ids: list[str] = field(default_factory=list)
    long_audio_policy: str = "window"  # items longer than the encoder's window (moeaudio.eval.long_audio)
    long_audio: LongAudio | None = None  # what was done with them (set when the plan runs)
    logprobs: list[dict[str, float]] | None = None  # --scoring loglik/cloze: each candidate's, per item
    shot_pool: str | None = None  # --shot-pool: fixed shots and prompt templates (moeaudio.eval.shots)
    ctc_weight: float | None = None  # --ctc-weight: joint CTC/LLM rescoring (moeaudio.eval.joint_ctc)


def resolve_manifest(spec: EvalTask, recipe: Recipe, manifest: str | Path | None) -> tuple[Path, list[Item]]:
    """``(manifest path, the task's items in it)``; raises :class:`EvalDataError` naming a fix."""
    root = Path(recipe.data.root)
    if manifest is not None:
        path = Path(manifest)
        if not path.exists():
            raise EvalDataError(f"{path}: manifest not found")
        items = checked_items(path, recipe, known_tasks=[spec.manifest_task], select=spec.selects)
        if not items:
            raise EvalDataError(
                f"{path} has no items for task '{spec.name}' (task field '{spec.manifest_task}'); "
                f"prepare them with {prepare_hint(spec, str(path.parent))}"
            )
        return path, items
    candidates = [manifest_path(recipe, "test"), manifest_path(recipe, "valid")]
    candidates += [root / name for name in spec.manifests]
    tried = []
    for path in dict.fromkeys(candidates):
        tried.append(str(path))
        if path.exists():
            items = checked_items(path, recipe, known_tasks=[spec.manifest_task], select=spec.selects)
            if items:
                return path, items
    raise EvalDataError(
        f"no data for task '{spec.name}': none of {', '.join(tried)} has items for it. "
        f"Prepare it with {prepare_hint(spec, str(root))}, or pass --manifest FILE"
    )


def plan(opts: EvalOptions) -> EvalPlan:
    """Resolve the checkpoint, recipe, data and decoding settings; fail before loading any model."""
    if opts.modality not in ("audio", "text"):
        raise EvalError(f"--modality must be audio or text (got {opts.modality!r})")
    for flag, value, least in (
        ("--few-shot", opts.few_shot, 0),
        ("--num-beams", opts.num_beams, 1),
        ("--batch-size", opts.batch_size, 1),
        ("--max-items", opts.max_items, 1),
        ("--max-new-tokens", opts.max_new_tokens, 1),
    ):
        if value is not None and value < least:
            raise EvalError(f"{flag} must be >= {least} (got {value})")
    if opts.scoring not in SCORINGS:
        raise EvalError(f"--scoring must be generate, loglik or cloze (got {opts.scoring!r})")
    if opts.loading not in (None, "auto", "memory", "stream"):
        raise EvalError(f"--loading must be auto, memory or stream (got {opts.loading!r})")
    if opts.long_audio not in (None, *LONG_AUDIO_POLICIES):
        raise EvalError(
            f"--long-audio must be one of {', '.join(LONG_AUDIO_POLICIES)} (got {opts.long_audio!r})"
        )
    check_output_file(opts.output, "--output")
    spec = get_task(opts.task)
    if opts.scoring != "generate" and spec.kind not in ("mcq", "classification"):
        raise EvalError(
            f"--scoring {opts.scoring} ranks options or labels: it is for mcq and classification tasks, "
            f"not '{opts.task}' ({spec.kind}); use --scoring generate"
        )
    if opts.modality == "text" and spec.kind != "mcq":
        raise EvalError(
            f"--modality text is for spoken multiple-choice tasks (mmsu, openbookqa), not '{opts.task}'"
        )
    source = open_checkpoint(resolve_checkpoint(opts.checkpoint, opts.runs_dir))
    ckpt, trained = source.path, source.recipe
    # Every item of the task is scored (n stays honest): eval picks its own task whatever training was
    # restricted to, and keeps clips longer than training's limit. The flags given override the recipe.
    settings = {"data.tasks": None, "data.max_audio_seconds": float("inf"), **opts.recipe_settings()}
    recipe = with_settings(trained, settings, "the eval options")
    manifest, items = resolve_manifest(spec, recipe, opts.manifest)
    n_available = len(items)
    decoding = recipe.eval
    check_ctc_weight(decoding.ctc_weight, spec, opts, trained, ckpt)
    name = output_name(opts.task, opts.modality, opts.scoring)
    items = items[: decoding.max_items] if decoding.max_items else items
    return EvalPlan(
        spec=spec,
        handler=handler_for(spec.kind, spec.scorer),
        checkpoint=ckpt,
        source=source,
        recipe=recipe,
        manifest=manifest,
        items=items,
        n_available=n_available,
        modality=opts.modality,
        scoring=opts.scoring,
        few_shot=decoding.few_shot,
        num_beams=decoding.num_beams,
        batch_size=decoding.batch_size,
        max_new_tokens=decoding.max_new_tokens or spec.max_new_tokens,
        seed=opts.seed,
        device=(device := pick_device(opts.device)),
        dtype=inference_dtype(device, opts.precision),
        output=Path(opts.output) if opts.output else ckpt / "eval" / name,
        n_longer_than_training_max=sum((i.duration or 0) > trained.data.max_audio_seconds for i in items),
        long_audio_policy=decoding.long_audio,
        shot_pool=decoding.shot_pool,
        ctc_weight=decoding.ctc_weight if spec.kind == "asr" else None,
    )


def check_ctc_weight(
    weight: float | None, spec: EvalTask, opts: EvalOptions, trained: Recipe, ckpt: Path
) -> None:
    """``--ctc-weight`` rescores transcripts with the adapter's CTC head: refused where there is no
    transcript (not an asr task, or in writing) or no head (no ctc_embed stage in the checkpoint's recipe)."""
    if weight is None:
        return
    if opts.ctc_weight is not None and spec.kind != "asr":
        raise EvalError(f"--ctc-weight rescores transcripts: it is for asr tasks, not '{spec.name}'")
    if spec.kind == "asr" and not trained.has_ctc_head():
        raise EvalError(
            f"--ctc-weight / eval.ctc_weight needs the adapter's CTC head, and {ckpt} was trained without a "
            "ctc_embed stage; drop it"
        )


def output_name(task: str, modality: str, scoring: str) -> str:
    """The default result file name: ``<task>[.text][.loglik|.cloze].json``."""
    infixes = (".text" if modality == "text" else "") + (f".{scoring}" if scoring != "generate" else "")
    return f"{task}{infixes}.json"


# ------------------------------------------------------------------------------------- step 2: examples


def select_shots(spec: EvalTask, items: list, n: int, seed: int = 0, exclude: set[str] = frozenset()) -> list:
    """``n`` train items of the task: classification covers distinct labels first; seeded."""
    pool = [i for i in items if spec.selects(i) and i.id not in exclude]
    rng = random.Random(seed)
    rng.shuffle(pool)
    if spec.kind != "classification":
        return pool[:n]
    by_label: dict[str, list] = {}
    for item in pool:
        by_label.setdefault(item.target, []).append(item)
    chosen: list = []
    while len(chosen) < n and any(by_label.values()):
        for label in list(by_label):
            if by_label[label] and len(chosen) < n:
                chosen.append(by_label[label].pop())
    rng.shuffle(chosen)
    return chosen


def _text_examples(items: list[Item]) -> list[Example]:
    """Text-only Examples: ``meta.text_instruction`` (the whole prompt, worded as the audio item asks)
    or else the VoiceBench form, our MCQ instruction and ``meta.text_prompt``."""
    missing = [i.id for i in items if not (i.meta or {}).get("text_prompt")]
    if missing:
        raise EvalError(
            f"--modality text needs meta.text_prompt on every item (VoiceBench has it); "
            f"{len(missing)} of {len(items)} items lack it, e.g. {missing[0]}"
        )
    return [
        Example(
            i.meta.get("text_instruction") or f"{TEXT_MCQ_INSTRUCTION}\n{i.meta['text_prompt']}",
            i.target,
            meta=i.to_dict(),
        )
        for i in items
    ]


def text_only(examples: Sequence[Example]) -> Sequence[Example]:
    """What scoring reads (instruction, target, meta) without reading a lazy sequence's audio."""
    return examples.headers if isinstance(examples, LazyExamples) else examples


def _examples(
    p: EvalPlan, model: AudioLLM, manifest: Path, items: list[Item], progress: bool, lazy: bool = False
) -> list[Example] | LazyExamples:
    if p.modality == "text":
        return _text_examples(items)
    return load_examples(model, manifest, p.recipe, progress=progress, items=items, lazy=lazy)


def build_examples(
    p: EvalPlan, model: AudioLLM, progress: bool
) -> tuple[list[Example] | LazyExamples, Collator]:
    """The scored examples and the collator that prompts them (with few-shot shots when asked).

    Every selected item is scored (n stays honest): clips longer than training's limit are kept.
    Under ``data.loading`` stream (or auto, for a test set larger than ``data.stream_above_gb``)
    the examples are a :class:`LazyExamples`: audio read a batch at a time.
    """
    if p.shot_pool is not None:
        return _pool_examples(p, model, progress)
    lazy = use_streaming(p.recipe, sum(i.duration or 0.0 for i in p.items))
    examples = _examples(p, model, p.manifest, p.items, progress, lazy)
    if not p.few_shot:
        return examples, Collator(model, for_generation=True)
    train_manifest = manifest_path(p.recipe, "train")
    if not train_manifest.exists():
        raise EvalDataError(f"--few-shot needs the train manifest {train_manifest}; it does not exist")
    pool = checked_items(train_manifest, p.recipe, known_tasks=[p.spec.manifest_task], select=p.spec.selects)
    shot_items = select_shots(p.spec, pool, p.few_shot, p.seed, {i.id for i in p.items})
    if len(shot_items) < p.few_shot:
        raise EvalDataError(
            f"--few-shot {p.few_shot}: {train_manifest} has only {len(shot_items)} items for task '{p.spec.name}'"
        )
    p.shot_ids = [i.id for i in shot_items]
    shots = _examples(p, model, train_manifest, shot_items, progress)
    return examples, Collator(model, for_generation=True, shots=shots)


def _pool_examples(
    p: EvalPlan, model: AudioLLM, progress: bool
) -> tuple[list[Example] | LazyExamples, Collator]:
    """:func:`build_examples` under ``--shot-pool``: the pool's template on every item and its fixed
    shots (from the benchmark itself, then left out of the scored items, or from a dev manifest)."""
    loaded = load_shot_pool(p.shot_pool or "")
    bench = loaded.pool.benchmarks.get(p.spec.name)
    if bench is None:
        raise EvalError(
            f"shot pool {loaded.name} has no entry for task '{p.spec.name}' "
            f"(it has {', '.join(loaded.pool.benchmarks) or 'none'}); add one or drop --shot-pool"
        )
    template = bench.text_template if p.modality == "text" else bench.template
    shots: list[Item] = []
    shot_manifest = p.manifest
    if p.few_shot:
        if bench.source == "benchmark":
            pool = checked_items(
                p.manifest, p.recipe, known_tasks=[p.spec.manifest_task], select=p.spec.selects
            )
        else:
            shot_manifest = Path(bench.source)
            if not shot_manifest.is_absolute():  # a split beside the benchmark's (its dev split)
                shot_manifest = p.manifest.parent / shot_manifest
            if not shot_manifest.exists():
                raise EvalDataError(
                    f"shot pool {loaded.name}: {p.spec.name}'s source {shot_manifest} not found"
                )
            pool = checked_items(
                shot_manifest, p.recipe, known_tasks=[p.spec.manifest_task], select=p.spec.selects
            )
        shots = pick_shots(
            bench, pool, p.few_shot, p.spec.name, str(shot_manifest), p.spec.kind == "classification"
        )
        p.shot_ids = [i.id for i in shots]
        taken = set(p.shot_ids)
        p.items = [i for i in p.items if i.id not in taken]  # no question is its own example
        if bench.source == "benchmark":  # its items less the shots (idempotent: a text twin plans again)
            p.n_available = sum(i.id not in taken for i in pool)
    text = p.modality == "text"
    p.items = [apply_template(template, i, text) for i in p.items]
    lazy = use_streaming(p.recipe, sum(i.duration or 0.0 for i in p.items))
    examples = _examples(p, model, p.manifest, p.items, progress, lazy)
    shot_examples = _examples(
        p, model, shot_manifest, [apply_template(template, i, text) for i in shots], progress
    )
    return examples, Collator(model, for_generation=True, shots=shot_examples)


# ------------------------------------------------------------------------------------- steps 3-5


def generate(
    p: EvalPlan, model: AudioLLM, examples: Sequence[Example], collate: Collator, progress: bool
) -> tuple[list[str], dict[str, float]]:
    start = time.time()
    predictions, rate = generate_all(
        model, examples, p.batch_size, p.max_new_tokens, p.num_beams, progress, collate=collate,
        ctc_weight=p.ctc_weight,
    )  # fmt: skip
    return predictions, {"items_per_s": rate, "seconds": time.time() - start}


def rank(
    p: EvalPlan, model: AudioLLM, examples: Sequence[Example], collate: Collator, progress: bool
) -> tuple[list[str], dict[str, float]]:
    """``--scoring loglik``: the most likely candidate per item (and each candidate's log-probability
    into the plan, for the predictions file)."""
    start = time.time()
    headers = text_only(examples)
    candidates = [candidates_for(e, _labels(p, headers)) for e in headers]
    best, p.logprobs, rate = rank_all(model, examples, candidates, p.batch_size, progress, collate.shots)
    return scored_answers(p.spec.scorer, headers, best), {"items_per_s": rate, "seconds": time.time() - start}


def cloze(
    p: EvalPlan, model: AudioLLM, examples: Sequence[Example], collate: Collator, progress: bool
) -> tuple[list[str], dict[str, float]]:
    """``--scoring cloze``: each option's text (or label) scored as the continuation of the question
    asked without its options (the examples are already in cloze form: :func:`cloze_form`)."""
    start = time.time()
    headers = text_only(examples)
    candidates = [cloze_candidates(e, _labels(p, headers)) for e in headers]
    best, p.logprobs, rate = rank_all(
        model, examples, candidates, p.batch_size, progress, collate.shots, end_of_turn=False
    )
    return scored_answers(p.spec.scorer, headers, best), {"items_per_s": rate, "seconds": time.time() - start}


def _labels(p: EvalPlan, headers: Sequence[Example]) -> list[str] | None:
    """The closed label set a classification task is ranked against (None for multiple choice)."""
    if p.spec.kind != "classification":
        return None
    return closed_label_set(p.spec.manifest_task, [e.target for e in headers])


def cloze_form(
    p: EvalPlan, examples: list[Example] | LazyExamples, collate: Collator
) -> list[Example] | LazyExamples:
    """The examples (and few-shot shots) asked without their options (:mod:`moeaudio.eval.cloze`)."""
    labels = _labels(p, text_only(examples))
    collate.shots = cloze_examples(collate.shots, p.modality, labels)
    return cloze_examples(examples, p.modality, labels)


def score(p: EvalPlan, examples: list[Example], predictions: list[str]) -> dict[str, Any]:
    return p.handler.score(p.spec, examples, predictions, seed=p.seed)


def _mmau_official(items: list[Item], predictions: list[str]) -> list[dict[str, Any]]:
    """MMAU's own JSON layout (as in ``mmau-test-mini.json``) with the added ``model_output`` key."""
    out = []
    for item, pred in zip(items, predictions, strict=True):
        meta = item.meta or {}
        entry = {
            "id": item.id.removeprefix("mmau/"),
            "audio_id": item.audio,
            "question": item.instruction,
            "choices": item.choices,
            "answer": item.target,
            "dataset": meta.get("dataset"),
            "task": meta.get("mmau_task") or item.domain,
            "split": meta.get("split"),
            "category": meta.get("category"),
            "sub-category": meta.get("sub_category"),
            "difficulty": meta.get("difficulty"),
        }
        entry = {k: v for k, v in entry.items() if v is not None}
        entry["model_output"] = pred
        out.append(entry)
    return out


def _json_default(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def write_results(
    p: EvalPlan,
    examples: list[Example],
    predictions: list[str],
    scored: dict[str, Any],
    throughput: dict[str, float],
) -> dict[str, Any]:
    """Write predictions, figures and the result JSON (each atomically); return the result record."""
    stem = p.output.with_suffix("") if p.output.suffix == ".json" else p.output
    files: dict[str, str] = {}
    answers = scored.pop("answers")
    rows = []
    for k, (item, e, pred, ans) in enumerate(zip(p.items, examples, predictions, answers, strict=True)):
        row: dict[str, Any] = {"id": item.id, "audio": item.audio, "instruction": e.instruction}
        row.update(target=item.target, prediction=pred, answer=ans)
        if p.logprobs is not None:
            row["logprobs"] = p.logprobs[k]
        # kind-specific fields; may restate "answer" (VoiceBench: the letter scored)
        row.update(p.handler.prediction_row(item, ans))
        if p.long_audio is not None and (mark := p.long_audio.mark(item.id)):
            row["long_audio"] = mark  # windowed / truncated: longer than the encoder's window
        rows.append(row)
    pred_path = stem.parent / f"{stem.name}.predictions.jsonl"
    atomic_write_text(pred_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    files["predictions"] = str(pred_path)
    metrics = scored["metrics"]
    if p.spec.kind == "classification":
        png = stem.parent / f"{stem.name}.confusion.png"
        files["confusion_png"] = str(
            plot_confusion(metrics["confusion"], metrics["labels"], png, title=p.spec.name)
        )
    if p.spec.name == "mmau":
        mmau_path = stem.parent / f"{stem.name}.mmau.json"
        atomic_write_text(
            mmau_path, json.dumps(_mmau_official(p.items, predictions), indent=1, ensure_ascii=False)
        )
        files["mmau"] = str(mmau_path)
    result: dict[str, Any] = {
        "task": p.spec.name,
        "kind": p.spec.kind,
        "modality": p.modality,
        "scoring": p.scoring,
        "metric": p.spec.metric,
        "scorer": scored["scorer"],
        "scoring_rule": p.handler.scoring_rule(p.spec),
        "n": len(examples),
        "n_available": p.n_available,
        "n_longer_than_training_max": p.n_longer_than_training_max,
        "long_audio": None if p.long_audio is None else p.long_audio.summary(),
        "metrics": metrics,
        "chance": p.handler.chance_by_metric(scored, examples),
        "chance_level": scored["chance"],
        "majority": scored.get("majority"),
        "labels": scored.get("labels"),
        "prompts": sorted({e.instruction for e in examples})[:50],
        "normalizer": p.handler.normalizer(p.spec, examples),
        "decoding": {
            "strategy": decoding_strategy(p),
            "num_beams": p.num_beams,
            "ctc_weight": p.ctc_weight,
            "do_sample": False,
            "max_new_tokens": p.max_new_tokens,
            "batch_size": p.batch_size,
            "few_shot": p.few_shot,
            "few_shot_ids": p.shot_ids,
            "shot_pool": p.shot_pool,
            "seed": p.seed,
            "precision": str(p.dtype).removeprefix("torch."),
        },
        "checkpoint": str(p.checkpoint),
        "checkpoint_sha256": file_sha256(p.checkpoint / WEIGHTS),
        "manifest": str(p.manifest),
        "manifest_sha256": file_sha256(p.manifest),
        "versions": package_versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(p.device),
        "throughput": throughput,
        "files": files,
        "output": str(p.output),
    }
    _write_json(p.output, result)
    return result


def decoding_strategy(p: EvalPlan) -> str:
    """What produced the answers: the ranking rule, joint CTC/LLM rescoring, beam search or greedy."""
    if p.scoring != "generate":
        return p.scoring
    if p.ctc_weight is not None:
        return "joint_ctc"
    return "beam" if p.num_beams > 1 else "greedy"


def _write_json(path: Path, result: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(result, indent=1, ensure_ascii=False, default=_json_default))


# ------------------------------------------------------------------------------------- entry points


def evaluate(opts: EvalOptions, progress: bool = True) -> dict[str, Any]:
    """Plan -> examples -> generate -> score -> write; returns the result record (also in the JSON).

    Spoken questions with audio are scored again in writing (:func:`text_twin`, same loaded model) and
    the audio result gets the modality gap. One evaluation writes an output at a time: a second one
    into the same ``--output`` while the first runs is refused at once, naming it (:class:`FileLock`)."""
    p = plan(opts)
    with FileLock(p.output, "eval", hint="or write to another --output FILE", directory=False):
        model = load_model(p.source, device=p.device, dtype=p.dtype)
        result = run_plan(p, model, progress)
        if p.modality == "audio" and is_spoken_question(p.spec.kind, p.items):
            result = add_modality_gap(result, run_plan(text_twin(p), model, progress))
            _write_json(p.output, result)
    return result


def run_plan(p: EvalPlan, model: AudioLLM, progress: bool = True) -> dict[str, Any]:
    """Examples -> answers (generated or ranked) -> score -> write, for one plan."""
    prepare_long_audio(p, model)  # clips longer than the encoder's window: eval.long_audio
    examples, collate = build_examples(p, model, progress)
    if p.scoring == "cloze":
        examples = cloze_form(p, examples, collate)
    answer = {"loglik": rank, "cloze": cloze}.get(p.scoring, generate)
    predictions, throughput = answer(p, model, examples, collate, progress)
    predictions = windowed_predictions(p, model, predictions, collate, progress)
    examples = text_only(examples)  # scoring and the files need the texts, not the audio
    scored = score(p, examples, predictions)
    if p.logprobs is not None:  # lm-eval's acc_norm beside acc: log-likelihood per character
        normed = scored_answers(p.spec.scorer, examples, best_per_character(p.logprobs))
        scored["metrics"]["accuracy_norm"] = score(p, examples, normed)["metrics"]["accuracy"]
    return write_results(p, examples, predictions, scored, throughput)


def text_twin(p: EvalPlan) -> EvalPlan:
    """The plan of the same items in writing, same scoring and settings: the other side of the gap."""
    default = p.checkpoint / "eval"
    output = text_twin_output(
        p.output,
        default / output_name(p.spec.name, "audio", p.scoring),
        default / output_name(p.spec.name, "text", p.scoring),
    )
    return replace(p, modality="text", output=output, shot_ids=[], logprobs=None)


def run_eval(
    task: str,
    checkpoint: str | Path | None = None,
    manifest: str | Path | None = None,
    output: str | Path | None = None,
    *,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Python entry point: ``run_eval("intent", "runs/x", max_items=50)``; options as :class:`EvalOptions`."""
    to_str = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    opts = EvalOptions(
        task=task,
        checkpoint=None if checkpoint is None else str(checkpoint),
        manifest=None if manifest is None else str(manifest),
        output=None if output is None else str(output),
        **to_str,
    )
    return evaluate(opts, progress=progress)


def eval_json_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The one object `eval --json` prints: flat numeric metrics plus identification."""
    return {
        "task": result["task"],
        "kind": result["kind"],
        "modality": result["modality"],
        "scoring": result.get("scoring", "generate"),
        "n": result["n"],
        "metrics": summarize_numbers(result["metrics"]),
        **{k: result[k] for k in ("text_metrics", "modality_gap") if k in result},
        "chance": summarize_numbers(result["chance"]),
        "items_per_s": result["throughput"]["items_per_s"],
        "checkpoint": result["checkpoint"],
        "output": result["output"],
    }


def render_eval(result: dict[str, Any]) -> Table:
    """A rich table: each number with its chance level beside it."""
    how = f", {result['scoring']}" if result.get("scoring", "generate") != "generate" else ""
    title = f"{result['task']} ({result['kind']}, {result['modality']}{how}) n={result['n']}"
    table = Table("metric", "value", "chance", title=title)
    for name, value, chance in handler_for(result["kind"], result.get("scorer")).table_rows(result):
        if isinstance(value, int | float):
            table.add_row(name, f"{value:.3f}", "-" if chance is None else f"{chance:.3f}")
    if "accuracy_norm" in result["metrics"]:
        chance = result["chance"].get("accuracy")
        table.add_row(
            "accuracy, log-likelihood per character",
            f"{result['metrics']['accuracy_norm']:.3f}",
            "-" if chance is None else f"{chance:.3f}",
        )
    if result["kind"] == "classification" and result.get("majority") is not None:
        table.add_row("majority-class accuracy", f"{result['majority']:.3f}", "")
    for name, value, _ in gap_rows(result):  # spoken questions: the same items in writing, and the gap
        table.add_row(name, f"{value:+.3f}" if name.startswith("modality gap") else f"{value:.3f}", "")
    table.caption = f"{result['throughput']['items_per_s']:.2f} items/s on {result['device']}"
    return table
