"""Keep freed heap memory for reuse instead of handing it back to the OS (glibc, Linux).

Why: glibc serves every allocation above its mmap threshold (32 MB at most, often less) with a
fresh ``mmap`` and unmaps it on ``free``. A training step allocates and frees the same large
tensors every time (a 50k-vocabulary LLM's embedding gradient is 51 MB in fp32), so each step
page-faults them in again; kept, the pages are reused (what that saves per step and per run:
docs/benchmarks.md).
This is what jemalloc or tcmalloc under ``LD_PRELOAD`` give PyTorch on CPU (PyTorch's CPU tuning
guide); ``mallopt`` gets it from the C library already loaded, without a preload or a package.

The cost is resident memory: what a step frees stays mapped (up to the trim threshold) and is
reused by the next step, so the resident size follows the peak of the working set, which is what
the machine must have anyway. It is for CPU runs: where a GPU driver is present (and
``MOEAUDIO_FORCE_CPU`` is not 1) the large tensors live on the device, and host memory that a
checkpoint load freed should go back to the OS, so glibc keeps its defaults. Only the
command-line entry points call :func:`keep_freed_memory`; importing moeaudio as a library changes
nothing. ``MOEAUDIO_MALLOC=system`` turns it off, ``MOEAUDIO_MALLOC=keep`` turns it on even
beside a GPU.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory"]

#: mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: free memory at the top of the heap above this is still returned to the OS
TRIM_THRESHOLD_BYTES = 1 << 30


#: device files whose presence means a GPU driver is loaded (NVIDIA; AMD ROCm)
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd")


def gpu_driver_present() -> bool:
    """A GPU driver's device file exists, checked without importing torch (the CLI starts fast)."""
    return any(os.path.exists(f) for f in GPU_DEVICE_FILES)


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep up to 1 GiB of freed memory there; True when
    glibc took the settings. False off Linux, under another C library, with
    ``MOEAUDIO_MALLOC=system``, or (unless ``MOEAUDIO_MALLOC=keep``) beside a GPU driver that the run
    may use (``MOEAUDIO_FORCE_CPU`` not 1)."""
    mode = os.environ.get("MOEAUDIO_MALLOC", "auto")
    if mode == "system" or not sys.platform.startswith("linux"):
        return False
    on_gpu = gpu_driver_present() and os.environ.get("MOEAUDIO_FORCE_CPU", "0") != "1"
    if mode != "keep" and on_gpu:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc; musl has no mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
