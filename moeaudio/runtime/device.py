"""Which device a command runs on: CUDA when present (unless ``MOEAUDIO_FORCE_CPU=1``), else CPU."""

from __future__ import annotations

import os

import torch

__all__ = ["pick_device", "use_cuda"]


def use_cuda() -> bool:
    """A GPU is there and the user has not forced CPU (tests and CPU-only comparisons do)."""
    return torch.cuda.is_available() and os.environ.get("MOEAUDIO_FORCE_CPU", "0") != "1"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else ``cuda`` where usable, else ``cpu``."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if use_cuda() else "cpu")
