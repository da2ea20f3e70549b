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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "DIFFERS",
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
