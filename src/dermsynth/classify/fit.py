"""Train a classifier with early stopping on the validation set, and predict class probabilities.

Inputs are uint8 (N, H, W, 3) NumPy arrays (or memory maps). They are moved to the device once as
uint8 and, per batch, scaled to [0, 1], optionally transformed on the device (:mod:`transforms`, Essipova et al.'s
classic set by default) and normalised with the ImageNet channel mean/std (needed for ImageNet weights,
harmless otherwise). Loss: cross-entropy, optionally class-weighted ``n / (C * n_c)`` (sklearn's
"balanced") so minority classes count as much as majority ones. Optimiser: Adam.

After every epoch the model is scored on the validation set (loss, macro AUC, accuracy); the weights of
the best epoch by ``monitor`` ("auc": highest macro AUC, or "loss": lowest loss) are kept and restored
at the end, and training stops after ``patience`` epochs without improvement. Shuffling and
the transforms use their own generators seeded from ``seed`` (transform parameters are drawn on the
CPU, so they are the same on any device), dropout uses the global RNG forked and seeded for the run:
on the CPU, a run is reproducible given the seed and the initial weights.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.classify.transforms import ESSIPOVA2020_TRANSFORMS, TransformConfig, transform_batch
from dermsynth.classify.scoring import macro_auc
from dermsynth.models.classifiers import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalise  # re-exported
from dermsynth.errors import DataError, DermsynthError
from dermsynth.device import autocast_bf16, bf16_native, resolve_device
from dermsynth.progress import tqdm

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TrainedClassifier", "class_weights", "imagenet_normalise",
           "predict_proba", "train_classifier"]

MONITORS = ("auc", "loss")


@dataclass
class TrainedClassifier:
    """A trained model (best-epoch weights, eval mode) with its per-epoch history."""

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 = no validation set (last epoch kept)
    best_score: float = float("nan")
    monitor: str = "auc"
    stopped_early: bool = False
    class_weights: list[float] | None = None
    seconds: float = 0.0


def _check_images(images: np.ndarray, labels: np.ndarray | None, what: str,
                  num_classes: int | None = None) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        shape = getattr(images, "shape", None)
        raise DataError(f"{what} images must be uint8 (N, H, W, 3), got {getattr(images, 'dtype', type(images))} "
                        f"{shape}")
    if labels is None:
        return
    if len(labels) != len(images):
        raise DataError(f"{len(images)} {what} images but {len(labels)} labels")
    if num_classes is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{what} labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images as a CPU tensor; read-only arrays (memory-mapped caches) are copied, torch needs writable memory."""
    arr = np.ascontiguousarray(images)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``n / (C * n_c)`` per class (1 for an absent class)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 1.0)


def _to_input(batch: torch.Tensor, transforms: TransformConfig | None,
              generator: torch.Generator | None) -> torch.Tensor:
    """uint8 (N, H, W, 3) on the device -> normalised float (N, 3, H, W), transformed if asked."""
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    if transforms is not None:
        x = transform_batch(x, transforms, generator)
    return imagenet_normalise(x)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast where the device computes bf16 natively (CUDA, AVX512-BF16/AMX CPUs), else float32."""
    return autocast_bf16(device, bf16_native(device))


def _logits(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Eval-mode float logits of uint8 device images, batched."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad(), _autocast(device):
        for start in range(0, len(images), batch_size):
            out.append(model(_to_input(images[start:start + batch_size], None, None)).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, getattr(model, "num_classes", 0), device=device)


def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 256,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Softmax class probabilities (N, C) as float64 for uint8 (N, H, W, 3) images."""
    _check_images(images, None, "prediction")
    device = resolve_device(str(device))
    model.to(device)
    x = _as_tensor(images).to(device)
    return torch.softmax(_logits(model, x, batch_size, device), dim=1).double().cpu().numpy()


def train_classifier(model: nn.Module, train_images: np.ndarray, train_labels: np.ndarray,
                     val_images: np.ndarray | None = None, val_labels: np.ndarray | None = None, *,
                     epochs: int = 50, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                     transforms: bool | TransformConfig = True, class_weighting: bool = False,
                     patience: int | None = 10, monitor: str = "auc", seed: int = 0,
                     device: str | torch.device = "cpu", progress: bool = False) -> TrainedClassifier:
    """Train ``model`` (see the module docstring); return it with its best-epoch weights restored.

    ``transforms``: True for Essipova et al.'s classic set, False for none, or a :class:`TransformConfig`. ``patience``:
    epochs without improvement before stopping (None: never stop early). Without a validation set the
    model of the last epoch is returned.
    """
    if monitor not in MONITORS:
        raise DermsynthError(f"monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise DermsynthError(f"need epochs >= 1, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    num_classes = int(getattr(model, "num_classes"))
    train_labels = np.asarray(train_labels, dtype=np.int64)
    _check_images(train_images, train_labels, "training", num_classes)
    if (val_images is None) != (val_labels is None):
        raise DataError("give both val_images and val_labels, or neither")
    has_val = val_images is not None
    if has_val:
        val_labels = np.asarray(val_labels, dtype=np.int64)
        _check_images(val_images, val_labels, "validation", num_classes)
        if monitor == "auc" and len(np.unique(val_labels)) < 2:
            raise DataError("validation labels hold fewer than two classes: AUC is undefined; use monitor='loss'")
    transform_cfg = ESSIPOVA2020_TRANSFORMS if transforms is True else (transforms or None)

    device = resolve_device(str(device))
    model.to(device)
    x_train = _as_tensor(train_images).to(device)
    y_train = torch.from_numpy(train_labels).to(device)
    if has_val:
        x_val = _as_tensor(val_images).to(device)
        y_val = torch.from_numpy(val_labels).to(device)
    weights = class_weights(train_labels, num_classes) if class_weighting else None
    weight_t = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    shuffle_gen = torch.Generator().manual_seed(seed)
    transform_gen = torch.Generator().manual_seed(seed + 1)
    result = TrainedClassifier(model=model, monitor=monitor,
                               class_weights=None if weights is None else weights.tolist())
    best_state: dict[str, torch.Tensor] | None = None
    sign = 1.0 if monitor == "auc" else -1.0  # maximise sign * score
    n = len(train_labels)
    t0 = time.perf_counter()

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.default_generator.manual_seed(seed + 2)  # dropout
        if device.type == "cuda":
            torch.cuda.manual_seed(seed + 2)
        bar = tqdm(range(1, epochs + 1), unit="epoch", disable=not progress, dynamic_ncols=True)
        for epoch in bar:
            t_epoch = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=shuffle_gen).to(device)
            total, seen = torch.zeros((), device=device), 0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                if len(idx) < 2 <= n:  # a lone last image would break batch norm
                    continue
                with _autocast(device):
                    logits = model(_to_input(x_train[idx], transform_cfg, transform_gen))
                loss = F.cross_entropy(logits.float(), y_train[idx], weight=weight_t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(idx)
                seen += len(idx)
            row = {"epoch": epoch, "train_loss": float(total) / max(seen, 1)}
            if has_val:
                logits = _logits(model, x_val, max(batch_size, 256), device)
                row["val_loss"] = float(F.cross_entropy(logits, y_val))
                probs = torch.softmax(logits, 1).double().cpu().numpy()
                row["val_auc"] = macro_auc(probs, val_labels)
                row["val_accuracy"] = float((probs.argmax(1) == val_labels).mean())
            row["seconds"] = time.perf_counter() - t_epoch
            result.history.append(row)
            if has_val:
                score = row["val_auc" if monitor == "auc" else "val_loss"]
                if best_state is None or sign * score > sign * result.best_score:
                    result.best_epoch, result.best_score = epoch, score
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_auc=f"{row['val_auc']:.3f}",
                                best=result.best_epoch)
                if patience is not None and epoch - result.best_epoch >= patience:
                    result.stopped_early = epoch < epochs
                    break
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - t0
    return result
