"""Split a padded batch's rows into runs of similar length, so the LLM computes less padding.

Why: a training batch mixes tasks whose rows differ in length (a transcript against a one-word
label, a clip of 2 s against one of 6 s). Padded to its longest row, 21 % of the quickstart's LLM
positions were padding. The sampler could sort by row length instead, but that makes batches
more uniform by task, and the validation table moved by more than run-to-run noise when it did
(multiple choice 0.55 against 0.63, docs/benchmarks.md). Running the LLM backbone once per run of
rows keeps every batch as it is: each row's hidden states are the same computation (rows of a
causal LM do not see each other), only the padding goes.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["row_groups"]


def row_groups(lengths: Sequence[int], max_groups: int = 4, call_cost: float = 0.05) -> list[list[int]]:
    """Row indices in at most ``max_groups`` runs of similar length, each run sorted by length.

    Minimises the positions computed (each run padded to its own longest row) plus, for every run
    beyond the first, ``call_cost`` x the positions of the whole batch (a backbone call has a fixed
    cost, and smaller matrix products run less efficiently), so a batch of similar rows stays one
    run. Exact, by dynamic programming over the sorted lengths: a batch has few rows.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_len = [lengths[i] for i in order]
    n = len(order)
    if n <= 1 or max_groups <= 1:
        return [order]
    extra = call_cost * n * sorted_len[-1]
    inf = float("inf")
    # cost[g][j]: fewest positions covering the j shortest rows with g runs; start[g][j]: where the last run begins
    cost = [[inf] * (n + 1) for _ in range(max_groups + 1)]
    start = [[0] * (n + 1) for _ in range(max_groups + 1)]
    cost[0][0] = 0.0
    for g in range(1, max_groups + 1):
        for j in range(1, n + 1):
            for i in range(g - 1, j):
                c = cost[g - 1][i] + (j - i) * sorted_len[j - 1]
                if c < cost[g][j]:
                    cost[g][j], start[g][j] = c, i
    groups = min(range(1, max_groups + 1), key=lambda g: cost[g][n] + (g - 1) * extra)
    runs, j = [], n
    for g in range(groups, 0, -1):
        i = start[g][j]
        runs.append(order[i:j])
        j = i
    return runs[::-1]
