"""Reader-study statistics: confusion counts with "real" as the positive class (Baur et al. 2018: real = class 1),
Wilson intervals, a binomial test against chance, F1 with a bootstrap interval, Fleiss' kappa, Krippendorff's
alpha (incomplete designs) and the ROC AUC of a confidence rating."""

from __future__ import annotations

import math
from dataclasses import dataclass

import krippendorff
import numpy as np
from scipy import stats

Z95 = 1.959963984540054  # the 97.5% standard-normal quantile


@dataclass(frozen=True)
class Confusion:
    """Answers against the key, "real" as positive: TP real called real, FP fake called real,
    FN real called fake, TN fake called fake."""

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, truth_real, called_real) -> Confusion:
        """Counts from two boolean (or 0/1) sequences: is the image real, did the rater call it real."""
        t = np.asarray(truth_real, bool)
        a = np.asarray(called_real, bool)
        if t.shape != a.shape:
            raise ValueError(f"{t.shape} truths but {a.shape} answers")
        return cls(int((t & a).sum()), int((~t & a).sum()), int((t & ~a).sum()), int((~t & ~a).sum()))

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def correct(self) -> int:
        return self.tp + self.tn

    @property
    def accuracy(self) -> float:
        return _ratio(self.correct, self.n)

    @property
    def tpr(self) -> float:
        """Real images called real (sensitivity)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def tnr(self) -> float:
        """Fake images called fake (specificity)."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def fpr(self) -> float:
        """Fake images called real: the fraction of fakes that fooled the rater."""
        return _ratio(self.fp, self.tn + self.fp)

    @property
    def f1(self) -> float:
        """F1 of the "real" class (Furger et al.'s per-participant score)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


def _ratio(k: float, n: float) -> float:
    return k / n if n else math.nan


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (NaNs for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def binom_p(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test of k successes in n against ``p`` (chance for real vs fake)."""
    return float(stats.binomtest(k, n, p).pvalue) if n else math.nan


def _f1_along(truth: np.ndarray, called: np.ndarray, axis: int = -1) -> np.ndarray:
    t = truth.astype(bool)
    a = called.astype(bool)
    tp = (t & a).sum(axis)
    wrong = (t != a).sum(axis)
    denom = 2 * tp + wrong
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def f1_interval(truth_real, called_real, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of F1, resampling the rater's (image, answer) pairs.

    F1 is not a binomial proportion, so it gets no Wilson interval. NaNs for fewer than 2 answers."""
    t = np.asarray(truth_real, bool)
    a = np.asarray(called_real, bool)
    if len(t) < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(t), size=(n_resamples, len(t)))
    f1 = _f1_along(t[idx], a[idx], axis=1)
    f1 = f1[~np.isnan(f1)]
    if not len(f1):
        return math.nan, math.nan
    lo, hi = np.percentile(f1, [2.5, 97.5])
    return float(lo), float(hi)


def fleiss_kappa(table) -> float:
    """Fleiss' kappa of a (subjects, categories) table of counts: how many raters put subject i in category j.

    Every subject needs the same number n >= 2 of ratings. NaN when chance agreement is already perfect
    (every rating in one category), where kappa is undefined (Fleiss 1971, eq. 1-9).
    """
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError(f"expected a non-empty (subjects, categories) table, got shape {counts.shape}")
    per_subject = counts.sum(axis=1)
    n = per_subject[0]
    if not np.all(per_subject == n) or n < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every subject")
    p_j = counts.sum(axis=0) / counts.sum()                      # share of all ratings in category j
    agreement = ((counts * counts).sum(axis=1) - n) / (n * (n - 1))  # P_i: agreeing rater pairs of subject i
    p_bar, p_e = agreement.mean(), float((p_j * p_j).sum())
    if math.isclose(p_e, 1.0):
        return math.nan
    return float((p_bar - p_e) / (1 - p_e))


def binary_table(called_real) -> np.ndarray:
    """(subjects, raters) 0/1 answers (1 = called real) -> the (subjects, 2) [fake, real] count table."""
    a = np.asarray(called_real, dtype=np.int64)
    real = a.sum(axis=1)
    return np.stack([a.shape[1] - real, real], axis=1)


def krippendorff_alpha(called_real) -> float:
    """Krippendorff's alpha (nominal) of a (subjects, raters) 0/1 matrix with NaN where a rater did not see a
    subject: the agreement figure for incomplete designs (``--images-per-rater``). Computed by the maintained
    ``krippendorff`` package. NaN when fewer than 2 subjects have 2 or more ratings, or every rating is in
    one category (undefined)."""
    data = np.asarray(called_real, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected a (subjects, raters) matrix, got shape {data.shape}")
    pairable = (np.isfinite(data).sum(axis=1) >= 2)
    values = data[pairable][np.isfinite(data[pairable])]
    if pairable.sum() < 2 or len(np.unique(values)) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=data.T, level_of_measurement="nominal"))


def confidence_score(called_real, confidence) -> np.ndarray:
    """Answer + confidence as one 10-point rating of "real": +c when called real with confidence c (1-5),
    -c when called fake (the usual way to turn a binary call with a confidence into an ROC rating scale)."""
    sign = np.where(np.asarray(called_real, bool), 1.0, -1.0)
    return sign * np.asarray(confidence, dtype=np.float64)


def roc_auc(truth_real, score) -> float:
    """Area under the ROC curve of ``score`` for telling real (positive) from fake: the Mann-Whitney
    probability that a real image scores higher than a fake one, ties counted half. NaN without both kinds."""
    t = np.asarray(truth_real, bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if not n_pos or not n_neg:
        return math.nan
    u = stats.mannwhitneyu(s[t], s[~t], alternative="two-sided").statistic
    return float(u / (n_pos * n_neg))
