"""Find, resolve and load checkpoints: what eval, transcribe, analyze and resume share.

Layout of one checkpoint (``RUN/checkpoints/step-000200/``)::

    recipe.yaml           the resolved recipe (rebuilds the model)
    model.safetensors     consolidated weights (ZeRO-3 shards gathered); no pickle
    tokenizer/            the tokenizer with its audio placeholder and chat template
    trainer_state.json    step, seed, batches consumed, RNG states, metrics
    deepspeed/            DeepSpeed's own shards, for exact resume only

An export (``moeaudio export``, :mod:`moeaudio.runtime.export`) is a directory :func:`load_model` reads
the same way: its recipe names files inside it (``./encoder``, ``./llm``, ``./tokenizer``), which are
resolved against the directory, and ``export.json`` says which weights live outside ``model.safetensors``.

Writing checkpoints needs the DeepSpeed engine and lives in ``moeaudio.train.checkpoint``; reading
them needs neither DeepSpeed nor pickle and lives here, so every command below training can load
a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from moeaudio.config import Recipe, load_recipe
from moeaudio.errors import CheckpointError
from moeaudio.model.audio_llm import AudioLLM, build_audio_llm

__all__ = [
    "EXPORT_MANIFEST",
    "WEIGHTS",
    "checkpoint_root",
    "find_latest_run_checkpoint",
    "latest_checkpoint",
    "load_model",
    "load_trainer_state",
    "rebuilt_parts",
    "resolve_checkpoint",
]

WEIGHTS = "model.safetensors"
EXPORT_MANIFEST = "export.json"
#: Recipe fields that may name a path inside the checkpoint (``./...``).
LOCAL_PATH_FIELDS = (("encoder", "name"), ("llm", "name"), ("llm", "tokenizer"), ("llm", "lora_adapter"))


def resolve_local_paths(recipe, checkpoint: Path):
    """``./x`` in the path fields of a checkpoint's recipe -> ``CHECKPOINT/x`` (exports name their own files)."""
    for section, key in LOCAL_PATH_FIELDS:
        value = getattr(getattr(recipe, section), key)
        if isinstance(value, str) and value.startswith("./"):
            setattr(getattr(recipe, section), key, str((checkpoint / value).resolve()))
    return recipe


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (``latest`` pointer, else the highest step)."""
    root = checkpoint_root(run_dir)
    pointer = root / "latest"
    if pointer.exists():
        candidate = root / pointer.read_text().strip()
        if (candidate / "trainer_state.json").exists():
            return candidate
    steps = sorted(p for p in root.glob("step-*") if (p / "trainer_state.json").exists())
    return steps[-1] if steps else None


def find_latest_run_checkpoint(runs_dir: str | Path = "runs") -> Path | None:
    """The most recently written checkpoint under a runs directory (commands without --checkpoint)."""
    found = [p for p in Path(runs_dir).glob("**/checkpoints/step-*") if (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: (p / "trainer_state.json").stat().st_mtime) if found else None


def resolve_checkpoint(checkpoint: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """The given checkpoint directory (a run directory means its latest checkpoint), else the newest
    checkpoint under ``runs_dir``. Raises :class:`CheckpointError` naming what to pass instead."""
    if checkpoint is None:
        found = find_latest_run_checkpoint(runs_dir)
        if found is None:
            raise CheckpointError(
                f"no checkpoint found under {runs_dir}/: train one first (`moeaudio train quickstart`) "
                "or pass --checkpoint DIR"
            )
        return found
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not (path / WEIGHTS).exists() and (path / "checkpoints").is_dir():
        run_latest = latest_checkpoint(path)
        if run_latest is not None:
            return run_latest
    if not (path / WEIGHTS).exists():
        raise CheckpointError(
            f"{path}: no {WEIGHTS}; pass a checkpoint directory (RUN/checkpoints/step-NNNNNN) or a run directory"
        )
    return path


def rebuilt_parts(recipe: Recipe) -> tuple[str, ...]:
    """State-dict prefixes a checkpoint does not store: frozen parts rebuilt from their reference
    (hub id, path or offline weights) when the model is built. A ``tiny`` part is random, so it is
    always stored; a frozen LLM with LoRA is stored (its adapters are trained)."""
    parts = []
    if recipe.encoder.freeze and recipe.encoder.name != "tiny":
        parts.append("encoder.")
    if recipe.llm.freeze and recipe.llm.lora_r == 0 and recipe.llm.name != "tiny":
        parts.append("llm.")
    return tuple(parts)


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def load_model(
    checkpoint: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> AudioLLM:
    """Rebuild the AudioLLM from a checkpoint directory, in eval mode, without DeepSpeed or pickle;
    on ``device``, its floating-point weights cast to ``dtype`` when given (bf16 inference on a GPU).

    Frozen parts rebuilt from their reference (:func:`rebuilt_parts`) are not in a training
    checkpoint's weights file; every other parameter must be. In an export every weight is in the
    export: the LLM's in its own folder (listed in ``export.json``), all others in the weights file.
    """
    checkpoint = Path(checkpoint)
    if not (checkpoint / WEIGHTS).exists():
        raise CheckpointError(f"{checkpoint}: no {WEIGHTS}; is this a moeaudio checkpoint directory?")
    recipe = resolve_local_paths(load_recipe(checkpoint / "recipe.yaml"), checkpoint)
    export = checkpoint / EXPORT_MANIFEST
    if export.exists():
        elsewhere = tuple(json.loads(export.read_text()).get("weights_elsewhere", []))
    else:
        elsewhere = rebuilt_parts(recipe)
    model = build_audio_llm(recipe)
    state = load_file(str(checkpoint / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(elsewhere)] if elsewhere else missing
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint / WEIGHTS}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    return (model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)).eval()
