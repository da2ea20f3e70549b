"""Which device a command runs on: CUDA when present (unless ``MOEAUDIO_FORCE_CPU=1``), else CPU."""

from __future__ import annotations

import os

import torch

from moeaudio.errors import UsageError

__all__ = ["pick_device", "use_cuda"]


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
