"""Item-and-seed statistics (moeaudio.reproduce.stats) on constructed data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from moeaudio.reproduce.stats import (
    DIFFERS,
    align_items,
    benjamini_hochberg,
    holm,
    minimum_detectable_effect,
    paired_difference,
    paired_item_bootstrap,
    paired_t_pvalue,
    standard_error_two_way,
)

N_ITEMS = 50


def _baseline(seeds: int, rng: np.random.Generator, p: float = 0.6) -> np.ndarray:
    """[seeds, N_ITEMS] 0/1 correctness: a fixed test set, each seed's model right on ~60 %."""
    return (rng.random((seeds, N_ITEMS)) < p).astype(float)


def _move(base: np.ndarray, rng: np.random.Generator, wins: int, losses: int, same_items: bool) -> np.ndarray:
    """The arm: ``wins`` items the baseline got wrong turned right and ``losses`` right turned wrong,
    per seed (the same items in every seed, or other items each seed)."""
    arm = base.copy()
    fixed = rng.permutation(N_ITEMS)
    for s in range(base.shape[0]):
        order = fixed if same_items else rng.permutation(N_ITEMS)
        wrong = [i for i in order if base[s, i] == 0][:wins]
        right = [i for i in order if base[s, i] == 1][:losses]
        arm[s, wrong] = 1.0
        arm[s, right] = 0.0
    return arm


def _seed_values(x: np.ndarray) -> dict[int, float]:
    return {s: float(x[s].mean()) * 100 for s in range(x.shape[0])}


def test_one_item_per_seed_is_not_a_difference() -> None:
    """The issue's case: the same one test item (2 points of 50) in every seed. The t interval over
    seeds has no width and says "differs"; the item-level bootstrap does not."""
    rng = np.random.default_rng(1)
    for seeds in (3, 5):
        base = np.tile(_baseline(1, rng), (seeds, 1))
        base[:, 0] = 0.0
        arm = base.copy()
        arm[:, 0] = 1.0  # one item, the same in every seed
        old = paired_difference(_seed_values(arm), _seed_values(base))
        assert old is not None and old.verdict == DIFFERS and old.half_width == pytest.approx(0.0)
        d = paired_item_bootstrap(arm, base, np.ones(N_ITEMS), scale=100)
        assert d.mean == pytest.approx(2.0)
        assert d.low <= 0.0 <= d.high
        assert d.p_value > 0.3  # the item is absent from a resampled test set with prob (49/50)^50 = 0.36
        assert d.items_differing == seeds


def test_one_item_net_with_churn_is_not_a_difference() -> None:
    """Realistic one item net per seed: 4 items won and 3 lost, other items each seed."""
    rng = np.random.default_rng(2)
    base = _baseline(5, rng)
    arm = _move(base, rng, wins=4, losses=3, same_items=False)
    d = paired_item_bootstrap(arm, base, np.ones(N_ITEMS), scale=100)
    assert d.mean == pytest.approx(2.0)
    assert d.low < 0.0 < d.high and d.p_value > 0.05


def test_large_consistent_effect_differs() -> None:
    rng = np.random.default_rng(3)
    base = _baseline(5, rng)
    arm = _move(base, rng, wins=12, losses=1, same_items=False)  # +22 points every seed
    d = paired_item_bootstrap(arm, base, np.ones(N_ITEMS), scale=100)
    assert d.mean == pytest.approx(22.0)
    assert d.low > 10.0 and d.p_value < 0.001
    assert d.mde < d.mean  # detectable at 5 seeds x 50 items


def test_bootstrap_is_seeded_and_reproducible() -> None:
    rng = np.random.default_rng(4)
    base = _baseline(3, rng)
    arm = _move(base, rng, wins=5, losses=2, same_items=False)
    a = paired_item_bootstrap(arm, base, np.ones(N_ITEMS), n_boot=2000)
    b = paired_item_bootstrap(arm, base, np.ones(N_ITEMS), n_boot=2000)
    assert a == b


def test_all_ties_give_p_one() -> None:
    base = _baseline(3, np.random.default_rng(5))
    d = paired_item_bootstrap(base, base.copy(), np.ones(N_ITEMS), n_boot=500)
    assert d.mean == 0.0 and d.low == 0.0 and d.high == 0.0 and d.p_value == 1.0


def test_ratio_metric_is_the_corpus_wer() -> None:
    """WER columns: word errors / reference words, recomputed as a ratio (not a mean of item rates)."""
    words = np.array([4.0, 10.0, 6.0])
    base_err = np.array([[1.0, 2.0, 0.0]])
    arm_err = np.array([[0.0, 1.0, 0.0]])
    d = paired_item_bootstrap(arm_err, base_err, words, n_boot=200, scale=100)
    assert d.mean == pytest.approx(100 * (1 - 3) / 20)


def test_align_items_pairs_by_seed_and_id() -> None:
    arm = {0: {"a": (1.0, 1.0), "b": (0.0, 1.0), "c": (1.0, 1.0)}, 1: {"a": (1.0, 1.0), "b": (1.0, 1.0)}}
    base = {
        1: {"b": (0.0, 1.0), "a": (0.0, 1.0)},
        0: {"a": (0.0, 1.0), "b": (0.0, 1.0)},
        2: {"a": (1.0, 1.0)},
    }
    seeds, ids, na, nb, den = align_items(arm, base)
    assert seeds == [0, 1] and ids == ["a", "b"]
    assert na.tolist() == [[1.0, 0.0], [1.0, 1.0]] and nb.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert den.tolist() == [1.0, 1.0]
    assert align_items(arm, {5: {"a": (1.0, 1.0)}}) is None
    with pytest.raises(ValueError, match="denominators"):
        align_items({0: {"a": (1.0, 3.0)}}, {0: {"a": (1.0, 4.0)}})


# ----------------------------------------------------------------------------- multiple columns

KNOWN_P = [0.01, 0.04, 0.03, 0.005, 0.20, 0.001]


def test_holm_on_known_pvalues() -> None:
    # sorted: 0.001*6=0.006, 0.005*5=0.025, 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> 0.09 (monotone), 0.2*1 -> 0.2
    expected = [0.04, 0.09, 0.09, 0.025, 0.20, 0.006]
    assert holm(KNOWN_P) == pytest.approx(expected)
    assert [q < 0.05 for q in holm(KNOWN_P)] == [True, False, False, True, False, True]
    assert holm([0.5]) == [0.5] and holm([]) == []
    assert holm([0.3, 0.4]) == pytest.approx([0.6, 0.6])


def test_benjamini_hochberg_matches_scipy() -> None:
    assert benjamini_hochberg(KNOWN_P) == pytest.approx(false_discovery_control(KNOWN_P).tolist())
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.random(13) ** 3
        assert benjamini_hochberg(p.tolist()) == pytest.approx(false_discovery_control(p).tolist())


def test_paired_t_pvalue_matches_scipy() -> None:
    from scipy.stats import ttest_rel

    a, b = [54.0, 52.0, 57.0, 51.0], [50.0, 51.0, 55.0, 50.0]
    d = paired_difference(dict(enumerate(a)), dict(enumerate(b)))
    assert paired_t_pvalue(d) == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-6)


# ----------------------------------------------------------------------------- minimum detectable effect


def _crossed(
    rng: np.random.Generator, s: int, i: int, sd: tuple[float, float, float], effect: float
) -> np.ndarray:
    seed_sd, item_sd, resid_sd = sd
    return (
        effect
        + rng.normal(0, seed_sd, (s, 1))
        + rng.normal(0, item_sd, (1, i))
        + rng.normal(0, resid_sd, (s, i))
    )


def test_two_way_standard_error_matches_simulation() -> None:
    """The ANOVA standard error against the spread of the grand mean over simulated studies (new seeds
    and a new test set each time)."""
    rng = np.random.default_rng(7)
    s, i, sd = 5, 200, (0.02, 0.3, 0.4)
    means, var_est = [], []
    for _ in range(600):
        d = _crossed(rng, s, i, sd, 0.0)
        means.append(d.mean())
        var_est.append(standard_error_two_way(d) ** 2)
    true_var = sd[0] ** 2 / s + sd[1] ** 2 / i + sd[2] ** 2 / (s * i)
    assert np.var(means) == pytest.approx(true_var, rel=0.15)
    assert np.mean(var_est) == pytest.approx(true_var, rel=0.1)


def test_two_way_standard_error_on_binary_items() -> None:
    """Accuracy-like data: item difficulty shared by seeds, seed effects per arm, 0/1 outcomes."""
    rng = np.random.default_rng(8)
    s, i = 5, 200
    means, var_est = [], []
    for _ in range(400):
        difficulty = rng.normal(0.3, 1.5, i)
        logit_a = difficulty[None, :] + 0.2 + rng.normal(0, 0.15, (s, 1))
        logit_b = difficulty[None, :] + rng.normal(0, 0.15, (s, 1))
        a = (rng.random((s, i)) < 1 / (1 + np.exp(-logit_a))).astype(float)
        b = (rng.random((s, i)) < 1 / (1 + np.exp(-logit_b))).astype(float)
        means.append((a - b).mean())
        var_est.append(standard_error_two_way(a - b) ** 2)
    assert np.mean(var_est) == pytest.approx(np.var(means), rel=0.15)


def test_minimum_detectable_effect_has_its_power() -> None:
    """A true effect equal to the MDE is detected ~80 % of the time by the level-0.05 test."""
    rng = np.random.default_rng(9)
    s, i, sd = 5, 200, (0.05, 0.3, 0.4)
    true_se = np.sqrt(sd[0] ** 2 / s + sd[1] ** 2 / i + sd[2] ** 2 / (s * i))
    mde = minimum_detectable_effect(float(true_se), alpha=0.05, power=0.8)
    assert mde == pytest.approx((1.959964 + 0.841621) * true_se, rel=1e-5)
    hits = 0
    reps = 800
    for _ in range(reps):
        d = _crossed(rng, s, i, sd, mde)
        hits += abs(d.mean()) / true_se > 1.959964
    assert hits / reps == pytest.approx(0.80, abs=0.04)
    with pytest.raises(ValueError):
        minimum_detectable_effect(0.1, alpha=0.0)
