"""Synthetic lesion-like images and degradations shared by the metric tests (SWD, FID/KID, PRDC, colour)."""

from __future__ import annotations

import numpy as np
import scipy.ndimage


def make_lesions(n, seed, *, size=64, radius=(5.0, 12.0), n_blobs=3, texture=6.0, grain=1.0, tint=(110.0, 65.0, 50.0)):
    """Skin-coloured background, soft dark blobs, smooth texture; values kept <= 225."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.empty((n, size, size, 3), np.float32)
    img[:] = (np.array([195.0, 150.0, 130.0]) + rng.normal(0, 8, (n, 3)))[:, None, None, :]
    for _ in range(n_blobs):
        cy, cx = rng.uniform(8, size - 8, (2, n, 1, 1))
        r = rng.uniform(*radius, (n, 1, 1))
        alpha = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))[..., None]
        colour = (np.array(tint) + rng.normal(0, 15, (n, 3)))[:, None, None, :]
        img = img * (1 - alpha) + colour * alpha
    noise = scipy.ndimage.gaussian_filter(rng.normal(0, 1, img.shape).astype(np.float32), sigma=(0, grain, grain, 0))
    img += noise * texture / noise.std()
    return np.clip(np.round(img), 0, 225).astype(np.uint8)


def blur(images, sigma):
    out = scipy.ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="mirror")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def add_noise(images, sigma, seed=0):
    noisy = images + np.random.default_rng(seed).normal(0, sigma, images.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)
