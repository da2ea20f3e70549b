"""moeaudio.reproduce.stats against hand computations: mean, std, paired differences, t intervals."""

from __future__ import annotations

import math

import pytest

from moeaudio.reproduce.stats import (
    DIFFERS,
    NOT_AVAILABLE,
    WITHIN_NOISE,
    mean,
    paired_difference,
    sample_std,
    student_t_cdf,
    student_t_quantile,
    summarize,
    t_quantile,
)

# Two-sided 95% critical values of Student's t, from the printed table (df: t_0.975).
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 30: 2.042}


@pytest.mark.parametrize("df,expected", T_TABLE.items())
def test_fallback_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
    assert student_t_quantile(0.025, df) == pytest.approx(-expected, abs=5e-4)
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)  # scipy's where installed


def test_fallback_t_cdf_inverts_and_is_symmetric() -> None:
    assert student_t_cdf(0.0, 3) == pytest.approx(0.5)
    assert student_t_cdf(4.303, 2) == pytest.approx(0.975, abs=1e-4)  # table values are rounded
    assert student_t_cdf(-2.776, 4) == pytest.approx(0.025, abs=1e-4)
    # df = 1 is the Cauchy distribution: P(T <= t) = 1/2 + atan(t)/pi
    for t in (-3.0, -0.5, 0.7, 10.0):
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)


def test_fallback_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 7, 10, 30, 100):
        for p in (0.9, 0.95, 0.975, 0.995):
            assert student_t_quantile(p, df) == pytest.approx(float(stats.t.ppf(p, df)), abs=1e-8)


def test_mean_and_sample_std_by_hand() -> None:
    assert mean([61.0, 62.0, 63.0]) == 62.0
    assert sample_std([61.0, 62.0, 63.0]) == pytest.approx(1.0)  # sqrt((1 + 0 + 1) / (3 - 1))
    assert sample_std([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(math.sqrt(2.5))  # 10 / 4
    assert sample_std([5.0]) is None
    s = summarize([0.5, 0.7])
    assert (s.n, s.mean, s.std) == (2, pytest.approx(0.6), pytest.approx(math.sqrt(0.02)))


def test_paired_difference_three_seeds_by_hand() -> None:
    # differences 1, 2, 3: mean 2, std 1, half-width 4.303 * 1 / sqrt(3) = 2.4843
    arm = {0: 61.0, 1: 63.0, 2: 66.0}
    base = {0: 60.0, 1: 61.0, 2: 63.0}
    d = paired_difference(arm, base)
    assert d is not None
    assert (d.n, d.seeds) == (3, (0, 1, 2))
    assert d.mean == pytest.approx(2.0)
    assert d.std == pytest.approx(1.0)
    assert d.t == pytest.approx(4.303, abs=5e-4)
    assert d.half_width == pytest.approx(4.303 / math.sqrt(3), abs=5e-4)
    assert (d.low, d.high) == (pytest.approx(-0.4843, abs=5e-4), pytest.approx(4.4843, abs=5e-4))
    assert d.verdict == WITHIN_NOISE  # the interval holds 0


def test_paired_difference_five_seeds_by_hand() -> None:
    # differences 1..5: mean 3, std sqrt(2.5), half-width 2.776 * sqrt(2.5) / sqrt(5) = 1.9630
    base = {s: 50.0 + 3 * s for s in range(5)}
    arm = {s: base[s] + s + 1 for s in range(5)}
    d = paired_difference(arm, base)
    assert d is not None and d.n == 5
    assert d.mean == pytest.approx(3.0)
    assert d.std == pytest.approx(math.sqrt(2.5))
    assert d.t == pytest.approx(2.776, abs=5e-4)
    assert d.half_width == pytest.approx(2.776 * math.sqrt(0.5), abs=5e-4)
    assert d.low == pytest.approx(1.0370, abs=5e-4)
    assert d.verdict == DIFFERS


def test_paired_difference_pairs_by_seed_not_by_position() -> None:
    # The baseline has a seed the arm lacks (and the other way round): only shared seeds pair.
    d = paired_difference({0: 2.0, 1: 4.0, 5: 100.0}, {0: 1.0, 1: 1.0, 2: -50.0})
    assert d is not None and d.seeds == (0, 1) and d.mean == pytest.approx(2.0)
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


def test_one_seed_and_constant_shift() -> None:
    one = paired_difference({0: 2.0}, {0: 1.0})
    assert one is not None and one.verdict == NOT_AVAILABLE and one.half_width is None
    shift = paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})  # every seed +1: std 0
    assert shift is not None and shift.half_width == 0.0 and shift.verdict == DIFFERS
    same = paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert same is not None and same.verdict == WITHIN_NOISE
