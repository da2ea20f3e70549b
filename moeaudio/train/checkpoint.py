"""Writing checkpoints a user can copy (layout: ``moeaudio.runtime.checkpoint``, which reads them).

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
from safetensors.torch import save_file

from moeaudio.io_utils import atomic_write_text
from moeaudio.runtime.checkpoint import WEIGHTS, checkpoint_root, rebuilt_parts
from moeaudio.train.distributed import barrier


def consolidated_state_dict(model: torch.nn.Module, zero_stage: int) -> dict[str, torch.Tensor]:
    """Full tensors on CPU on every rank; under ZeRO-3 the partitions are gathered first."""
    params = list(model.parameters())
    if zero_stage == 3:
        import deepspeed  # lazy: importing it fixes the accelerator, init_distributed chooses it first

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def weights_to_save(model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop frozen parts that are rebuilt from their reference (:func:`rebuilt_parts`)."""
    rebuilt = rebuilt_parts(model.recipe)
    return {k: v for k, v in state.items() if not k.startswith(rebuilt)}


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
