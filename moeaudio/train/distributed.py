"""Process-group set-up for DeepSpeed: one process without a launcher, or many with one.

A single process needs no launcher: we fill in the rendezvous variables DeepSpeed expects.
On CPU we use gloo and skip DeepSpeed's shared-memory comm op, whose JIT build costs about
70 s (minutes on 2 cores) and buys nothing for the collective sizes of an adapter.

``train --nproc N`` starts its ranks with torch's elastic agent (what ``torchrun --standalone`` runs):
the agent watches every rank, so when one fails it stops the others at once instead of leaving them
blocked in a collective until the process-group timeout (30 minutes), raises with the failed rank's
error (its traceback is recorded by ``@record`` in ``moeaudio.train.__main__``), and forwards SIGTERM /
SIGINT / SIGHUP / SIGQUIT to every rank.

A launcher killed outright (SIGKILL, the OOM killer) forwards nothing, and its ranks would run on,
holding the run directory. So each rank started by a launcher exits when its parent goes
(:func:`exit_with_launcher`): on Linux the kernel sends it SIGTERM (``prctl(PR_SET_PDEATHSIG)``), and
everywhere a heartbeat thread checks once a second that the parent is still the one it started under.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid

from moeaudio.errors import MoeaudioError
from moeaudio.logs import verbose_enabled
from moeaudio.runtime.device import use_cuda

#: Test-only: the rank named here raises right after the process group is up (tests/test_train.py).
CRASH_RANK_ENV = "MOEAUDIO_TEST_CRASH_RANK"
#: Set by ``train --nproc`` for its ranks: the launcher's pid (the parent they exit with).
LAUNCHER_PID_ENV = "MOEAUDIO_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_watching: list[int] = []  # the parent pid this process watches (set once)


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


def exit_with_launcher(interval: float = 1.0) -> int | None:
    """Make this rank exit when the launcher that started it dies; returns the watched parent pid
    (None outside a launcher: no ``LOCAL_RANK`` and no ``MOEAUDIO_LAUNCHER_PID`` in the environment).

    Two ways, because each alone has a gap: ``PR_SET_PDEATHSIG`` (Linux) has the kernel send SIGTERM
    the moment the parent dies, but only on Linux, and it fires when the parent *thread* that started
    the rank ends; the heartbeat thread works everywhere and catches a parent that died before this
    call, at the cost of up to ``interval`` seconds. A rank stopped this way prints one line saying why.
    """
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if launcher is None and "LOCAL_RANK" not in os.environ:
        return None
    if _watching:
        return _watching[0]
    parent = int(launcher) if launcher else os.getppid()
    _watching.append(parent)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    threading.Thread(
        target=_heartbeat, args=(parent, interval), name="launcher-heartbeat", daemon=True
    ).start()
    if os.getppid() != parent:  # the launcher died before the kernel was told to watch it
        _launcher_gone(parent)
    return parent


def _heartbeat(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    _launcher_gone(parent)


def _launcher_gone(parent: int) -> None:
    """Stop this rank: SIGTERM as the kernel would send it, then a hard exit if a handler ignored it."""
    rank = os.environ.get("RANK", "?")
    print(
        f"rank {rank} (pid {os.getpid()}): its launcher (pid {parent}) is gone; exiting",
        file=sys.stderr,
        flush=True,
    )
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(128 + int(signal.SIGTERM))


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
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())  # the ranks exit when this process dies
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
