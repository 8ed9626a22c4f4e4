"""Helpers shared by the metrics: chunked pairwise Euclidean distances and k-NN in torch (PRDC,
memorisation), input conversion and checks, figure saving.

Distances use the matmul form ``|x|^2 + |y|^2 - 2 x.y`` on blocks of at most ``row_chunk`` x
``col_chunk`` pairs, so no full N x M matrix is ever held and the work is one GEMM per block (fast on
GPU). Both sets are first shifted by one common vector (the mean of the first ``y`` chunk): distances
do not change, but the cancellation error of the matmul form shrinks from ``eps * |x|^2`` to
``eps * |x - mean|^2``. On CUDA, matmuls run in full IEEE float32 even if TF32 was enabled globally.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dermsynth import io
from dermsynth.device import full_fp32_matmul, resolve_device
from dermsynth.errors import DermsynthError

__all__ = ["as_rows", "check_images", "distance_blocks", "knn", "resolve_device", "save_figure"]

#: Elements per block (and per float copy of a chunk) when chunk sizes are not given: 32 Mi = 128 MB float32.
BLOCK_ELEMS = 1 << 25


def as_rows(x, name: str, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """A numpy array / tensor as a 2-D tensor (N, D) on ``device``; images (N, ...) are flattened.

    ``dtype`` None keeps the input dtype (e.g. uint8 images stay one byte per value on the device).
    """
    if isinstance(x, np.ndarray):
        if not x.flags.writeable or not x.flags.c_contiguous:  # read-only memmaps: torch wants writable memory
            x = np.array(x)
        t = torch.from_numpy(x)
    elif isinstance(x, Tensor):
        t = x.detach()
    else:
        raise DermsynthError(f"{name}: expected a numpy array or torch tensor; got {type(x).__name__}")
    if t.ndim < 2:
        raise DermsynthError(f"{name}: expected an array of shape (N, D) or (N, ...); got shape {tuple(t.shape)}")
    t = t.reshape(t.shape[0], -1).to(device)
    return t if dtype is None else t.to(dtype)


def check_images(images, name: str) -> np.ndarray:
    """Return ``images`` if it is a non-empty uint8 numpy array (N, H, W, 3) (memmaps too), else raise."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}".strip()
        raise DermsynthError(f"{name} must be a uint8 array (N, H, W, 3); got {got}")
    if len(images) == 0:
        raise DermsynthError(f"{name} is empty")
    return images


def save_figure(fig, path: str | Path) -> Path:
    """Save a ``matplotlib.figure.Figure`` (made without pyplot, so no global state) to ``path``, atomically."""
    fig.tight_layout()
    return io.save_figure(fig, path)


def _chunks(n: int, d: int, other: int, chunk: int | None) -> int:
    if chunk is not None:
        if int(chunk) < 1:
            raise DermsynthError(f"chunk sizes must be >= 1; got {chunk}")
        return int(chunk)
    return max(1, min(n, BLOCK_ELEMS // max(d, other, 1)))


def distance_blocks(
    x: Tensor,
    y: Tensor,
    *,
    squared: bool = False,
    row_chunk: int | None = None,
    col_chunk: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[tuple[slice, slice, Tensor]]:
    """Yield ``(rows, cols, D)`` with ``D[i, j] = ||x[rows][i] - y[cols][j]||`` (squared if asked).

    ``x`` (N, D) and ``y`` (M, D) on one device, any numeric dtype (chunks are cast to ``dtype``).
    ``x`` may also be (N, S, D): S variants per row (e.g. shifted crops of one image), and ``D[i, j]``
    is then the smallest distance over the variants. Blocks come column chunk by column chunk, then
    row chunk by row chunk; default chunk sizes keep every block and every float chunk copy at about
    :data:`BLOCK_ELEMS` elements.
    """
    variants = x.shape[1] if x.ndim == 3 else 1
    if x.ndim not in (2, 3) or y.ndim != 2 or x.shape[-1] != y.shape[1]:
        raise DermsynthError(f"pairwise distances need (N, D) and (M, D) arrays; got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m, d = x.shape[0], y.shape[0], y.shape[1]
    cc = _chunks(m, d, 0, col_chunk)
    rc = _chunks(n, d * variants, min(cc, m) * variants, row_chunk)
    if n == 0 or m == 0:
        return
    shift = y[: min(m, cc)].to(dtype).mean(0)
    with full_fp32_matmul(x.device):
        for c0 in range(0, m, cc):
            yc = y[c0 : c0 + cc].to(dtype) - shift
            yn = yc.square().sum(1)
            for r0 in range(0, n, rc):
                xc = x[r0 : r0 + rc].reshape(-1, d).to(dtype) - shift
                block = torch.addmm(xc.square().sum(1, keepdim=True) + yn, xc, yc.T, alpha=-2.0)
                if variants > 1:
                    block = block.view(-1, variants, block.shape[1]).amin(1)
                block = block.clamp_min_(0)
                rows = slice(r0, r0 + block.shape[0])
                yield rows, slice(c0, c0 + len(yc)), block if squared else block.sqrt_()


def knn(
    x: Tensor,
    y: Tensor,
    k: int,
    *,
    squared: bool = False,
    row_chunk: int | None = None,
    col_chunk: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest rows of ``y`` for every row of ``x``: (distances, indices), each (N, k), nearest first.

    ``x`` (N, D) or (N, S, D) as in :func:`distance_blocks`. A point of ``x`` that is also in ``y``
    finds itself at distance ~0 (ask for ``k + 1`` to look past it). ``k`` must be <= len(y).
    """
    n, m = x.shape[0], y.shape[0]
    if not 1 <= k <= m:
        raise DermsynthError(f"k-nearest neighbours need 1 <= k <= {m} (the reference set size); got k={k}")
    best_d = torch.full((n, k), float("inf"), dtype=dtype, device=x.device)
    best_i = torch.zeros((n, k), dtype=torch.int64, device=x.device)
    for rows, cols, block in distance_blocks(x, y, squared=squared, row_chunk=row_chunk, col_chunk=col_chunk, dtype=dtype):
        v, i = torch.topk(block, min(k, block.shape[1]), dim=1, largest=False)
        cat_d = torch.cat([best_d[rows], v], dim=1)
        cat_i = torch.cat([best_i[rows], i + cols.start], dim=1)
        v, j = torch.topk(cat_d, k, dim=1, largest=False, sorted=True)
        best_d[rows], best_i[rows] = v, cat_i.gather(1, j)
    return best_d, best_i
