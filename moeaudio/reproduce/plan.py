"""A study at one scale as a list of runs, and the launcher commands that train them on a cluster.

One run = one arm x one seed: the arm's recipe at the scale with the study's and the command line's
overrides, ``train.seed`` set to the seed, trained into ``OUTPUT/<arm>/seed-<seed>``. Runs are ordered
seed by seed (every arm of seed 0 first), so a study stopped half way has whole seeds to compare.
Every arm of a seed must share its data, token budget and seed (:func:`moeaudio.reproduce.study.check_comparable`).
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from moeaudio.config import Recipe, RecipeError, load_recipe
from moeaudio.errors import UsageError
from moeaudio.reproduce.study import Study, StudyError, check_comparable

__all__ = [
    "DEFAULT_ROOT",
    "PlannedRun",
    "StudyPlan",
    "launcher_command",
    "launcher_script",
    "plan_study",
    "recipe_fingerprint",
]

#: Where studies go unless ``--output`` says otherwise: ``runs/studies/<study>-<scale>``.
DEFAULT_ROOT = Path("runs") / "studies"


def recipe_fingerprint(recipe: Recipe) -> str:
    """sha256 of the resolved recipe without ``train.output_dir`` (where a run is, not what it is)."""
    data = recipe.model_dump(mode="json")
    data["train"].pop("output_dir", None)
    return hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()


@dataclass
class PlannedRun:
    """One arm x seed: what to train and where."""

    arm: str
    seed: int
    recipe_ref: str  # the recipe name or path the overrides apply to
    overrides: list[str]  # study + arm + command-line overrides, then train.seed
    recipe: Recipe
    run_dir: Path

    @property
    def key(self) -> str:
        return f"{self.arm}/seed-{self.seed}"

    @property
    def fingerprint(self) -> str:
        return recipe_fingerprint(self.recipe)


@dataclass
class StudyPlan:
    study: Study
    scale: str
    seeds: list[int]
    arms: list[str]
    output: Path
    extra: list[str] = field(default_factory=list)
    runs: list[PlannedRun] = field(default_factory=list)

    def runs_of(self, arm: str) -> list[PlannedRun]:
        return [r for r in self.runs if r.arm == arm]


def _select_arms(study: Study, arms: list[str] | None) -> list[str]:
    if arms is None:
        return study.arm_names
    unknown = [a for a in arms if a not in study.arm_names]
    if unknown:
        raise UsageError(
            f"--arms: unknown arm(s) {unknown}; study '{study.name}' has {', '.join(study.arm_names)}"
        )
    wanted = {study.baseline, *arms}  # differences need the baseline
    return [a for a in study.arm_names if a in wanted]


def plan_study(
    study: Study,
    scale: str = "cpu",
    seeds: int | None = None,
    arms: list[str] | None = None,
    output: str | Path | None = None,
    extra: list[str] | tuple[str, ...] = (),
) -> StudyPlan:
    """Resolve every arm x seed of ``study`` at ``scale``; raise StudyError/RecipeError before training."""
    study.check_scale(scale)
    for text in extra:
        if text.split("=", 1)[0].strip() in ("train.seed", "train.output_dir"):
            raise StudyError(f"override '{text}': the study sets train.seed and the run folder itself")
    plan = StudyPlan(
        study=study,
        scale=scale,
        seeds=study.seed_list(seeds),
        arms=_select_arms(study, arms),
        output=Path(output) if output else DEFAULT_ROOT / f"{study.name}-{scale}",
        extra=list(extra),
    )
    for seed in plan.seeds:
        recipes: dict[str, Recipe] = {}
        for name in plan.arms:
            arm = study.arm(name)
            ref = study.recipe_ref(arm, scale)
            assert ref is not None  # check_scale: every arm has a recipe at this scale
            overrides = [*study.arm_overrides(arm, scale), *extra, f"train.seed={seed}"]
            run_dir = plan.output / name / f"seed-{seed}"
            try:
                recipe = load_recipe(ref, [*overrides, f"train.output_dir={run_dir}"])
            except RecipeError as exc:
                raise StudyError(f"study '{study.name}', arm '{name}' at scale '{scale}': {exc}") from None
            recipes[name] = recipe
            plan.runs.append(PlannedRun(name, seed, ref, overrides, recipe, run_dir))
        check_comparable(recipes)
    return plan


# ----------------------------------------------------------------------------- launcher commands

# Multi-node settings come from the environment of the job that runs the line (placeholders with
# single-node defaults), as in the README's torchrun / deepspeed examples.
_TORCHRUN = (
    "torchrun --nnodes ${NNODES:-1} --nproc_per_node ${NPROC_PER_NODE:-8} "
    "--rdzv_backend c10d --rdzv_endpoint ${MASTER_ADDR:-localhost}:${MASTER_PORT:-29500}"
)
_DEEPSPEED = "deepspeed --hostfile ${HOSTFILE:-hostfile} --num_gpus ${NPROC_PER_NODE:-8}"


def launcher_command(plan: StudyPlan, run: PlannedRun, launcher: str = "torchrun") -> str:
    """One shell line that trains ``run`` with ``python -m moeaudio.train`` under ``launcher``."""
    run_dir = (plan.output / run.arm / f"seed-{run.seed}").resolve()
    args = shlex.join([run.recipe_ref, *run.overrides, "--output-dir", str(run_dir)])
    if launcher == "torchrun":
        rdzv_id = f"{plan.study.name}-{plan.scale}-{run.arm}-seed{run.seed}"
        return f"{_TORCHRUN} --rdzv_id {shlex.quote(rdzv_id)} -m moeaudio.train {args}"
    if launcher == "deepspeed":
        return f"{_DEEPSPEED} --module moeaudio.train {args}"
    if launcher == "python":
        return f"python -m moeaudio.train {args}"
    raise UsageError(f"unknown launcher {launcher!r}: torchrun, deepspeed or python")


def launcher_script(plan: StudyPlan, launcher: str = "torchrun") -> str:
    """A shell script: a header saying what to do with it, then one command per arm x seed."""
    out = shlex.quote(str(plan.output.resolve()))
    collect = f"moeaudio reproduce {shlex.quote(plan.study.name)} --scale {plan.scale} --output {out}"
    if plan.seeds != plan.study.seeds:
        collect += f" --seeds {len(plan.seeds)}"
    if plan.arms != plan.study.arm_names:
        collect += f" --arms {','.join(plan.arms)}"
    if plan.extra:
        collect += " " + shlex.join(plan.extra)
    lines = [
        "#!/bin/sh",
        f"# moeaudio reproduce {plan.study.name} --scale {plan.scale}: {len(plan.runs)} runs "
        f"({len(plan.arms)} arms x {len(plan.seeds)} seeds), one job per line.",
        f"# {plan.study.title}",
        "# Multi-node: set NNODES, NPROC_PER_NODE, MASTER_ADDR, MASTER_PORT (torchrun) or HOSTFILE (deepspeed).",
        "# When every job has finished, evaluate and write the tables and figures with:",
        f"#   {collect} --collect",
    ]
    lines += [launcher_command(plan, run, launcher) for run in plan.runs]
    return "\n".join(lines) + "\n"
