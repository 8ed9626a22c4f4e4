"""Fréchet distance (FID on given features) and Kernel Inception Distance (KID).

Both work on feature arrays (N, D) -- e.g. Inception pool3 activations -- computed elsewhere.

* :func:`frechet_distance` is the closed form between two Gaussians,
  ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``. For any factor ``S1 = B B^T``, ``S1 S2`` has the
  eigenvalues of the symmetric PSD ``B^T S2 B`` (plus zeros), so ``Tr((S1 S2)^(1/2))`` is the sum of
  their square roots. ``B`` is the Cholesky factor of S1 (positive definite), its PSD square root from
  ``eigh`` (singular S1), or -- in :func:`fid_from_features` with N <= D samples -- the centred
  features / sqrt(N - 1), an N x N problem. All in float64, on the GPU when present, instead of
  pytorch-fid's general ``scipy.linalg.sqrtm(S1 @ S2)``: the same value (exact up to float64 rounding;
  tested against ``sqrtm``), always real, no ``eps`` retry, and seconds instead of about a minute for
  D = 2048 on a CPU. Eigenvalues that rounding pushes slightly below zero count as zero; clearly
  negative ones mean a covariance that is not positive semi-definite, an error.
* :func:`kid` is the unbiased MMD^2 estimate with the cubic polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3`` averaged over random subsets (Binkowski et al. 2018; the same estimator
  as the reference TF code, torch-fidelity and clean-fid). It is unbiased, so it can be slightly
  negative when both sets come from one distribution. ``std`` is the spread (ddof=0) over subsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dermsynth.errors import DermsynthError
from dermsynth.metrics._pairwise import as_rows, resolve_device

__all__ = ["KIDResult", "feature_statistics", "fid_from_features", "frechet_distance", "kid", "polynomial_mmd2",
           "trace_sqrt_product"]


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _centred(features, device: str | torch.device | None) -> tuple[Tensor, Tensor]:
    """(mean (D,), centred features (N, D)) in float64 on ``device``."""
    f = features.detach() if isinstance(features, Tensor) else torch.from_numpy(np.asarray(features, dtype=np.float64))
    if f.ndim != 2:
        raise DermsynthError(f"features must be a 2-D array (N, D); got shape {tuple(f.shape)}")
    if f.shape[0] < 2:
        raise DermsynthError(f"feature statistics need at least 2 samples; got {f.shape[0]}")
    f = f.to(resolve_device(device), torch.float64)
    mu = f.mean(0)
    return mu, f - mu


def feature_statistics(features, device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) (unbiased, ddof=1) of features (N, D), in float64 (computed on ``device``)."""
    mu, centred = _centred(features, device)
    return mu.cpu().numpy(), (centred.T @ centred / (len(centred) - 1)).cpu().numpy()


#: Relative size (to the largest eigenvalue) below which a negative eigenvalue is taken for rounding.
PSD_TOLERANCE = 1e-6


def _psd_eigenvalues(w: Tensor, what: str) -> Tensor:
    """Eigenvalues of a symmetric matrix that should be PSD: rounding negatives -> 0, clear negatives -> error."""
    scale = float(w.abs().max()) if w.numel() else 0.0
    if w.numel() and float(w.min()) < -PSD_TOLERANCE * max(scale, 1e-300):
        raise DermsynthError(f"frechet_distance: {what} is not positive semi-definite (eigenvalue {float(w.min()):.3g}"
                             f" against largest {scale:.3g}); are both covariances valid?")
    return w.clamp_min(0)


def trace_sqrt_product(sigma1, sigma2, device: str | torch.device | None = None, *, factor1=None) -> float:
    """``Tr((sigma1 @ sigma2)^(1/2))`` for PSD matrices: the sum of the square roots of the eigenvalues of a
    symmetric matrix ``B^T S2 B`` similar to ``S1 S2`` (up to zero eigenvalues), for a factor ``S1 = B B^T``.

    ``B`` is ``factor1`` (D, k) when given (e.g. centred features / sqrt(N - 1): a k x k problem), else the
    Cholesky factor of S1 when S1 is positive definite, else the PSD square root of S1 from ``eigh``.
    """
    dev = resolve_device(device)
    s1 = torch.as_tensor(sigma1, dtype=torch.float64, device=dev)
    s2 = torch.as_tensor(sigma2, dtype=torch.float64, device=dev)
    if factor1 is not None:
        b = torch.as_tensor(factor1, dtype=torch.float64, device=dev)
    else:
        b, info = torch.linalg.cholesky_ex((s1 + s1.T) / 2)
        if int(info) != 0:  # singular S1 (e.g. fewer samples than dimensions): its PSD square root
            w, v = torch.linalg.eigh((s1 + s1.T) / 2)
            b = (v * _psd_eigenvalues(w, "sigma1").sqrt()) @ v.T
    inner = b.T @ s2 @ b
    lam = _psd_eigenvalues(torch.linalg.eigvalsh((inner + inner.T) / 2), "B^T sigma2 B (similar to sigma1 sigma2)")
    return float(lam.sqrt().sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, device: str | torch.device | None = None, *, factor1=None) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring).

    ``factor1``: optional (D, k) ``B`` with ``sigma1 = B B^T`` (see :func:`trace_sqrt_product`).
    """
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
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2, device, factor1=factor1)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_features(real_feats, fake_feats, device: str | torch.device | None = None) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N, D) and (M, D).

    With N <= D the real covariance is singular; its factor (centred features / sqrt(N - 1)) then gives
    an N x N eigenvalue problem instead of a D x D eigendecomposition.
    """
    mu1, centred1 = _centred(real_feats, device)
    mu2, s2 = feature_statistics(fake_feats, device)
    if mu1.shape != mu2.shape:
        raise DermsynthError(f"real and fake features differ in dimension: {mu1.shape[0]} vs {mu2.shape[0]}")
    factor1 = centred1.T / math.sqrt(len(centred1) - 1)
    s1 = factor1 @ factor1.T
    return frechet_distance(mu1.cpu().numpy(), s1.cpu().numpy(), mu2, s2, device,
                            factor1=factor1 if len(centred1) <= mu1.shape[0] else None)


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
