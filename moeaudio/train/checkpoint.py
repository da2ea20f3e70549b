"""Writing checkpoints a user can copy (layout: ``moeaudio.runtime.checkpoint``, which reads them),
and reading DeepSpeed's shards back for ``--resume`` without running code.

A checkpoint is written into a hidden temporary directory and renamed into place only when
complete, and ``RUN/checkpoints/latest`` is replaced atomically: a crash mid-save leaves the
previous checkpoint intact and `latest` pointing at it. A full disk is the same, plus a clear
:class:`~moeaudio.errors.DiskFullError` and no half-written temporary directory left behind. The
last file written is ``checkpoint.json``, the list of files with their sizes that loading checks.

DeepSpeed reads its shards with ``torch.load(weights_only=False)``, which runs any code a pickle in
them names: a checkpoint from someone else could run code on ``--resume``. :func:`load_deepspeed_state`
makes every ``torch.load`` during ``engine.load_checkpoint`` a ``weights_only=True`` load, allowing
exactly the three DeepSpeed types its ZeRO shards hold besides tensors and plain containers
(:data:`DEEPSPEED_SAFE_GLOBALS`); anything else is refused with an error naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import importlib
import json
import os
import pickle
import shutil
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from moeaudio.errors import CheckpointError, DiskFullError, MoeaudioError, TrainingDivergedError
from moeaudio.runtime.checkpoint import (
    FILES_MANIFEST,
    WEIGHTS,
    describe_files,
    is_rebuilt,
    load_weights_into,
    verify_checkpoint,
)
from moeaudio.runtime.run_dir import RunDir
from moeaudio.train.distributed import barrier

__all__ = [
    "DEEPSPEED_SAFE_GLOBALS",
    "consolidated_state_dict",
    "load_deepspeed_state",
    "load_stage_weights",
    "save_checkpoint",
    "weights_to_save",
]

#: The non-tensor types DeepSpeed (0.17-0.19) pickles into its ZeRO optimizer shards, as
#: ``module:qualname``; found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on the
#: shards of ZeRO 0, 2 and 3 runs. Only these are allowed besides what ``weights_only`` allows anyway.
DEEPSPEED_SAFE_GLOBALS: tuple[str, ...] = (
    "deepspeed.runtime.zero.config:ZeroStageEnum",
    "deepspeed.utils.tensor_fragment:fragment_address",
    "deepspeed.runtime.fp16.loss_scaler:LossScaler",
)


def consolidated_state_dict(model: torch.nn.Module, zero_stage: int) -> dict[str, torch.Tensor]:
    """Full tensors on CPU on every rank; under ZeRO-3 the partitions are gathered first."""
    params = list(model.parameters())
    if zero_stage == 3:
        import deepspeed  # lazy: importing it fixes the accelerator, init_distributed chooses it first

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def weights_to_save(model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop frozen weights that are rebuilt from their reference (:func:`is_rebuilt`)."""
    return {k: v for k, v in state.items() if not is_rebuilt(k, model.recipe)}


def load_stage_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """Start a stage from the previous stage's final weights: every tensor of its weights file (adapter,
    LoRA, CTC head, and whatever that stage trained) into ``model``; the frozen weights a checkpoint
    leaves out (:func:`is_rebuilt`) are already the model's own. Checked like any checkpoint first."""
    verify_checkpoint(checkpoint)
    load_weights_into(
        model,
        checkpoint,
        lambda key: is_rebuilt(key, model.recipe),
        "the previous stage's weights do not fit this stage's model (were train.stages changed after that stage ran?)",
    )


def save_checkpoint(
    engine,
    model,
    run_dir: str | Path,
    step: int,
    trainer_state: dict[str, Any],
    rank: int,
    keep_last: int = 2,
) -> Path:
    """Write step-NNNNNN atomically (every rank takes part: DeepSpeed shards are per rank).

    The weights are checked first: a non-finite weight is a :class:`TrainingDivergedError` and
    nothing is written. A full disk (or any other write failure) is a clear error; the previous
    checkpoint and ``latest`` are left as they were, and the temporary directory is removed.
    """
    run = RunDir(run_dir)
    final, tmp = run.step_dir(step), run.temp_step_dir(step)
    state = weights_to_save(model, consolidated_state_dict(model, model.recipe.train.zero_stage))
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        previous = run.latest_name()
        raise TrainingDivergedError(
            f"step {step}: weight '{bad}' is NaN/Inf, so checkpoint {final.name} was not written; the last good "
            f"checkpoint is {previous or 'none'}. Lower train.lr (or raise train.warmup_steps) and train "
            "again" + (" with --resume" if previous else "")
        )
    with _write_errors(run, final, tmp, rank):
        if rank == 0:
            for stale in run.checkpoints.glob(".tmp-step-*"):  # left by a save that was killed
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        engine.save_checkpoint(str(tmp / "deepspeed"), tag="state", save_latest=False)
        barrier()  # every rank's shards are on disk before the list of files is made
        if rank == 0:
            save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "step": str(step)})
            (tmp / "recipe.yaml").write_text(model.recipe.to_yaml())
            model.tokenizer.save_pretrained(str(tmp / "tokenizer"))
            (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
            (tmp / FILES_MANIFEST).write_text(json.dumps(describe_files(tmp, step), indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            run.point_latest(final)
    if rank == 0:
        run.prune(keep_last, final)
    barrier()
    return final


@contextlib.contextmanager
def _write_errors(run: RunDir, final: Path, tmp: Path, rank: int) -> Iterator[None]:
    """Turn any failure inside a save into one clear error naming the folder and its free space.

    Ours or DeepSpeed's own ``save_checkpoint``, whatever the exception: an ``OSError`` (ENOSPC,
    EDQUOT, EACCES), torch's zip writer's ``RuntimeError`` (``[enforce fail at inline_container.cc]
    unexpected pos``, what a full disk looks like inside ``torch.save``), a safetensors error. A full
    disk is a :class:`DiskFullError`, anything else a :class:`CheckpointError` quoting the cause (chained,
    for its traceback). Either way the temporary folder is removed (by whichever rank failed: another
    rank may be stopped before it could), ``latest`` is left as it was and the earlier checkpoints are
    untouched. An interrupt (Ctrl-C) removes the temporary folder too and is passed on as it is.
    """
    previous = run.latest_name()
    try:
        yield
    except BaseException as e:
        free_at_failure = _free_bytes(run.checkpoints)
        # the writer that failed (torch's zip writer, a file object) may still hold the partial file open
        # from a frame of the traceback: clear those frames' locals so the file is closed and its space freed
        _close_files_of(e)
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, Exception) or isinstance(e, MoeaudioError):
            raise  # an interrupt, or an error that already says what is wrong
        raise save_error(e, run, final, tmp, previous, free_at_failure) from e


def _close_files_of(e: BaseException) -> None:
    """Clear the locals of every frame in ``e``'s tracebacks (its cause and context too; the frames
    stay for printing): torch's zip writer keeps the partial file open from there, and on a full disk
    its space is not freed by deleting it until the writer is gone."""
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        traceback.clear_frames(x.__traceback__)
        x = x.__cause__ or x.__context__
    gc.collect()


#: What torch's zip writer (``torch.save``) raises when a write comes up short: a disk that filled.
_SHORT_WRITE = ("unexpected pos", "PytorchStreamWriter failed", "file write failed")
_FULL = (errno.ENOSPC, errno.EDQUOT)


def save_error(
    e: Exception, run: RunDir, final: Path, tmp: Path, previous: str | None, free_at_failure: int | None
) -> CheckpointError:
    """The one-line error for exception ``e`` raised while writing ``final`` (see :func:`_write_errors`):
    the free space when it failed (which tells a full disk) and now, the partial folder removed."""
    done = final.is_dir() and run.latest_name() != final.name  # renamed, pointer not moved
    kept = (
        f"{final.name} was written but checkpoints/latest still names {previous}"
        if done and previous
        else f"the previous checkpoint {previous} is intact and checkpoints/latest still names it"
        if previous
        else "no earlier checkpoint exists"
    )
    free = _free_bytes(run.checkpoints)
    where = (
        f"checkpoint {final.name} under {run.checkpoints} ({_size(free_at_failure)} free on its disk when "
        f"the write failed, {_size(free)} now)"
    )
    removed = f"the partial {tmp.name} was removed"
    if _disk_full(e, free_at_failure):
        return DiskFullError(
            f"no space left on the device while writing {where}; {removed}, and {kept}. "
            "Free space, then continue with `moeaudio train ... --resume`"
        )
    cause = (str(e).strip().splitlines() or [""])[0][:300]
    return CheckpointError(
        f"cannot write {where}: {type(e).__name__}: {cause}; {removed}, and {kept}. "
        "Fix the cause, then continue with `moeaudio train ... --resume`"
    )


def _disk_full(e: BaseException, free: int | None) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception's chain, or torch's short-write error with the disk
    (nearly) full: what a full disk looks like through the layers that wrap the OSError."""
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno in _FULL:
            return True
        text = str(x)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        if any(s in text for s in _SHORT_WRITE) and free is not None and free < 64 << 20:
            return True
        x = x.__cause__ or x.__context__
    return False


def _free_bytes(folder: Path) -> int | None:
    """Free bytes on the disk holding ``folder`` (its nearest existing ancestor); None if unknown."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown space"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


# ------------------------------------------------------------------------------------ safe resume


def _safe_globals() -> list[Any]:
    found = []
    for name in DEEPSPEED_SAFE_GLOBALS:
        module, _, attr = name.partition(":")
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), attr))
    return found


@contextlib.contextmanager
def weights_only_torch_load() -> Iterator[list[str]]:
    """While active, every ``torch.load`` is a ``weights_only=True`` load (whatever the caller asks)
    allowing :data:`DEEPSPEED_SAFE_GLOBALS`; yields the list of files loaded, in order."""
    real = torch.load
    loaded: list[str] = []

    @functools.wraps(real)
    def safe_load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        loaded.append(os.fspath(f) if isinstance(f, (str, os.PathLike)) else repr(f))
        return real(f, *args, **kwargs)

    torch.load = safe_load
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            yield loaded
    finally:
        torch.load = real


def load_deepspeed_state(engine, checkpoint: Path) -> None:
    """``engine.load_checkpoint`` on ``checkpoint/deepspeed`` with weights-only loading.

    A shard holding anything but tensors, plain containers and DeepSpeed's own state types (e.g. a
    pickle that would run code), or a shard that is missing or unreadable, is a
    :class:`CheckpointError` naming it; nothing in it is executed.
    """
    directory = checkpoint / "deepspeed"
    if not (directory / "state").is_dir():
        raise CheckpointError(
            f"{directory / 'state'} is missing: {checkpoint} holds no DeepSpeed state to resume from "
            "(a checkpoint copied without deepspeed/ can be evaluated, not resumed)"
        )
    with weights_only_torch_load() as loaded:
        try:
            load_path, _ = engine.load_checkpoint(str(directory), tag="state")
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
            shard = loaded[-1] if loaded else str(directory)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            refused = isinstance(e, pickle.UnpicklingError)
            raise CheckpointError(
                f"{shard}: "
                + (
                    "holds objects a weights-only load refuses (it was not written by moeaudio's DeepSpeed "
                    "or was altered); refusing to load it, nothing in it was run"
                    if refused
                    else f"cannot be read ({first}): truncated or corrupt"
                )
                + ". Resume from another checkpoint of the run, or train again"
            ) from None
    if load_path is None:
        raise CheckpointError(
            f"{directory}: DeepSpeed found no checkpoint to load (a shard is missing); resume from another "
            "checkpoint of the run, or train again"
        )
