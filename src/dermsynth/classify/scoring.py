"""Classification metrics from predicted probabilities, all computed with scikit-learn.

The headline number is the macro one-vs-rest ROC AUC (the AUC table of Bissoto et al. 2018 reports AUC, as
mean ± std over runs); melanoma-vs-rest AUC, balanced accuracy, accuracy, per-class recall and the
confusion matrix come with it. Predictions are the argmax of the probabilities.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score, roc_auc_score

from dermsynth.errors import DataError

__all__ = ["MELANOMA_NAMES", "ClassificationMetrics", "score_predictions", "macro_auc", "melanoma_index",
           "per_class_auc"]

#: Class names (case-insensitive) taken to mean melanoma.
MELANOMA_NAMES: tuple[str, ...] = ("mel", "melanoma")


def check_probabilities(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate probabilities (N, C>=2) and labels in [0, C); return them as float64 / int64 arrays."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels) or probs.shape[1] < 2:
        raise DataError(f"expected probabilities (N, C>=2) and N labels, got {probs.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise DataError(f"labels must lie in [0, {probs.shape[1]}), got {labels.min()}..{labels.max()}")
    return probs, labels


def per_class_auc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC of each class (NaN for a class absent from, or the only class in, ``labels``)."""
    probs, labels = check_probabilities(probs, labels)
    out = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        positive = labels == c
        if 0 < positive.sum() < len(labels):
            out[c] = roc_auc_score(positive, probs[:, c])
    return out


def macro_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of the per-class one-vs-rest AUCs over the classes present in ``labels``.

    With every class present this equals ``roc_auc_score(labels, probs, multi_class="ovr",
    average="macro")``; NaN when fewer than two classes are present.
    """
    aucs = per_class_auc(probs, labels)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def melanoma_index(class_names: Sequence[str]) -> int | None:
    """Index of the class named "mel" or "melanoma" (case-insensitive), or None."""
    lowered = [str(c).lower() for c in class_names]
    return next((lowered.index(n) for n in MELANOMA_NAMES if n in lowered), None)


@dataclass
class ClassificationMetrics:
    """Metrics of one model on one test set."""

    class_names: list[str]
    macro_auc: float
    per_class_auc: dict[str, float]
    melanoma_auc: float | None
    balanced_accuracy: float
    accuracy: float
    per_class_recall: dict[str, float]
    confusion: np.ndarray  # rows: true class, columns: predicted class

    def as_dict(self) -> dict:
        """JSON-ready: floats and lists only."""
        return {"class_names": self.class_names, "macro_auc": self.macro_auc, "per_class_auc": self.per_class_auc,
                "melanoma_auc": self.melanoma_auc, "balanced_accuracy": self.balanced_accuracy,
                "accuracy": self.accuracy, "per_class_recall": self.per_class_recall,
                "confusion": self.confusion.tolist()}


def score_predictions(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> ClassificationMetrics:
    """All metrics of :class:`ClassificationMetrics` from probabilities (N, C) and true labels (N,)."""
    probs, labels = check_probabilities(probs, labels)
    names = [str(c) for c in class_names]
    if len(names) != probs.shape[1]:
        raise DataError(f"{len(names)} class names for {probs.shape[1]} probability columns")
    classes = np.arange(len(names))
    pred = probs.argmax(axis=1)
    aucs = per_class_auc(probs, labels)
    mel = melanoma_index(names)
    recall = recall_score(labels, pred, labels=classes, average=None, zero_division=np.nan)
    with warnings.catch_warnings():  # a class absent from the labels but predicted: expected, not news
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(labels, pred))
    return ClassificationMetrics(
        class_names=names,
        macro_auc=macro_auc(probs, labels),
        per_class_auc={n: float(a) for n, a in zip(names, aucs)},
        melanoma_auc=None if mel is None else float(aucs[mel]),
        balanced_accuracy=balanced,
        accuracy=float(accuracy_score(labels, pred)),
        per_class_recall={n: float(r) for n, r in zip(names, recall)},
        confusion=confusion_matrix(labels, pred, labels=classes),
    )
