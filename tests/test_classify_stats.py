"""Statistics over seeds: t-intervals, exact/Monte Carlo paired permutation test, Wilcoxon, bootstrap AUC CI."""

import itertools

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from dermsynth.classify import (bootstrap_auc_difference, compare_to_baseline, format_mean_std, macro_auc,
                                paired_permutation_test, summarize, wilcoxon_test)
from dermsynth.classify.stats import _batched_auc
from dermsynth.errors import DataError

BASE = np.array([0.834, 0.829, 0.841, 0.822, 0.838, 0.830])
COND = np.array([0.847, 0.842, 0.851, 0.839, 0.845, 0.851])


def test_summary_matches_scipy_t_interval():
    s = summarize(BASE, confidence=0.95)
    lo, hi = sps.t.interval(0.95, len(BASE) - 1, loc=BASE.mean(), scale=sps.sem(BASE))
    assert (s.mean, s.std) == pytest.approx((BASE.mean(), BASE.std(ddof=1)))
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi))
    one = summarize([0.8])
    assert one.mean == 0.8 and np.isnan(one.std) and np.isnan(one.ci_low)
    assert format_mean_std(BASE) == f"{BASE.mean() * 100:.1f} ± {BASE.std(ddof=1) * 100:.1f}"


def test_permutation_p_value_matches_hand_enumeration():
    cond, base = np.array([0.9, 0.7, 0.8]), np.array([0.6, 0.8, 0.6])  # differences 0.3, -0.1, 0.2
    # sign-flipped sums of (0.3, -0.1, 0.2): +-0.6, +-0.4, +-0.2, 0, 0; |sum| >= 0.4: 4 of 8, sum >= 0.4: 2 of 8
    r = paired_permutation_test(cond, base)
    assert r.exact and r.n_assignments == 8 and r.p_value == pytest.approx(0.5)
    assert r.mean_diff == pytest.approx(0.4 / 3)
    assert paired_permutation_test(cond, base, alternative="greater").p_value == pytest.approx(0.25)
    assert paired_permutation_test(cond, base, alternative="less").p_value == pytest.approx(7 / 8)
    d = cond - base  # the same by brute force
    sums = [abs(np.dot(s, d)) for s in itertools.product((-1, 1), repeat=3)]
    assert np.mean([x >= abs(d.sum()) - 1e-12 for x in sums]) == pytest.approx(0.5)


def test_permutation_test_matches_scipy_permutation_test():
    def mean_diff(x, y, axis):
        return np.mean(x - y, axis=axis)

    ref = sps.permutation_test((COND, BASE), mean_diff, permutation_type="samples", n_resamples=np.inf)
    assert paired_permutation_test(COND, BASE).p_value == pytest.approx(ref.pvalue)
    assert paired_permutation_test(COND, BASE).p_value == pytest.approx(2 / 64)  # all 6 positive


def test_permutation_on_signed_ranks_is_the_exact_wilcoxon_test():
    rng = np.random.default_rng(0)
    base = rng.normal(0.83, 0.01, 9)
    cond = base + rng.normal(0.004, 0.01, 9)
    d = cond - base
    signed_ranks = np.sign(d) * sps.rankdata(np.abs(d))
    for alternative in ("two-sided", "greater"):
        ours = paired_permutation_test(signed_ranks, np.zeros(9), alternative=alternative).p_value
        ref = sps.wilcoxon(d, alternative=alternative, method="exact").pvalue
        assert ours == pytest.approx(ref)
    assert wilcoxon_test(cond, base) == pytest.approx(sps.wilcoxon(d).pvalue)
    assert wilcoxon_test(base, base) == 1.0


def test_monte_carlo_above_sixteen_pairs_is_seeded_and_close_to_exact():
    rng = np.random.default_rng(1)
    base = rng.normal(0.8, 0.01, 17)
    cond = base + rng.normal(0.003, 0.01, 17)
    exact = paired_permutation_test(cond, base, exact_max=17)
    mc = paired_permutation_test(cond, base, n_resamples=20_000, seed=3)
    assert exact.exact and not mc.exact and mc.n_assignments == 20_000
    assert mc.p_value == paired_permutation_test(cond, base, n_resamples=20_000, seed=3).p_value
    assert abs(mc.p_value - exact.p_value) < 0.015


def test_compare_to_baseline_bundles_the_tests():
    c = compare_to_baseline(COND, BASE)
    s = summarize(COND - BASE)
    assert c.n == 6 and c.mean_diff == pytest.approx(s.mean) and (c.ci_low, c.ci_high) == pytest.approx(
        (s.ci_low, s.ci_high))
    assert c.permutation_p == pytest.approx(2 / 64) and c.exact
    assert c.wilcoxon_p == pytest.approx(sps.wilcoxon(COND - BASE).pvalue)
    with pytest.raises(DataError, match="equal lengths"):
        compare_to_baseline(COND, BASE[:3])
    with pytest.raises(DataError, match="alternative"):
        paired_permutation_test(COND, BASE, alternative="bigger")


@pytest.fixture
def two_models():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    onehot = np.eye(3)[labels]

    def model(strength):
        logits = rng.normal(size=(400, 3)) + strength * onehot
        return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

    return model(1.6), model(1.0), labels


def test_batched_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, size=(6, 40)).astype(float)  # many ties
    positive = rng.random((6, 40)) < 0.4
    expected = [roc_auc_score(p, s) for s, p in zip(scores, positive)]
    assert _batched_auc(scores, positive) == pytest.approx(expected)


def test_bootstrap_ci_contains_the_difference_and_is_seeded(two_models):
    a, b, labels = two_models
    r = bootstrap_auc_difference(a, b, labels, n_boot=1000, seed=0)
    assert r.observed == pytest.approx(macro_auc(a, labels) - macro_auc(b, labels))
    assert r.ci_low < r.observed < r.ci_high and r.ci_low > 0  # a is clearly better here
    assert r.n_boot == 1000 and r.fraction_nonpositive < 0.025
    again = bootstrap_auc_difference(a, b, labels, n_boot=1000, seed=0)
    assert (again.ci_low, again.ci_high) == (r.ci_low, r.ci_high)
    other = bootstrap_auc_difference(a, b, labels, n_boot=1000, seed=1)
    assert (other.ci_low, other.ci_high) != (r.ci_low, r.ci_high)
    same = bootstrap_auc_difference(a, a, labels, n_boot=200, seed=0)
    assert same.observed == 0 and same.ci_low == same.ci_high == 0
    one = bootstrap_auc_difference(a, b, labels, n_boot=500, seed=0, class_index=1)
    assert one.observed == pytest.approx(roc_auc_score(labels == 1, a[:, 1]) - roc_auc_score(labels == 1, b[:, 1]))
    assert one.ci_low < one.observed < one.ci_high
