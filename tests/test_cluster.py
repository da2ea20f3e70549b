"""Cluster launch: the Slurm array script, and world size in the arms' comparability."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from moeaudio.config import load_recipe
from moeaudio.reproduce.plan import launcher_script, plan_study, recipe_fingerprint, slurm_script
from moeaudio.reproduce.study import StudyError, check_comparable, load_study

BUDGET = ["train.global_batch_size=256", "train.max_tokens=4e10", "train.tokens_per_example=250"]


def test_slurm_array_one_task_per_arm_and_seed(tmp_path: Path) -> None:
    plan = plan_study(load_study("table1"), "paper", output=tmp_path, world_size=16, gpus_per_node=8)
    script = slurm_script(plan)
    n = len(plan.arms) * len(plan.seeds)
    assert len(plan.runs) == n and f"#SBATCH --array=0-{n - 1}" in script and "#SBATCH --nodes=2" in script
    assert "#SBATCH --gpus-per-node=8" in script
    for var in ("NNODES=$SLURM_JOB_NUM_NODES", "NPROC_PER_NODE=8", "MASTER_ADDR=", "MASTER_PORT="):
        assert f"export {var}" in script
    commands = launcher_script(plan).splitlines()[-n:]
    assert all(
        line.startswith("torchrun --nnodes ${NNODES:-2} --nproc_per_node ${NPROC_PER_NODE:-8}")
        for line in commands
    )
    for line in commands:  # the array holds exactly the commands.sh lines, in order
        assert line.replace("'", "'\"'\"'") in script
    assert f"--output {tmp_path.resolve()} --world-size 16 --collect" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_task_picks_its_line(tmp_path: Path) -> None:
    """Run the script's array logic with srun and scontrol replaced by echo: task 3 gets run 3."""
    plan = plan_study(load_study("table1"), "paper", output=tmp_path, world_size=8)
    script = (
        slurm_script(plan)
        .replace("srun --ntasks-per-node=1 bash -c", "echo")
        .replace("scontrol show hostnames", "echo")
    )
    out = subprocess.run(
        ["bash", "-c", script],
        env={"SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "gpu01", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "--rdzv_id table1-paper-moe-seed1" in out and "seed-1" in out


def test_world_size_in_comparability() -> None:
    fixed = {a: load_recipe(f"paper/table1_{a}", BUDGET) for a in ("dense", "moe")}
    check_comparable(fixed, {"dense": 8, "moe": 16})  # a fixed global batch: any world size
    unfixed = ["train.max_tokens=null", "train.global_batch_size=null", "train.max_steps=100"]
    loose = {a: load_recipe(f"paper/table1_{a}", unfixed) for a in ("dense", "moe")}
    check_comparable(loose, 8)
    with pytest.raises(
        StudyError, match=r"resolved global_batch_size: dense=64 \(world size 8\), moe=128 \(world size 16\)"
    ):
        check_comparable(loose, {"dense": 8, "moe": 16})
    with pytest.raises(StudyError, match="world size 12"):
        check_comparable(fixed, 12)  # 256 is no multiple of 8 x 12


def test_fingerprint_ignores_what_the_world_size_derives() -> None:
    planned = load_recipe("paper/table1_moe", BUDGET)
    launched = load_recipe("paper/table1_moe", [*BUDGET, "train.grad_accum=2", "train.max_steps=625000"])
    assert recipe_fingerprint(planned) == recipe_fingerprint(launched)
    tiny = load_recipe("tiny/moe")  # no global batch: grad_accum is what the recipe says
    assert recipe_fingerprint(tiny) != recipe_fingerprint(load_recipe("tiny/moe", ["train.grad_accum=2"]))


def test_fingerprint_ignores_what_only_observes_a_run() -> None:
    """The conflict probe watches training without changing it (tests/test_conflict_training.py), so
    a run with it is the run without; anything that trains differently is another run."""
    tiny = load_recipe("tiny/moe")
    assert recipe_fingerprint(tiny) == recipe_fingerprint(
        load_recipe("tiny/moe", ["train.conflict_every=100"])
    )
    assert recipe_fingerprint(tiny) != recipe_fingerprint(load_recipe("tiny/moe", ["train.seed=1"]))
