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
from moeaudio.runtime.budget import resolve_budget

__all__ = [
    "DEFAULT_ROOT",
    "PlannedRun",
    "StudyPlan",
    "launcher_command",
    "launcher_script",
    "plan_study",
    "recipe_fingerprint",
    "slurm_script",
]

#: Where studies go unless ``--output`` says otherwise: ``runs/studies/<study>-<scale>``.
DEFAULT_ROOT = Path("runs") / "studies"


#: ``train`` settings that watch a run without changing its weights, so runs that differ only there are
#: one run (Table 3's ``balance`` arm is Table 1's ``moe``, which also logs the conflict probe).
#: ``conflict_every``: tests/test_conflict_training.py trains with and without it to equal weights.
OBSERVATION_ONLY: tuple[str, ...] = ("conflict_every",)


def recipe_fingerprint(recipe: Recipe) -> str:
    """sha256 of the resolved recipe without ``train.output_dir`` (where a run is, not what it is), the
    settings that only observe a run (:data:`OBSERVATION_ONLY`), and
    without what a launch derives from the world size: ``train.grad_accum`` under
    ``train.global_batch_size`` and ``train.max_steps`` under ``train.max_tokens``
    (:mod:`moeaudio.runtime.budget`), so a run trained on 16 GPUs is the run the study planned on 8."""
    data = recipe.model_dump(mode="json")
    data["train"].pop("output_dir", None)
    for key in OBSERVATION_ONLY:
        data["train"].pop(key, None)
    if recipe.train.global_batch_size is not None:
        data["train"].pop("grad_accum", None)
    if recipe.train.max_tokens is not None:
        data["train"].pop("max_steps", None)
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

    @property
    def max_steps(self) -> int:
        """The step the run's final checkpoint is at: ``train.max_steps``, or those the token budget
        derives; for a staged recipe the last stage's steps (it writes the run's checkpoints)."""
        if self.recipe.train.stages:
            return self.recipe.train.stages[-1].max_steps
        return resolve_budget(self.recipe, 1).max_steps


@dataclass
class StudyPlan:
    study: Study
    scale: str
    seeds: list[int]
    arms: list[str]
    output: Path
    extra: list[str] = field(default_factory=list)
    runs: list[PlannedRun] = field(default_factory=list)
    world_size: int = 1  # ranks per run the commands launch (NNODES x NPROC_PER_NODE)
    gpus_per_node: int = 8

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
    world_size: int = 1,
    gpus_per_node: int = 8,
) -> StudyPlan:
    """Resolve every arm x seed of ``study`` at ``scale`` for runs of ``world_size`` ranks; raise
    StudyError/RecipeError before training."""
    study.check_scale(scale)
    if world_size < 1 or gpus_per_node < 1:
        raise UsageError(f"--world-size and --gpus-per-node must be >= 1 (got {world_size}, {gpus_per_node})")
    if world_size > gpus_per_node and world_size % gpus_per_node:
        raise UsageError(
            f"--world-size {world_size} is not a whole number of nodes of --gpus-per-node {gpus_per_node}"
        )
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
        world_size=world_size,
        gpus_per_node=min(gpus_per_node, world_size),
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
        check_comparable(recipes, world_size)
    return plan


# ----------------------------------------------------------------------------- launcher commands

# Multi-node settings come from the environment of the job that runs the line (placeholders with
# single-node defaults), as in the README's torchrun / deepspeed examples.
# The defaults are the plan's nodes and GPUs per node (--world-size, --gpus-per-node).
_TORCHRUN = (
    "torchrun --nnodes ${{NNODES:-{nodes}}} --nproc_per_node ${{NPROC_PER_NODE:-{gpus}}} "
    "--rdzv_backend c10d --rdzv_endpoint ${{MASTER_ADDR:-localhost}}:${{MASTER_PORT:-29500}}"
)
_DEEPSPEED = "deepspeed --hostfile ${{HOSTFILE:-hostfile}} --num_gpus ${{NPROC_PER_NODE:-{gpus}}}"


def _nodes(plan: StudyPlan) -> int:
    return max(1, plan.world_size // plan.gpus_per_node)


def launcher_command(plan: StudyPlan, run: PlannedRun, launcher: str = "torchrun") -> str:
    """One shell line that trains ``run`` with ``python -m moeaudio.train`` under ``launcher``."""
    run_dir = (plan.output / run.arm / f"seed-{run.seed}").resolve()
    args = shlex.join([run.recipe_ref, *run.overrides, "--output-dir", str(run_dir)])
    if launcher == "torchrun":
        rdzv_id = f"{plan.study.name}-{plan.scale}-{run.arm}-seed{run.seed}"
        torchrun = _TORCHRUN.format(nodes=_nodes(plan), gpus=plan.gpus_per_node)
        return f"{torchrun} --rdzv_id {shlex.quote(rdzv_id)} -m moeaudio.train {args}"
    if launcher == "deepspeed":
        return f"{_DEEPSPEED.format(gpus=plan.gpus_per_node)} --module moeaudio.train {args}"
    if launcher == "python":
        return f"python -m moeaudio.train {args}"
    raise UsageError(f"unknown launcher {launcher!r}: torchrun, deepspeed or python")


def collect_command(plan: StudyPlan) -> str:
    """The ``moeaudio reproduce ... --collect`` line that gathers the plan's runs when they are done."""
    out = shlex.quote(str(plan.output.resolve()))
    collect = f"moeaudio reproduce {shlex.quote(plan.study.name)} --scale {plan.scale} --output {out}"
    if plan.seeds != plan.study.seeds:
        collect += f" --seeds {len(plan.seeds)}"
    if plan.arms != plan.study.arm_names:
        collect += f" --arms {','.join(plan.arms)}"
    if plan.world_size != 1:
        collect += f" --world-size {plan.world_size}"
    if plan.extra:
        collect += " " + shlex.join(plan.extra)
    return collect + " --collect"


def launcher_script(plan: StudyPlan, launcher: str = "torchrun") -> str:
    """A shell script: a header saying what to do with it, then one command per arm x seed."""
    collect = collect_command(plan).removesuffix(" --collect")
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


def slurm_script(plan: StudyPlan) -> str:
    """A Slurm array job: one array task per arm x seed (task i trains the i-th line of
    ``commands.sh``), each on ``world_size / gpus_per_node`` nodes, with the rendezvous variables the
    torchrun / deepspeed lines read (NNODES, NPROC_PER_NODE, MASTER_ADDR, MASTER_PORT; a port per task
    so two tasks sharing a node do not collide). torchrun whatever ``--launcher``: srun starts one per
    node, which is what torchrun's rendezvous expects. The run folders must be on a file system every
    node and the collecting machine see (``--output``); ``--collect`` then runs anywhere that mounts it."""
    nodes, out = _nodes(plan), plan.output.resolve()
    name = f"moeaudio-{plan.study.name}-{plan.scale}"
    lines = [
        "#!/bin/bash",
        f"# moeaudio reproduce {plan.study.name} --scale {plan.scale}: {len(plan.runs)} array tasks "
        f"({len(plan.arms)} arms x {len(plan.seeds)} seeds), {nodes} node(s) x {plan.gpus_per_node} GPUs each.",
        f"# Submit: sbatch {shlex.quote(str(out / 'slurm.sh'))}   (add --partition/--account/--time as your cluster asks)",
        "# When every task has finished, on any machine that mounts the output folder:",
        f"#   {collect_command(plan)}",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array=0-{len(plan.runs) - 1}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={plan.gpus_per_node}",
        f"#SBATCH --output={out}/slurm/%x-%A_%a.out",
        "set -euo pipefail",
        f"mkdir -p {shlex.quote(str(out / 'slurm'))}",
        "export NNODES=$SLURM_JOB_NUM_NODES",
        f"export NPROC_PER_NODE={plan.gpus_per_node}",
        'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "export MASTER_PORT=$((29500 + SLURM_ARRAY_TASK_ID % 20000))",
        "RUNS=(",
    ]
    for run in plan.runs:
        lines.append(f"  {shlex.quote(launcher_command(plan, run, 'torchrun'))}  # {run.key}")
    lines += [
        ")",
        'echo "task $SLURM_ARRAY_TASK_ID: ${RUNS[$SLURM_ARRAY_TASK_ID]}"',
        "# one launcher per node; each expands the rendezvous variables above on its own node",
        'srun --ntasks-per-node=1 bash -c "${RUNS[$SLURM_ARRAY_TASK_ID]}"',
    ]
    return "\n".join(lines) + "\n"
