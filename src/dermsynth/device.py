"""Device choice and precision guards shared by training, metrics and classifiers."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch

from dermsynth.errors import DermsynthError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; a CUDA request without CUDA is a clear error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DermsynthError(f"device {device} requested but CUDA is not available")
    return device


@contextlib.contextmanager
def full_fp32_matmul(device: torch.device) -> Iterator[None]:
    """Full-precision float32 matmuls on CUDA even if the caller enabled TF32 globally (metrics need it)."""
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prev = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.set_float32_matmul_precision(prev)
