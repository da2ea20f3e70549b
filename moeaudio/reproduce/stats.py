"""Statistics over seeds for `moeaudio reproduce`: mean +- std, paired differences, t intervals.

Pure Python (``math`` only; no torch, no numpy), so the numbers in ``results.md`` can be checked by
hand. Why paired: every arm of a study is trained with the same seeds, data and budget, so seed ``s``
of an arm and seed ``s`` of the baseline share their data order and initialisation draws; the
differences ``arm_s - baseline_s`` remove what the seed does to both, and their spread, not the spread
of either arm, says whether the arm differs. The 95% interval is ``mean(d) +- t_{0.975, n-1} *
std(d) / sqrt(n)`` with the sample std (n - 1); "differs" when it excludes 0, "within noise" when it
does not. With one seed there is no interval ("n/a").

The t quantile comes from scipy when it is installed; otherwise from :func:`student_t_quantile`
(the regularised incomplete beta function by its continued fraction, inverted by bisection), which
the tests check against the printed table (4.303 for 2 degrees of freedom, 2.776 for 4) and against
scipy where scipy is present. scipy is not a dependency of moeaudio for this one function.

Item-and-seed statistics (the verdicts of ``results.md``)
--------------------------------------------------------
The t interval above measures training noise only: it treats the test set as fixed, so a difference of
the same single item in every seed has a zero-width interval and reads "differs". A reviewer's question
is whether the arm would still win with other seeds *and another test set of the same size*. So every
arm-vs-baseline difference whose eval files hold per-item records is judged by
:func:`paired_item_bootstrap`, a **paired two-way (seeds x items) bootstrap**:

* one draw resamples the seeds with replacement and, independently, the test items with replacement;
  the same item draw is used for every seed, because the test set is one sample shared by all seeds
  (seeds and items are crossed, not nested: resampling items anew inside each seed would count one
  lucky item, repeated in every seed, as independent evidence);
* the statistic is the mean over the drawn seeds of ``metric(arm) - metric(baseline)`` on the drawn
  items, paired item by item, so an item both arms get right (or wrong) adds 0 to every draw: ties
  stay ties. Ratio metrics (WER = word errors / reference words) are recomputed as ratios on the drawn
  items;
* the interval is the percentile interval of 10,000 draws; the two-sided p-value is
  ``2 min(P*(T <= 0), P*(T >= 0))`` with the +1 correction of a Monte Carlo p-value.

Why a bootstrap and not an exact paired permutation (sign-flip) test: exchangeability under "no
difference" holds for whole trained models, so an exact test flips the sign of a whole seed; with 3 or
5 seeds that test has 8 or 32 outcomes and can never reach p < 0.05 after any correction, and it
ignores test-set sampling. Flipping items independently would ignore training noise. The two-way
bootstrap covers both sources; its known weakness is few seeds (the seed level of the bootstrap
under-states spread by about ``(n-1)/n``), so with 3 seeds its intervals are optimistic at the seed
level: the minimum detectable effect beside each verdict says how large a real effect would have to
be to be seen at all.

Multiple columns (:func:`holm`): a study names one ``primary`` column in advance, judged at the study's
level alone; the arm's other columns are one family, corrected with **Holm's step-down** method. Why
Holm and not Benjamini-Hochberg: each "differs" in the table is read as a claim about that column, so
the family-wise error (any false "differs" in the row) is the rate a reader needs controlled; and Holm
holds under any dependence between columns (the audio MCQ and its thirds share items; every column shares
the model), where BH needs positive dependence. :func:`benjamini_hochberg` is here for comparison.

Minimum detectable effect (:func:`minimum_detectable_effect`): ``(z_{1-a/2} + z_{power}) * SE`` with
``SE^2 = (MS_seed + MS_item - MS_resid) / (S I)`` from the two-way ANOVA of the per-item differences
(the unbiased variance of a crossed seeds x items mean: ``s_seed^2/S + s_item^2/I + s_resid^2/(S I)``),
never below the residual's share ``MS_resid / (S I)``. ``a`` is 0.05 for the primary column and
``0.05 / m`` (Holm's first step, m columns) for the others; power 0.8.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = [
    "DIFFERS",
    "ItemDifference",
    "ItemScores",
    "align_items",
    "benjamini_hochberg",
    "holm",
    "minimum_detectable_effect",
    "paired_item_bootstrap",
    "paired_t_pvalue",
    "standard_error_two_way",
    "NOT_AVAILABLE",
    "WITHIN_NOISE",
    "PairedDifference",
    "Summary",
    "mean",
    "paired_difference",
    "sample_std",
    "student_t_cdf",
    "student_t_quantile",
    "summarize",
    "t_quantile",
]

DIFFERS = "differs"
WITHIN_NOISE = "within noise"
NOT_AVAILABLE = "n/a"


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float | None:
    """Standard deviation with ``n - 1`` in the denominator; None for fewer than two values."""
    if len(values) < 2:
        return None
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


# ----------------------------------------------------------------------------- Student's t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The t with ``P(T <= t) = p`` (bisection on :func:`student_t_cdf`, to ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile: scipy's when installed, else :func:`student_t_quantile` (same to ~1e-9)."""
    try:
        from scipy.stats import t as student_t
    except ImportError:
        return student_t_quantile(p, df)
    return float(student_t.ppf(p, df))


# ----------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Summary:
    """``mean +- std`` of one cell over its seeds (std None for one seed)."""

    n: int
    mean: float
    std: float | None
    values: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "values": list(self.values)}


def summarize(values: Sequence[float]) -> Summary:
    return Summary(len(values), mean(values), sample_std(values), tuple(float(v) for v in values))


@dataclass(frozen=True)
class PairedDifference:
    """``arm - baseline`` seed by seed: mean, std, the t interval and the verdict."""

    n: int
    mean: float
    std: float | None
    confidence: float
    t: float | None  # the t quantile used (None for n < 2)
    half_width: float | None
    low: float | None
    high: float | None
    verdict: str  # DIFFERS, WITHIN_NOISE or NOT_AVAILABLE
    seeds: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}


def paired_difference(
    arm: dict[int, float], baseline: dict[int, float], confidence: float = 0.95
) -> PairedDifference | None:
    """Paired difference over the seeds both have (``{seed: value}`` each); None when they share none.

    Half-width ``t_{(1+c)/2, n-1} * std(d) / sqrt(n)``; the verdict is DIFFERS when the interval
    excludes 0. A zero spread with a nonzero mean (every seed moved by the same amount) differs; a
    zero spread with a zero mean is within noise.
    """
    seeds = tuple(sorted(set(arm) & set(baseline)))
    if not seeds:
        return None
    diffs = [arm[s] - baseline[s] for s in seeds]
    n, m, sd = len(diffs), mean(diffs), sample_std(diffs)
    if n < 2 or sd is None:
        return PairedDifference(n, m, None, confidence, None, None, None, None, NOT_AVAILABLE, seeds)
    t = t_quantile(0.5 + confidence / 2.0, n - 1)
    half = t * sd / math.sqrt(n)
    low, high = m - half, m + half
    verdict = DIFFERS if (low > 0 or high < 0) else WITHIN_NOISE
    return PairedDifference(n, m, sd, confidence, t, half, low, high, verdict, seeds)


def paired_t_pvalue(diff: PairedDifference) -> float | None:
    """Two-sided p-value of the paired t test behind ``diff`` (None without a spread; 0 or 1 for a
    zero spread: a constant nonzero shift, or none)."""
    if diff.n < 2 or diff.std is None:
        return None
    if diff.std == 0.0:
        return 1.0 if diff.mean == 0.0 else 0.0
    t = diff.mean / (diff.std / math.sqrt(diff.n))
    return 2.0 * student_t_cdf(-abs(t), diff.n - 1)


# ----------------------------------------------------------------------------- multiple columns


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): ``max_{j<=k} min(1, (m-j+1) p_(j))``."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (same order): ``min_{j>=k} min(1, m p_(j) / j)``."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for k, i in enumerate(order):
        rank = m - k
        running = min(running, min(1.0, m * pvalues[i] / rank))
        adjusted[i] = running
    return adjusted


# ----------------------------------------------------------------------------- item-level data

#: Per item of one column on one seed: ``(numerator, denominator)``. Accuracy: ``(correct, 1)``;
#: WER: ``(word errors, reference words)``. The column's value is ``sum(num) / sum(den)``.
ItemScores = Mapping[str, tuple[float, float]]


def align_items(
    arm: Mapping[int, ItemScores], baseline: Mapping[int, ItemScores]
) -> tuple[list[int], list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """``(seeds, item ids, num_arm [S, I], num_baseline [S, I], den [I])`` over the seeds both have and
    the items every one of those runs scored; None when they share no seed or no item.

    Raises ValueError when an item's denominator differs between runs (not the same test set)."""
    seeds = sorted(set(arm) & set(baseline))
    if not seeds:
        return None
    ids_sets = [set(arm[s]) & set(baseline[s]) for s in seeds]
    ids = sorted(set.intersection(*ids_sets))
    if not ids:
        return None
    num_a = np.array([[arm[s][i][0] for i in ids] for s in seeds], dtype=np.float64)
    num_b = np.array([[baseline[s][i][0] for i in ids] for s in seeds], dtype=np.float64)
    dens = np.array([[run[s][i][1] for i in ids] for run in (arm, baseline) for s in seeds], dtype=np.float64)
    if not np.all(dens == dens[0]):
        raise ValueError(
            "per-item denominators differ between runs: the arms were not scored on the same items"
        )
    return seeds, ids, num_a, num_b, dens[0]


def standard_error_two_way(d: np.ndarray) -> float:
    """Standard error of the grand mean of ``d`` [S seeds, I items] under crossed random seed and item
    effects: ``sqrt((MS_seed + MS_item - MS_resid) / (S I))``, at least ``sqrt(MS_resid / (S I))``.
    One seed: the items' standard error; one item: the seeds'."""
    d = np.asarray(d, dtype=np.float64)
    n_s, n_i = d.shape
    if n_s == 1 and n_i == 1:
        return 0.0
    if n_s == 1 or n_i == 1:
        flat = d.ravel()
        return float(np.std(flat, ddof=1) / math.sqrt(flat.size))
    grand = d.mean()
    seed_means, item_means = d.mean(axis=1), d.mean(axis=0)
    ms_seed = n_i * float(np.sum((seed_means - grand) ** 2)) / (n_s - 1)
    ms_item = n_s * float(np.sum((item_means - grand) ** 2)) / (n_i - 1)
    resid = d - seed_means[:, None] - item_means[None, :] + grand
    ms_resid = float(np.sum(resid**2)) / ((n_s - 1) * (n_i - 1))
    var = max(ms_seed + ms_item - ms_resid, ms_resid) / (n_s * n_i)
    return math.sqrt(max(var, 0.0))


def minimum_detectable_effect(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided level-``alpha`` test detects with ``power``:
    ``(z_{1-alpha/2} + z_power) * se`` (normal approximation)."""
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    z = NormalDist()
    return (z.inv_cdf(1.0 - alpha / 2.0) + z.inv_cdf(power)) * se


@dataclass(frozen=True)
class ItemDifference:
    """``arm - baseline`` over seeds and items: the effect, its bootstrap interval and p-value, the
    two-way standard error and the minimum detectable effect, all on the caller's scale."""

    n_seeds: int
    n_items: int
    mean: float
    low: float
    high: float
    p_value: float
    se: float
    mde: float
    confidence: float
    n_boot: int
    seeds: tuple[int, ...]
    items_differing: int  # (seed, item) pairs where the arms' scores differ: the evidence there is
    alpha: float = 0.05  # the level the mde is computed at
    method: str = "paired two-way bootstrap (seeds x items)"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}


def _bootstrap_draws(
    delta: np.ndarray, den: np.ndarray, n_boot: int, rng: np.random.Generator, chunk: int = 1000
) -> np.ndarray:
    """``n_boot`` draws of the mean over resampled seeds of ``sum(delta)/sum(den)`` over resampled items."""
    n_s, n_i = delta.shape
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        seed_counts = rng.multinomial(n_s, np.full(n_s, 1.0 / n_s), size=b)  # [b, S]
        item_counts = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=b).astype(np.float64)  # [b, I]
        per_seed = (item_counts @ delta.T) / (item_counts @ den)[:, None]  # [b, S]
        out[start : start + b] = (seed_counts * per_seed).sum(axis=1) / n_s
    return out


def paired_item_bootstrap(
    num_arm: np.ndarray,
    num_baseline: np.ndarray,
    den: np.ndarray,
    *,
    seeds: Sequence[int] | None = None,
    confidence: float = 0.95,
    alpha: float = 0.05,
    n_boot: int = 10_000,
    scale: float = 1.0,
    rng_seed: int = 0,
) -> ItemDifference:
    """The paired two-way bootstrap of ``arm - baseline`` (see the module docstring).

    ``num_arm``, ``num_baseline``: [S seeds, I items] numerators; ``den``: [I] denominators (1 for
    accuracy). ``scale`` multiplies every reported number (100: percent). ``alpha``: the level of the
    minimum detectable effect (the verdict's level). Seeded: the same data give the same interval.
    """
    num_a = np.atleast_2d(np.asarray(num_arm, dtype=np.float64))
    num_b = np.atleast_2d(np.asarray(num_baseline, dtype=np.float64))
    den = np.asarray(den, dtype=np.float64)
    if num_a.shape != num_b.shape or num_a.shape[1] != den.shape[0]:
        raise ValueError(f"shapes differ: arm {num_a.shape}, baseline {num_b.shape}, den {den.shape}")
    if den.sum() <= 0:
        raise ValueError("the items' denominators sum to 0")
    delta = num_a - num_b
    observed = float(np.mean(delta.sum(axis=1) / den.sum()))
    draws = _bootstrap_draws(delta, den, n_boot, np.random.default_rng(rng_seed))
    lo_q, hi_q = (1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0
    low, high = (float(v) for v in np.quantile(draws, [lo_q, hi_q]))
    below = int(np.sum(draws <= 0.0))
    above = int(np.sum(draws >= 0.0))
    p = min(1.0, 2.0 * min(below + 1, above + 1) / (n_boot + 1))
    se = standard_error_two_way(delta / den.mean())
    n_s, n_i = delta.shape
    return ItemDifference(
        n_seeds=n_s,
        n_items=n_i,
        mean=observed * scale,
        low=low * scale,
        high=high * scale,
        p_value=p,
        se=se * scale,
        mde=minimum_detectable_effect(se, alpha) * scale,
        confidence=confidence,
        n_boot=n_boot,
        seeds=tuple(seeds) if seeds is not None else tuple(range(n_s)),
        items_differing=int(np.count_nonzero(delta)),
        alpha=alpha,
    )
