"""Metrics equal scikit-learn's on fixed inputs; melanoma AUC found by class name."""

import json

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score,
                             roc_auc_score)

from dermsynth.classify import score_predictions, macro_auc, melanoma_index, per_class_auc
from dermsynth.errors import DataError


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, labels


def test_metrics_equal_sklearn(predictions):
    probs, labels = predictions
    names = ["NV", "MEL", "BKL", "BCC"]
    m = score_predictions(probs, labels, names)
    pred = probs.argmax(1)
    assert m.macro_auc == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"), abs=1e-12)
    for c, name in enumerate(names):
        assert m.per_class_auc[name] == pytest.approx(roc_auc_score(labels == c, probs[:, c]), abs=1e-12)
    assert m.melanoma_auc == pytest.approx(roc_auc_score(labels == 1, probs[:, 1]), abs=1e-12)
    assert m.balanced_accuracy == pytest.approx(balanced_accuracy_score(labels, pred))
    assert m.accuracy == pytest.approx(accuracy_score(labels, pred))
    assert list(m.per_class_recall.values()) == pytest.approx(list(recall_score(labels, pred, average=None)))
    assert np.array_equal(m.confusion, confusion_matrix(labels, pred))
    assert 0.7 < m.macro_auc < 1.0
    json.dumps(m.as_dict())  # JSON-ready


def test_melanoma_is_matched_case_insensitively():
    assert melanoma_index(["nv", "Melanoma", "bcc"]) == 1
    assert melanoma_index(["NV", "MEL"]) == 1
    assert melanoma_index(["nevus", "bcc"]) is None
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert score_predictions(probs, np.array([0, 1, 1]), ["nevus", "bcc"]).melanoma_auc is None


def test_an_absent_class_is_left_out_of_the_macro_auc(predictions):
    probs, labels = predictions
    keep = labels != 3
    aucs = per_class_auc(probs[keep], labels[keep])
    assert np.isnan(aucs[3]) and np.isfinite(aucs[:3]).all()
    assert macro_auc(probs[keep], labels[keep]) == pytest.approx(aucs[:3].mean())
    m = score_predictions(probs[keep], labels[keep], list("abcd"))
    assert np.isnan(m.per_class_recall["d"])
    assert np.isnan(macro_auc(probs[:5], np.zeros(5, dtype=int)))


def test_binary_macro_auc_is_the_plain_auc():
    rng = np.random.default_rng(1)
    p1 = rng.random(50)
    labels = (rng.random(50) < p1).astype(int)
    probs = np.stack([1 - p1, p1], axis=1)
    assert macro_auc(probs, labels) == pytest.approx(roc_auc_score(labels, p1))


def test_bad_shapes_are_data_errors(predictions):
    probs, labels = predictions
    with pytest.raises(DataError):
        score_predictions(probs[:10], labels, list("abcd"))
    with pytest.raises(DataError, match="class names"):
        score_predictions(probs, labels, ["a", "b"])
    with pytest.raises(DataError, match="labels must lie"):
        macro_auc(probs, labels + 1)
