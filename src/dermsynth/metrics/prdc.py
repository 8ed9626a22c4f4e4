"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020) on features.

Each sample's k-NN ball ``B(x, NND_k(x))`` has as radius the distance to its k-th nearest neighbour
within its own set (itself excluded). With reals X (N) and fakes Y (M):

* precision = fraction of fakes inside at least one real ball (fidelity);
* recall    = fraction of reals inside at least one fake ball (diversity; low under mode collapse);
* density   = (1 / kM) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))] (about 1 for matching distributions,
  can exceed 1; exactly (k + 1) / k for a fake set identical to the real one, as every real ball then
  holds its own centre and its k neighbours);
* coverage  = fraction of reals whose ball holds at least one fake.

Balls are closed (``<=``, as Kynkäänniemi et al.'s code; Naeem et al.'s uses ``<``; this only matters
for ties). Distances are Euclidean, computed blockwise on ``device`` (float32, one GEMM per block), so
10k x 10k features take seconds on a GPU and never need a full N x M matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dermsynth.errors import DermsynthError
from dermsynth.metrics._pairwise import as_rows, distance_blocks, knn, resolve_device

__all__ = ["PRDCResult", "knn_radii", "prdc"]


@dataclass
class PRDCResult:
    """Precision, recall, density and coverage for ``k``-NN balls."""

    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    n_real: int
    n_fake: int

    def as_dict(self) -> dict:
        """JSON-friendly dict of the fields."""
        return {"precision": self.precision, "recall": self.recall, "density": self.density,
                "coverage": self.coverage, "k": self.k, "n_real": self.n_real, "n_fake": self.n_fake}


def knn_radii(feats: torch.Tensor, k: int, chunk: int | None = None) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row of the same set: (N,) float32.

    As the reference implementations: the (k+1)-th smallest distance with the point itself counted.
    """
    return knn(feats, feats, k + 1, row_chunk=chunk)[0][:, k]


def prdc(
    real_feats,
    fake_feats,
    k: int = 5,
    *,
    device: str | torch.device | None = None,
    chunk: int | None = None,
) -> PRDCResult:
    """Precision, recall, density and coverage of fake features (M, D) against real ones (N, D).

    ``k``: neighbourhood size (both sets need more than ``k`` rows). ``chunk``: rows per distance
    block (default: about 32 Mi distances per block). ``device``: default CUDA if available.
    """
    dev = resolve_device(device)
    x = as_rows(real_feats, "real features", dev, torch.float32)
    y = as_rows(fake_feats, "fake features", dev, torch.float32)
    if x.shape[1] != y.shape[1]:
        raise DermsynthError(f"real and fake features differ in dimension: {x.shape[1]} vs {y.shape[1]}")
    k = int(k)
    n, m = x.shape[0], y.shape[0]
    if k < 1 or n <= k or m <= k:
        raise DermsynthError(f"PRDC with k={k} needs k >= 1 and more than k real and fake samples; got {n} real, {m} fake")
    with torch.no_grad():
        r_real, r_fake = knn_radii(x, k, chunk), knn_radii(y, k, chunk)
        fake_in_real = torch.zeros(m, dtype=torch.bool, device=dev)  # precision
        density_count = torch.zeros(m, dtype=torch.int64, device=dev)
        real_in_fake = torch.zeros(n, dtype=torch.bool, device=dev)  # recall
        real_covered = torch.zeros(n, dtype=torch.bool, device=dev)  # coverage
        for rows, cols, d in distance_blocks(y, x, row_chunk=chunk):  # d[j, i] = |Y_j - X_i|
            inside_real = d <= r_real[cols]
            fake_in_real[rows] |= inside_real.any(1)
            density_count[rows] += inside_real.sum(1)
            real_covered[cols] |= inside_real.any(0)
            real_in_fake[cols] |= (d <= r_fake[rows, None]).any(0)
    return PRDCResult(
        precision=int(fake_in_real.sum()) / m,
        recall=int(real_in_fake.sum()) / n,
        density=int(density_count.sum()) / (k * m),
        coverage=int(real_covered.sum()) / n,
        k=k, n_real=n, n_fake=m,
    )
