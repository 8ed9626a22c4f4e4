"""Statistics over repeated runs: is a condition (e.g. real + synthetic) better than the baseline?

* :func:`summarize`: mean ± sample std and a t-distribution confidence interval over seeds (the
  "83.4 ± 0.9" layout of Bissoto et al.'s AUC table: :func:`format_mean_std`).
* :func:`paired_permutation_test`: condition vs baseline paired by seed; the statistic is the mean
  difference and the null flips the sign of each pair's difference. Exact over all 2**K sign
  assignments for K <= 16 pairs, Monte Carlo (seeded, p = (1 + hits) / (1 + resamples)) above.
* :func:`wilcoxon_test`: scipy's Wilcoxon signed-rank test on the same pairs.
* :func:`bootstrap_auc_difference`: percentile bootstrap CI of the AUC difference of two models
  scored on the same test set (test cases resampled with replacement, both models on the same
  resample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

from dermsynth.classify.scoring import check_probabilities, macro_auc, per_class_auc
from dermsynth.errors import DataError

__all__ = ["BootstrapResult", "PairedComparison", "PermutationResult", "Summary", "bootstrap_auc_difference",
           "compare_to_baseline", "format_mean_std", "paired_permutation_test", "summarize", "wilcoxon_test"]

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


def compare_to_baseline(condition: Sequence[float], baseline: Sequence[float], *, confidence: float = 0.95,
                        alternative: str = "two-sided", n_resamples: int = 100_000, seed: int = 0) -> PairedComparison:
    """Mean paired difference with its t-interval, the permutation p-value and the Wilcoxon p-value."""
    d = _diffs(condition, baseline)
    s = summarize(d, confidence)
    perm = paired_permutation_test(condition, baseline, alternative=alternative, n_resamples=n_resamples, seed=seed)
    return PairedComparison(len(d), s.mean, s.ci_low, s.ci_high, perm.p_value, perm.exact,
                            wilcoxon_test(condition, baseline, alternative))


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
