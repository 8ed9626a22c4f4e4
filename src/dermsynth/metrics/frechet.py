"""Fréchet distance (FID on given features) and Kernel Inception Distance (KID).

Both work on feature arrays (N, D) -- e.g. Inception pool3 activations -- computed elsewhere.

* :func:`frechet_distance` is the closed form between two Gaussians,
  ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``, computed as in pytorch-fid / TTUR
  (``scipy.linalg.sqrtm`` of ``S1 @ S2``; if that is not finite, retry with ``eps * I`` added to both
  covariances; a small imaginary part from rounding is dropped, a large one is an error).
* :func:`kid` is the unbiased MMD^2 estimate with the cubic polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3`` averaged over random subsets (Binkowski et al. 2018; the same estimator
  as the reference TF code, torch-fidelity and clean-fid). It is unbiased, so it can be slightly
  negative when both sets come from one distribution. ``std`` is the spread (ddof=0) over subsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from dermsynth.errors import DermsynthError
from dermsynth.metrics._pairwise import as_rows, resolve_device

__all__ = ["KIDResult", "feature_statistics", "fid_from_features", "frechet_distance", "kid", "polynomial_mmd2"]


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) (unbiased, ddof=1) of features (N, D), in float64."""
    f = _as_numpy(features)
    if f.ndim != 2:
        raise DermsynthError(f"features must be a 2-D array (N, D); got shape {f.shape}")
    if f.shape[0] < 2:
        raise DermsynthError(f"feature statistics need at least 2 samples; got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring)."""
    mu1, mu2 = np.atleast_1d(_as_numpy(mu1)), np.atleast_1d(_as_numpy(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_numpy(sigma1)), np.atleast_2d(_as_numpy(sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise DermsynthError(
            f"frechet_distance needs means (D,) and covariances (D, D) of one D; got {mu1.shape}, {sigma1.shape}, "
            f"{mu2.shape}, {sigma2.shape}"
        )
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise DermsynthError("frechet_distance got non-finite means or covariances")
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise DermsynthError(
                f"frechet_distance: sqrtm(sigma1 @ sigma2) has a large imaginary part "
                f"({np.abs(covmean.imag).max():.3g}); are both covariances positive semi-definite?"
            )
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(real_feats, fake_feats) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N, D) and (M, D)."""
    mu1, s1 = feature_statistics(real_feats)
    mu2, s2 = feature_statistics(fake_feats)
    if mu1.shape != mu2.shape:
        raise DermsynthError(f"real and fake features differ in dimension: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2)


@dataclass
class KIDResult:
    """KID: mean and std (ddof=0) of the unbiased MMD^2 over ``num_subsets`` subsets of ``subset_size``."""

    mean: float
    std: float
    num_subsets: int
    subset_size: int

    def as_dict(self) -> dict:
        """JSON-friendly dict of the fields."""
        return {"mean": self.mean, "std": self.std, "num_subsets": self.num_subsets, "subset_size": self.subset_size}


def polynomial_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 with the kernel ``(a.b / D + 1)^3`` for batches of sets x (B, m, D), y (B, n, D) -> (B,).

    ``(sum_{i!=j} k(x_i, x_j)) / (m(m-1)) + (sum_{i!=j} k(y_i, y_j)) / (n(n-1)) - 2 sum k(x_i, y_j) / (mn)``.
    Works in the dtype given (use float64).
    """
    m, n, d = x.shape[1], y.shape[1], x.shape[2]
    if m < 2 or n < 2:
        raise DermsynthError(f"unbiased MMD^2 needs at least 2 samples per set; got {m} and {n}")

    def gram(a: Tensor, b: Tensor) -> Tensor:
        return (torch.bmm(a, b.transpose(1, 2)) / d + 1.0).pow_(3)

    def off_diagonal_sum(k: Tensor) -> Tensor:
        return k.sum(dim=(1, 2)) - k.diagonal(dim1=1, dim2=2).sum(1)

    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    within = off_diagonal_sum(kxx) / (m * (m - 1)) + off_diagonal_sum(kyy) / (n * (n - 1))
    return within - 2.0 * kxy.sum(dim=(1, 2)) / (m * n)


def kid(
    real_feats,
    fake_feats,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> KIDResult:
    """Kernel Inception Distance between feature sets (N, D) and (M, D); see the module docstring.

    Each of ``num_subsets`` rounds draws ``min(subset_size, N, M)`` rows of each set without
    replacement (``numpy.random.default_rng(seed)``, real then fake). Subsets are evaluated in
    batches in float64 on ``device`` (default CUDA if available).
    """
    dev = resolve_device(device)
    x = as_rows(real_feats, "real features", dev, torch.float64)
    y = as_rows(fake_feats, "fake features", dev, torch.float64)
    if x.shape[1] != y.shape[1]:
        raise DermsynthError(f"real and fake features differ in dimension: {x.shape[1]} vs {y.shape[1]}")
    if int(num_subsets) < 1:
        raise DermsynthError(f"KID num_subsets must be >= 1; got {num_subsets}")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise DermsynthError(f"KID needs subsets of at least 2 samples; got sets of {x.shape[0]} and {y.shape[0]} "
                             f"with subset_size={subset_size}")
    rng = np.random.default_rng(seed)
    idx = [(rng.choice(x.shape[0], m, replace=False), rng.choice(y.shape[0], m, replace=False)) for _ in range(num_subsets)]
    batch = max(1, (1 << 24) // (m * max(m, x.shape[1])))  # ~128 MB of float64 per gathered / Gram tensor
    values = []
    with torch.no_grad():
        for b0 in range(0, num_subsets, batch):
            ix = torch.as_tensor(np.stack([i for i, _ in idx[b0 : b0 + batch]]), device=dev)
            iy = torch.as_tensor(np.stack([j for _, j in idx[b0 : b0 + batch]]), device=dev)
            values.append(polynomial_mmd2(x[ix], y[iy]))
    v = torch.cat(values).cpu().numpy()
    return KIDResult(mean=float(v.mean()), std=float(v.std()), num_subsets=int(num_subsets), subset_size=m)
