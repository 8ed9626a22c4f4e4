"""Statistics over repeated runs: is a condition (e.g. real + synthetic) better than the baseline?

* :func:`summarize`: mean ± sample std and a t-distribution confidence interval over seeds (the
  "83.4 ± 0.9" layout of Bissoto et al.'s AUC table: :func:`format_mean_std`).
* :func:`paired_permutation_test`: condition vs baseline paired by seed; the statistic is the mean
  difference and the null flips the sign of each pair's difference. Exact over all 2**K sign
  assignments for K <= 16 pairs, Monte Carlo (seeded, p = (1 + hits) / (1 + resamples)) above.
* :func:`wilcoxon_test`: scipy's Wilcoxon signed-rank test on the same pairs.
* :func:`min_attainable_p`: the smallest p either exact test can give with K pairs (2 / 2**K two-sided):
  with 5 seeds 0.0625, so no paired result can reach 0.05 whatever the effect; K >= 6 can.
* :func:`paired_t_test`: Student's paired t-test over seeds (the t-interval's test).
* :func:`min_detectable_difference`: the smallest mean paired difference the paired t-test detects with
  the given power at level alpha, given the seed-to-seed SD of the differences (noncentral t).
* :func:`holm_adjust`: Holm's step-down adjustment when several conditions are compared with one baseline.
* :func:`delong_test`: DeLong's test of two correlated ROC AUCs on one test set (fast midrank algorithm of
  Sun & Xu 2014), e.g. the melanoma-vs-rest AUC of two conditions' seed-averaged predictions.
* :func:`bootstrap_auc_difference`: percentile bootstrap CI of the AUC difference of two models
  scored on the same test set (test cases resampled with replacement, both models on the same
  resample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps
from scipy.optimize import brentq

from dermsynth.classify.scoring import check_probabilities, macro_auc, per_class_auc
from dermsynth.errors import DataError

__all__ = ["BootstrapResult", "DeLongResult", "PairedComparison", "PermutationResult", "Summary", "TTestResult",
           "bootstrap_auc_difference", "compare_to_baseline", "delong_test", "format_mean_std", "holm_adjust",
           "min_attainable_p", "min_detectable_difference", "paired_permutation_test", "paired_t_test", "summarize",
           "wilcoxon_test"]

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass
class Summary:
    """Mean, sample standard deviation (ddof=1) and t-interval of values over seeds."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float


def _values(values: Sequence[float], what: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(arr) == 0 or not np.all(np.isfinite(arr)):
        raise DataError(f"{what} must be a non-empty list of finite numbers, got {list(arr)}")
    return arr


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean ± std and the ``confidence`` t-interval ``mean ± t * std / sqrt(n)`` (NaN spread for n = 1)."""
    x = _values(values)
    n, mean = len(x), float(x.mean())
    if n < 2:
        return Summary(n, mean, float("nan"), float("nan"), float("nan"), confidence)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / np.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, confidence)


def format_mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """``"83.4 ± 0.9"``: mean ± std of ``values * scale`` (AUC in percent by default)."""
    s = summarize(values)
    std = "nan" if np.isnan(s.std) else f"{s.std * scale:.{digits}f}"
    return f"{s.mean * scale:.{digits}f} ± {std}"


@dataclass
class PermutationResult:
    """Paired sign-flip permutation test of the mean difference (condition - baseline)."""

    mean_diff: float
    p_value: float
    exact: bool
    n_assignments: int
    alternative: str


def _diffs(condition: Sequence[float], baseline: Sequence[float]) -> np.ndarray:
    a, b = _values(condition, "condition"), _values(baseline, "baseline")
    if len(a) != len(b):
        raise DataError(f"paired comparison needs equal lengths, got {len(a)} condition and {len(b)} baseline runs")
    return a - b


def paired_permutation_test(condition: Sequence[float], baseline: Sequence[float], *,
                            alternative: str = "two-sided", n_resamples: int = 100_000, seed: int = 0,
                            exact_max: int = 16) -> PermutationResult:
    """p-value of the mean paired difference under random sign flips (exact for K <= ``exact_max``).

    ``alternative``: "two-sided", "greater" (condition > baseline) or "less".
    """
    if alternative not in ALTERNATIVES:
        raise DataError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}")
    d = _diffs(condition, baseline)
    k = len(d)
    observed = float(d.mean())
    if k <= exact_max:
        signs = 1 - 2 * ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1)  # all 2**k sign vectors
    else:
        signs = np.random.default_rng(seed).choice((-1, 1), size=(n_resamples, k))
    null = (signs * d).mean(axis=1)
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if alternative == "two-sided":
        hits = int(np.sum(np.abs(null) >= abs(observed) - tol))
    elif alternative == "greater":
        hits = int(np.sum(null >= observed - tol))
    else:
        hits = int(np.sum(null <= observed + tol))
    exact = k <= exact_max
    p = hits / len(null) if exact else (1 + hits) / (1 + len(null))
    return PermutationResult(observed, float(p), exact, len(null), alternative)


def wilcoxon_test(condition: Sequence[float], baseline: Sequence[float], alternative: str = "two-sided") -> float:
    """p-value of scipy's Wilcoxon signed-rank test on the pairs (1.0 when every difference is zero)."""
    d = _diffs(condition, baseline)
    if not np.any(d):
        return 1.0
    return float(sps.wilcoxon(d, alternative=alternative).pvalue)


def min_attainable_p(k: int, alternative: str = "two-sided") -> float:
    """The smallest p-value the exact sign-flip or exact Wilcoxon signed-rank test can give with ``k`` pairs.

    Only the two all-same-sign assignments (one for a one-sided test) are as extreme as all ``k``
    differences pointing one way: 2 / 2**k two-sided, 1 / 2**k one-sided (5 pairs: 0.0625).
    """
    if alternative not in ALTERNATIVES:
        raise DataError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}")
    if k < 1:
        raise DataError(f"a paired test needs at least one pair, got {k}")
    return (2.0 if alternative == "two-sided" else 1.0) / 2.0 ** k


@dataclass
class TTestResult:
    """Student's paired t-test of the mean difference (condition - baseline)."""

    statistic: float
    df: int
    p_value: float


def _t_p_value(t: float, df: int, alternative: str) -> float:
    if alternative == "two-sided":
        return float(2 * sps.t.sf(abs(t), df))
    return float(sps.t.sf(t, df) if alternative == "greater" else sps.t.cdf(t, df))


def paired_t_test(condition: Sequence[float], baseline: Sequence[float],
                  alternative: str = "two-sided") -> TTestResult:
    """t = mean(d) / (sd(d) / sqrt(K)) with K - 1 degrees of freedom (NaN p for one pair).

    Differences that are all zero give t = 0 (p = 1 two-sided); equal nonzero differences give an
    infinite t (p = 0).
    """
    if alternative not in ALTERNATIVES:
        raise DataError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}")
    d = _diffs(condition, baseline)
    k, mean = len(d), float(d.mean())
    if k < 2:
        return TTestResult(float("nan"), 0, float("nan"))
    sd = float(d.std(ddof=1))
    t = mean / (sd / np.sqrt(k)) if sd > 0 else (0.0 if mean == 0 else float(np.copysign(np.inf, mean)))
    return TTestResult(float(t), k - 1, _t_p_value(t, k - 1, alternative))


def _t_test_power(effect: float, k: int, alpha: float, alternative: str) -> float:
    """Power of the one-sample (paired) t-test for the standardised effect mean(d) / sd(d)."""
    df, nc = k - 1, effect * np.sqrt(k)
    crit = sps.t.ppf(1 - alpha / 2 if alternative == "two-sided" else 1 - alpha, df)
    upper = sps.nct.sf(crit, df, nc)
    if not np.isfinite(upper):  # scipy's noncentral t can return NaN far in a tail
        upper = 1.0 - sps.nct.cdf(crit, df, nc)
    if alternative != "two-sided":
        return float(upper)
    lower = sps.nct.cdf(-crit, df, nc)  # the wrong-sign rejections; NaN only where it underflows
    return float(upper + (lower if np.isfinite(lower) else 0.0))


def min_detectable_difference(sd: float, k: int, *, alpha: float = 0.05, power: float = 0.8,
                              alternative: str = "two-sided") -> float:
    """The smallest true mean paired difference that the paired t-test over ``k`` seeds detects at level
    ``alpha`` with probability ``power``, when the differences scatter with standard deviation ``sd``.

    Solves power(d) = ``power`` for the standardised effect d (noncentral t with K - 1 degrees of
    freedom, both tails for a two-sided test) and returns d * ``sd``; NaN for fewer than 2 seeds.
    """
    if not (0 < alpha < 1 and alpha < power < 1) or alternative not in ALTERNATIVES or alternative == "less":
        raise DataError(f"need 0 < alpha < power < 1 and alternative two-sided or greater, got alpha {alpha}, "
                        f"power {power}, {alternative!r}")
    if k < 2 or not np.isfinite(sd):
        return float("nan")
    high = 1.0
    while _t_test_power(high, k, alpha, alternative) < power:
        high *= 2
    effect = brentq(lambda e: _t_test_power(e, k, alpha, alternative) - power, 0.0, high, xtol=1e-12)
    return float(effect * sd)


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control for m comparisons, in input order)."""
    p = _values(p_values, "p-values")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


@dataclass
class PairedComparison:
    """A condition vs the baseline over the same seeds."""

    n: int
    mean_diff: float
    ci_low: float  # t-interval of the paired differences
    ci_high: float
    permutation_p: float
    exact: bool
    wilcoxon_p: float
    t_p: float  # paired t-test
    min_p: float  # the smallest p the exact tests can give with n pairs
    sd_diff: float  # seed-to-seed SD of the differences
    min_detectable: float  # smallest mean difference the paired t-test detects (alpha 0.05, power 0.8)


def compare_to_baseline(condition: Sequence[float], baseline: Sequence[float], *, confidence: float = 0.95,
                        alternative: str = "two-sided", n_resamples: int = 100_000, seed: int = 0) -> PairedComparison:
    """Mean paired difference with its t-interval; permutation, Wilcoxon and t-test p-values; the minimum
    attainable exact p; and the smallest difference the study detects with 80 % power at alpha 0.05."""
    d = _diffs(condition, baseline)
    s = summarize(d, confidence)
    perm = paired_permutation_test(condition, baseline, alternative=alternative, n_resamples=n_resamples, seed=seed)
    t = paired_t_test(condition, baseline, alternative)
    return PairedComparison(len(d), s.mean, s.ci_low, s.ci_high, perm.p_value, perm.exact,
                            wilcoxon_test(condition, baseline, alternative), t.p_value,
                            min_attainable_p(len(d), alternative), s.std,
                            min_detectable_difference(s.std, len(d),
                                                      alternative="greater" if alternative == "less" else alternative))


@dataclass
class DeLongResult:
    """DeLong's test of AUC(a) - AUC(b), two scores of the same test cases."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float  # two-sided
    ci_low: float  # normal interval of the difference
    ci_high: float
    confidence: float
    n_positive: int
    n_negative: int


def delong_test(scores_a: Sequence[float], scores_b: Sequence[float], positive: Sequence[bool], *,
                confidence: float = 0.95) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988) for two correlated ROC AUCs, by Sun & Xu's (2014) midranks.

    Each AUC's structural components (per positive: the share of negatives it outscores, ties 1/2; per
    negative: the share of positives that outscore it) give the covariance of the two AUCs; z is the
    difference over its standard error. Identical scores give p = 1.
    """
    a, b = _values(scores_a, "scores_a"), _values(scores_b, "scores_b")
    pos = np.asarray(positive).astype(bool).reshape(-1)
    if not len(a) == len(b) == len(pos):
        raise DataError(f"DeLong's test needs both scores for every case, got {len(a)}, {len(b)} scores and "
                        f"{len(pos)} labels")
    m, n = int(pos.sum()), int((~pos).sum())
    if m < 2 or n < 2:
        raise DataError(f"DeLong's test needs at least 2 positive and 2 negative cases, got {m} and {n}")
    scores = np.stack([a, b])
    x, y = scores[:, pos], scores[:, ~pos]
    tz = sps.rankdata(np.concatenate([x, y], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v_pos = (tz[:, :m] - sps.rankdata(x, axis=1)) / n
    v_neg = 1.0 - (tz[:, m:] - sps.rankdata(y, axis=1)) / m
    cov = np.cov(v_pos) / m + np.cov(v_neg) / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(auc[0] - auc[1])
    se = float(np.sqrt(max(var, 0.0)))
    if se > 1e-12:
        z, p = diff / se, float(2 * sps.norm.sf(abs(diff / se)))
    else:  # no variance: the two scorings rank the cases alike
        z, p = (0.0, 1.0) if diff == 0 else (float("nan"), float("nan"))
    half = float(sps.norm.ppf(0.5 + confidence / 2)) * se
    return DeLongResult(float(auc[0]), float(auc[1]), diff, se, float(z), p, diff - half, diff + half, confidence,
                        m, n)


@dataclass
class BootstrapResult:
    """Percentile bootstrap CI of ``AUC(a) - AUC(b)`` on one test set."""

    observed: float
    ci_low: float
    ci_high: float
    confidence: float
    n_boot: int
    fraction_nonpositive: float  # share of resamples with AUC(a) <= AUC(b)


def _batched_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC per row (Mann-Whitney U with mid-ranks for ties, as sklearn); NaN for one-class rows."""
    ranks = sps.rankdata(scores, axis=1)
    n_pos = positive.sum(axis=1)
    n_neg = positive.shape[1] - n_pos
    u = (ranks * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _resampled_auc(probs: np.ndarray, labels: np.ndarray, idx: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Mean one-vs-rest AUC over ``classes`` (present ones only) for each resample row of ``idx``."""
    aucs = np.stack([_batched_auc(probs[idx, c], labels[idx] == c) for c in classes], axis=1)
    return np.nanmean(aucs, axis=1)


def bootstrap_auc_difference(probs_a: np.ndarray, probs_b: np.ndarray, labels: np.ndarray, *, n_boot: int = 2000,
                             confidence: float = 0.95, seed: int = 0, class_index: int | None = None,
                             chunk: int = 250) -> BootstrapResult:
    """Bootstrap CI of macro AUC(a) - macro AUC(b) (or one class's one-vs-rest AUC with ``class_index``).

    Each resample draws N test cases with replacement and scores both models on it; a class missing
    from a resample is left out of that resample's macro average for both models.
    """
    probs_a, labels = check_probabilities(probs_a, labels)
    probs_b, _ = check_probabilities(probs_b, labels)
    if probs_a.shape != probs_b.shape:
        raise DataError(f"both models must score the same test set, got {probs_a.shape} and {probs_b.shape}")
    classes = range(probs_a.shape[1]) if class_index is None else [int(class_index)]
    if class_index is None:
        observed = macro_auc(probs_a, labels) - macro_auc(probs_b, labels)
    else:
        observed = float(per_class_auc(probs_a, labels)[class_index] - per_class_auc(probs_b, labels)[class_index])
    if not np.isfinite(observed):
        raise DataError("the AUC difference is undefined: the test set needs at least two classes")
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(labels), size=(min(chunk, n_boot - start), len(labels)))
        diffs.append(_resampled_auc(probs_a, labels, idx, classes) - _resampled_auc(probs_b, labels, idx, classes))
    diff = np.concatenate(diffs)
    diff = diff[np.isfinite(diff)]
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(diff, [alpha, 1 - alpha])
    return BootstrapResult(float(observed), float(lo), float(hi), confidence, len(diff), float(np.mean(diff <= 0)))
