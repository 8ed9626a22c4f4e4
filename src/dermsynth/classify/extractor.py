"""Training the project's own feature extractor: a dermoscopy classifier whose penultimate layer serves FID/KID.

This is the training workflow behind ``dermsynth train-extractor``; :mod:`dermsynth.metrics.features` only
reads what it writes (the checkpoint format: :data:`~dermsynth.models.classifiers.EXTRACTOR_KIND`,
:func:`~dermsynth.models.classifiers.load_saved_classifier`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dermsynth.classify.scoring import score_predictions
from dermsynth.classify.fit import predict_proba, train_classifier
from dermsynth.models.classifiers import EXTRACTOR_KIND, build_classifier
from dermsynth.data.splits import split_dataset
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.prepare import load_dataset
from dermsynth.device import resolve_device
from dermsynth.errors import DataError
from dermsynth.io import check_file_target, save_torch

__all__ = ["train_feature_extractor"]


def train_feature_extractor(
    data,
    out: str | Path,
    *,
    size: int = 64,
    arch: str = "smallcnn",
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    patience: int | None = 8,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Path:
    """Train a dermoscopy classifier on real labelled data and save it as a feature-extractor checkpoint.

    ``data``: a :class:`~dermsynth.data.dataset.LesionDataset` or anything :func:`~dermsynth.data.prepare.load_dataset`
    accepts (read at ``size``). Split by lesion group (70/15/15); early stopping on validation macro AUC
    (:func:`~dermsynth.classify.fit.train_classifier`, Essipova et al.'s augmentation). The checkpoint holds the
    weights, architecture, size, classes, data source, history, the split sizes and the test macro AUC.
    """
    out = check_file_target(out, "--out")  # before training, not after
    ds = data if isinstance(data, LesionDataset) else load_dataset(data, size=size, progress=progress)
    if ds.num_classes < 2 or (ds.labels < 0).any():
        raise DataError(f"{ds.source or data}: the feature extractor is a classifier; it needs labelled images "
                        f"of at least 2 classes")
    parts = split_dataset(ds, seed=seed).apply(ds)
    dev = resolve_device(device)
    model = build_classifier(arch, ds.num_classes, ds.size, seed=seed)
    fit = train_classifier(model, parts["train"].images, parts["train"].labels, parts["val"].images,
                           parts["val"].labels, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                           seed=seed, device=dev, progress=progress)
    test = parts["test"]
    test_auc = None
    if len(test) and len(np.unique(test.labels)) > 1:
        probs = predict_proba(fit.model, np.asarray(test.images), device=dev)
        test_auc = float(score_predictions(probs, test.labels, ds.class_names).macro_auc)
    state = {
        "kind": EXTRACTOR_KIND, "arch": arch, "num_classes": ds.num_classes, "image_size": ds.size,
        "class_names": list(ds.class_names), "source": str(ds.source or data), "seed": seed,
        "state_dict": {k: v.detach().cpu() for k, v in fit.model.state_dict().items()},
        "history": fit.history, "best_epoch": fit.best_epoch, "val_auc": fit.best_score, "test_auc": test_auc,
        "split_sizes": {k: len(v) for k, v in parts.items()},
    }
    return save_torch(state, out)
