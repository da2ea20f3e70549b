"""Options of `moeaudio reproduce`, light enough for `moeaudio --help`."""

from __future__ import annotations

from dataclasses import dataclass

from moeaudio.errors import UsageError
from moeaudio.options import argument, option

__all__ = ["LAUNCHERS", "ReproduceOptions"]

LAUNCHERS = ("torchrun", "deepspeed", "python")


@dataclass
class ReproduceOptions:
    """What `moeaudio reproduce` takes."""

    study: str = argument(
        help="shipped study (table1, table1_modality, table2, table3, figures) or YAML path"
    )
    overrides: list[str] | None = argument(
        None, "section.key=value overrides for every arm, e.g. train.max_steps=300"
    )
    scale: str = option("cpu", "cpu (quickstart twins, built-in corpus) | paper (recipes/paper/)")
    seeds: int | None = option(None, "number of seeds (default: the study's list)")
    arms: str | None = option(None, "comma-separated arms to run (default: all; the baseline is always run)")
    output: str | None = option(None, "study folder (default: runs/studies/STUDY-SCALE)")
    print_commands: bool = option(
        False, "train nothing: write one launcher command per arm x seed to OUTPUT/commands.sh and stdout"
    )
    launcher: str = option("torchrun", "with --print-commands: torchrun | deepspeed | python")
    world_size: int | None = option(
        None,
        "ranks each run trains on (default: 8 at paper scale, 1 at cpu): the commands' and the Slurm "
        "script's nodes x GPUs, and the world size the arms' global batch and budget are checked at",
    )
    gpus_per_node: int = option(
        8, "with --print-commands: GPUs per node of the Slurm script and torchrun lines"
    )
    collect: bool = option(
        False, "train nothing: gather the runs launched elsewhere, evaluate where missing, write results"
    )
    reuse: bool = option(
        True,
        "take a finished run of a sibling study (same parent folder) with the same recipe and seed "
        "instead of training it again (Table 3's balance arm is Table 1's moe arm)",
        flag="--reuse/--no-reuse",
    )
    device: str | None = option(None, "evaluation and analyses: cpu | cuda (default: cuda when available)")

    def validate(self) -> None:
        if self.print_commands and self.collect:
            raise UsageError("--print-commands and --collect exclude each other: print first, collect later")
        if self.launcher not in LAUNCHERS:
            raise UsageError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {self.launcher!r}")

    def ranks(self) -> int:
        """``--world-size``, or its default for the scale."""
        if self.world_size is not None:
            return self.world_size
        return 8 if self.scale == "paper" else 1

    def arm_list(self) -> list[str] | None:
        if self.arms is None:
            return None
        arms = [a.strip() for a in self.arms.split(",") if a.strip()]
        if not arms:
            raise UsageError("--arms needs at least one arm name")
        return arms
