"""`moeaudio eval`: score one task of a checkpoint and write a self-describing result file.

:func:`run_eval` resolves the checkpoint (latest under ``runs/`` by default) and the data (the
checkpoint recipe's ``test.jsonl``, else ``valid.jsonl``, narrowed to the task), generates answers
(greedy or beam, optionally few-shot with audio in the earlier turns), scores them with the task's
metric (:mod:`moeaudio.eval.tasks`) and writes, next to each other:

* ``<checkpoint>/eval/<task>.json``: task, prompts, normaliser, decoding settings, checkpoint and
  manifest sha256, package versions, date, n, metrics, chance levels, throughput;
* ``<task>.predictions.jsonl``: one line per item (target, raw generation, extracted answer);
* ``<task>.confusion.png`` for classification, ``<task>.mmau.json`` (the MMAU benchmark's own
  format: its JSON items plus ``model_output``) for MMAU.

``--modality text`` evaluates the text version of spoken questions (``meta.text_prompt``, VoiceBench)
with no audio in the prompt, so the speech-vs-text modality gap can be reported; its files get a
``.text`` infix so both results sit side by side.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import random
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from moeaudio.eval.tasks import EvalTask, get_task, prepare_hint
from moeaudio.model.audio_llm import Collator

__all__ = [
    "EvalDataError",
    "EvalError",
    "FewShotCollator",
    "eval_json_summary",
    "file_sha256",
    "package_versions",
    "render_eval",
    "resolve_checkpoint",
    "resolve_manifest",
    "run_eval",
    "select_shots",
]

#: Instruction put before VoiceBench's text prompt in ``--modality text`` (mirrors the spoken version).
TEXT_MCQ_INSTRUCTION = "Answer the multiple-choice question. Reply with the letter of the correct option."


class EvalError(ValueError):
    """A usage problem the CLI reports as one line (bad option, missing checkpoint, ...)."""


class EvalDataError(EvalError, FileNotFoundError):
    """No data for the task; the message names the `moeaudio prepare ...` command that makes it."""


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


# ------------------------------------------------------------------------------------ resolution


def resolve_checkpoint(checkpoint: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """The given checkpoint directory (a run directory means its latest checkpoint), else the newest."""
    from moeaudio.train.checkpoint import WEIGHTS, find_latest_run_checkpoint, latest_checkpoint

    if checkpoint is None:
        found = find_latest_run_checkpoint(runs_dir)
        if found is None:
            raise EvalError(
                f"no checkpoint found under {runs_dir}/: train one first (`moeaudio train quickstart`) "
                "or pass --checkpoint DIR"
            )
        return found
    path = Path(checkpoint)
    if not (path / WEIGHTS).exists() and (path / "checkpoints").is_dir():
        run_latest = latest_checkpoint(path)
        if run_latest is not None:
            return run_latest
    if not (path / WEIGHTS).exists():
        raise EvalError(f"{path}: no {WEIGHTS}; pass a checkpoint directory (RUN/checkpoints/step-NNNNNN)")
    return path


def resolve_manifest(spec: EvalTask, recipe, manifest: str | Path | None) -> tuple[Path, list]:
    """``(manifest path, the task's items in it)``; raises :class:`EvalDataError` naming a fix."""
    from moeaudio.data.manifest import read_manifest
    from moeaudio.train.data import manifest_path

    root = Path(recipe.data.root)
    if manifest is not None:
        path = Path(manifest)
        if not path.exists():
            raise EvalDataError(f"{path}: manifest not found")
        items = [i for i in read_manifest(path) if spec.selects(i)]
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
            items = [i for i in read_manifest(path) if spec.selects(i)]
            if items:
                return path, items
    raise EvalDataError(
        f"no data for task '{spec.name}': none of {', '.join(tried)} has items for it. "
        f"Prepare it with {prepare_hint(spec, str(root))}, or pass --manifest FILE"
    )


# ------------------------------------------------------------------------------------- few-shot


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


class FewShotCollator(Collator):
    """Generation batches whose prompt starts with the same solved examples (user/assistant turns).

    Every shot keeps its audio: the batch carries one encoder row per clip in prompt order (shots,
    then the query), which :meth:`AudioLLM.embed` scatters into the placeholders row by row.
    """

    def __init__(self, model, shots: list):
        super().__init__(model, for_generation=True)
        self.shots = list(shots)

    def conversation_ids(self, turns: list, n_audio: list[int | None]) -> list[int]:
        """Token ids of the chat ``shots + [query]`` with each placeholder expanded to its audio tokens."""
        messages = []
        for k, e in enumerate(turns):
            messages.append(
                {"role": "user", "content": self.user_content(e.instruction, n_audio[k] is not None)}
            )
            if k < len(turns) - 1:
                messages.append({"role": "assistant", "content": e.target or ""})
        if self.tok.chat_template:
            kwargs = {"enable_thinking": False} if "enable_thinking" in self.tok.chat_template else {}
            text = self.tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **kwargs
            )
        else:
            text = "".join(f"{m['content']}\n" for m in messages)
        ids = self.tok(text, add_special_tokens=False).input_ids
        counts = iter(n for n in n_audio if n is not None)
        out: list[int] = []
        for token in ids:
            out.extend([token] * next(counts) if token == self.model.audio_token_id else [token])
        return out

    def __call__(self, examples: list):
        import torch

        from moeaudio.model.audio_llm import AudioBatch

        if not self.shots:
            return super().__call__(examples)
        model = self.model
        conversations = [[*self.shots, e] for e in examples]
        clips = [e for conv in conversations for e in conv if e.wave is not None or e.states is not None]
        frame_lengths, enc_inputs, states = self.collate_audio(clips)
        tokens = iter(model.stacker.token_lengths(frame_lengths).tolist())
        rows = []
        for conv in conversations:
            n_audio = [next(tokens) if e.wave is not None or e.states is not None else None for e in conv]
            rows.append(self.conversation_ids(conv, n_audio))
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.tok.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every response starts at the same position
            input_ids[i, width - len(row) :] = torch.tensor(row)
            attention[i, width - len(row) :] = 1
        return AudioBatch(
            input_ids, attention, None, frame_lengths, enc_inputs, states, [e.meta for e in examples]
        )


# ------------------------------------------------------------------------------------- examples


def _text_examples(items: list) -> list:
    """Text-only Examples from ``meta.text_prompt``; every item must have one."""
    from moeaudio.model.audio_llm import Example

    missing = [i.id for i in items if not (i.meta or {}).get("text_prompt")]
    if missing:
        raise EvalError(
            f"--modality text needs meta.text_prompt on every item (VoiceBench has it); "
            f"{len(missing)} of {len(items)} items lack it, e.g. {missing[0]}"
        )
    return [
        Example(f"{TEXT_MCQ_INSTRUCTION}\n{i.meta['text_prompt']}", i.target, meta=i.to_dict()) for i in items
    ]


def _audio_examples(model, manifest: Path, recipe, items: list, progress: bool) -> list:
    from moeaudio.train.data import load_examples

    return load_examples(model, manifest, recipe, progress=progress, items=items)


def _eval_recipe(recipe):
    """The checkpoint's recipe with the training task filter lifted (eval picks its own task)."""
    copy = recipe.model_copy(deep=True)
    copy.data.tasks = None
    return copy


# ------------------------------------------------------------------------------------- outputs


def _stem(output: Path) -> Path:
    return output.with_suffix("") if output.suffix == ".json" else output


def _mmau_official(items: list, predictions: list[str]) -> list[dict[str, Any]]:
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


def _group_chance(examples: list) -> dict[str, dict[str, float]]:
    """Chance accuracy (mean 1/#choices) per MCQ breakdown group, keyed like the metrics."""
    groups: dict[str, dict[str, list[float]]] = {"by_domain": {}, "by_category": {}, "by_difficulty": {}}
    for e in examples:
        inner = e.meta.get("meta") or {}
        p = 1 / len(e.meta["choices"])
        for name, value in (
            ("by_domain", e.meta.get("domain")),
            ("by_category", inner.get("category")),
            ("by_difficulty", inner.get("difficulty")),
        ):
            if value is not None:
                groups[name].setdefault(str(value), []).append(p)
    return {g: {k: sum(v) / len(v) for k, v in vals.items()} for g, vals in groups.items()}


def _normalizer_name(spec: EvalTask, examples: list) -> str:
    if spec.kind == "asr":
        from moeaudio.eval.normalize import english_spelling_source, normalize_english, normalizer_for

        lang = examples[0].meta.get("lang") or "en"
        if normalizer_for(lang) is normalize_english:
            return f"whisper EnglishTextNormalizer (spelling map: {english_spelling_source()})"
        return "whisper BasicTextNormalizer"
    if spec.kind == "caption":
        return "moeaudio.eval.metrics.normalize_caption"
    if spec.kind == "mcq":
        letters = "option letters mapped to option text, then " if spec.letter_answers else ""
        return f"{letters}MMAU string_match (lower-case \\b\\w+\\b token sets)"
    return "moeaudio.eval.metrics.match_label (case/punctuation-insensitive label match)"


# ------------------------------------------------------------------------------------- main entry


def run_eval(
    task: str,
    checkpoint: str | Path | None = None,
    manifest: str | Path | None = None,
    output: str | Path | None = None,
    *,
    few_shot: int | None = None,
    num_beams: int | None = None,
    max_items: int | None = None,
    modality: str = "audio",
    runs_dir: str | Path = "runs",
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``task`` and write the result files; returns the result record (also in the JSON file).

    ``None`` options take the task's default (decoding) or the checkpoint recipe's ``eval`` section
    (few_shot, num_beams, batch_size, max_items). Raises :class:`EvalDataError` when the task has no
    data (the message names the ``moeaudio prepare`` command) and :class:`EvalError` for bad options.
    """
    import torch

    from moeaudio.eval.metrics import mmau_is_correct, plot_confusion
    from moeaudio.eval.runner import generate_all, score_task
    from moeaudio.io_utils import atomic_write_text
    from moeaudio.train.checkpoint import WEIGHTS, load_model
    from moeaudio.train.data import manifest_path

    if modality not in ("audio", "text"):
        raise EvalError(f"--modality must be audio or text (got {modality!r})")
    spec = get_task(task)
    if modality == "text" and spec.kind != "mcq":
        raise EvalError(
            f"--modality text is for spoken multiple-choice tasks (mmsu, openbookqa), not '{task}'"
        )
    ckpt = resolve_checkpoint(checkpoint, runs_dir)
    from moeaudio.config import load_recipe

    recipe = _eval_recipe(load_recipe(ckpt / "recipe.yaml"))
    manifest_file, items = resolve_manifest(spec, recipe, manifest)
    few_shot = recipe.eval.few_shot if few_shot is None else few_shot
    num_beams = recipe.eval.num_beams if num_beams is None else num_beams
    batch_size = batch_size or recipe.eval.batch_size
    max_items = max_items if max_items is not None else recipe.eval.max_items
    max_new_tokens = max_new_tokens or spec.max_new_tokens
    if few_shot < 0 or num_beams < 1 or batch_size < 1:
        raise EvalError("--few-shot must be >= 0, --num-beams and --batch-size >= 1")
    total_items = len(items)
    if max_items:
        items = items[:max_items]

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(ckpt, device=device)
    # every selected item is scored (n stays honest): clips longer than training's limit are not dropped
    n_long = sum(1 for i in items if (i.duration or 0) > recipe.data.max_audio_seconds)
    recipe.data.max_audio_seconds = float("inf")
    if modality == "text":
        examples = _text_examples(items)
    else:
        examples = _audio_examples(model, manifest_file, recipe, items, progress)

    shots_meta: list[str] = []
    collate = None
    if few_shot:
        from moeaudio.data.manifest import read_manifest

        train_manifest = manifest_path(recipe, "train")
        if not train_manifest.exists():
            raise EvalDataError(f"--few-shot needs the train manifest {train_manifest}; it does not exist")
        shot_items = select_shots(spec, read_manifest(train_manifest), few_shot, seed, {i.id for i in items})
        if len(shot_items) < few_shot:
            raise EvalDataError(
                f"--few-shot {few_shot}: {train_manifest} has only {len(shot_items)} items for task '{task}'"
            )
        shots = (
            _text_examples(shot_items)
            if modality == "text"
            else _audio_examples(model, train_manifest, recipe, shot_items, progress)
        )
        shots_meta = [i.id for i in shot_items]
        collate = FewShotCollator(model, shots)

    start = time.time()
    with torch.no_grad():
        predictions, rate = generate_all(
            model, examples, batch_size, max_new_tokens, num_beams, progress, collate=collate
        )
    seconds = time.time() - start
    scored = score_task(spec.manifest_task, examples, predictions, spec=spec)
    answers = scored.pop("answers")

    out = (
        Path(output)
        if output
        else ckpt / "eval" / (f"{task}.text.json" if modality == "text" else f"{task}.json")
    )
    stem = _stem(out)
    files: dict[str, str] = {}

    pred_rows = []
    for item, e, pred, ans in zip(items, examples, predictions, answers, strict=True):
        row: dict[str, Any] = {"id": item.id, "audio": item.audio, "instruction": e.instruction}
        row.update(target=item.target, prediction=pred, answer=ans)
        if spec.kind == "classification":
            row["correct"] = ans == item.target
        elif spec.kind == "mcq":
            row["choices"] = item.choices
            row["correct"] = mmau_is_correct(ans, item.target, item.choices)
        pred_rows.append(row)
    pred_path = stem.parent / f"{stem.name}.predictions.jsonl"
    atomic_write_text(pred_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pred_rows))
    files["predictions"] = str(pred_path)

    metrics = scored["metrics"]
    chance: dict[str, Any] = {}
    if spec.kind == "classification":
        png = plot_confusion(
            metrics["confusion"], metrics["labels"], stem.parent / f"{stem.name}.confusion.png", title=task
        )
        files["confusion_png"] = str(png)
        chance = {"accuracy": scored["chance"], "uar": scored["chance"], "macro_f1": scored["chance"]}
    elif spec.kind == "mcq":
        chance = {"accuracy": scored["chance"], **_group_chance(examples)}
    if spec.name == "mmau":
        mmau_path = stem.parent / f"{stem.name}.mmau.json"
        atomic_write_text(
            mmau_path, json.dumps(_mmau_official(items, predictions), indent=1, ensure_ascii=False)
        )
        files["mmau"] = str(mmau_path)

    result: dict[str, Any] = {
        "task": task,
        "kind": spec.kind,
        "modality": modality,
        "metric": spec.metric,
        "n": len(examples),
        "n_available": total_items,
        "n_longer_than_training_max": n_long,
        "metrics": metrics,
        "chance": chance,
        "chance_level": scored["chance"],
        "majority": scored.get("majority"),
        "labels": scored.get("labels"),
        "prompts": sorted({e.instruction for e in examples})[:50],
        "normalizer": _normalizer_name(spec, examples),
        "decoding": {
            "strategy": "beam" if num_beams > 1 else "greedy",
            "num_beams": num_beams,
            "do_sample": False,
            "max_new_tokens": max_new_tokens,
            "batch_size": batch_size,
            "few_shot": few_shot,
            "few_shot_ids": shots_meta,
            "seed": seed,
        },
        "checkpoint": str(ckpt),
        "checkpoint_sha256": file_sha256(ckpt / WEIGHTS),
        "manifest": str(manifest_file),
        "manifest_sha256": file_sha256(manifest_file),
        "versions": package_versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "throughput": {"items_per_s": rate, "seconds": seconds},
        "files": files,
        "output": str(out),
    }
    atomic_write_text(out, json.dumps(result, indent=1, ensure_ascii=False, default=_json_default))
    return result


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def eval_json_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The one object `eval --json` prints: flat numeric metrics plus identification."""
    from moeaudio.eval.metrics import summarize_numbers

    return {
        "task": result["task"],
        "kind": result["kind"],
        "modality": result["modality"],
        "n": result["n"],
        "metrics": summarize_numbers(result["metrics"]),
        "chance": summarize_numbers(result["chance"]),
        "items_per_s": result["throughput"]["items_per_s"],
        "checkpoint": result["checkpoint"],
        "output": result["output"],
    }


def render_eval(result: dict[str, Any]):
    """A rich table: each number with its chance level beside it."""
    from rich.table import Table

    title = f"{result['task']} ({result['kind']}, {result['modality']}) n={result['n']}"
    table = Table("metric", "value", "chance", title=title)
    m, chance = result["metrics"], result["chance"]

    def add(name: str, value: Any, ch: Any = None) -> None:
        if isinstance(value, int | float):
            table.add_row(name, f"{value:.3f}", "-" if ch is None else f"{ch:.3f}")

    if result["kind"] == "asr":
        for name in ("wer", "cer"):
            add(name, m[name])
    elif result["kind"] == "caption":
        for name in ("bleu4", "rouge_l", "cider_d"):
            add(name, m[name])
    elif result["kind"] == "classification":
        for name in ("accuracy", "uar", "macro_f1"):
            add(name, m[name], chance.get(name))
        if result.get("majority") is not None:
            table.add_row("majority-class accuracy", f"{result['majority']:.3f}", "")
    else:
        add("accuracy", m["accuracy"], chance.get("accuracy"))
        for group in ("by_domain", "by_category", "by_difficulty"):
            for key, vals in (m.get(group) or {}).items():
                add(
                    f"{group.removeprefix('by_')}={key} (n={vals['total']})",
                    vals["accuracy"],
                    chance.get(group, {}).get(key),
                )
    table.caption = f"{result['throughput']['items_per_s']:.2f} items/s on {result['device']}"
    return table
