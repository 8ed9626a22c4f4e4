"""Pluggable feature extractors for FID / KID / precision-recall, selected by name from a small registry.

A :class:`FeatureExtractor` maps images -- uint8 (N, H, W, 3) numpy arrays (memmaps fine) or float
(N, 3, H, W) tensors in [0, 1] -- to float32 features (N, D), in batches, on a device, with a progress bar.

``inception``
    The standard FID Inception-v3 (TF 2015-12-05 graph, 2048-d pool3; :mod:`dermsynth.metrics.inception`).
    Needs the local weights file ``pt_inception-2015-12-05-6726825d.pth`` (``weights=`` or
    ``$DERMSYNTH_INCEPTION_WEIGHTS``); nothing is downloaded. Its FIDs are comparable with published ones.
``classifier``
    Penultimate-layer features of a dermoscopy classifier that this project trains on real data
    (:func:`train_feature_extractor`, ``dermsynth train-extractor``), loaded from its own checkpoint. It needs
    no external weights, but its numbers are comparable **only with numbers from the same checkpoint**:
    another training run, dataset or size gives another feature space and another scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dermsynth.classify.fit import imagenet_normalise
from dermsynth.device import resolve_device
from dermsynth.errors import DataError, DermsynthError

__all__ = [
    "EXTRACTORS",
    "EXTRACTOR_KIND",
    "FeatureExtractor",
    "PenultimateFeatures",
    "build_extractor",
    "load_classifier_extractor",
    "register_extractor",
    "train_feature_extractor",
]

EXTRACTOR_KIND = "dermsynth-feature-extractor"  # marks the checkpoints written by train_feature_extractor


@dataclass
class FeatureExtractor:
    """A named network mapping float (B, 3, H, W) in [0, 1] to features (B, ``dim``); call it on whole image sets."""

    name: str
    dim: int
    network: nn.Module
    description: str

    def __call__(self, images, *, batch_size: int = 64, device: str | torch.device | None = None,
                 progress: bool = False) -> np.ndarray:
        """Features (N, dim) float32 of uint8 (N, H, W, 3) numpy images or float (N, 3, H, W) tensors in [0, 1]."""
        from tqdm.auto import tqdm

        n = _check_input(images)
        if int(batch_size) < 1:
            raise DermsynthError(f"batch_size must be >= 1; got {batch_size}")
        dev = resolve_device(device)
        net = self.network.to(dev).eval()
        out = np.empty((n, self.dim), dtype=np.float32)
        with torch.no_grad():
            for start in tqdm(range(0, n, batch_size), total=math.ceil(n / batch_size), desc=f"features ({self.name})",
                              unit="batch", disable=not progress):
                batch = _batch(images, start, start + batch_size, dev)
                out[start:start + batch_size] = net(batch).float().cpu().numpy()
        return out


def _check_input(images) -> int:
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3:
        return len(images)
    if isinstance(images, Tensor) and images.is_floating_point() and images.ndim == 4 and images.shape[1] == 3:
        return len(images)
    got = f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}"
    raise DataError(f"feature extraction needs uint8 (N, H, W, 3) numpy images or float (N, 3, H, W) tensors; "
                    f"got {got}")


def _batch(images, start: int, stop: int, device: torch.device) -> Tensor:
    """One batch as float32 (B, 3, H, W) in [0, 1] on ``device``."""
    if isinstance(images, Tensor):
        return images[start:stop].to(device, torch.float32)
    batch = np.array(images[start:stop])  # a writable copy (memmaps are read-only)
    return torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)


# ----------------------------------------------------------------------------------------
# The project's own extractor: penultimate features of a dermoscopy classifier
# ----------------------------------------------------------------------------------------


class PenultimateFeatures(nn.Module):
    """A classifier's input to its final ``fc`` layer, for float images in [0, 1] of any size.

    Images are resized (bilinear, antialiased) to ``image_size`` and normalised with the ImageNet
    mean/std, as :mod:`dermsynth.classify.fit` does in training.
    """

    def __init__(self, classifier: nn.Module, image_size: int) -> None:
        super().__init__()
        if not isinstance(getattr(classifier, "fc", None), nn.Linear):
            raise DermsynthError(f"{type(classifier).__name__} has no final 'fc' linear layer to take features before")
        self.classifier, self.image_size = classifier, int(image_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=True)
        captured: list[Tensor] = []
        hook = self.classifier.fc.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            self.classifier(imagenet_normalise(x))
        finally:
            hook.remove()
        return captured[0].flatten(1)


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
    (:func:`dermsynth.classify.train_classifier`, seed 002's augmentation). The checkpoint holds the
    weights, architecture, size, classes, data source, history and the test macro AUC.
    """
    from dermsynth.classify import (
        build_classifier,
        evaluate_predictions,
        predict_proba,
        split_dataset,
        train_classifier,
    )
    from dermsynth.data.dataset import LesionDataset
    from dermsynth.data.prepare import load_dataset
    from dermsynth.train.checkpoint import save_checkpoint

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
        test_auc = float(evaluate_predictions(probs, test.labels, ds.class_names).macro_auc)
    state = {
        "kind": EXTRACTOR_KIND, "arch": arch, "num_classes": ds.num_classes, "image_size": ds.size,
        "class_names": list(ds.class_names), "source": str(ds.source or data), "seed": seed,
        "state_dict": {k: v.detach().cpu() for k, v in fit.model.state_dict().items()},
        "history": fit.history, "best_epoch": fit.best_epoch, "val_auc": fit.best_score, "test_auc": test_auc,
        "split_sizes": {k: len(v) for k, v in parts.items()},
    }
    return save_checkpoint(state, out)


def load_classifier_extractor(checkpoint: str | Path) -> FeatureExtractor:
    """The ``classifier`` extractor from a checkpoint written by :func:`train_feature_extractor`."""
    from dermsynth.classify import build_classifier

    path = Path(checkpoint)
    if not path.is_file():
        raise DermsynthError(f"{path}: feature-extractor checkpoint not found (train one with "
                             f"`dermsynth train-extractor --data SRC --out {path}`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises many types for corrupt or foreign files
        raise DermsynthError(f"{path}: not a readable feature-extractor checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("kind") != EXTRACTOR_KIND:
        raise DermsynthError(f"{path}: not a dermsynth feature-extractor checkpoint (write one with train-extractor)")
    model = build_classifier(state["arch"], int(state["num_classes"]), int(state["image_size"]))
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError:
        raise DermsynthError(f"{path}: weights do not fit a {state['arch']} classifier") from None
    net = PenultimateFeatures(model.eval(), int(state["image_size"])).eval()
    dim = int(model.fc.in_features)
    auc = state.get("test_auc")
    desc = (f"penultimate layer ({dim}-d) of a {state['arch']} dermoscopy classifier trained by dermsynth on "
            f"{state['source']} at {state['image_size']}px ({path.name}"
            + (f", test macro AUC {auc:.3f}" if auc is not None else "") + "); comparable only within this checkpoint")
    return FeatureExtractor(name="classifier", dim=dim, network=net, description=desc)


def _build_inception(weights: str | Path | None = None) -> FeatureExtractor:
    from dermsynth.metrics.inception import FEATURE_DIM, load_fid_inception

    return FeatureExtractor(name="inception", dim=FEATURE_DIM, network=load_fid_inception(weights),
                            description="FID Inception-v3 (TF 2015-12-05), 2048-d pool3 at 299x299")


def _build_classifier(checkpoint: str | Path | None = None) -> FeatureExtractor:
    if checkpoint is None:
        raise DermsynthError("the 'classifier' extractor needs its checkpoint (--extractor-checkpoint); "
                             "train one with `dermsynth train-extractor`")
    return load_classifier_extractor(checkpoint)


ExtractorBuilder = Callable[..., FeatureExtractor]
EXTRACTORS: dict[str, ExtractorBuilder] = {"inception": _build_inception, "classifier": _build_classifier}


def register_extractor(name: str, builder: ExtractorBuilder) -> None:
    """Add a builder ``builder(**options) -> FeatureExtractor`` under ``name``."""
    EXTRACTORS[name] = builder


def build_extractor(name: str, **options) -> FeatureExtractor:
    """The extractor registered as ``name``: ``inception`` (``weights=``), ``classifier`` (``checkpoint=``), ..."""
    if name not in EXTRACTORS:
        raise DermsynthError(f"unknown feature extractor {name!r}; available: {', '.join(sorted(EXTRACTORS))}")
    return EXTRACTORS[name](**options)
