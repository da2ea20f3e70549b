"""row_groups: rows of a padded batch in runs of similar length (the LLM then computes less padding)."""

from __future__ import annotations

import itertools
import random

from moeaudio.model.row_groups import row_groups


def _positions(lengths: list[int], groups: list[list[int]]) -> int:
    return sum(len(g) * max(lengths[i] for i in g) for g in groups)


def test_every_row_once_each_run_sorted() -> None:
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(5, 120) for _ in range(rng.randint(1, 24))]
        groups = row_groups(lengths, max_groups=4)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert 1 <= len(groups) <= 4 and all(g for g in groups)
        for g in groups:
            assert [lengths[i] for i in g] == sorted(lengths[i] for i in g)


def test_two_clusters_split_and_similar_rows_stay_together() -> None:
    lengths = [40, 42, 41, 120, 118, 40, 119, 43]
    groups = row_groups(lengths)
    assert [sorted(g) for g in groups] == [[0, 1, 2, 5, 7], [3, 4, 6]]
    assert _positions(lengths, groups) == 5 * 43 + 3 * 120  # against 8 x 120 in one batch
    assert row_groups([50, 51, 52, 50]) == [[0, 3, 1, 2]]  # a split would save less than a call costs


def test_optimal_against_brute_force() -> None:
    """Exact: no partition of the sorted rows into at most k runs costs less (positions + call cost)."""
    rng = random.Random(1)
    for _ in range(30):
        n = rng.randint(2, 9)
        lengths = [rng.randint(1, 60) for _ in range(n)]
        cost = 0.05 * n * max(lengths)
        got = (
            _positions(lengths, row_groups(lengths, 3, 0.05)) + (len(row_groups(lengths, 3, 0.05)) - 1) * cost
        )
        order = sorted(range(n), key=lambda i: lengths[i])
        best = float("inf")
        for k in range(0, 3):
            for cuts in itertools.combinations(range(1, n), k):
                bounds = [0, *cuts, n]
                runs = [order[a:b] for a, b in itertools.pairwise(bounds)]
                best = min(best, _positions(lengths, runs) + k * cost)
        assert abs(got - best) < 1e-9


def _loop_dp(lengths: list[int], max_groups: int, call_cost: float) -> list[list[int]]:
    """The same dynamic programme as plain loops (row_groups' first version): the reference."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_len, n = [lengths[i] for i in order], len(order)
    if n <= 1 or max_groups <= 1:
        return [order]
    cost = [[float("inf")] * (n + 1) for _ in range(max_groups + 1)]
    start = [[0] * (n + 1) for _ in range(max_groups + 1)]
    cost[0][0] = 0.0
    for g in range(1, max_groups + 1):
        for j in range(1, n + 1):
            for i in range(g - 1, j):
                c = cost[g - 1][i] + (j - i) * sorted_len[j - 1]
                if c < cost[g][j]:
                    cost[g][j], start[g][j] = c, i
    extra = call_cost * n * sorted_len[-1]
    groups = min(range(1, max_groups + 1), key=lambda g: cost[g][n] + (g - 1) * extra)
    runs, j = [], n
    for g in range(groups, 0, -1):
        runs.append(order[start[g][j] : j])
        j = start[g][j]
    return runs[::-1]


def test_same_runs_as_the_loop_reference_ties_included() -> None:
    """Batches too large for brute force; few distinct lengths make ties, which must break alike."""
    rng = random.Random(2)
    for _ in range(300):
        n = rng.randint(0, 80)
        lengths = [rng.randint(1, rng.choice([4, 60, 500])) for _ in range(n)]
        max_groups, call_cost = rng.randint(1, 5), rng.choice([0.0, 0.05, 0.2])
        assert row_groups(lengths, max_groups, call_cost) == _loop_dp(lengths, max_groups, call_cost)


def test_degenerate_inputs() -> None:
    assert row_groups([]) == [[]]
    assert row_groups([7]) == [[0]]
    assert row_groups([3, 90], max_groups=1) == [[0, 1]]
