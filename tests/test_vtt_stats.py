"""Reader-study statistics against independent references: statsmodels (Fleiss' kappa, Wilson), Fleiss'
published worked example, closed-form binomial tails, scikit-learn, scipy's bootstrap, Baur et al.'s Table 2, and
Krippendorff's alpha against his published example and a coincidence-matrix computation written out here."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from dermsynth.vtt.stats import (Confusion, binary_table, binom_p, confidence_score, f1_interval, fleiss_kappa,
                                 krippendorff_alpha, roc_auc, wilson_interval)

from _vtt_study import BAUR2018_TABLE2, nominal_alpha

# Fleiss (1971) as worked on Wikipedia ("Fleiss' kappa", worked example): 10 subjects, 14 raters, 5 categories.
WIKIPEDIA_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_published_example():
    kappa = fleiss_kappa(WIKIPEDIA_TABLE)
    assert round(kappa, 3) == 0.210
    assert kappa == pytest.approx(sm_fleiss_kappa(np.array(WIKIPEDIA_TABLE), method="fleiss"), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_fleiss_kappa_matches_statsmodels_on_random_tables(seed):
    rng = np.random.default_rng(seed)
    subjects, raters, categories = rng.integers(3, 60), rng.integers(2, 12), rng.integers(2, 6)
    # answers with some subject effect, so kappa is not always ~0
    bias = rng.dirichlet(np.ones(categories) * 0.7, size=subjects)
    answers = np.array([rng.choice(categories, size=raters, p=p) for p in bias])
    table = np.stack([(answers == c).sum(1) for c in range(categories)], axis=1)
    expected = sm_fleiss_kappa(table, method="fleiss")
    if np.isnan(expected):
        assert math.isnan(fleiss_kappa(table))
    else:
        assert fleiss_kappa(table) == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_binary_answers_and_edge_cases():
    rng = np.random.default_rng(1)
    called = rng.integers(0, 2, size=(40, 5))
    table = binary_table(called)
    assert table.shape == (40, 2) and (table.sum(1) == 5).all() and (table[:, 1] == called.sum(1)).all()
    assert fleiss_kappa(table) == pytest.approx(sm_fleiss_kappa(table), abs=1e-12)
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)   # perfect agreement
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))                     # one category only: undefined
    with pytest.raises(ValueError):
        fleiss_kappa([[3, 0], [1, 1]])                                    # unequal raters per subject
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 0]])                                            # one rater


def test_wilson_interval_matches_statsmodels():
    for n in (1, 2, 7, 30, 80, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            lo, hi = wilson_interval(k, n)
            ref = proportion_confint(k, n, alpha=0.05, method="wilson")
            assert (lo, hi) == pytest.approx(ref, abs=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_binomial_test_matches_closed_form_tails():
    for n in (1, 10, 30, 80):
        for k in range(n + 1):
            # for p = 1/2 the distribution is symmetric: the two-sided exact p is twice the smaller tail
            lower = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
            upper = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n
            assert binom_p(k, n) == pytest.approx(min(1.0, 2 * min(lower, upper)), rel=1e-9, abs=1e-15)


def test_confusion_matches_sklearn():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200)
    called = np.where(rng.random(200) < 0.7, truth, 1 - truth)
    c = Confusion.of(truth, called)
    tn, fp, fn, tp = confusion_matrix(truth, called, labels=[0, 1]).ravel()
    assert (c.tp, c.fp, c.fn, c.tn) == (tp, fp, fn, tn)
    assert c.accuracy == pytest.approx(accuracy_score(truth, called))
    assert c.tpr == pytest.approx(recall_score(truth, called, pos_label=1))
    assert c.tnr == pytest.approx(recall_score(truth, called, pos_label=0))
    assert c.fpr == pytest.approx(1 - c.tnr)
    assert c.f1 == pytest.approx(f1_score(truth, called, pos_label=1))
    assert math.isnan(Confusion.of([1, 1], [1, 0]).tnr)  # no fakes: TNR undefined, not 0


def test_f1_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, 80)
    called = np.where(rng.random(80) < 0.65, truth, 1 - truth)

    def f1(t, a, axis=-1):
        tp = ((t == 1) & (a == 1)).sum(axis)
        return 2 * tp / (2 * tp + (t != a).sum(axis))

    ref = sps.bootstrap((truth, called), f1, paired=True, vectorized=True, n_resamples=20000, method="percentile",
                        rng=np.random.default_rng(0)).confidence_interval
    lo, hi = f1_interval(truth, called, n_resamples=20000)
    assert lo == pytest.approx(ref.low, abs=0.015) and hi == pytest.approx(ref.high, abs=0.015)
    assert lo < Confusion.of(truth, called).f1 < hi


@pytest.mark.parametrize("voter", sorted(BAUR2018_TABLE2))
def test_baur2018_table2_recomputed_from_counts(voter):
    tp, fp, fn, tn, acc, tpr, tnr = BAUR2018_TABLE2[voter]
    assert tp + fn == 50 and fp + tn == 30  # 50 real and 30 PGAN images per voter
    truth = [1] * (tp + fn) + [0] * (fp + tn)
    called = [1] * tp + [0] * fn + [1] * fp + [0] * tn
    c = Confusion.of(truth, called)
    assert (c.tp, c.fp, c.fn, c.tn) == (tp, fp, fn, tn)
    # the paper prints 3 decimals, truncated (DLE2's TNR 20/30 = 0.6667 is printed 0.666)
    for ours, printed in ((c.accuracy, acc), (c.tpr, tpr), (c.tnr, tnr)):
        assert 0 <= ours - printed < 1e-3 + 1e-12


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", Sec. C: 4 observers, 12 units, missing
# values; the published nominal alpha is 0.743.
KRIPPENDORFF_EXAMPLE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
    [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
]


def test_krippendorff_alpha_published_example_and_independent_computation():
    data = np.array(KRIPPENDORFF_EXAMPLE)
    assert round(nominal_alpha(data), 3) == 0.743                        # the reference reproduces the paper
    assert krippendorff_alpha(data.T) == pytest.approx(nominal_alpha(data), abs=1e-12)  # (units, raters) in
    rng = np.random.default_rng(7)
    for _ in range(20):  # incomplete binary designs, as --images-per-rater makes them
        units, raters = rng.integers(5, 60), rng.integers(2, 9)
        truth = rng.integers(0, 2, units)
        called = np.where(rng.random((units, raters)) < 0.7, truth[:, None], 1 - truth[:, None]).astype(float)
        called[rng.random((units, raters)) < 0.4] = np.nan
        expected = nominal_alpha(called.T)
        got = krippendorff_alpha(called)
        assert (math.isnan(got) and not np.isfinite(expected)) or got == pytest.approx(expected, abs=1e-9)
    assert math.isnan(krippendorff_alpha([[1, np.nan], [np.nan, 0]]))  # nothing pairable
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))            # one category only


def test_krippendorff_alpha_equals_fleiss_kappa_asymptotically_on_complete_data():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 400)
    called = np.where(rng.random((400, 5)) < 0.8, truth[:, None], 1 - truth[:, None])
    n = called.size  # complete data: alpha = kappa_Fleiss * correction tending to 1 (Krippendorff 2011)
    assert krippendorff_alpha(called) == pytest.approx(fleiss_kappa(binary_table(called)), abs=5 / n ** 0.5 / 10)


def test_roc_auc_of_the_confidence_scale_matches_sklearn():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 80)
    called = np.where(rng.random(80) < 0.7, truth, 1 - truth)
    conf = rng.integers(1, 6, 80)
    score = confidence_score(called, conf)
    assert set(np.unique(score)) <= {-5, -4, -3, -2, -1, 1, 2, 3, 4, 5}
    assert roc_auc(truth, score) == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
    assert roc_auc(truth, truth * 2 - 1) == 1.0 and math.isnan(roc_auc([1, 1], [1, 2]))
