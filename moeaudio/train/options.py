"""Options of `moeaudio train` and `python -m moeaudio.train` (one parser for both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moeaudio.logs import verbose_enabled
from moeaudio.options import RecipeOptions, option

__all__ = ["TrainOptions"]


@dataclass
class TrainOptions(RecipeOptions):
    """What `moeaudio train` takes. ``--local_rank`` is what the ``deepspeed`` launcher appends;
    it is accepted and ignored (``LOCAL_RANK`` from the environment is used)."""

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

    def recipe_settings(self) -> dict[str, Any]:
        """The flags that are recipe settings, as recipe keys (merged by ``config.with_settings``)."""
        return {"train.output_dir": self.output_dir} if self.output_dir else {}

    def launcher_args(self) -> list[str]:
        """The same options for each rank's ``python -m moeaudio.train`` (``--nproc`` dropped)."""
        args = [self.recipe, *(self.overrides or [])]
        args += ["--output-dir", self.output_dir] if self.output_dir else []
        args += ["--resume"] if self.resume else []
        args += ["--json"] if self.as_json else []
        args += ["--verbose"] if verbose_enabled() else []
        args += ["--overwrite"] if self.overwrite else []
        return args + (["--no-eval"] if self.no_eval else []) + ["--nproc-rank"]
