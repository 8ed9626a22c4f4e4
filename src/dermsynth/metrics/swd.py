"""Laplacian-pyramid Sliced Wasserstein Distance (SWD), as in Karras et al. 2018.

A vectorised PyTorch port of ``metrics/sliced_wasserstein.py`` from
tkarras/progressive_growing_of_gans (used by Baur et al. 2018 for skin lesions), kept
detail-for-detail identical so numbers are comparable with published ones:

* images are uint8 RGB in [0, 255], converted to float32 without rescaling;
* a Laplacian pyramid with the 5x5 binomial filter and 'mirror' (reflect-101) borders,
  one level per resolution ``size, size//2, ...`` down to 16, the coarsest level being
  the Gaussian low-pass itself;
* per level and image, 128 random 7x7 neighbourhoods (3x7x7 = 147-d descriptors);
* each *set's* descriptors are normalised per channel by that set's own mean and std;
* SWD = mean over 4 repeats x 128 random unit directions of the 1-D Wasserstein-1
  distance between the sorted projections; reported x1e3 per level, plus the mean.

Blind spot: because every set is normalised by its own per-channel mean and std, SWD
cannot see a global per-channel shift or gain, i.e. a uniform colour cast or contrast
change of the whole fake set. Always pair it with colour statistics (per-channel means
and histograms) when judging a generator.

Randomness: one CPU ``torch.Generator`` seeded with ``seed`` drives everything, in the
reference's order: for the real set, then the fake set, for each pyramid level (finest
first) the neighbourhood centres ``x`` then ``y`` of all images (``randint`` of length
``n * nhoods_per_image``); then, per level, per repeat, a float64 ``randn(147, 128)``
direction matrix. Results therefore do not depend on ``batch_size`` or device (up to
float32 rounding).

Descriptor layout follows the reference's ``np.ogrid[N, chan, x, y]`` indexing exactly:
``desc[n, c, a, b] = level[img, c, y0 + b - 3, x0 + a - 3]`` (the patch is stored
transposed). Since the directions are isotropic this does not change the metric's
distribution, only which component a given random direction entry multiplies.

Memory: descriptors are kept for both sets, 128 * 147 * 4 B = 75 KB per image per level
per set (e.g. 10k images at 256 px: 5 levels -> 3.8 GB per set); images are only ever
held as float in batches of ``batch_size``.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dermsynth.device import full_fp32_matmul, resolve_device
from dermsynth.errors import DataError, DermsynthError
from dermsynth.progress import tqdm

__all__ = [
    "SWDResult",
    "draw_centres",
    "draw_directions",
    "extract_descriptors",
    "gaussian_pyramid_filter",
    "laplacian_pyramid",
    "normalize_descriptors",
    "pyr_down",
    "pyr_up",
    "pyramid_resolutions",
    "sliced_wasserstein_distance",
    "swd",
    "swd_lower_bound",
    "swd_with_lower_bound",
]

_BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)

#: The 5x5 binomial filter [1,4,6,4,1] (x) [1,4,6,4,1] / 256 of the reference (= cv2.pyrDown).
gaussian_pyramid_filter: Tensor = torch.outer(torch.tensor(_BINOMIAL_5), torch.tensor(_BINOMIAL_5)) / 256.0

MIN_SIZE = 16  # the reference's coarsest pyramid resolution


# ----------------------------------------------------------------------------------------
# Laplacian pyramid
# ----------------------------------------------------------------------------------------


def _filter_1d(x: Tensor, dim: int, gain: float, step: int = 1) -> Tensor:
    """Separable [1,4,6,4,1]/16 * gain along ``dim`` (2 = rows, 3 = cols), 'mirror' borders,
    keeping every ``step``-th output.

    Written as shifted adds rather than conv2d so it stays full IEEE float32 on every device
    (cuDNN may silently use TF32 for convolutions) -- and it is faster on CPU.
    """
    pad = (0, 0, 2, 2) if dim == 2 else (2, 2, 0, 0)
    p = torch.nn.functional.pad(x, pad, mode="reflect")
    n = x.shape[dim]
    pick = (slice(None),) * dim + (slice(None, None, step),)
    taps = [p.narrow(dim, k, n)[pick] for k in range(5)]
    out = taps[0] * (_BINOMIAL_5[0] * gain / 16.0)
    for k in range(1, 5):
        out.add_(taps[k], alpha=_BINOMIAL_5[k] * gain / 16.0)
    return out


def pyr_down(x: Tensor) -> Tensor:
    """Blur with :data:`gaussian_pyramid_filter` ('mirror' borders), then take ``[::2, ::2]``.

    ``x``: float tensor (N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)). Matches cv2.pyrDown
    and the reference's ``scipy.ndimage.convolve(..., mode='mirror')[:, :, ::2, ::2]``.
    """
    if x.ndim != 4:
        raise DermsynthError(f"pyr_down expects a (N, C, H, W) tensor; got shape {tuple(x.shape)}")
    return _filter_1d(_filter_1d(x, 2, 1.0, step=2), 3, 1.0, step=2)


def pyr_up(x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Zero-insert upsample (values at ``[::2, ::2]``), then blur with 4x the filter.

    ``size`` is the output (H, W), default (2h, 2w); an odd size (needed after
    :func:`pyr_down` of an odd-sized image, where the reference itself fails) places the
    samples at the even positions of an array of exactly that size before filtering.
    """
    if x.ndim != 4:
        raise DermsynthError(f"pyr_up expects a (N, C, H, W) tensor; got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    out_h, out_w = size if size is not None else (2 * h, 2 * w)
    if (out_h + 1) // 2 != h or (out_w + 1) // 2 != w:
        raise DermsynthError(f"pyr_up cannot upsample {h}x{w} to {out_h}x{out_w}")
    up = x.new_zeros((n, c, out_h, out_w))
    up[:, :, ::2, ::2] = x
    return _filter_1d(_filter_1d(up, 2, 2.0), 3, 2.0)  # 2 x 2 = the reference's 4x gain


def laplacian_pyramid(x: Tensor, num_levels: int) -> list[Tensor]:
    """Laplacian pyramid of float32 images (N, 3, H, W), finest level first.

    Exactly the reference's ``generate_laplacian_pyramid``: each level is the Gaussian
    level minus the upsampled next one; the last (coarsest) level is the Gaussian low-pass.
    """
    if num_levels < 1:
        raise DermsynthError(f"laplacian_pyramid needs num_levels >= 1; got {num_levels}")
    pyramid = [x.to(torch.float32)]
    for _ in range(1, num_levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1], tuple(pyramid[-2].shape[-2:]))
    return pyramid


def pyramid_resolutions(size: int) -> list[int]:
    """Level sizes for ``size`` x ``size`` images: one level per ``size, size//2, ...`` >= 16.

    The level count follows the reference (``while res >= 16``); the sizes returned are the
    actual level sizes (``ceil`` halving), identical to the reference's labels for even sizes.
    """
    if size < MIN_SIZE:
        raise DataError(f"SWD needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels; got {size}x{size}")
    n_levels, res = 0, size
    while res >= MIN_SIZE:
        n_levels += 1
        res //= 2
    sizes = [size]
    for _ in range(1, n_levels):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


# ----------------------------------------------------------------------------------------
# Descriptors and the distance
# ----------------------------------------------------------------------------------------


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def draw_centres(
    n_images: int, size: int, nhoods_per_image: int, nhood_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Neighbourhood centres (ys, xs), each int64 (n_images * nhoods_per_image,), on CPU.

    As the reference: ``randint(H, size - H)`` (upper bound exclusive), x drawn before y.
    """
    half = nhood_size // 2
    m = n_images * nhoods_per_image
    xs = torch.randint(half, size - half, (m,), generator=generator)
    ys = torch.randint(half, size - half, (m,), generator=generator)
    return ys, xs


def extract_descriptors(
    level: Tensor,
    nhoods_per_image: int = 128,
    nhood_size: int = 7,
    *,
    ys: Tensor | None = None,
    xs: Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """Random ``nhood_size``-square neighbourhoods of one pyramid level.

    ``level``: (N, C, h, w) float. Centres are ``ys``/``xs`` (int, shape (N*nhoods_per_image,),
    image ``i`` owning rows ``i*nhoods_per_image ...``) when given, else drawn with
    ``generator`` (or a fresh one seeded with ``seed``, default 0) via :func:`draw_centres`.
    Returns (N*nhoods_per_image, C, k, k) laid out like the reference's ``minibatch.flat[idx]``
    with ``np.ogrid[N, chan, x, y]``: ``desc[n, c, a, b] = level[img, c, y0+b-H, x0+a-H]``.
    """
    if level.ndim != 4:
        raise DermsynthError(f"extract_descriptors expects a (N, C, h, w) level; got shape {tuple(level.shape)}")
    if nhood_size < 1 or nhood_size % 2 == 0:
        raise DermsynthError(f"nhood_size must be a positive odd number; got {nhood_size}")
    n, c, h, w = level.shape
    half = nhood_size // 2
    if min(h, w) < nhood_size:
        raise DermsynthError(f"a {h}x{w} pyramid level is smaller than the {nhood_size}x{nhood_size} neighbourhood")
    m = n * nhoods_per_image
    if (ys is None) != (xs is None):
        raise DermsynthError("extract_descriptors: pass both ys and xs, or neither")
    if ys is None:
        if h != w:
            raise DermsynthError(f"random centres need a square level; got {h}x{w}")
        ys, xs = draw_centres(n, h, nhoods_per_image, nhood_size, _generator(generator, seed))
    ys = torch.as_tensor(ys, dtype=torch.int64).to(level.device).reshape(-1)
    xs = torch.as_tensor(xs, dtype=torch.int64).to(level.device).reshape(-1)
    if ys.numel() != m or xs.numel() != m:
        raise DermsynthError(f"expected {m} centres ({n} images x {nhoods_per_image}); got {ys.numel()} ys, {xs.numel()} xs")
    if m and (int(ys.min()) < half or int(ys.max()) >= h - half or int(xs.min()) < half or int(xs.max()) >= w - half):
        raise DermsynthError(f"neighbourhood centres must lie in [{half}, size-{half}) of the {h}x{w} level")
    dev = level.device
    img = (torch.arange(m, device=dev) // nhoods_per_image).view(m, 1, 1, 1)
    chan = torch.arange(c, device=dev).view(1, c, 1, 1)
    off = torch.arange(-half, half + 1, device=dev)
    row = ys.view(m, 1, 1, 1) + off.view(1, 1, 1, nhood_size)  # varies along the last axis
    col = xs.view(m, 1, 1, 1) + off.view(1, 1, nhood_size, 1)  # varies along axis 2
    idx = ((img * c + chan) * h + row) * w + col
    return level.reshape(-1)[idx]


def normalize_descriptors(desc: Tensor, *, inplace: bool = False) -> Tensor:
    """Normalise one set's descriptors (M, C, k, k) per channel; return (M, C*k*k) float32.

    Mean and (population, ddof=0) std are taken over neighbourhoods and positions, as the
    reference's ``finalize_descriptors``. A channel with zero spread is only centred.
    ``inplace=True`` reuses a float32 input's memory.
    """
    if desc.ndim != 4:
        raise DermsynthError(f"normalize_descriptors expects (M, C, k, k); got shape {tuple(desc.shape)}")
    desc = desc.to(torch.float32, copy=not inplace)
    var, mean = torch.var_mean(desc, dim=(0, 2, 3), keepdim=True, correction=0)
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    desc.sub_(mean).div_(std)
    return desc.reshape(desc.shape[0], -1)


def draw_directions(dim: int, dir_repeats: int, dirs_per_repeat: int, generator: torch.Generator) -> Tensor:
    """Random unit directions (dir_repeats, dim, dirs_per_repeat) float32, as the reference:
    float64 ``randn(dim, dirs)`` per repeat, columns normalised, then cast to float32."""
    dirs = [torch.randn((dim, dirs_per_repeat), generator=generator, dtype=torch.float64) for _ in range(dir_repeats)]
    return _unit_columns(torch.stack(dirs)) if dirs else torch.empty((0, dim, dirs_per_repeat))


def _unit_columns(dirs: Tensor) -> Tensor:
    dirs = dirs.to(torch.float64)
    return (dirs / dirs.square().sum(dim=-2, keepdim=True).sqrt()).to(torch.float32)


def sliced_wasserstein_distance(
    a: Tensor,
    b: Tensor,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    *,
    directions: Tensor | np.ndarray | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> float:
    """Sliced Wasserstein-1 distance between two equally sized descriptor sets (M, D).

    For each repeat, project both sets on unit directions, sort along the neighbourhood
    axis and average ``|projA - projB|`` over neighbourhoods and directions; then average
    over repeats. ``directions``: (R, D, K) (or (D, K) for one repeat), each column is
    normalised to unit length; otherwise drawn by :func:`draw_directions` from ``generator``
    (or a fresh one seeded with ``seed``, default 0). Returns the plain distance (not x1e3).
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise DermsynthError(
            f"sliced_wasserstein_distance needs two (M, D) arrays of equal shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    m, d = a.shape
    if directions is None:
        if dir_repeats < 1 or dirs_per_repeat < 1:
            raise DermsynthError("dir_repeats and dirs_per_repeat must be >= 1")
        dirs = draw_directions(d, dir_repeats, dirs_per_repeat, _generator(generator, seed))
    else:
        dirs = torch.as_tensor(directions)
        if dirs.ndim == 2:
            dirs = dirs.unsqueeze(0)
        if dirs.ndim != 3 or dirs.shape[1] != d or dirs.shape[0] < 1 or dirs.shape[2] < 1:
            raise DermsynthError(f"directions must have shape (repeats, {d}, dirs); got {tuple(dirs.shape)}")
        dirs = _unit_columns(dirs)
    if m == 0:
        raise DermsynthError("sliced_wasserstein_distance got empty descriptor sets")
    a = a.to(torch.float32)
    b = b.to(torch.float32)
    dirs = dirs.to(a.device)
    n_dirs = dirs.shape[2]
    chunk = max(1, min(n_dirs, (1 << 24) // m))  # bound the (dirs, M) projection buffers
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    on_cpu = a.device.type == "cpu"
    n_workers = max(1, torch.get_num_threads()) if on_cpu else 1
    with full_fp32_matmul(a.device), ThreadPoolExecutor(n_workers) as pool:
        for rep in dirs:
            for k0 in range(0, n_dirs, chunk):
                dt = rep[:, k0 : k0 + chunk].T  # (k, D)
                pa, pb = dt @ a.T, dt @ b.T  # (k, M): one row per direction
                if on_cpu:  # numpy's SIMD sort is several times faster than torch.sort on CPU
                    _sort_rows_numpy(pa.numpy(), pb.numpy(), pool, n_workers)
                else:
                    pa, pb = torch.sort(pa, dim=1).values, torch.sort(pb, dim=1).values
                total += (pa - pb).abs_().sum(dim=1).sum(dtype=torch.float64)
    return float(total) / (dirs.shape[0] * n_dirs * m)


def _sort_rows_numpy(pa: np.ndarray, pb: np.ndarray, pool: ThreadPoolExecutor, n_workers: int) -> None:
    """Sort each row of both arrays in place, spread over threads (np.sort releases the GIL)."""
    per_array = max(1, n_workers // 2) if n_workers > 1 else 1
    pieces = [part for arr in (pa, pb) for part in np.array_split(arr, per_array, axis=0) if len(part)]
    if n_workers == 1:
        for part in pieces:
            part.sort(axis=1)
    else:
        list(pool.map(lambda part: part.sort(axis=1), pieces))


# ----------------------------------------------------------------------------------------
# Image sets and the top-level metric
# ----------------------------------------------------------------------------------------


class _ImageSet:
    """A uint8 image set: numpy (N, H, W, 3) (np.memmap fine) or torch (N, 3, H, W)."""

    def __init__(self, images, name: str):
        self.images, self.name = images, name
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise DataError(f"{name} images: torch tensors must be uint8 (N, 3, H, W); got shape {tuple(images.shape)}")
            self.nchw = True
            h, w = images.shape[2], images.shape[3]
            dtype_ok = images.dtype == torch.uint8
        elif isinstance(images, np.ndarray):
            if images.ndim != 4 or images.shape[3] != 3:
                raise DataError(f"{name} images: numpy arrays must be uint8 (N, H, W, 3); got shape {images.shape}")
            self.nchw = False
            h, w = images.shape[1], images.shape[2]
            dtype_ok = images.dtype == np.uint8
        else:
            raise DataError(
                f"{name} images: expected a uint8 numpy array (N, H, W, 3) or torch tensor (N, 3, H, W); "
                f"got {type(images).__name__}"
            )
        if not dtype_ok:
            raise DataError(f"{name} images must be uint8 in [0, 255]; got dtype {images.dtype}")
        if h != w:
            raise DataError(f"SWD needs square images; {name} images are {h}x{w}")
        if h < MIN_SIZE:
            raise DataError(f"SWD needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels; {name} images are {h}x{w}")
        self.count, self.size = int(images.shape[0]), int(h)

    def load(self, idx: np.ndarray, device: torch.device) -> Tensor:
        """Images ``idx`` (sorted) as float32 (B, 3, H, W) on ``device``."""
        contiguous = len(idx) > 0 and idx[-1] - idx[0] + 1 == len(idx)
        if self.nchw:
            if contiguous:
                batch = self.images[int(idx[0]) : int(idx[-1]) + 1]
            else:
                batch = self.images.index_select(0, torch.as_tensor(idx, device=self.images.device))
            batch = batch.to(device)
        else:
            batch = self.images[int(idx[0]) : int(idx[-1]) + 1] if contiguous else self.images[idx]
            batch = np.ascontiguousarray(batch)
            if not batch.flags.writeable:  # a read-only memmap slice: torch wants writable memory
                batch = batch.copy()
            batch = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2)
        return batch.contiguous().to(torch.float32)


def _set_descriptors(
    images: _ImageSet,
    idx: np.ndarray,
    sizes: list[int],
    nhoods_per_image: int,
    nhood_size: int,
    generator: torch.Generator,
    batch_size: int,
    device: torch.device,
    bar,
) -> list[Tensor]:
    """Normalised descriptors (len(idx)*nhoods, 3*k*k) of one set, one tensor per level."""
    n = len(idx)
    centres = [draw_centres(n, s, nhoods_per_image, nhood_size, generator) for s in sizes]
    descs = [torch.empty((n * nhoods_per_image, 3, nhood_size, nhood_size), device=device) for _ in sizes]
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        levels = laplacian_pyramid(images.load(idx[start:stop], device), len(sizes))
        rows = slice(start * nhoods_per_image, stop * nhoods_per_image)
        for level, (ys, xs), out in zip(levels, centres, descs):
            out[rows] = extract_descriptors(level, nhoods_per_image, nhood_size, ys=ys[rows], xs=xs[rows])
        bar.update(1)
    return [normalize_descriptors(d, inplace=True) for d in descs]


@dataclass
class SWDResult:
    """SWD per pyramid level (finest first) and their mean, all x1e3 as published."""

    resolutions: list[int]
    per_level: list[float]
    mean: float
    n_images: int

    def as_dict(self) -> dict:
        """JSON-friendly dict of the fields."""
        return {
            "resolutions": list(self.resolutions),
            "per_level": list(self.per_level),
            "mean": self.mean,
            "n_images": self.n_images,
        }

    def table(self) -> str:
        """Plain-text table, one row per level plus the mean."""
        lines = [f"SWD x1e3 (n={self.n_images} images per set)", f"{'level':>10}  {'SWD x1e3':>10}"]
        lines += [f"{f'{r}x{r}':>10}  {v:10.4f}" for r, v in zip(self.resolutions, self.per_level)]
        lines.append(f"{'mean':>10}  {self.mean:10.4f}")
        return "\n".join(lines)


def _swd_sets(
    a: _ImageSet,
    idx_a: np.ndarray,
    b: _ImageSet,
    idx_b: np.ndarray,
    *,
    nhoods_per_image: int,
    nhood_size: int,
    dir_repeats: int,
    dirs_per_repeat: int,
    seed: int,
    batch_size: int,
    device,
    progress: bool,
) -> SWDResult:
    for name, value in [("nhoods_per_image", nhoods_per_image), ("dir_repeats", dir_repeats),
                        ("dirs_per_repeat", dirs_per_repeat), ("batch_size", batch_size)]:
        if int(value) < 1:
            raise DermsynthError(f"SWD option {name} must be >= 1; got {value}")
    if nhood_size < 1 or nhood_size % 2 == 0:
        raise DermsynthError(f"SWD option nhood_size must be a positive odd number; got {nhood_size}")
    if a.size != b.size:
        raise DataError(
            f"SWD needs real and fake images of the same size (got {a.size}x{a.size} {a.name}, "
            f"{b.size}x{b.size} {b.name}); resize one set first"
        )
    sizes = pyramid_resolutions(a.size)
    if sizes[-1] < nhood_size:
        raise DermsynthError(f"nhood_size {nhood_size} exceeds the coarsest {sizes[-1]}x{sizes[-1]} pyramid level")
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    n = len(idx_a)
    bar = tqdm(total=2 * math.ceil(n / batch_size), desc="SWD", unit="batch", disable=not progress)
    with torch.no_grad(), bar:
        desc_a = _set_descriptors(a, idx_a, sizes, nhoods_per_image, nhood_size, gen, batch_size, dev, bar)
        desc_b = _set_descriptors(b, idx_b, sizes, nhoods_per_image, nhood_size, gen, batch_size, dev, bar)
        per_level = []
        for lvl in range(len(sizes)):
            dist = sliced_wasserstein_distance(desc_a[lvl], desc_b[lvl], dir_repeats, dirs_per_repeat, generator=gen)
            desc_a[lvl] = desc_b[lvl] = None  # free as we go
            per_level.append(dist * 1e3)
    return SWDResult(resolutions=sizes, per_level=per_level, mean=float(np.mean(per_level)), n_images=n)


def swd(
    real,
    fake,
    *,
    n: int | None = None,
    nhoods_per_image: int = 128,
    nhood_size: int = 7,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> SWDResult:
    """Laplacian-pyramid SWD (x1e3) between two uint8 image sets.

    ``real``/``fake``: numpy uint8 (N, H, W, 3) -- np.memmap is fine, it is read in
    batches -- or torch uint8 (N, 3, H, W). Both sets need the same count and the same
    square size >= 16; ``n`` subsamples each set to ``n`` images (seeded by ``seed``).
    ``device``: default CUDA if available, else CPU.
    """
    a, b = _ImageSet(real, "real"), _ImageSet(fake, "fake")
    if n is None:
        if a.count != b.count:
            raise DataError(
                f"SWD needs equally many real and fake images (got {a.count} real, {b.count} fake); "
                "pass n= to subsample"
            )
        if a.count == 0:
            raise DataError("SWD got empty image sets")
        idx_a = idx_b = np.arange(a.count)
    else:
        n = int(n)
        if n < 1:
            raise DataError(f"SWD n={n}: the number of images per set must be >= 1")
        if n > min(a.count, b.count):
            raise DataError(f"SWD n={n} must be between 1 and the smaller set size (got {a.count} real, {b.count} fake)")
        rng = np.random.default_rng(seed)
        idx_a = np.arange(n) if n == a.count else np.sort(rng.choice(a.count, n, replace=False))
        idx_b = np.arange(n) if n == b.count else np.sort(rng.choice(b.count, n, replace=False))
    return _swd_sets(
        a, idx_a, b, idx_b, nhoods_per_image=nhoods_per_image, nhood_size=nhood_size, dir_repeats=dir_repeats,
        dirs_per_repeat=dirs_per_repeat, seed=seed, batch_size=batch_size, device=device, progress=progress,
    )


def disjoint_halves(count: int, half: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of two disjoint random subsets of ``half`` items each out of ``count``."""
    perm = np.random.default_rng(seed).permutation(count)
    return np.sort(perm[:half]), np.sort(perm[half : 2 * half])


def swd_lower_bound(
    real,
    *,
    n: int | None = None,
    seed: int = 0,
    nhoods_per_image: int = 128,
    nhood_size: int = 7,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> SWDResult:
    """SWD between two disjoint random halves of the real set: the sampling-noise floor.

    ``n``: images per half (default ``len(real) // 2``); compare with ``swd(..., n=n)``,
    since SWD shrinks with the number of images per set.
    """
    a = _ImageSet(real, "real")
    half = a.count // 2 if n is None else int(n)
    if n is not None and half < 1:
        raise DataError(f"SWD n={n}: the number of images per set must be >= 1")
    if half < 1 or 2 * half > a.count:
        raise DataError(
            f"swd_lower_bound needs at least 2 x {max(half, 1)} real images for two disjoint halves; got {a.count}"
        )
    idx_a, idx_b = disjoint_halves(a.count, half, seed)
    return _swd_sets(
        a, idx_a, a, idx_b, nhoods_per_image=nhoods_per_image, nhood_size=nhood_size, dir_repeats=dir_repeats,
        dirs_per_repeat=dirs_per_repeat, seed=seed, batch_size=batch_size, device=device, progress=progress,
    )


def swd_with_lower_bound(real, fake=None, *, n: int | None = None, seed: int = 0, **options
                         ) -> tuple[SWDResult, SWDResult | None]:
    """(real-vs-real lower bound, fake-vs-real SWD or None without ``fake``), both at one set size ``n``.

    SWD shrinks as the sets grow, so a score is only comparable with a bound taken at the same ``n``: it
    defaults to the largest both allow, ``min(len(real) // 2, len(fake))`` (``len(real) // 2`` without
    ``fake``). ``options`` go to :func:`swd` and :func:`swd_lower_bound` (device, batch_size, progress, ...).
    """
    n_real = _ImageSet(real, "real").count
    if n is None:
        n_fake = None if fake is None else _ImageSet(fake, "fake").count
        n = n_real // 2 if fake is None else min(n_real // 2, n_fake)
        if n < 1:
            raise DataError(f"SWD with its lower bound needs at least 2 real images"
                            f"{'' if fake is None else ' and 1 fake image'} (got {n_real} real"
                            f"{'' if fake is None else f', {n_fake} fake'})")
    lower = swd_lower_bound(real, n=n, seed=seed, **options)
    return lower, None if fake is None else swd(real, fake, n=n, seed=seed, **options)
