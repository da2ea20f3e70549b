"""Process-group set-up for DeepSpeed: one process without a launcher, or many with one.

A single process needs no launcher: we fill in the rendezvous variables DeepSpeed expects.
On CPU we use gloo and skip DeepSpeed's shared-memory comm op, whose JIT build costs about
70 s (minutes on 2 cores) and buys nothing for the collective sizes of an adapter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from moeaudio.runtime.device import use_cuda


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> tuple[int, int, int]:
    """Initialise torch.distributed through DeepSpeed; returns (rank, local_rank, world_size)."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    cuda = use_cuda()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import deepspeed.ops
    import torch

    if not cuda:
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)
    rank, local_rank, world = (
        int(os.environ["RANK"]),
        int(os.environ["LOCAL_RANK"]),
        int(os.environ["WORLD_SIZE"]),
    )
    if cuda:
        torch.cuda.set_device(local_rank)
    return rank, local_rank, world


def barrier() -> None:
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def launch_local(module_args: list[str], nproc: int) -> int:
    """``--nproc N``: start N local ranks of ``python -m moeaudio.train ...``; return the worst exit code."""
    port = str(free_port())
    procs = []
    for rank in range(nproc):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(nproc),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            MOEAUDIO_QUIET="0" if rank == 0 else "1",
        )
        procs.append(subprocess.Popen([sys.executable, "-m", "moeaudio.train", *module_args], env=env))
    codes = [p.wait() for p in procs]
    return max(codes, key=abs)
