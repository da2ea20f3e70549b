"""Global batch, accumulation and the token budget resolved per world size."""

from __future__ import annotations

import math

import pytest

from moeaudio.config import RecipeError, load_recipe
from moeaudio.runtime.budget import apply_budget, resolve_budget

BUDGET = [
    "train.global_batch_size=256",
    "train.max_tokens=4e10",
    "train.tokens_per_example=250",
    "train.max_steps=7",
]


def test_tokens_give_steps_and_world_size_gives_accumulation() -> None:
    recipe = load_recipe("paper/table1_moe", BUDGET)
    eight, sixteen = resolve_budget(recipe, 8), resolve_budget(recipe, 16)
    steps = math.ceil(4e10 / (256 * 250))  # 625,000
    assert (eight.max_steps, sixteen.max_steps) == (steps, steps) == (625_000, 625_000)
    assert eight.steps_from == "train.max_tokens"
    assert (eight.grad_accum, sixteen.grad_accum) == (4, 2)  # 256 / (8 x 8), 256 / (8 x 16)
    assert eight.global_batch_size == sixteen.global_batch_size == 256
    assert eight.tokens_per_step == 64_000 and eight.total_tokens == pytest.approx(4e10)


def test_budget_rounds_up_to_whole_steps() -> None:
    recipe = load_recipe("paper/table1_moe", ["train.global_batch_size=64", "train.max_tokens=1000",
                                              "train.tokens_per_example=3"])  # fmt: skip
    budget = resolve_budget(recipe, 1)
    assert budget.max_steps == 6 and budget.total_tokens == 6 * 64 * 3  # 5 steps hold 960 < 1000


def test_apply_writes_the_run_recipe() -> None:
    recipe = load_recipe("paper/table1_moe", BUDGET)
    apply_budget(recipe, 16)
    assert (recipe.train.grad_accum, recipe.train.max_steps) == (2, 625_000)


def test_paper_recipes_state_the_papers_budget() -> None:
    budget = resolve_budget(load_recipe("paper/table1_moe"), 8)
    assert budget.max_tokens == 4e10 and budget.global_batch_size == 256 and budget.max_steps == 976_563


def test_without_a_budget_max_steps_and_grad_accum_stand() -> None:
    recipe = load_recipe("tiny/moe", ["train.grad_accum=3"])
    budget = resolve_budget(recipe, 2)
    assert (budget.max_steps, budget.grad_accum, budget.steps_from) == (
        recipe.train.max_steps,
        3,
        "train.max_steps",
    )
    assert budget.global_batch_size == recipe.data.micro_batch_size * 3 * 2


def test_indivisible_world_size_is_refused_with_the_sizes_that_work() -> None:
    recipe = load_recipe("paper/table1_moe", BUDGET)
    with pytest.raises(
        RecipeError, match=r"world size \(12\) = 96: launch on a world size in \[1, 2, 4, 8, 16, 32\]"
    ):
        resolve_budget(recipe, 12)
    with pytest.raises(RecipeError, match="not a multiple of data.micro_batch_size"):
        resolve_budget(load_recipe("paper/table1_moe", ["train.global_batch_size=100"]), 1)


def test_max_tokens_needs_the_batch_and_tokens_per_example() -> None:
    with pytest.raises(RecipeError, match="train.max_tokens needs train.tokens_per_example"):
        load_recipe("paper/table1_moe", ["train.max_tokens=1e9", "train.tokens_per_example=null"])
