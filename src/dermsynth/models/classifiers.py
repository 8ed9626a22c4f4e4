"""Classifier networks for the augmentation study, selected by name from a small registry.

``smallcnn``
    The small Keras-style CNN of Essipova et al. 2020. The report says only that the CNN is of
    "lower topological complexity", takes 28x28x3 inputs (RGB kept) and ends in a softmax over the
    classes; it gives no layer list. We therefore use the standard Keras image-classifier pattern of
    that time: three blocks ``[Conv3x3-BN-ReLU] x 2 -> MaxPool2 -> Dropout(0.25)`` with 32/64/128
    filters (28 -> 14 -> 7 -> 3 px), ``Flatten -> Dense(128)-ReLU -> Dropout(0.5) -> Dense(C)``.
    Before the flatten an adaptive average pool brings any input size to the 3x3 grid a 28 px input
    has (an identity at 28 px), so the same network, with the same parameter count, runs at 16-64 px.
``resnet18``
    ResNet-18 (BasicBlock, [2, 2, 2, 2]) in plain PyTorch with torchvision's parameter names, so a
    torchvision/ImageNet state dict saved to a local file loads with :func:`load_pretrained`. The
    ``imagenet`` stem is the 7x7 stride-2 convolution + 3x3 max-pool for 112-224 px inputs; the
    ``small`` stem (3x3 stride 1, no max-pool, as for CIFAR) keeps small inputs from shrinking to
    nothing. ``stem="auto"`` picks ``small`` below 96 px.

Every network maps normalised float images (N, 3, S, S) (:func:`imagenet_normalise`) to logits (N, C) and has
``num_classes``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.io import load_torch
from dermsynth.models.perceptual import PerceptualNet

__all__ = ["CLASSIFIERS", "EXTRACTOR_KIND", "IMAGENET_MEAN", "IMAGENET_STD", "ResNet18", "SmallCNN", "build_classifier",
           "count_parameters", "imagenet_normalise", "load_pretrained", "load_saved_classifier",
           "register_classifier"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1], (N, 3, H, W) -> normalised with the ImageNet mean/std, as every classifier sees them."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class SmallCNN(nn.Module):
    """Essipova et al.'s small CNN (layer list assumed, see the module docstring), input-size agnostic."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (32, 64, 128), hidden: int = 128,
                 conv_dropout: float = 0.25, dropout: float = 0.5, pooled: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        blocks: list[nn.Module] = []
        c_in = 3
        for c_out in widths:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(conv_dropout)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(pooled)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(c_in * pooled * pooled, hidden), nn.ReLU(inplace=True),
                                    nn.Dropout(dropout))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(self.pool(self.features(x))))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's parameter names; ``stem`` is ``"imagenet"`` or ``"small"``."""

    def __init__(self, num_classes: int, stem: str = "imagenet", zero_init_residual: bool = False) -> None:
        super().__init__()
        if stem not in ("imagenet", "small"):
            raise DermsynthError(f"resnet18 stem must be 'imagenet', 'small' or 'auto', got {stem!r}")
        self.num_classes = num_classes
        self.stem = stem
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        widths, c_in = (64, 128, 256, 512), 64
        for i, c_out in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- registry ----------------------------------------------------------------------------------
ClassifierBuilder = Callable[..., nn.Module]


def _build_smallcnn(num_classes: int, image_size: int, **options: object) -> nn.Module:
    if image_size < 8:
        raise DermsynthError(f"smallcnn needs images of at least 8 px, got {image_size}")
    return SmallCNN(num_classes, **options)


def _build_resnet18(num_classes: int, image_size: int, stem: str = "auto", **options: object) -> nn.Module:
    if stem == "auto":
        stem = "small" if image_size < 96 else "imagenet"
    if stem == "imagenet" and image_size < 32:
        raise DermsynthError(f"resnet18 with the imagenet stem needs images of at least 32 px, got {image_size}; "
                             f"use stem='small'")
    return ResNet18(num_classes, stem=stem, **options)


CLASSIFIERS: dict[str, ClassifierBuilder] = {"smallcnn": _build_smallcnn, "resnet18": _build_resnet18}


def register_classifier(name: str, builder: ClassifierBuilder) -> None:
    """Add a classifier builder ``builder(num_classes, image_size, **options) -> nn.Module``."""
    CLASSIFIERS[name] = builder


def build_classifier(name: str, num_classes: int, image_size: int, *, seed: int | None = None,
                     pretrained: str | Path | None = None, **options: object) -> nn.Module:
    """Build a registered classifier; ``seed`` fixes its initial weights without touching the global RNG.

    ``pretrained`` is a local state-dict file loaded with :func:`load_pretrained` (nothing is downloaded).
    """
    if name not in CLASSIFIERS:
        raise DermsynthError(f"unknown classifier {name!r}; available: {', '.join(sorted(CLASSIFIERS))}")
    if num_classes < 2:
        raise DermsynthError(f"a classifier needs at least 2 classes, got {num_classes}")
    try:
        with torch.random.fork_rng(devices=[]):  # restores the CPU RNG afterwards
            if seed is not None:
                torch.default_generator.manual_seed(seed)
            model = CLASSIFIERS[name](num_classes, int(image_size), **options)
    except TypeError as exc:  # an option the builder does not know
        raise DermsynthError(f"cannot build {name}: {exc}") from None
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


# --- pretrained weights ------------------------------------------------------------------------
def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DermsynthError(f"{path}: pretrained weights not found (give a local state-dict file; "
                             f"nothing is downloaded)")
    obj = load_torch(path, what="PyTorch state dict", error=DermsynthError)
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DermsynthError(f"{path}: expected a state dict (parameter name -> tensor)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_pretrained(model: nn.Module, path: str | Path, *, head: str = "fc.",
                    ignore: Sequence[str] = ()) -> list[str]:
    """Load weights from a local state-dict file into ``model``; return the keys left at their init.

    Head parameters (names starting with ``head``) whose shape differs, e.g. a 1000-class ImageNet head,
    are skipped; so are keys starting with any prefix in ``ignore`` (e.g. ``("conv1.",)`` to load
    ImageNet weights into the small stem). Any other missing, unexpected or mis-shaped key is an error.
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = model.state_dict()
    skipped = [k for k in own if k.startswith(tuple(ignore))
               or (k.startswith(head) and k in state and state[k].shape != own[k].shape)]
    missing = [k for k in own if k not in state and k not in skipped and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not k.startswith(tuple(ignore))]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state and k not in skipped and state[k].shape != own[k].shape]
    problems = [(what, keys) for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                ("shape mismatch", mismatched)) if keys]
    if problems:
        detail = "; ".join(f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}" for what, keys in problems)
        raise DermsynthError(f"{path}: weights do not fit {type(model).__name__} ({detail})")
    merged = {k: (own[k] if k in skipped or k not in state else state[k]) for k in own}
    model.load_state_dict(merged)
    return skipped


# --- saved classifiers (the feature-extractor checkpoint format) ------------------------------
#: Marks the checkpoints of trained classifiers that serve as FID/KID feature extractors
#: (written by :func:`dermsynth.classify.extractor.train_feature_extractor`, read by
#: :mod:`dermsynth.metrics.features`).
EXTRACTOR_KIND = "dermsynth-feature-extractor"


def load_saved_classifier(path: str | Path) -> tuple[nn.Module, dict]:
    """(classifier in eval mode, the checkpoint's metadata) from a feature-extractor checkpoint.

    The metadata is every entry but the weights: ``arch``, ``num_classes``, ``image_size``, ``class_names``,
    ``source``, ``test_auc``, ... One-line errors for a missing, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise DermsynthError(f"{path}: feature-extractor checkpoint not found (train one with "
                             f"`dermsynth train-extractor --data SRC --out {path}`)")
    state = load_torch(path, what="feature-extractor checkpoint", error=DermsynthError)
    if not isinstance(state, dict) or state.get("kind") != EXTRACTOR_KIND:
        raise DermsynthError(f"{path}: not a dermsynth feature-extractor checkpoint (write one with train-extractor)")
    try:
        model = build_classifier(state["arch"], int(state["num_classes"]), int(state["image_size"]))
        model.load_state_dict(state["state_dict"])
    except KeyError as exc:
        raise DermsynthError(f"{path}: feature-extractor checkpoint without {exc}") from None
    except RuntimeError:
        raise DermsynthError(f"{path}: weights do not fit a {state['arch']} classifier") from None
    return model.eval(), {k: v for k, v in state.items() if k != "state_dict"}


# --- the classifier as pix2pixHD's perceptual network (dermsynth.models.perceptual) ---------------------------
def classifier_stages(model: nn.Module) -> list[nn.Module]:
    """A classifier's convolutional stages in order: SmallCNN's blocks (each ending in its max-pool) or
    ResNet-18's stem and layer1-4."""
    if isinstance(model, ResNet18):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [nn.Sequential(stem, model.layer1), model.layer2, model.layer3, model.layer4]
    if isinstance(model, SmallCNN):
        stages, current = [], []
        for layer in model.features:
            current.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                stages.append(nn.Sequential(*current))
                current = []
        return stages
    raise DermsynthError(f"{type(model).__name__} has no known convolutional stages for a perceptual loss")


def load_perceptual_classifier(path: str) -> PerceptualNet:
    """``--perceptual classifier:CKPT``: a train-extractor checkpoint's stages, weights 1/2^(n-1-k) (deepest 1)."""
    model, _ = load_saved_classifier(path)
    stages = classifier_stages(model)
    weights = [1.0 / 2 ** (len(stages) - 1 - k) for k in range(len(stages))]
    return PerceptualNet(stages, weights, IMAGENET_MEAN, IMAGENET_STD, f"classifier:{path}")


#: the shipped dermoscopy classifier (dermsynth/metrics/weights), pix2pixHD's default perceptual network
SHIPPED_CLASSIFIER = "derm-smallcnn-v1"


def shipped_weights_path(name: str = SHIPPED_CLASSIFIER, suffix: str = ".pt") -> Path:
    """A network shipped inside the package: its weights (``.pt``) or card (``.json``)."""
    return Path(str(resources.files("dermsynth") / "metrics" / "weights" / f"{name}{suffix}"))


def load_shipped_perceptual(_: str = "") -> PerceptualNet:
    """``--perceptual derm-smallcnn-v1``: the shipped classifier as :func:`load_perceptual_classifier` uses a
    checkpoint (registered by name in ``dermsynth.models.perceptual``)."""
    path = shipped_weights_path()
    if not path.is_file():
        raise DermsynthError(f"--perceptual {SHIPPED_CLASSIFIER}: {path} is missing (reinstall dermsynth, or give "
                             f"--perceptual vgg19:FILE or off)")
    net = load_perceptual_classifier(str(path))
    net.description = SHIPPED_CLASSIFIER
    return net
