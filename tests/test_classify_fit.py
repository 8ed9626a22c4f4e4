"""train_classifier / predict_proba on phantom data: learns, stops early at the best epoch, reproducible."""

import numpy as np
import pytest
import torch

from dermsynth.classify import build_classifier, class_weights, macro_auc, predict_proba, train_classifier
from dermsynth.data.phantom import generate_phantom
from dermsynth.errors import DataError, DermsynthError


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(300, 16, seed=1), generate_phantom(100, 16, seed=2), generate_phantom(200, 16, seed=3)


def test_learns_phantom_classes_well_above_chance(phantom):
    train, val, test = phantom
    model = build_classifier("smallcnn", 4, 16, seed=0)
    fit = train_classifier(model, train.images, train.labels, val.images, val.labels, epochs=8, batch_size=32,
                           lr=2e-3, transforms=True, class_weighting=True, patience=4, seed=0)
    probs = predict_proba(fit.model, test.images, batch_size=64)
    assert probs.shape == (200, 4) and np.allclose(probs.sum(1), 1)
    assert macro_auc(probs, test.labels) > 0.8
    assert [h["epoch"] for h in fit.history] == list(range(1, len(fit.history) + 1))
    assert {"train_loss", "val_loss", "val_auc", "val_accuracy", "seconds"} <= fit.history[0].keys()
    assert fit.class_weights is not None and not fit.model.training


def test_early_stopping_restores_the_best_epoch():
    rng = np.random.default_rng(0)  # labels unrelated to the images: validation AUC wanders, then stalls
    images = rng.integers(0, 256, (96, 16, 16, 3), dtype=np.uint8)
    labels, val_labels = rng.integers(0, 3, 64), rng.integers(0, 3, 32)
    model = build_classifier("smallcnn", 3, 16, seed=0)
    fit = train_classifier(model, images[:64], labels, images[64:], val_labels, epochs=30, batch_size=16,
                           lr=3e-3, transforms=False, patience=2, seed=0)
    aucs = [h["val_auc"] for h in fit.history]
    assert fit.stopped_early and len(aucs) == fit.best_epoch + 2 < 30
    assert fit.best_epoch == int(np.argmax(aucs)) + 1 and fit.best_score == max(aucs)
    restored = macro_auc(predict_proba(fit.model, images[64:]), val_labels)
    assert restored == pytest.approx(fit.best_score, abs=1e-9)
    last = fit.history[-1]["val_auc"]
    assert last != pytest.approx(fit.best_score)  # so the restore did something


def test_runs_are_reproducible_given_the_seed(phantom):
    train, val, _ = phantom
    runs = []
    for _ in range(2):
        model = build_classifier("smallcnn", 4, 16, seed=1)
        runs.append(train_classifier(model, train.images[:96], train.labels[:96], val.images, val.labels,
                                     epochs=2, batch_size=32, transforms=True, monitor="loss", seed=5))
    a, b = runs
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_class_weights_are_balanced():
    assert class_weights(np.array([0, 0, 0, 1]), 3) == pytest.approx([4 / 9, 4 / 3, 1.0])


def test_bad_input_is_a_clear_error(phantom):
    train, val, _ = phantom
    model = build_classifier("smallcnn", 4, 16)
    with pytest.raises(DataError, match="uint8"):
        train_classifier(model, train.images.astype(np.float32), train.labels, epochs=1)
    with pytest.raises(DataError, match="labels must lie"):
        train_classifier(model, train.images, train.labels + 4, epochs=1)
    with pytest.raises(DataError, match="fewer than two classes"):
        train_classifier(model, train.images, train.labels, val.images, np.zeros(len(val), dtype=int), epochs=1)
    with pytest.raises(DataError, match="both"):
        train_classifier(model, train.images, train.labels, val.images, epochs=1)
    with pytest.raises(DermsynthError, match="monitor"):
        train_classifier(model, train.images, train.labels, epochs=1, monitor="f1")
