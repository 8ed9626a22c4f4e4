"""Memorisation audit: how close does each generated image get to the training set? (Furger et al., Fig. 7)

For every generated image, find its nearest training images by pixel MSE, by SSIM or by a feature
distance, and compare with the same nearest-training distance of *held-out real* images -- the
reference for how close a genuinely new image gets. Generated images closer than nearly all held-out
ones (default: below their 1st percentile) or byte-identical to a training image are flagged.

Metrics (``score`` is what :func:`nearest_neighbours` returns, ``distance`` what the audit thresholds):

* ``"mse"``: mean squared difference per pixel and channel, uint8 units (0 = identical). Candidates come
  from a blockwise float32 GEMM; the best ``k + 8`` are re-scored exactly in integer arithmetic, so
  returned MSEs are exact and copies score exactly 0. distance = MSE.
* ``"ssim"``: SSIM as ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1)`` (11-tap Gaussian window, K1=0.01,
  K2=0.03, valid region only, averaged over R, G, B). Approximation for speed: SSIM is computed only
  for each query's ``ssim_candidates`` nearest training images by MSE (all of them when the training
  set is that small, or with ``ssim_candidates=None``). distance = 1 - SSIM.
* ``"feature"``: Euclidean distance between feature vectors passed in (e.g. Inception or classifier
  embeddings). distance = that distance.

Pixel metrics are blind to translation: a training image shifted by one pixel is, by MSE, about as far
from its original as an unrelated image is (textured skin decorrelates within a pixel). ``max_shift=s``
compares the (H-2s) x (W-2s) crops of each query at every shift up to ``s`` pixels with the reference's
centre crop and keeps the best shift (``(2s+1)^2`` times the work); use it, or features, to catch
shifted copies. Exact (byte-identical) copies are always found, by hashing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from dermsynth.device import full_fp32_matmul
from dermsynth.errors import DermsynthError
from dermsynth.metrics._pairwise import BLOCK_ELEMS, as_rows, check_images, knn, resolve_device, save_figure

__all__ = [
    "METRICS",
    "AuditResult",
    "memorisation_audit",
    "nearest_neighbours",
    "plot_nearest_neighbours",
    "ssim",
]

METRICS: tuple[str, ...] = ("mse", "ssim", "feature")
_EXACT_MARGIN = 8  # extra MSE candidates re-scored exactly, beyond k


# ----------------------------------------------------------------------------------------
# SSIM
# ----------------------------------------------------------------------------------------


def _band(n: int, window: int, sigma: float, device: torch.device) -> Tensor:
    """(n, n - window + 1) matrix whose columns are the normalised Gaussian window at each valid offset:
    ``x @ band`` filters the last axis of ``x`` ('valid' mode) as one GEMM."""
    r = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    w = torch.exp(-0.5 * (r / sigma) ** 2)
    w = (w / w.sum()).to(torch.float32)
    m = n - window + 1
    band = torch.zeros((n, m), dtype=torch.float32)
    cols = torch.arange(m)
    for t in range(window):
        band[cols + t, cols] = w[t]
    return band.to(device)


def ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 255.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """SSIM of image pairs x[i], y[i], each (B, C, H, W) (any real dtype, values in [0, data_range]) -> (B,).

    The mean of the SSIM map over the valid region and the channels, with population (co)variances:
    equal to skimage's ``structural_similarity`` with the settings in the module docstring.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise DermsynthError(f"ssim needs two (B, C, H, W) batches of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < window:
        raise DermsynthError(f"ssim needs images of at least {window}x{window} pixels; got {x.shape[-2]}x{x.shape[-1]}")
    band_h, band_w = _band(x.shape[-2], window, sigma, x.device), _band(x.shape[-1], window, sigma, x.device)
    mid = data_range / 2  # centre first: variances then suffer far less float32 cancellation
    xf, yf = x.to(torch.float32) - mid, y.to(torch.float32) - mid
    with full_fp32_matmul(x.device):  # separable Gaussian filtering of all five maps as two GEMMs
        maps = band_h.T @ (torch.cat([xf, yf, xf * xf, yf * yf, xf * yf], dim=1) @ band_w)
    ux, uy, uxx, uyy, uxy = maps.chunk(5, dim=1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    ux, uy = ux + mid, uy + mid
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


# ----------------------------------------------------------------------------------------
# Nearest neighbours
# ----------------------------------------------------------------------------------------


def _shift_variants(images: Tensor, max_shift: int) -> Tensor:
    """uint8 (B, H, W, 3) -> (B, S, P): the (H-2s) x (W-2s) crops at every shift |dy|, |dx| <= s, flattened."""
    s, h, w = max_shift, images.shape[1], images.shape[2]
    crops = [images[:, s + dy : h - s + dy, s + dx : w - s + dx] for dy in range(-s, s + 1) for dx in range(-s, s + 1)]
    return torch.stack(crops, dim=1).reshape(images.shape[0], len(crops), -1)


def _exact_mse(qv: Tensor, rc: Tensor, cand: Tensor) -> tuple[Tensor, Tensor]:
    """Exact MSE of query variants qv (B, S, P) against rc[cand] ((M, P), cand (B, C)), all uint8:
    (smallest over the S variants (B, C) float64, the variant achieving it (B, C) int64)."""
    b, n_var, p = qv.shape
    c = cand.shape[1]
    mse = torch.empty((b, c), dtype=torch.float64, device=qv.device)
    best = torch.empty((b, c), dtype=torch.int64, device=qv.device)
    step = max(1, BLOCK_ELEMS // (n_var * c * p))
    for s in range(0, b, step):
        qa = qv[s : s + step].to(torch.int32).unsqueeze(2)  # (t, S, 1, P)
        ra = rc[cand[s : s + step]].to(torch.int32).unsqueeze(1)  # (t, 1, C, P)
        sse, arg = (qa - ra).square_().sum(-1, dtype=torch.int64).min(dim=1)  # integer sums: exact
        mse[s : s + step], best[s : s + step] = sse.to(torch.float64) / p, arg
    return mse, best


def _pairwise_ssim(qv: Tensor, rc: Tensor, cand: Tensor, variant: Tensor, crop: tuple[int, int]) -> Tensor:
    """SSIM of query variant qv[i, variant[i, j]] against rc[cand[i, j]] (uint8 crops of size ``crop``) -> (B, C)."""
    b, c = cand.shape
    h, w = crop
    out = torch.empty(b * c, dtype=torch.float64, device=qv.device)
    pairs = max(1, BLOCK_ELEMS // (16 * h * w * 3))  # ~16 float maps of each pair alive at once
    qi, ri, vi = torch.arange(b, device=qv.device).repeat_interleave(c), cand.reshape(-1), variant.reshape(-1)
    for s in range(0, b * c, pairs):
        xa = qv[qi[s : s + pairs], vi[s : s + pairs]].view(-1, h, w, 3).permute(0, 3, 1, 2)
        ya = rc[ri[s : s + pairs]].view(-1, h, w, 3).permute(0, 3, 1, 2)
        out[s : s + pairs] = ssim(xa, ya).to(torch.float64)
    return out.view(b, c)


def _check_k(k: int, m: int) -> None:
    if not 1 <= k <= m:
        raise DermsynthError(f"k={k} nearest neighbours need 1 <= k <= {m} (the training set size)")


def nearest_neighbours(
    query: np.ndarray | None,
    reference: np.ndarray | None,
    metric: str = "mse",
    k: int = 3,
    *,
    query_features=None,
    reference_features=None,
    device: str | torch.device | None = None,
    chunk: int | None = None,
    ssim_candidates: int | None = 50,
    max_shift: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference images of each query image: (indices (Nq, k) int64, scores (Nq, k) float64).

    ``query``/``reference``: uint8 (N, H, W, 3) of one size (may be None for ``metric="feature"``).
    Scores (best first): MSE ascending, SSIM descending, feature distance ascending; see the module
    docstring, including the ``ssim_candidates`` approximation. ``max_shift`` > 0 makes the pixel
    metrics tolerant to translations: each query's (H-2s) x (W-2s) crops at every shift up to ``s``
    pixels are compared with the reference's centre crop, and the best shift counts (cost x (2s+1)^2).
    ``chunk``: queries per batch (default: about 32 Mi shifted-crop bytes per batch).
    ``device``: default CUDA if available.
    """
    if metric not in METRICS:
        raise DermsynthError(f"unknown nearest-neighbour metric {metric!r}; choose from {', '.join(METRICS)}")
    dev = resolve_device(device)
    k = int(k)
    if metric == "feature":
        if query_features is None or reference_features is None:
            raise DermsynthError("metric='feature' needs query_features and reference_features")
        qf = as_rows(query_features, "query features", dev, torch.float32)
        rf = as_rows(reference_features, "reference features", dev, torch.float32)
        if qf.shape[1] != rf.shape[1]:
            raise DermsynthError(f"query and reference features differ in dimension: {qf.shape[1]} vs {rf.shape[1]}")
        for name, imgs, feats in (("query", query, qf), ("reference", reference, rf)):
            if imgs is not None and len(imgs) != len(feats):
                raise DermsynthError(f"{len(imgs)} {name} images but {len(feats)} {name} feature rows")
        _check_k(k, len(rf))
        with torch.no_grad():
            dist, idx = knn(qf, rf, k, row_chunk=chunk)
        return idx.cpu().numpy(), dist.to(torch.float64).cpu().numpy()

    query, reference = check_images(query, "query images"), check_images(reference, "reference images")
    if query.shape[1:] != reference.shape[1:]:
        raise DermsynthError(f"query and reference images differ in size: {query.shape[1:3]} vs {reference.shape[1:3]}")
    nq, m, (h, w) = len(query), len(reference), query.shape[1:3]
    _check_k(k, m)
    s = int(max_shift)
    crop = (h - 2 * s, w - 2 * s)
    min_crop = 11 if metric == "ssim" else 1  # the SSIM window
    if s < 0 or min(crop) < min_crop:
        raise DermsynthError(f"max_shift={max_shift} must be >= 0 and leave a crop of at least {min_crop} px "
                             f"of the {h}x{w} images")
    if metric == "mse":
        n_cand = min(m, k + _EXACT_MARGIN)
    else:
        n_cand = m if ssim_candidates is None else min(m, max(k, int(ssim_candidates)))
    q = as_rows(query, "query images", dev).view(nq, h, w, 3)  # uint8 on the device
    rc = as_rows(reference, "reference images", dev).view(m, h, w, 3)[:, s : h - s, s : w - s].reshape(m, -1)
    n_var = (2 * s + 1) ** 2
    batch = int(chunk) if chunk else max(1, BLOCK_ELEMS // (n_var * rc.shape[1]))
    indices, scores = [], []
    with torch.no_grad():
        for b0 in range(0, nq, batch):
            qv = _shift_variants(q[b0 : b0 + batch], s)
            if n_cand == m:
                cand = torch.arange(m, device=dev).expand(len(qv), m)
            else:
                cand = knn(qv, rc, n_cand, squared=True)[1]
            score, variant = _exact_mse(qv, rc, cand)
            if metric == "ssim":
                score = -_pairwise_ssim(qv, rc, cand, variant, crop)  # negated: sort ascending below
            order = torch.argsort(score, dim=1, stable=True)[:, :k]
            indices.append(cand.gather(1, order).cpu())
            scores.append(score.gather(1, order).cpu())
    idx, sc = torch.cat(indices).numpy(), torch.cat(scores).numpy()
    return idx, (-sc if metric == "ssim" else sc)


# ----------------------------------------------------------------------------------------
# The audit
# ----------------------------------------------------------------------------------------


def _to_distance(scores: np.ndarray, metric: str) -> np.ndarray:
    return 1.0 - scores if metric == "ssim" else scores


def _exact_duplicates(images: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Index of a byte-identical training image for each image, -1 if none (hashing: exact, O(N))."""
    seen: dict[bytes, int] = {}
    for i in range(len(train)):
        seen.setdefault(hashlib.blake2b(np.ascontiguousarray(train[i]).tobytes(), digest_size=16).digest(), i)
    return np.array([seen.get(hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest(), -1)
                     for img in images], dtype=np.int64)


@dataclass
class AuditResult:
    """Memorisation audit. ``table``: one row per generated image; ``indices``/``scores`` (Ng, k): its
    nearest training images, best first; ``heldout_distances``: the held-out images' nearest-training
    distances (None without a held-out set)."""

    metric: str
    k: int
    threshold: float
    percentile: float | None
    table: pd.DataFrame
    indices: np.ndarray
    scores: np.ndarray
    heldout_distances: np.ndarray | None
    n_train: int

    @property
    def summary(self) -> dict:
        """Counts, fraction flagged, median nearest-training distances (generated vs held-out) and the
        fraction of held-out images the threshold would flag (its false-positive rate on new images)."""
        held = self.heldout_distances
        return {
            "metric": self.metric,
            "k": self.k,
            "n_generated": len(self.table),
            "n_train": self.n_train,
            "n_heldout": 0 if held is None else len(held),
            "threshold": self.threshold,
            "percentile": self.percentile,
            "n_flagged": int(self.table["flagged"].sum()),
            "fraction_flagged": float(self.table["flagged"].mean()),
            "n_exact_duplicates": int(self.table["exact_duplicate"].sum()),
            "median_generated_distance": float(self.table["distance"].median()),
            "median_heldout_distance": None if held is None else float(np.median(held)),
            "heldout_fraction_below_threshold": None if held is None else float(np.mean(held < self.threshold)),
        }

    def as_dict(self) -> dict:
        """JSON-friendly summary (the per-image table is in ``table``)."""
        return self.summary

    def most_similar(self, n: int = 8) -> np.ndarray:
        """Indices of the ``n`` generated images closest to the training set, closest first."""
        return np.argsort(self.table["distance"].to_numpy(), kind="stable")[:n]


def memorisation_audit(
    generated: np.ndarray,
    train: np.ndarray,
    heldout: np.ndarray | None = None,
    *,
    metric: str = "mse",
    k: int = 3,
    threshold: float | None = None,
    percentile: float = 1.0,
    generated_features=None,
    train_features=None,
    heldout_features=None,
    device: str | torch.device | None = None,
    chunk: int | None = None,
    ssim_candidates: int | None = 50,
    max_shift: int = 0,
) -> AuditResult:
    """Nearest training images of every generated and every held-out image; flag suspected copies.

    A generated image is flagged when its nearest-training ``distance`` (MSE, 1 - SSIM or feature
    distance) is below ``threshold`` -- by default the ``percentile``-th percentile of the held-out
    images' distances, so about ``percentile`` % of genuinely new images would be flagged -- or when it
    is byte-identical to a training image. All images: uint8 (N, H, W, 3) of one size; the other
    options are those of :func:`nearest_neighbours`, used alike for generated and held-out images.
    """
    generated, train = check_images(generated, "generated images"), check_images(train, "training images")
    if threshold is None and heldout is None:
        raise DermsynthError("memorisation_audit needs held-out real images (to set the threshold) or an explicit threshold")
    if not 0.0 <= float(percentile) <= 100.0:
        raise DermsynthError(f"percentile must be in [0, 100]; got {percentile}")
    opts = {"metric": metric, "k": k, "device": device, "chunk": chunk, "ssim_candidates": ssim_candidates, "max_shift": max_shift}
    idx, scores = nearest_neighbours(generated, train, query_features=generated_features,
                                     reference_features=train_features, **opts)
    dist = _to_distance(scores[:, 0], metric)
    held = None
    if heldout is not None:
        heldout = check_images(heldout, "held-out images")
        if heldout.shape[1:] != train.shape[1:]:
            raise DermsynthError(f"held-out and training images differ in size: {heldout.shape[1:3]} vs {train.shape[1:3]}")
        held = _to_distance(nearest_neighbours(heldout, train, query_features=heldout_features,
                                               reference_features=train_features, **opts)[1][:, 0], metric)
    used_percentile = None
    if threshold is None:
        threshold, used_percentile = float(np.percentile(held, percentile)), float(percentile)
    dup = _exact_duplicates(generated, train)
    table = pd.DataFrame({
        "generated": np.arange(len(generated)),
        "nn_train": idx[:, 0],
        "score": scores[:, 0],
        "distance": dist,
        "exact_duplicate": dup >= 0,
        "duplicate_of": dup,
    })
    table["flagged"] = (table["distance"] < threshold) | table["exact_duplicate"]
    return AuditResult(metric=metric, k=int(k), threshold=float(threshold), percentile=used_percentile, table=table,
                       indices=idx, scores=scores, heldout_distances=held, n_train=len(train))


def plot_nearest_neighbours(
    generated: np.ndarray,
    train: np.ndarray,
    indices: np.ndarray,
    path: str | Path,
    n: int = 8,
    *,
    scores: np.ndarray | None = None,
    rows: Sequence[int] | None = None,
    metric: str = "",
) -> Path:
    """Figure with one row per generated image: the image, then its k nearest training images.

    ``indices`` (Ng, k) from :func:`nearest_neighbours` / :class:`AuditResult`; ``rows``: which generated
    images to show (default the first ``n``; e.g. ``result.most_similar(8)``); ``scores`` (Ng, k) are
    printed over the neighbours, labelled with ``metric``.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    generated, train = check_images(generated, "generated images"), check_images(train, "training images")
    indices = np.asarray(indices)
    if indices.ndim != 2 or len(indices) != len(generated):
        raise DermsynthError(f"indices must be (n_generated={len(generated)}, k); got shape {indices.shape}")
    rows = np.arange(min(int(n), len(generated))) if rows is None else np.asarray(rows, dtype=np.int64)[: int(n)]
    if len(rows) == 0:
        raise DermsynthError("plot_nearest_neighbours has no rows to show")
    k = indices.shape[1]
    fig = Figure(figsize=(1.7 * (k + 1), 1.8 * len(rows)), dpi=100)
    axes = fig.subplots(len(rows), k + 1, squeeze=False)
    for a, g in enumerate(rows):
        axes[a, 0].imshow(generated[g])
        axes[a, 0].set_title(f"generated {g}", fontsize=8)
        for j in range(k):
            t = int(indices[g, j])
            axes[a, j + 1].imshow(train[t])
            label = f"train {t}" if scores is None else f"train {t}\n" + f"{metric} {scores[g, j]:.4g}".strip()
            axes[a, j + 1].set_title(label, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)
