"""Statistics over seeds: t-intervals, exact/Monte Carlo paired permutation test, Wilcoxon, bootstrap AUC CI."""

import itertools

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from dermsynth.classify import (bootstrap_auc_difference, compare_to_baseline, format_mean_std, macro_auc,
                                paired_permutation_test, summarize, wilcoxon_test)
from dermsynth.classify.stats import (_batched_auc, delong_test, holm_adjust, min_attainable_p, min_detectable_difference,
                                      paired_t_test)
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


# --- tests that can answer: minimum attainable p, paired t-test, power, Holm, DeLong --------------------------
@pytest.mark.parametrize("k", [3, 5, 6, 10])
def test_minimum_attainable_p_is_the_smallest_p_over_every_sign_pattern(k):
    d = np.arange(1, k + 1) / 100  # distinct magnitudes: ranks 1..k
    exact_wilcoxon = [sps.wilcoxon(np.array(signs) * d, method="exact").pvalue
                      for signs in itertools.product((-1, 1), repeat=k)]
    flip = [paired_permutation_test(np.array(signs) * d, np.zeros(k)).p_value
            for signs in itertools.product((-1, 1), repeat=k)]
    assert min_attainable_p(k) == pytest.approx(min(exact_wilcoxon)) == pytest.approx(min(flip))
    assert min_attainable_p(k) == 2 / 2 ** k
    greater = sps.wilcoxon(d, method="exact", alternative="greater").pvalue
    assert min_attainable_p(k, "greater") == pytest.approx(greater) == pytest.approx(1 / 2 ** k)
    assert (min_attainable_p(5) > 0.05) and (min_attainable_p(6) < 0.05)  # why the default is 10 seeds
    with pytest.raises(DataError, match="at least one pair"):
        min_attainable_p(0)


def test_paired_t_test_matches_scipy_ttest_rel():
    for alternative in ("two-sided", "greater", "less"):
        ours = paired_t_test(COND, BASE, alternative)
        ref = sps.ttest_rel(COND, BASE, alternative=alternative)
        assert (ours.statistic, ours.p_value, ours.df) == pytest.approx((ref.statistic, ref.pvalue, len(BASE) - 1))
    assert paired_t_test(BASE, BASE).p_value == 1.0  # all differences zero
    assert paired_t_test(BASE + 0.01, BASE).p_value == pytest.approx(0.0, abs=1e-12)  # equal nonzero differences
    assert np.isnan(paired_t_test([0.8], [0.7]).p_value)


@pytest.mark.parametrize("k", [2, 3, 5, 10, 20])
def test_min_detectable_difference_matches_statsmodels_ttest_power(k):
    from statsmodels.stats.power import TTestPower

    d = TTestPower().solve_power(nobs=k, alpha=0.05, power=0.8, alternative="two-sided")
    assert min_detectable_difference(1.0, k) == pytest.approx(d, rel=1e-5)
    assert min_detectable_difference(0.012, k) == pytest.approx(0.012 * d, rel=1e-5)
    one = TTestPower().solve_power(nobs=k, alpha=0.05, power=0.9, alternative="larger")
    assert min_detectable_difference(1.0, k, power=0.9, alternative="greater") == pytest.approx(one, rel=1e-5)
    # and the power at that difference is 80 % by statsmodels' own power function (NaN at 2 seeds: scipy's
    # noncentral t underflows in the far tail, which ours treats as 0)
    if k > 2:
        assert TTestPower().power(effect_size=min_detectable_difference(1.0, k), nobs=k, alpha=0.05) == pytest.approx(0.8)
    assert np.isnan(min_detectable_difference(1.0, 1))


def test_holm_matches_statsmodels_multipletests():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(4)
    for m in (1, 2, 5, 9):
        p = rng.uniform(0, 0.2, m)
        p[0] = p[-1]  # a tie
        assert holm_adjust(p) == pytest.approx(multipletests(p, method="holm")[1])
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # by hand: 3p, max(2p, prev), ...


def test_compare_to_baseline_adds_t_test_min_p_and_power():
    c = compare_to_baseline(COND, BASE)
    assert c.t_p == pytest.approx(sps.ttest_rel(COND, BASE).pvalue)
    assert c.min_p == 2 / 2 ** 6 and c.sd_diff == pytest.approx(np.std(COND - BASE, ddof=1))
    assert c.min_detectable == pytest.approx(min_detectable_difference(c.sd_diff, 6))


def _scores(rng, n=300, ties=False):
    y = rng.random(n) < 0.35
    a = rng.normal(size=n) + 1.2 * y
    b = 0.6 * a + rng.normal(size=n) + 0.3 * y  # correlated with a, as two models on one test set are
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b, y


@pytest.mark.parametrize("ties", [False, True])
def test_delong_matches_mlstatkit_and_sklearn(ties):
    from MLstatkit import Delong_test

    a, b, y = _scores(np.random.default_rng(5), ties=ties)
    r = delong_test(a, b, y)
    z, p = Delong_test(y.astype(int), b, a, return_ci=False, return_auc=False)  # its z is (AUC_2nd - AUC_1st) / SE
    assert (r.z, r.p_value) == pytest.approx((z, p), rel=1e-9)
    assert (r.auc_a, r.auc_b) == pytest.approx((roc_auc_score(y, a), roc_auc_score(y, b)))
    assert r.difference == pytest.approx(r.auc_a - r.auc_b)
    assert (r.ci_low, r.ci_high) == pytest.approx((r.difference - 1.959964 * r.se, r.difference + 1.959964 * r.se))
    assert (r.n_positive, r.n_negative) == (int(y.sum()), int((~y).sum()))


def test_delong_variance_is_the_closed_form_for_independent_structural_components():
    # one model: var(AUC) = var(V10)/m + var(V01)/n (DeLong 1988, eq. for a single AUC), checked by hand
    a, b, y = _scores(np.random.default_rng(6))
    pos, neg = a[y], a[~y]
    v10 = np.array([np.mean((p > neg) + 0.5 * (p == neg)) for p in pos])
    v01 = np.array([np.mean((pos > q) + 0.5 * (pos == q)) for q in neg])
    var_a = v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)
    constant = np.zeros_like(a)  # AUC 0.5 and no variance: the difference's SE is model a's own
    r = delong_test(a, constant, y)
    assert r.se == pytest.approx(np.sqrt(var_a)) and r.auc_b == 0.5
    same = delong_test(a, a, y)
    assert same.difference == 0 and same.p_value == 1.0
    with pytest.raises(DataError, match="2 positive"):
        delong_test(a[:3], b[:3], [True, False, False])
