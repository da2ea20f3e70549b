"""Process-group set-up for DeepSpeed: one process without a launcher, or many with one.

A single process needs no launcher: we fill in the rendezvous variables DeepSpeed expects.
On CPU we use gloo and skip DeepSpeed's shared-memory comm op, whose JIT build costs about
70 s (minutes on 2 cores) and buys nothing for the collective sizes of an adapter.

``train --nproc N`` starts its ranks with torch's elastic agent (what ``torchrun --standalone`` runs):
the agent watches every rank, so when one fails it stops the others at once instead of leaving them
blocked in a collective until the process-group timeout (30 minutes), raises with the failed rank's
error (its traceback is recorded by ``@record`` in ``moeaudio.train.__main__``), and forwards SIGTERM /
SIGINT / SIGHUP / SIGQUIT to every rank.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid

from moeaudio.errors import MoeaudioError
from moeaudio.logs import verbose_enabled
from moeaudio.runtime.device import use_cuda

#: Test-only: the rank named here raises right after the process group is up (tests/test_train.py).
CRASH_RANK_ENV = "MOEAUDIO_TEST_CRASH_RANK"


class RankFailedError(MoeaudioError, RuntimeError):
    """A rank of ``train --nproc`` failed; the others were stopped. The rank printed its own
    traceback on stderr; this is the one-line summary, exiting with the rank's exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code if exit_code > 0 else 128 - exit_code  # -15 (SIGTERM) -> 143


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
    if os.environ.get(CRASH_RANK_ENV) == os.environ["RANK"] and os.environ["WORLD_SIZE"] != "1":
        # before the process group: the other ranks would wait for this one in the rendezvous until the
        # process-group timeout (30 minutes) if nothing watched the ranks
        raise RuntimeError(f"simulated crash of rank {os.environ['RANK']} ({CRASH_RANK_ENV})")
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


def launch_local(module_args: list[str], nproc: int, monitor_interval: float = 0.5) -> None:
    """``--nproc N``: N local ranks of ``python -m moeaudio.train ...`` under torch's elastic agent.

    Returns when every rank has finished; raises :class:`RankFailedError` as soon as one fails (the
    agent has then stopped the others) or when the launcher is signalled (every rank gets the signal).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not verbose_enabled():  # the agent's notices (it logs at WARNING on loggers of its own level)
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("torch.distributed"):
                logging.getLogger(name).setLevel(logging.ERROR)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"moeaudio-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port, as torchrun --standalone
        max_restarts=0,  # a failed step is not retried from scratch behind the user's back
        monitor_interval=monitor_interval,
    )
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "moeaudio.train", *module_args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        message = failure.message
        if isinstance(
            message, dict
        ):  # from the rank's error file (@record): {"message": ..., "extraInfo": ...}
            message = message.get("message", "")
        detail = str(message or "").strip().splitlines()[0] if str(message or "").strip() else ""
        if "To enable traceback" in detail:
            detail = ""  # no error file: the rank's own output (above) says what happened
        code = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        raise RankFailedError(
            f"rank {rank} of {nproc} (pid {failure.pid}) failed with {code}"
            + (f": {detail}" if detail else "")
            + "; the other ranks were stopped (its traceback is above)",
            failure.exitcode,
        ) from None
    except SignalException as exc:
        raise RankFailedError(
            f"stopped by signal {exc.sigval.name}; every rank was stopped", -int(exc.sigval)
        ) from None
