"""Entry point for launchers: ``torchrun --nproc_per_node 2 -m moeaudio.train RECIPE [overrides]`` or
``deepspeed --num_gpus 2 --module moeaudio.train RECIPE [overrides]``; the same parser as
``moeaudio train`` (:class:`~moeaudio.train.options.TrainOptions`)."""

from __future__ import annotations

import typer
from torch.distributed.elastic.multiprocessing.errors import record

from moeaudio.options import command
from moeaudio.runtime.memory import keep_freed_memory
from moeaudio.train.commands import train_command
from moeaudio.train.distributed import exit_with_launcher
from moeaudio.train.options import TrainOptions

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(command(TrainOptions, train_command))


@record  # under an elastic launcher (torchrun, train --nproc) a rank's exception reaches the launcher
def main() -> None:
    exit_with_launcher()  # a rank whose launcher is killed outright exits instead of running on
    keep_freed_memory()  # each rank is a process of its own: see moeaudio/runtime/memory.py
    app(prog_name="python -m moeaudio.train")


if __name__ == "__main__":
    main()
