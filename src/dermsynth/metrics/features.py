"""Pluggable feature extractors for FID / KID / precision-recall, selected by name from a small registry.

A :class:`FeatureExtractor` maps images -- uint8 (N, H, W, 3) numpy arrays (memmaps fine) or float
(N, 3, H, W) tensors in [0, 1] -- to float32 features (N, D), in batches, on a device, with a progress bar.
Every extractor has a ``version``, the identity of its feature space: FID/KID/PRDC numbers compare only
with numbers of the same version, so every number written carries it (:meth:`FeatureExtractor.provenance`).

``inception``
    The standard FID Inception-v3 (TF 2015-12-05 graph, 2048-d pool3; :mod:`dermsynth.metrics.inception`).
    Needs the local weights file ``pt_inception-2015-12-05-6726825d.pth`` (``weights=`` or
    ``$DERMSYNTH_INCEPTION_WEIGHTS``); nothing is downloaded. Its FIDs are comparable with published ones.
``shipped``
    ``derm-smallcnn-v1``: a compact dermoscopy classifier shipped inside the package
    (``dermsynth/metrics/weights/``), trained by ``dermsynth train-extractor`` on HAM10000 (CC BY-NC 4.0,
    Tschandl et al. 2018); its card (``derm-smallcnn-v1.json``) records the command, the lesion-grouped
    split and the test AUC. Works on a fresh machine with no download; images of any size are resized to
    its input size.
``classifier``
    Penultimate-layer features of a dermoscopy classifier trained by the user
    (:func:`dermsynth.classify.extractor.train_feature_extractor`, ``dermsynth train-extractor``), loaded
    from its checkpoint; its version names the file and its SHA-256.

:func:`resolve_extractor` implements ``--extractor auto``: Inception when its weights are given, else an
explicit classifier checkpoint, else the shipped network.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dermsynth.models.classifiers import imagenet_normalise, load_saved_classifier, shipped_weights_path
from dermsynth.device import resolve_device
from dermsynth.errors import DataError, DermsynthError
from dermsynth.metrics.inception import WEIGHTS_ENV
from dermsynth.progress import tqdm

__all__ = [
    "EXTRACTORS",
    "EXTRACTOR_CHOICES",
    "SHIPPED_EXTRACTOR",
    "FeatureExtractor",
    "PenultimateFeatures",
    "build_extractor",
    "load_classifier_extractor",
    "load_shipped_extractor",
    "register_extractor",
    "resolve_extractor",
    "shipped_extractor_card",
    "shipped_extractor_path",
]

#: The dermoscopy feature network shipped in ``dermsynth/metrics/weights`` (name and version).
SHIPPED_EXTRACTOR = "derm-smallcnn-v1"
#: What ``--extractor`` accepts.
EXTRACTOR_CHOICES: tuple[str, ...] = ("auto", "inception", "shipped", "classifier", "none")


@dataclass
class FeatureExtractor:
    """A named network mapping float (B, 3, H, W) in [0, 1] to features (B, ``dim``); call it on whole image sets.

    ``version`` identifies the feature space (weights included): numbers compare only within one version.
    """

    name: str
    dim: int
    network: nn.Module
    description: str
    version: str = ""
    comparable_with_published: bool = False

    def __post_init__(self) -> None:
        self.version = self.version or self.name

    @property
    def warning(self) -> str:
        """The sentence every number from this extractor is reported with."""
        if self.comparable_with_published:
            return (f"features of {self.version}: FIDs are comparable with published FIDs that use this network, "
                    f"and with any other number from it")
        return (f"features of {self.version}: these FID/KID/PRDC numbers compare only with numbers from the same "
                f"extractor version ({self.version}), never with published FIDs nor across extractors")

    def provenance(self) -> dict:
        """What a JSON number produced with this extractor must carry."""
        return {"extractor": self.name, "extractor_version": self.version, "extractor_description": self.description,
                "extractor_warning": self.warning}

    def __call__(self, images, *, batch_size: int = 64, device: str | torch.device | None = None,
                 progress: bool = False) -> np.ndarray:
        """Features (N, dim) float32 of uint8 (N, H, W, 3) numpy images or float (N, 3, H, W) tensors in [0, 1]."""
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
# Dermoscopy classifiers as extractors: a user's checkpoint, or the one shipped in the package
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_classifier_extractor(checkpoint: str | Path, *, name: str = "classifier",
                              version: str | None = None) -> FeatureExtractor:
    """The ``classifier`` extractor from a checkpoint written by ``dermsynth train-extractor``.

    ``version`` defaults to ``classifier:<file name>@<first 12 hex digits of its SHA-256>``.
    """
    path = Path(checkpoint)
    model, meta = load_saved_classifier(path)
    version = version or f"classifier:{path.name}@{_sha256(path)[:12]}"
    dim = int(model.fc.in_features)
    auc = meta.get("test_auc")
    desc = (f"{version}: penultimate layer ({dim}-d) of a {meta['arch']} dermoscopy classifier trained by dermsynth "
            f"on {meta.get('source', '?')} at {meta['image_size']}px"
            + (f", test macro AUC {auc:.3f}" if auc is not None else "")
            + "; comparable only within this extractor version")
    return FeatureExtractor(name=name, dim=dim, network=PenultimateFeatures(model, int(meta["image_size"])).eval(),
                            description=desc, version=version)


def shipped_extractor_path(suffix: str = ".pt") -> Path:
    """The shipped network's weights (``.pt``) or card (``.json``) inside the installed package."""
    return shipped_weights_path(SHIPPED_EXTRACTOR, suffix)


def shipped_extractor_card() -> dict:
    """The shipped network's card: data, licence, training command, split, test AUC, SHA-256 of the weights."""
    path = shipped_extractor_path(".json")
    if not path.is_file():
        raise DermsynthError(f"{path}: the shipped extractor's card is missing; reinstall dermsynth")
    return json.loads(path.read_text())


def load_shipped_extractor() -> FeatureExtractor:
    """``derm-smallcnn-v1``, the dermoscopy feature network shipped with dermsynth (checked against its card)."""
    path, card = shipped_extractor_path(), shipped_extractor_card()
    if not path.is_file():
        raise DermsynthError(f"{path}: the shipped extractor's weights are missing; reinstall dermsynth")
    if _sha256(path) != card["sha256"]:
        raise DermsynthError(f"{path}: the shipped extractor's weights do not match its card (SHA-256); reinstall "
                             f"dermsynth")
    ext = load_classifier_extractor(path, name="shipped", version=SHIPPED_EXTRACTOR)
    ext.description = (f"{SHIPPED_EXTRACTOR}: penultimate layer ({ext.dim}-d) of a {card['arch']} dermoscopy "
                       f"classifier shipped with dermsynth, trained on {card['data']} at {card['image_size']}px "
                       f"(test macro AUC {card['test_macro_auc']:.3f}; data licence {card['data_licence']})")
    return ext


def _build_inception(weights: str | Path | None = None) -> FeatureExtractor:
    from dermsynth.metrics.inception import FEATURE_DIM, load_fid_inception

    return FeatureExtractor(name="inception", dim=FEATURE_DIM, network=load_fid_inception(weights),
                            description="FID Inception-v3 (TF 2015-12-05), 2048-d pool3 at 299x299",
                            version="inception-v3-tf-2015-12-05", comparable_with_published=True)


def _build_classifier(checkpoint: str | Path | None = None) -> FeatureExtractor:
    if checkpoint is None:
        raise DermsynthError("the 'classifier' extractor needs its checkpoint (--extractor-checkpoint); "
                             "train one with `dermsynth train-extractor`, or use the shipped one (--extractor shipped)")
    return load_classifier_extractor(checkpoint)


ExtractorBuilder = Callable[..., FeatureExtractor]
EXTRACTORS: dict[str, ExtractorBuilder] = {"inception": _build_inception, "shipped": load_shipped_extractor,
                                           "classifier": _build_classifier}


def register_extractor(name: str, builder: ExtractorBuilder) -> None:
    """Add a builder ``builder(**options) -> FeatureExtractor`` under ``name``."""
    EXTRACTORS[name] = builder


def build_extractor(name: str, **options) -> FeatureExtractor:
    """The extractor registered as ``name``: ``inception`` (``weights=``), ``shipped``, ``classifier``
    (``checkpoint=``), ..."""
    if name not in EXTRACTORS:
        raise DermsynthError(f"unknown feature extractor {name!r}; available: {', '.join(sorted(EXTRACTORS))}")
    return EXTRACTORS[name](**options)


def resolve_extractor(choice: str = "auto", *, inception_weights: str | Path | None = None,
                      extractor_checkpoint: str | Path | None = None) -> FeatureExtractor | None:
    """The extractor an ``--extractor`` choice means (None for ``none``).

    ``auto``: Inception when its weights are given (``inception_weights`` or ``$DERMSYNTH_INCEPTION_WEIGHTS``),
    else the classifier of ``extractor_checkpoint`` when given, else the shipped network. Another registered
    name is built with the options that apply to it.
    """
    if choice == "none":
        return None
    if choice == "auto":
        if inception_weights or os.environ.get(WEIGHTS_ENV):
            choice = "inception"
        else:
            choice = "classifier" if extractor_checkpoint else "shipped"
    if choice == "inception":
        return build_extractor("inception", weights=inception_weights)
    if choice == "classifier":
        return build_extractor("classifier", checkpoint=extractor_checkpoint)
    if choice not in EXTRACTORS:
        raise DermsynthError(f"unknown --extractor {choice!r}; choose from "
                             f"{', '.join(dict.fromkeys([*EXTRACTOR_CHOICES, *EXTRACTORS]))}")
    return build_extractor(choice)
