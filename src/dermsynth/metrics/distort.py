"""Controlled image degradations, for checking that a distance grows with the damage done to real images.

Each function maps uint8 (N, H, W, 3) images and a strength to degraded uint8 images of the same shape; a
strength of 0 returns the images unchanged. :data:`DISTORTIONS` names them, with the strengths used by the
extractor sensitivity check (``benchmarks/extractor_sensitivity.py``, ``tests/test_extractor_sensitivity.py``):

``blur``     Gaussian blur, sigma in pixels (PIL ``GaussianBlur``)
``noise``    additive Gaussian noise, std in uint8 units (seeded)
``jpeg``     JPEG compression at quality ``100 - strength`` (PIL, 4:2:0 chroma subsampling)
``colour``   colour cast: red + strength, blue - strength (uint8 units, clipped)
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from dermsynth.errors import DermsynthError

__all__ = ["DISTORTIONS", "STRENGTHS", "colour_shift", "distort", "gaussian_blur", "gaussian_noise", "jpeg"]


def _per_image(images: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(img)).convert("RGB")) for img in images])


def gaussian_blur(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    if sigma <= 0:
        return images.copy()
    return _per_image(images, lambda im: im.filter(ImageFilter.GaussianBlur(radius=float(sigma))))


def gaussian_noise(images: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise of ``std`` uint8 units, rounded and clipped to [0, 255]."""
    if std <= 0:
        return images.copy()
    noise = np.random.default_rng(seed).normal(0.0, float(std), images.shape)
    return np.clip(np.rint(images.astype(np.float64) + noise), 0, 255).astype(np.uint8)


def jpeg(images: np.ndarray, strength: float, seed: int = 0) -> np.ndarray:
    """JPEG round trip at quality ``100 - strength`` (strength 0: unchanged)."""
    if strength <= 0:
        return images.copy()
    quality = int(round(100 - float(strength)))
    if not 1 <= quality <= 100:
        raise DermsynthError(f"JPEG strength must lie in [0, 99], got {strength}")

    def roundtrip(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue()))

    return _per_image(images, roundtrip)


def colour_shift(images: np.ndarray, shift: float, seed: int = 0) -> np.ndarray:
    """A colour cast: red channel + ``shift``, blue channel - ``shift`` (uint8 units, clipped)."""
    if shift <= 0:
        return images.copy()
    out = images.astype(np.int16)
    out[..., 0] += int(round(shift))
    out[..., 2] -= int(round(shift))
    return np.clip(out, 0, 255).astype(np.uint8)


DISTORTIONS: dict[str, Callable[..., np.ndarray]] = {"blur": gaussian_blur, "noise": gaussian_noise, "jpeg": jpeg,
                                                     "colour": colour_shift}
#: Strengths of the sensitivity check, mildest first (0 = the undistorted images).
STRENGTHS: dict[str, tuple[float, ...]] = {"blur": (0, 0.5, 1, 2, 3), "noise": (0, 4, 8, 16, 32),
                                           "jpeg": (0, 50, 80, 90, 95), "colour": (0, 8, 16, 32, 48)}


def distort(images: np.ndarray, kind: str, strength: float, seed: int = 0) -> np.ndarray:
    """``images`` degraded by the distortion ``kind`` at ``strength``."""
    if kind not in DISTORTIONS:
        raise DermsynthError(f"unknown distortion {kind!r}; choose from {', '.join(DISTORTIONS)}")
    return DISTORTIONS[kind](np.asarray(images), strength, seed=seed)
