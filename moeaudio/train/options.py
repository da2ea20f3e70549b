"""Options of `moeaudio train` and `python -m moeaudio.train` (one parser for both)."""

from __future__ import annotations

from dataclasses import dataclass

from moeaudio.logs import verbose_enabled
from moeaudio.options import argument, option

__all__ = ["BenchTrainOptions", "TrainOptions"]


@dataclass
class TrainOptions:
    """What `moeaudio train` takes. ``--local_rank`` is what the ``deepspeed`` launcher appends;
    it is accepted and ignored (``LOCAL_RANK`` from the environment is used)."""

    recipe: str = argument(help="recipe YAML path or shipped name (e.g. quickstart)")
    overrides: list[str] | None = argument(None, "section.key=value overrides, e.g. adapter.top_k=2")
    output_dir: str | None = option(None, "run directory (default: train.output_dir)")
    resume: bool = option(False, "continue from the run's last complete checkpoint")
    overwrite: bool = option(False, "delete the checkpoints the run directory already holds, then train")
    nproc: int = option(1, "local processes (data parallel)")
    no_eval: bool = option(False, "skip the validation pass at the end")
    as_json: bool = option(
        False, "print one JSON object (run, checkpoint, steps, validation); the rest on stderr", flag="--json"
    )
    local_rank: int | None = option(None, flag="--local_rank", hidden=True)
    # set by `train --nproc` on the ranks it starts: the launcher, not a rank, prints the JSON
    nproc_rank: bool = option(False, flag="--nproc-rank", hidden=True)

    def launcher_args(self) -> list[str]:
        """The same options for each rank's ``python -m moeaudio.train`` (``--nproc`` dropped)."""
        args = [self.recipe, *(self.overrides or [])]
        args += ["--output-dir", self.output_dir] if self.output_dir else []
        args += ["--resume"] if self.resume else []
        args += ["--json"] if self.as_json else []
        args += ["--verbose"] if verbose_enabled() else []
        args += ["--overwrite"] if self.overwrite else []
        return args + (["--no-eval"] if self.no_eval else []) + ["--nproc-rank"]


@dataclass
class BenchTrainOptions:
    """What `moeaudio bench train` takes."""

    recipe: str = argument(help="recipe YAML path or shipped name (e.g. quickstart)")
    overrides: list[str] | None = argument(None, "section.key=value overrides, e.g. data.micro_batch_size=4")
    steps: int = option(8, "timed optimizer steps per arm and round")
    rounds: int = option(3, "interleaved rounds (the median is kept)")
    warmup: int = option(2, "untimed steps per arm before the first round")
    as_json: bool = option(False, "print one JSON object", flag="--json")
