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

import numpy as np

__all__ = ["row_groups"]


def row_groups(lengths: Sequence[int], max_groups: int = 4, call_cost: float = 0.05) -> list[list[int]]:
    """Row indices in at most ``max_groups`` runs of similar length, each run sorted by length.

    Minimises the positions computed (each run padded to its own longest row) plus, for every run
    beyond the first, ``call_cost`` x the positions of the whole batch (a backbone call has a fixed
    cost, and smaller matrix products run less efficiently), so a batch of similar rows stays one
    run. Exact, by dynamic programming over the sorted lengths, one array operation per run count
    (it runs on the host before every LLM forward; its cost against a Python loop: docs/benchmarks.md).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    if n <= 1 or max_groups <= 1:
        return [order]
    sorted_len = np.array([lengths[i] for i in order], dtype=np.float64)  # (n,)
    extra = call_cost * n * sorted_len[-1]
    ends = np.arange(1, n + 1)  # (n,) j: a run ends after the j shortest rows
    begins = np.arange(n + 1)[:, None]  # (n+1, 1) i: it begins after the i shortest
    span = (ends - begins) * sorted_len  # (n+1, n) positions of the run i..j, padded to its longest
    # cost[g, j]: fewest positions covering the j shortest rows with g runs; start[g, j]: where the last run begins
    cost = np.full((max_groups + 1, n + 1), np.inf)
    start = np.zeros((max_groups + 1, n + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for g in range(1, max_groups + 1):
        total = np.where((begins >= g - 1) & (begins < ends), cost[g - 1][:, None] + span, np.inf)
        best = total.argmin(0)  # (n,) the first (shortest-prefix) best start, as a strict "<" scan keeps
        cost[g, 1:], start[g, 1:] = total[best, ends - 1], best
    groups = min(range(1, max_groups + 1), key=lambda g: cost[g, n] + (g - 1) * extra)
    runs, j = [], n
    for g in range(groups, 0, -1):
        i = int(start[g, j])
        runs.append(order[i:j])
        j = i
    return runs[::-1]
