"""Keep freed heap memory for reuse instead of handing it back to the OS (glibc, Linux).

Why: glibc serves every allocation above its mmap threshold (32 MB at most, often less) with a
fresh ``mmap`` and unmaps it on ``free``. A training step allocates and frees the same large
tensors every time (a 50k-vocabulary LLM's embedding gradient is 51 MB in fp32), so each step
page-faults them in again: zeroing a 50,366 x 256 fp32 tensor took 14-17 ms here, against 0.8 ms
once freed pages are kept, and the quickstart's step went from 0.33 s to 0.26 s (docs/benchmarks.md).
This is what jemalloc or tcmalloc under ``LD_PRELOAD`` give PyTorch on CPU (PyTorch's CPU tuning
guide); ``mallopt`` gets it from the C library already loaded, without a preload or a package.

The cost is resident memory: what a step frees stays mapped (up to the trim threshold) and is
reused by the next step, so the resident size follows the peak of the working set, which is what
the machine must have anyway. Only the command-line entry points call :func:`keep_freed_memory`;
importing moeaudio as a library changes nothing. ``MOEAUDIO_MALLOC=system`` turns it off.
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


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep up to 1 GiB of freed memory there; True when
    glibc took the settings (False off Linux, under another C library, or with
    ``MOEAUDIO_MALLOC=system``)."""
    if os.environ.get("MOEAUDIO_MALLOC", "keep") == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc; musl has no mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
