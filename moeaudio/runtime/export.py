"""`moeaudio export CHECKPOINT OUT`: a self-contained folder that loads where the run never was.

A training checkpoint leaves a frozen pretrained encoder out of its weights and rebuilds it from its
reference (a hub id, a local path, the offline Whisper converted into ``$MOEAUDIO_CACHE``), builds the
tokenizer and a ``tiny`` LLM from code, and keeps a LoRA as moeaudio's own tensors. An export carries
everything instead::

    OUT/
      README.md            model card: what it is, its data, its metrics (CHECKPOINT/eval/*.json), how to load it
      recipe.yaml          the resolved recipe, its paths pointing at the files below (./encoder, ./llm, ...)
      model.safetensors    encoder (always, frozen or not), frame stacker and adapter weights
      encoder/             the encoder's config and feature extractor (config.json, preprocessor_config.json)
      llm/                 the LLM as a standard transformers folder (LoRA merged into it by default)
      lora/                with --lora adapter: the LoRA as a standard PEFT adapter (adapter_config.json)
      tokenizer/           the tokenizer (audio placeholder, chat template)
      eval/                the checkpoint's result files
      export.json          what was exported from where, and which weights live outside model.safetensors

:func:`moeaudio.runtime.checkpoint.load_model` (and so ``moeaudio.load``, ``eval``, ``transcribe``) reads an
export like a checkpoint. Nothing is downloaded or converted: the export is written into a hidden sibling
folder and renamed into place when complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from moeaudio.config import Recipe
from moeaudio.data.manifest import read_manifest
from moeaudio.errors import UsageError
from moeaudio.model.encoder import ENCODER_STAMP
from moeaudio.runtime.checkpoint import (
    EXPORT_MANIFEST,
    WEIGHTS,
    load_model,
    load_trainer_state,
    resolve_checkpoint,
)

__all__ = ["LORA_MODES", "export_checkpoint", "model_card"]

#: How a LoRA is exported: merged into the LLM's weights, or kept as a PEFT adapter folder beside them.
LORA_MODES = ("merge", "adapter")


def _sha256_tensors(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _base_encoder(encoder: torch.nn.Module) -> torch.nn.Module:
    """The pretrained encoder under the pitch stream, if any."""
    return getattr(encoder, "base", encoder)


def _save_encoder_files(model, out: Path) -> None:
    """``encoder/``: the config and feature extractor the encoder is rebuilt from (weights: model.safetensors)."""
    base = _base_encoder(model.encoder)
    net = getattr(base, "encoder", None) or getattr(base, "model", None)  # Whisper | WavLM/HuBERT/wav2vec2
    out.mkdir(parents=True)
    net.config.save_pretrained(str(out))
    base.feature_extractor.save_pretrained(str(out))


def _source_label(recipe: Recipe) -> dict[str, str]:
    return {
        "encoder": recipe.encoder.name,
        "llm": recipe.llm.name,
        "tokenizer": recipe.llm.tokenizer or recipe.llm.name,
    }


def export_checkpoint(
    checkpoint: str | Path | None,
    out: str | Path,
    *,
    lora: str = "merge",
    runs_dir: str | Path = "runs",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the self-contained export of ``checkpoint`` (a run directory means its latest checkpoint)
    into ``out``; returns what ``export.json`` records."""
    if lora not in LORA_MODES:
        raise UsageError(f"--lora must be one of {', '.join(LORA_MODES)} (got {lora!r})")
    ckpt = resolve_checkpoint(checkpoint, runs_dir)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} exists and is not empty; pass --overwrite or choose another folder")
    model = load_model(ckpt)  # the source's references (hub, offline Whisper cache) are needed once, here
    recipe = model.recipe.model_copy(deep=True)
    sources = _source_label(recipe)
    tmp = out.parent / f".tmp-export-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    # the encoder (always), the stacker and the adapter: everything but the LLM, in one weights file
    state = {
        k: v.detach().cpu().clone().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("llm.")
    }
    encoder_state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    if recipe.encoder.name != "tiny":  # tiny: built from the recipe's own config, nothing to point at
        _save_encoder_files(model, tmp / "encoder")
        stamp = {
            "weights": f"../{WEIGHTS}",
            "sha256": _sha256_tensors(encoder_state),
            "from": recipe.encoder.name,
        }
        (tmp / "encoder" / ENCODER_STAMP).write_text(json.dumps(stamp, indent=1))
        recipe.encoder.name = "./encoder"
    save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})

    # the LLM as a standard transformers folder; LoRA merged, or as a PEFT adapter folder beside it
    llm = model.llm
    lora_mode = None
    if recipe.llm.lora_r > 0 or recipe.llm.lora_adapter:
        lora_mode = "merged" if lora == "merge" else "adapter"
        if lora == "adapter":
            llm.save_pretrained(str(tmp / "lora"))  # adapter_config.json + adapter_model.safetensors
            llm = llm.unload()  # the base weights, LoRA layers removed (not merged)
            recipe.llm.lora_adapter = "./lora"
        else:
            llm = llm.merge_and_unload()
            recipe.llm.lora_r, recipe.llm.lora_adapter = 0, None
    llm.save_pretrained(str(tmp / "llm"))
    recipe.llm.vocab = "full"  # a trimmed (llm.vocab=corpus) tokenizer is saved as it is, below
    recipe.llm.name = "./llm"
    model.tokenizer.save_pretrained(str(tmp / "tokenizer"))
    recipe.llm.tokenizer = "./tokenizer"
    (tmp / "recipe.yaml").write_text(recipe.to_yaml())

    eval_dir = ckpt / "eval"
    results = sorted(eval_dir.glob("*.json")) if eval_dir.is_dir() else []
    if results:
        (tmp / "eval").mkdir()
        for path in results:
            shutil.copy2(path, tmp / "eval" / path.name)
    trainer_state = load_trainer_state(ckpt, ("step",)) if (ckpt / "trainer_state.json").exists() else {}
    manifest = {
        "format": "moeaudio-export",
        "version": 1,
        "moeaudio": _version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint": str(ckpt.resolve()),
        "source_sha256": _file_sha256(ckpt / WEIGHTS),
        "step": trainer_state.get("step"),
        "sources": sources,
        "lora": lora_mode,
        "weights_elsewhere": ["llm."],  # in llm/ (and lora/)
        "files": sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()),
    }
    (tmp / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1))
    (tmp / "README.md").write_text(model_card(model, recipe, manifest, trainer_state, results))
    manifest["files"].append("README.md")
    (tmp / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {**manifest, "out": str(out)}


def _version() -> str | None:
    try:
        return metadata.version("moeaudio")
    except metadata.PackageNotFoundError:
        return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _data_lines(recipe: Recipe) -> list[str]:
    root = Path(recipe.data.root)
    lines = [f"- corpus: `{recipe.data.root}` (train `{recipe.data.train}`, valid `{recipe.data.valid}`)"]
    tasks = recipe.data.tasks
    lines.append(f"- tasks trained on: {', '.join(tasks) if tasks else 'every task in the manifests'}")
    train = Path(recipe.data.train) if Path(recipe.data.train).is_absolute() else root / recipe.data.train
    if train.is_file():
        items = read_manifest(train)
        counts = Counter(i.task for i in items if not tasks or i.task in tasks)
        hours = sum(i.duration or 0 for i in items) / 3600
        lines.append(
            f"- training items: {sum(counts.values()):,} ({hours:.1f} h of audio): "
            + ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items()))
        )
    else:
        lines.append("- (the training manifest was not readable at export time: counts not recorded)")
    return lines


def _metric_rows(results: list[Path]) -> list[str]:
    rows = []
    for path in results:
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(r, dict) or "metrics" not in r or "task" not in r:
            continue  # e.g. MMAU's own-format file beside the result
        metric = r.get("metric") or "accuracy"
        value = r["metrics"].get(metric)
        chance = (r.get("chance") or {}).get(metric)
        shown = f"{value:.3f}" if isinstance(value, int | float) else "-"
        chance_s = f"{chance:.3f}" if isinstance(chance, int | float) else "-"
        extra = ""
        if r.get("scorer") == "voicebench":
            extra = f" (fail rate {r['metrics'].get('fail_rate', float('nan')):.3f})"
        rows.append(
            f"| {r['task']} ({r.get('modality', 'audio')}) | {metric}{extra} | {shown} | {chance_s} | {r.get('n')} | "
            f"`{Path(str(r.get('manifest', ''))).name}` |"
        )
    return rows


def model_card(
    model, recipe: Recipe, manifest: dict[str, Any], trainer_state: dict[str, Any], results: list[Path]
) -> str:
    """The export's README.md: what the model is, what it was trained on, how it scores, how to load it."""
    src = manifest["sources"]
    a = recipe.adapter
    adapter_counts = model.adapter.param_counts()
    if a.kind == "moe":
        adapter = (
            f"MoE-Adapter: {a.num_experts} experts, top-{a.top_k} ({a.score_func}), shared path {a.shared_path}; "
            f"{adapter_counts['active']:,} of {adapter_counts['total']:,} parameters active per audio token"
        )
    else:
        adapter = f"{a.kind} adapter, {adapter_counts['total']:,} parameters"
    encoder = (
        f"`{src['encoder']}` ({recipe.encoder.family}, {'frozen' if recipe.encoder.freeze else 'trained'}), "
        f"{recipe.encoder.stack} frames per audio token"
        + (", plus the semitone / pitch-class stream" if recipe.encoder.pitch_features else "")
    )
    lora = {"merged": ", LoRA merged into the weights", "adapter": ", LoRA as a PEFT adapter in `lora/`"}.get(
        manifest["lora"] or "", ""
    )
    base = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
    cfg = base.config
    built = " built from its config" if src["llm"] == "tiny" else ""
    llm = (
        f"`{src['llm']}`: {type(base).__name__}{built}, {cfg.num_hidden_layers} layers of width "
        f"{cfg.hidden_size}, vocabulary {cfg.vocab_size:,}{lora}"
    )
    history = trainer_state.get("history") or []
    last = history[-1] if history else {}
    metric_rows = _metric_rows(results)
    metrics = (
        [
            "| task | metric | value | chance | n | manifest |",
            "|---|---|---|---|---|---|",
            *metric_rows,
            "",
            "From the checkpoint's `eval/*.json` (copied to `eval/`: prompts, normaliser, decoding settings, "
            "scoring rule and its source, checkpoint and manifest hashes).",
        ]
        if metric_rows
        else [
            "No `eval/*.json` in the checkpoint: score it with `moeaudio eval --checkpoint THIS_FOLDER --task TASK`."
        ]
    )
    lines = [
        f"# {recipe.name}",
        "",
        recipe.description or "An audio LLM trained with moeaudio.",
        "",
        f"Exported by moeaudio {manifest['moeaudio'] or ''} on {manifest['date']} from `{manifest['source_checkpoint']}`"
        + (f" (step {manifest['step']})" if manifest["step"] is not None else "")
        + ". Everything it needs is in this folder: nothing is downloaded or converted when it loads.",
        "",
        "## What it is",
        "",
        "Audio encoder -> frame stacking -> adapter -> LLM: the adapter's outputs replace the audio "
        "placeholder tokens of a chat prompt.",
        "",
        "| part | what | parameters |",
        "|---|---|---|",
        f"| encoder | {encoder} | {_params(model.encoder):,} |",
        f"| adapter | {adapter} | {adapter_counts['total']:,} |",
        f"| LLM | {llm} | {_params(model.llm):,} |",
        "",
        "## Training",
        "",
        *_data_lines(recipe),
        f"- steps: {trainer_state.get('step', '?')}, seed {recipe.train.seed}, peak LR {recipe.train.lr:g} "
        f"({recipe.train.schedule}), micro-batch {recipe.data.micro_batch_size} x {recipe.train.grad_accum} accumulation"
        + (f"; last logged loss {last['loss']:.3f}" if "loss" in last else ""),
        "",
        "## Evaluation",
        "",
        *metrics,
        "",
        "## How to load it",
        "",
        "```python",
        "import moeaudio",
        "",
        'model = moeaudio.load("THIS_FOLDER")            # bf16 on a GPU, fp32 on CPU',
        'print(model.transcribe("talk.wav").text)',
        'print(model.generate("clip.wav", "What sound is heard in the audio?"))',
        "```",
        "",
        "From the command line: `moeaudio eval --checkpoint THIS_FOLDER --task asr`, "
        "`moeaudio transcribe talk.wav --checkpoint THIS_FOLDER`.",
        "",
        'The LLM alone is a standard transformers folder: `AutoModelForCausalLM.from_pretrained("THIS_FOLDER/llm")`'
        + (
            ', with its LoRA: `peft.PeftModel.from_pretrained(that_model, "THIS_FOLDER/lora")`.'
            if manifest["lora"] == "adapter"
            else "."
        ),
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
        "| `recipe.yaml` | the resolved recipe; `./` paths point into this folder |",
        f"| `{WEIGHTS}` | encoder, frame stacker and adapter weights |",
        *(["| `encoder/` | the encoder's config and feature extractor (its weights are in the file above) |"]
          if "encoder/config.json" in manifest["files"] else []),
        "| `llm/` | the LLM (transformers) |",
        *(["| `lora/` | the LoRA as a PEFT adapter (`adapter_config.json`) |"] if manifest["lora"] == "adapter" else []),
        "| `tokenizer/` | the tokenizer, with the audio placeholder and chat template |",
        *(["| `eval/` | the checkpoint's evaluation results |"] if results else []),
        f"| `{EXPORT_MANIFEST}` | where this came from (source checkpoint and its sha256, step, versions) |",
        "",
    ]  # fmt: skip
    return "\n".join(lines)
