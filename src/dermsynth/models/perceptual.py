"""Pluggable perceptual networks for pix2pixHD's perceptual (feature) loss.

pix2pixHD's ``VGGLoss`` compares generated and real images in the relu1_1, relu2_1, relu3_1, relu4_1 and
relu5_1 features of an ImageNet VGG19 with weights 1/32, 1/16, 1/8, 1/4, 1 (L1 distances), lambda 10. ImageNet
weights cannot be downloaded here, so the network is chosen by a spec string (``TrainConfig.perceptual``, recorded
in ``config.json`` and in ``translate``'s manifest):

``derm-smallcnn-v1`` (pix2pixHD's default here)
    the dermoscopy classifier shipped with dermsynth (``dermsynth.metrics.features``), its three convolutional
    stages as the feature layers (weights 1/4, 1/2, 1, doubling towards the deepest as VGG's), fed as it was
    trained (ImageNet mean/std on [0, 1] images); its loss weight (:data:`DEFAULT_LAMBDA`) gives the term the share
    of G's loss that VGG has in the reference (README, pix2pixHD);
``vgg19:FILE``
    a local VGG19 state dict in torchvision's layout (``features.N.weight`` ..., the ``classifier.*`` keys are
    ignored), run by :class:`VGG19Features` in plain PyTorch. Fed as the reference feeds it: the [-1, 1] images go
    in unchanged (pix2pixHD's ``VGGLoss`` does not apply ImageNet's mean/std), because the reference's layer
    weights and lambda 10 were set for the feature magnitudes of that input;
``classifier:CKPT``
    a dermoscopy classifier of ``dermsynth train-extractor``, as ``derm-smallcnn-v1``;
``off``
    no perceptual loss.

:func:`register_perceptual` adds a kind; a kind may be registered as ``"module:function"``, imported when a run
uses it (the classifier kinds live in ``dermsynth.models.classifiers``, imported only when one is used).
Every network is frozen and in eval mode.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.io import load_torch

#: torchvision's VGG19 ``features`` configuration ("E"): conv widths, "M" = 2x2 max-pool
VGG19_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                                       512, 512, 512, 512, "M")
#: pix2pixHD's slices of ``features``: outputs relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
VGG19_SLICES: tuple[int, ...] = (2, 7, 12, 21, 30)
VGG19_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
#: pix2pixHD's VGG input: the [-1, 1] image itself, i.e. (x01 - 0.5) / 0.5 in :class:`PerceptualNet`'s terms
VGG_MEAN, VGG_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features`` layer for layer (same indices, so its state-dict keys load)."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG19_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            c_in = int(v)
    return nn.Sequential(*layers)


class PerceptualNet(nn.Module):
    """A frozen feature network cut into ``stages``; ``loss(fake, real)`` is sum_k w_k * L1(f_k(fake), f_k(real))
    with the real features detached. Images come in [-1, 1] and are normalised by ``mean``/``std`` of [0, 1]."""

    def __init__(self, stages: Sequence[nn.Module], weights: Sequence[float], mean: Sequence[float],
                 std: Sequence[float], description: str) -> None:
        super().__init__()
        if len(stages) != len(weights):
            raise ValueError("one weight per stage")
        self.stages = nn.ModuleList(stages)
        self.weights = tuple(float(w) for w in weights)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.description = description
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "PerceptualNet":
        return super().train(False)  # always eval: frozen batch-norm statistics, no dropout

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        f_fake, f_real = self.features(fake), self.features(real)
        return sum(w * F.l1_loss(a.float(), b.detach().float())
                   for w, a, b in zip(self.weights, f_fake, f_real))


class VGG19Features(PerceptualNet):
    """pix2pixHD's VGG19 perceptual network (relu1_1 ... relu5_1)."""

    def __init__(self) -> None:
        features = vgg19_features()
        bounds = (0, *VGG19_SLICES)
        stages = [features[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        super().__init__(stages, VGG19_WEIGHTS, VGG_MEAN, VGG_STD, "vgg19")
        self.features_net = features  # the full layer list, for state-dict loading (shares the modules)

    def load_torchvision(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Load torchvision VGG19 weights (``features.*`` keys; ``classifier.*`` ignored)."""
        own = self.features_net.state_dict()
        wanted = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        missing = sorted(set(own) - set(wanted))
        mismatched = [k for k in own if k in wanted and wanted[k].shape != own[k].shape]
        if missing or mismatched:
            detail = (f"missing features.{missing[0]}" if missing
                      else f"features.{mismatched[0]} is {tuple(wanted[mismatched[0]].shape)}, expected "
                           f"{tuple(own[mismatched[0]].shape)}")
            raise DermsynthError(f"{where}: not torchvision VGG19 weights ({detail})")
        self.features_net.load_state_dict({k: wanted[k] for k in own})
        self.requires_grad_(False)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DermsynthError(f"--perceptual vgg19:{path}: weights file not found (give a local VGG19 state dict; "
                             f"nothing is downloaded)")
    obj = load_torch(path, what="PyTorch state dict", error=DermsynthError)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DermsynthError(f"{path}: expected a state dict (parameter name -> tensor)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_vgg19(path: str) -> PerceptualNet:
    net = VGG19Features()
    net.load_torchvision(_read_state_dict(Path(path)), path)
    net.description = f"vgg19:{path}"
    return net


PerceptualLoader = Callable[[str], PerceptualNet]
#: kind -> loader, or "module:function" naming it (imported on first use)
PERCEPTUAL: dict[str, PerceptualLoader | str] = {
    "vgg19": _load_vgg19,
    "classifier": "dermsynth.models.classifiers:load_perceptual_classifier",
    "derm-smallcnn-v1": "dermsynth.models.classifiers:load_shipped_perceptual",
}
#: kinds named without an argument (``--perceptual derm-smallcnn-v1``)
NAMED: frozenset[str] = frozenset({"derm-smallcnn-v1"})
#: lambda_perceptual by kind when --lambda-perceptual is not given: the reference's 10 for VGG19 (and for a
#: classifier of the user's, where no calibration exists); the shipped network's calibrated weight (README)
DEFAULT_LAMBDA: dict[str, float] = {"vgg19": 10.0, "classifier": 10.0, "derm-smallcnn-v1": 8.0}


def register_perceptual(kind: str, loader: PerceptualLoader | str, default_lambda: float = 10.0) -> None:
    """Make ``--perceptual KIND:ARG`` build ``loader(ARG)`` (``loader`` may be ``"module:function"``)."""
    PERCEPTUAL[kind] = loader
    DEFAULT_LAMBDA[kind] = float(default_lambda)


def _kinds() -> str:
    return ", ".join(["off", *sorted(NAMED), *(f"{k}:FILE" for k in sorted(set(PERCEPTUAL) - NAMED))])


def check_perceptual_spec(spec: str) -> None:
    """A clear error for a malformed ``--perceptual`` value (the file itself is read when training starts)."""
    if spec == "off" or spec in NAMED:
        return
    kind, sep, arg = spec.partition(":")
    if kind not in PERCEPTUAL or kind in NAMED:
        raise DermsynthError(f"--perceptual {spec!r}: unknown network {kind!r}; available: {_kinds()}")
    if not sep or not arg:
        raise DermsynthError(f"--perceptual {spec!r}: expected {kind}:FILE")


def default_lambda(spec: str) -> float:
    """The perceptual loss weight a run with ``--perceptual spec`` takes when ``--lambda-perceptual`` is not given."""
    return 0.0 if spec == "off" else DEFAULT_LAMBDA.get(spec.partition(":")[0], 10.0)


def load_perceptual(spec: str) -> PerceptualNet | None:
    """The frozen perceptual network ``spec`` names (see the module docstring), or None for ``off``."""
    check_perceptual_spec(spec)
    if spec == "off":
        return None
    kind, _, arg = spec.partition(":")
    loader = PERCEPTUAL[kind]
    if isinstance(loader, str):
        module, _, name = loader.partition(":")
        loader = getattr(importlib.import_module(module), name)
    return loader(arg)
