"""keep_freed_memory: a large tensor comes from the heap and, freed, stays there for the next one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from moeaudio.runtime.memory import keep_freed_memory

# glibc's own accounting (mallinfo2): bytes in mmap'd blocks (hblkhd), bytes in use in the heap
# (uordblks) and free bytes kept in the heap (fordblks), while a 64 MB tensor (above glibc's largest mmap threshold) is alive and after
# it is freed, as a training step allocates and frees a large gradient.
PROBE = textwrap.dedent(
    """
    import ctypes, json
    from moeaudio.runtime.memory import keep_freed_memory
    took = keep_freed_memory()
    import torch

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = Info
    MB = 1 << 20
    before = mallinfo2()
    t = torch.ones(16 << 20)  # 64 MB
    alive = mallinfo2()
    del t
    after = mallinfo2()
    print(json.dumps({
        "took": took,
        "mmapped_while_alive": (alive.hblkhd - before.hblkhd) // MB,
        "heap_while_alive": (alive.uordblks - before.uordblks) // MB,  # in use in the heap
        "kept_free_after": after.fordblks // MB,
    }))
    """
)


def _probe(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, "MOEAUDIO_MALLOC": mode}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_large_tensors_come_from_the_heap_and_stay_there() -> None:
    kept, system = _probe("keep"), _probe("system")
    assert kept["took"] is True and system["took"] is False
    # glibc's default: the 64 MB is a mapping of its own, unmapped (its pages dropped) when freed
    assert system["mmapped_while_alive"] >= 64 and system["kept_free_after"] < 64
    # kept: carved from the heap, and its 64 MB stay there, already paged in, for the next step
    assert kept["mmapped_while_alive"] == 0 and kept["heap_while_alive"] >= 64
    assert kept["kept_free_after"] >= 64


def test_opt_out_and_gpu_machines_keep_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import moeaudio.runtime.memory as memory

    calls: list[tuple[int, int]] = []

    class FakeLibc:  # records what would be set, so the test process's allocator stays as it is
        @staticmethod
        def mallopt(param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: FakeLibc)
    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setattr(memory, "gpu_driver_present", lambda: True)
    monkeypatch.delenv("MOEAUDIO_FORCE_CPU", raising=False)
    monkeypatch.setenv("MOEAUDIO_MALLOC", "system")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MOEAUDIO_MALLOC")
    assert keep_freed_memory() is False  # beside a GPU: glibc's defaults
    monkeypatch.setenv("MOEAUDIO_FORCE_CPU", "1")
    assert keep_freed_memory() is True  # a CPU run on a GPU machine
    monkeypatch.delenv("MOEAUDIO_FORCE_CPU")
    monkeypatch.setenv("MOEAUDIO_MALLOC", "keep")
    assert keep_freed_memory() is True  # asked for
    assert calls == [(memory.M_MMAP_MAX, 0), (memory.M_TRIM_THRESHOLD, 1 << 30)] * 2
