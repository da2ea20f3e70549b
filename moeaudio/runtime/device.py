"""Which device a command runs on: CUDA when present (unless ``MOEAUDIO_FORCE_CPU=1``), else CPU; and
in which precision inference runs there: bf16 on a GPU that supports it, fp32 on CPU (``auto``)."""

from __future__ import annotations

import os

import torch

from moeaudio.errors import UsageError

__all__ = ["PRECISIONS", "inference_dtype", "pick_device", "use_cuda"]

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def use_cuda() -> bool:
    """A GPU is there and the user has not forced CPU (tests and CPU-only comparisons do)."""
    return torch.cuda.is_available() and os.environ.get("MOEAUDIO_FORCE_CPU", "0") != "1"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else ``cuda`` where usable, else ``cpu``. A device torch does not know,
    or CUDA asked for where there is none, is a :class:`UsageError` naming ``--device``."""
    if device is None:
        return torch.device("cuda" if use_cuda() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UsageError(f"--device {device!r} is not a device torch knows ({e}); use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available here; use --device cpu")
    return dev


def inference_dtype(device: str | torch.device, precision: str = "auto") -> torch.dtype:
    """The dtype eval and transcribe run the model in: ``auto`` is bf16 on a CUDA device with bf16
    support (as training there, ``train.precision: auto``) and fp32 elsewhere (CPU bf16 is slow)."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
