"""Checkpoints a user can copy: recipe + safetensors weights + tokenizer + trainer state.

Layout of one checkpoint (``RUN/checkpoints/step-000200/``)::

    recipe.yaml           the resolved recipe (rebuilds the model)
    model.safetensors     consolidated weights (ZeRO-3 shards gathered); no pickle
    tokenizer/            the tokenizer with its audio placeholder and chat template
    trainer_state.json    step, seed, batches consumed, RNG states, metrics
    deepspeed/            DeepSpeed's own shards, for exact resume only

A checkpoint is written into a hidden temporary directory and renamed into place only when
complete, and ``RUN/checkpoints/latest`` is replaced atomically: a crash mid-save leaves the
previous checkpoint intact and `latest` pointing at it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from moeaudio.io_utils import atomic_write_text

WEIGHTS = "model.safetensors"


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
    """The most recently written checkpoint under a runs directory (for `eval` without --checkpoint)."""
    found = [p for p in Path(runs_dir).glob("**/checkpoints/step-*") if (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: (p / "trainer_state.json").stat().st_mtime) if found else None


def consolidated_state_dict(model: torch.nn.Module, zero_stage: int) -> dict[str, torch.Tensor]:
    """Full tensors on CPU on every rank; under ZeRO-3 the partitions are gathered first."""
    params = list(model.parameters())
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def weights_to_save(model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a frozen encoder that is rebuilt from its reference (hub id, path, offline weights)."""
    recipe = model.recipe
    if recipe.encoder.freeze and recipe.encoder.name != "tiny":
        state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    return state


def save_checkpoint(
    engine,
    model,
    run_dir: str | Path,
    step: int,
    trainer_state: dict[str, Any],
    rank: int,
    keep_last: int = 2,
) -> Path:
    """Write step-NNNNNN atomically (every rank takes part: DeepSpeed shards are per rank)."""
    from safetensors.torch import save_file

    from moeaudio.train.distributed import barrier

    root = checkpoint_root(run_dir)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    engine.save_checkpoint(str(tmp / "deepspeed"), tag="state", save_latest=False)
    state = weights_to_save(model, consolidated_state_dict(model, model.recipe.train.zero_stage))
    if rank == 0:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "step": str(step)})
        (tmp / "recipe.yaml").write_text(model.recipe.to_yaml())
        model.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / "latest", final.name)
        _prune(root, keep_last)
    barrier()
    return final


def _prune(root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    steps = sorted(root.glob("step-*"))
    for old in steps[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the AudioLLM from a checkpoint directory without DeepSpeed (and without pickle)."""
    from safetensors.torch import load_file

    from moeaudio.config import load_recipe
    from moeaudio.model.audio_llm import build_audio_llm

    checkpoint = Path(checkpoint)
    if not (checkpoint / WEIGHTS).exists():
        raise FileNotFoundError(f"{checkpoint}: no {WEIGHTS}; is this a moeaudio checkpoint directory?")
    recipe = load_recipe(checkpoint / "recipe.yaml")
    model = build_audio_llm(recipe)
    state = load_file(str(checkpoint / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint / WEIGHTS}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    return model.to(device).eval()
