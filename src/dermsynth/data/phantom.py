"""Built-in procedural "phantom" dermoscopy-like images: the default data for demos and unit tests.

.. warning::
   These images are PROCEDURAL, NOT CLINICAL. They are drawn by a few hundred lines of NumPy from
   random numbers, not photographed, and carry no medical meaning. The class names borrow
   dermatological words ("nevus", "melanoma", ...) only as convenient labels for *stand-in* classes
   that differ the way the real ones roughly do (colour, size, border, dermoscopic structures).
   Nothing learned, measured or claimed on phantom data says anything about real skin lesions.

Every image shows a skin-toned background (tone varying per image) with fine smoothed-noise texture
under a dark circular vignette (the dermoscope's field of view), one lesion with an irregular border
(radius modulated by random Fourier harmonics around a jittered centre) and internal colour variation,
dermoscopic structures drawn inside the lesion and recorded in the attribute masks (order of
:data:`dermsynth.data.dataset.ATTRIBUTES`), and optionally hairs (not part of any mask).

The phantom classes (:data:`PHANTOM_CLASSES`) and what tells them apart:

``nevus``
    small (radius ~0.3-0.42 of the half-width), nearly round, soft border, uniform tan to mid
    brown with a slightly darker centre; a regular pigment network; sometimes a few small
    regular globules.
``melanoma``
    large (~0.46-0.64), strongly irregular and asymmetric, sharp-edged in places; multi-coloured
    (dark brown, black, blue-grey, sometimes pink or whitish regression areas); peripheral streaks,
    irregular globules of varied size and often a patchy, atypical (thick, distorted) network.
``keratosis``
    medium (~0.36-0.52), moderately irregular, sharply demarcated ("stuck-on"); light to mid brown,
    waxy with cerebriform ridges; milia-like cysts (small bright dots).
``bcc``
    medium (~0.32-0.5), moderately irregular, translucent pink to grey-pink; a lighter negative
    network, blue-grey ovoid blobs and red arborising vessels (the last two not in any mask).

Masks: ``lesion_masks`` is the lesion body plus its streaks; each attribute mask marks the region
where that structure is drawn (the network region, the globule/cyst discs slightly dilated, the
streak lines widened) and always lies inside the lesion mask. Pigmented stand-ins are kept darker
than the surrounding skin; the pink ``bcc`` stand-ins may be lighter. Structures drawn but not
recorded: keratosis comedo-like dots, bcc ovoid blobs and vessels, hairs.

Lesion and lines are rendered at twice the target size (for targets up to 160 px) and reduced by
area averaging, which anti-aliases the thin lines; the smooth skin and vignette are made at the target
size. Everything is vectorised NumPy per image (about 3 ms at 64 px on one core); image ``i`` of
:func:`generate_phantom` depends only on ``(seed, i)``, so results are byte-identical on repeat and
a longer set extends a shorter one with the same arguments. The ``hairs`` setting draws from its
own sub-generator, so changing it alters only hair pixels.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Sequence

import numpy as np

from dermsynth.data.dataset import ATTRIBUTES, LesionDataset
from dermsynth.defaults import DEFAULT_SIZE
from dermsynth.errors import DataError
from dermsynth.resources import require_memory

# Peak bytes per pixel while one phantom is rendered (float64 coordinate and texture fields; measured with
# tracemalloc: 176-178 at 256 and 1024 px), checked before a size is rendered.
_RENDER_BYTES_PER_PIXEL = 200

__all__ = ["PHANTOM_CLASSES", "generate_phantom", "render_phantom"]

#: Names of the phantom stand-in classes, in label order (see the module docstring: not clinical).
PHANTOM_CLASSES: tuple[str, ...] = ("nevus", "melanoma", "keratosis", "bcc")

_NEVUS, _MELANOMA, _KERATOSIS, _BCC = range(4)
_A_NET, _A_NEG, _A_STREAKS, _A_MILIA, _A_GLOB = (ATTRIBUTES.index(a) for a in (
    "pigment_network", "negative_network", "streaks", "milia_like_cyst", "globules"))

_F = np.float32


def _single_threaded_blas():
    """Context limiting BLAS to one thread when threadpoolctl is installed (a no-op otherwise)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# --- small helpers ------------------------------------------------------------------------------
def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@lru_cache(maxsize=16)
def _axis(res: int) -> np.ndarray:
    """Pixel-centre coordinates in [-1, 1] along one axis."""
    c = ((np.arange(res, dtype=np.float64) + 0.5) / res * 2.0 - 1.0).astype(_F)
    c.setflags(write=False)
    return c


@lru_cache(maxsize=16)
def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    c = _axis(res)
    x, y = np.meshgrid(c, c)  # x varies along columns, y along rows
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@lru_cache(maxsize=64)
def _interp_matrix(res: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(res, cells) Gaussian-kernel interpolation matrix A and its transpose: A @ G @ A.T turns a
    cells x cells grid of random values into a smooth res x res field (no bilinear creases)."""
    c = _axis(res).astype(np.float64)
    knots = np.linspace(-1.15, 1.15, cells)
    sigma = (knots[1] - knots[0]) * 0.75
    a = np.exp(-0.5 * ((c[:, None] - knots[None, :]) / sigma) ** 2)
    a /= a.sum(axis=1, keepdims=True)
    a = a.astype(_F)
    at = np.ascontiguousarray(a.T)
    a.setflags(write=False)
    at.setflags(write=False)
    return a, at


def _noise(rng: np.random.Generator, res: int, cells: int, k: int = 1, rows: slice = slice(None),
           cols: slice = slice(None)) -> np.ndarray:
    """k smooth random fields on the res x res grid (or its window ``rows`` x ``cols``), each with
    zero mean and unit standard deviation over that window: shape (k, h, w)."""
    a, at = _interp_matrix(res, cells)
    a, at = a[rows], at[:, cols]
    g = rng.standard_normal((k, cells, cells), dtype=_F)
    f = np.empty((k, a.shape[0], at.shape[1]), _F)
    for j in range(k):  # plain 2-D products: NumPy's broadcast matmul takes a slow path
        np.matmul(a @ g[j], at, out=f[j])
    f -= f.mean(axis=(1, 2), keepdims=True)
    f /= f.std(axis=(1, 2), keepdims=True) + 1e-6
    return f


def _lerp(img: np.ndarray, colour, weight: np.ndarray) -> None:
    """In place: img <- img * (1 - w) + colour * w (colour an RGB triple or an (R, R, 3) field).

    Only the bounding box of the non-zero weights is touched (thin lines and dots are sparse)."""
    rows = np.flatnonzero(weight.any(axis=1))
    if rows.size == 0:
        return
    cols = np.flatnonzero(weight.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    colour = np.asarray(colour, dtype=_F)
    if colour.ndim == 3:
        colour = colour[box]
    sub = img[box]
    sub += (colour - sub) * weight[box][..., None]


def _jitter(rng: np.random.Generator, rgb, amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=_F) + rng.normal(0.0, amount, 3).astype(_F), 0, 255)


def _mix(rng: np.random.Generator, a, b) -> np.ndarray:
    t = rng.random()
    return (np.asarray(a, dtype=_F) * (1 - t) + np.asarray(b, dtype=_F) * t).astype(_F)


def _dots(field: np.ndarray, mask: np.ndarray, axis: np.ndarray, xs, ys, radii, mask_scale: float) -> None:
    """Draw soft discs (value 1 at the centre) into ``field`` by maximum, and discs of radius
    ``mask_scale * r`` into the boolean ``mask``; each disc touches only its bounding box."""
    res = len(axis)
    for x0, y0, r in zip(xs, ys, radii):
        ext = r * max(mask_scale, 1.2) + 2.0 / res
        r0, r1 = np.searchsorted(axis, [y0 - ext, y0 + ext])
        c0, c1 = np.searchsorted(axis, [x0 - ext, x0 + ext])
        if r1 <= r0 or c1 <= c0:
            continue
        d = np.sqrt((axis[c0:c1][None, :] - x0) ** 2 + (axis[r0:r1][:, None] - y0) ** 2)
        v = _smoothstep((r - d) / (0.45 * r) + 0.5)
        np.maximum(field[r0:r1, c0:c1], v, out=field[r0:r1, c0:c1])
        mask[r0:r1, c0:c1] |= d < r * mask_scale


def _curve(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, half_width: float,
           span: float = 1.6, curl: float = 0.35, wiggle: float = 0.03, through=None) -> np.ndarray:
    """Soft intensity (0..1) of a thin curved line v = f(u) in a randomly rotated frame."""
    psi = rng.uniform(0, np.pi)
    cs, sn = np.float32(np.cos(psi)), np.float32(np.sin(psi))
    u = x * cs + y * sn
    v = -x * sn + y * cs
    if through is None:
        off = rng.uniform(-0.9, 0.9)
        u_mid = 0.0
    else:  # pass near a given point
        u_mid = through[0] * cs + through[1] * sn
        off = -through[0] * sn + through[1] * cs
    c1 = rng.normal(0, 0.25)
    c2 = rng.normal(0, curl)
    amp, om, ph = rng.normal(0, wiggle), rng.uniform(2, 7), rng.uniform(0, 2 * np.pi)
    t = u - np.float32(u_mid)
    f = off + c1 * t + c2 * t * t + amp * np.sin(om * t + ph)
    df = c1 + 2 * c2 * t + amp * om * np.cos(om * t + ph)
    dist = np.abs(v - f) / np.sqrt(1.0 + df * df)
    line = np.clip(1.0 - dist / half_width, 0.0, 1.0)
    # the line may start and/or stop inside the picture
    a = rng.uniform(-span, -span * 0.2) if rng.random() < 0.5 else -9.0
    b = rng.uniform(span * 0.2, span) if rng.random() < 0.5 else 9.0
    line *= _smoothstep((t - a) / 0.05) * _smoothstep((b - t) / 0.05)
    return line.astype(_F)


@lru_cache(maxsize=1)
def _cell_jitter() -> np.ndarray:
    """Fixed table of feature-point offsets per cell for the cellular mesh (indexed modulo 64)."""
    j = np.random.default_rng(20240607).uniform(0.12, 0.88, (2, 64 * 64)).astype(_F)
    j.setflags(write=False)
    return j


def _mesh(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, rows: slice, cols: slice, res: int,
          spacing: float, half_width: float, warp: float, width_var: float) -> np.ndarray:
    """A reticular mesh: the borders of irregular polygonal cells (cellular noise with one random
    feature point per cell of a square lattice, lattice randomly shifted and rotated, then warped)."""
    psi = rng.uniform(0, np.pi / 2)
    cs, sn = np.float32(np.cos(psi)), np.float32(np.sin(psi))
    w = _noise(rng, res, 7, 3, rows, cols)
    shift = rng.uniform(0, 64, 2).astype(_F)
    u = (x * cs + y * sn) / _F(spacing) + warp * w[0] + shift[0]
    v = (-x * sn + y * cs) / _F(spacing) + warp * w[1] + shift[1]
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    iu, iv = iu.astype(np.int32), iv.astype(np.int32)
    jx, jy = _cell_jitter()
    f1 = np.full(u.shape, 9.0, _F)
    f2 = np.full(u.shape, 9.0, _F)
    for di in (-1, 0, 1):
        ku = ((iu + di) & 63) << 6
        gx = fu - _F(di)
        for dj in (-1, 0, 1):
            kk = ku | ((iv + dj) & 63)
            d2 = np.square(jx.take(kk) - gx)
            d2 += np.square(jy.take(kk) - (fv - _F(dj)))
            np.minimum(f2, np.maximum(f1, d2), out=f2)
            np.minimum(f1, d2, out=f1)
    dist = (np.sqrt(f2) - np.sqrt(f1)) * _F(0.5 * spacing)  # ~ distance to the nearest cell border
    hw = _F(half_width) * np.clip(1.0 + width_var * w[2], 0.4, 2.5)
    return np.clip(1.0 - dist / hw, 0.0, 1.0).astype(_F)


# --- per-class appearance -----------------------------------------------------------------------
def _style(label: int, rng: np.random.Generator) -> dict:
    """Random appearance parameters of one lesion of the given phantom class."""
    s: dict = {}
    if label == _NEVUS:
        s.update(radius=rng.uniform(0.3, 0.42), irregular=rng.uniform(0.01, 0.035), harmonics=4,
                 aspect=rng.uniform(1.0, 1.2), edge=rng.uniform(0.12, 0.25), opacity=rng.uniform(0.88, 1.0),
                 base=_jitter(rng, _mix(rng, (178, 124, 86), (126, 80, 54)), 6),
                 centre_dark=rng.uniform(0.05, 0.2), patch_cells=5,
                 patches=[(_jitter(rng, (105, 66, 46), 5), 0.3, 0.25)])
        if rng.random() < 0.9:
            s["network"] = dict(spacing=rng.uniform(0.085, 0.11), half_width=rng.uniform(0.012, 0.016),
                                warp=rng.uniform(0.1, 0.2), width_var=0.15, strength=rng.uniform(0.35, 0.55),
                                colour=(88, 55, 38), coverage=1.0, fade=0.8)
        if rng.random() < 0.3:
            k = int(rng.integers(3, 10))
            s["globules"] = dict(n=k, r=(0.024, 0.034), where=(0.0, 0.6), colour=(92, 58, 40), strength=0.8)
    elif label == _MELANOMA:
        s.update(radius=rng.uniform(0.46, 0.64), irregular=rng.uniform(0.06, 0.12), harmonics=7,
                 aspect=rng.uniform(1.0, 1.4), edge=rng.uniform(0.03, 0.12), opacity=1.0,
                 base=_jitter(rng, _mix(rng, (112, 70, 48), (84, 52, 38)), 6),
                 centre_dark=rng.uniform(-0.1, 0.15), patch_cells=8,
                 patches=[(_jitter(rng, (42, 30, 30), 4), rng.uniform(0.25, 0.45), 0.85),
                          (_jitter(rng, (104, 114, 140), 6), rng.uniform(0.15, 0.35), 0.8)])
        if rng.random() < 0.35:
            s["patches"].append((_jitter(rng, (176, 96, 96), 6), 0.12, 0.6))
        if rng.random() < 0.4:
            s["patches"].append((_jitter(rng, (210, 200, 200), 5), 0.1, 0.75))
        if rng.random() < 0.55:
            s["network"] = dict(spacing=rng.uniform(0.09, 0.14), half_width=rng.uniform(0.016, 0.024),
                                warp=rng.uniform(0.3, 0.5), width_var=0.5, strength=rng.uniform(0.55, 0.8),
                                colour=(38, 26, 24), coverage=rng.uniform(0.35, 0.6), fade=1.0)
        if rng.random() < 0.85:
            s["streaks"] = dict(n=int(rng.integers(18, 34)), sectors=int(rng.integers(1, 4)),
                                half_width=rng.uniform(0.018, 0.026), colour=(40, 28, 26), strength=0.85)
        if rng.random() < 0.75:
            s["globules"] = dict(n=int(rng.integers(6, 22)), r=(0.022, 0.06), where=(0.35, 0.92),
                                 colour=(40, 28, 28), strength=0.85)
    elif label == _KERATOSIS:
        s.update(radius=rng.uniform(0.36, 0.52), irregular=rng.uniform(0.03, 0.07), harmonics=5,
                 aspect=rng.uniform(1.0, 1.35), edge=rng.uniform(0.03, 0.08), opacity=rng.uniform(0.9, 1.0),
                 base=_jitter(rng, _mix(rng, (184, 140, 100), (150, 106, 72)), 7),
                 centre_dark=rng.uniform(-0.05, 0.05), patch_cells=7,
                 patches=[(_jitter(rng, (200, 165, 125), 6), 0.35, 0.4),
                          (_jitter(rng, (128, 92, 64), 6), 0.25, 0.35)],
                 ridges=dict(freq=rng.uniform(14, 22), warp=rng.uniform(3.0, 5.0), depth=rng.uniform(0.1, 0.16)))
        if rng.random() < 0.92:
            s["milia"] = dict(n=int(rng.integers(3, 14)), r=(0.024, 0.045), where=(0.0, 0.85),
                              colour=(242, 236, 206), strength=0.9)
        if rng.random() < 0.5:  # comedo-like openings: drawn, not recorded
            s["comedo"] = dict(n=int(rng.integers(2, 7)), r=(0.018, 0.03), colour=(96, 70, 48))
    elif label == _BCC:
        s.update(radius=rng.uniform(0.32, 0.5), irregular=rng.uniform(0.03, 0.08), harmonics=5,
                 aspect=rng.uniform(1.0, 1.35), edge=rng.uniform(0.08, 0.2), opacity=rng.uniform(0.72, 0.88),
                 base=_jitter(rng, _mix(rng, (214, 150, 152), (182, 150, 162)), 6),
                 centre_dark=rng.uniform(-0.05, 0.05), patch_cells=7,
                 patches=[(_jitter(rng, (232, 214, 214), 5), 0.2, 0.5)])
        if rng.random() < 0.7:
            s["ovoids"] = dict(n=int(rng.integers(1, 5)), r=(0.05, 0.1), colour=(98, 108, 128))
        if rng.random() < 0.9:
            s["vessels"] = dict(n=int(rng.integers(2, 6)), colour=(172, 36, 48))
        if rng.random() < 0.7:
            s["negative"] = dict(spacing=rng.uniform(0.12, 0.16), half_width=rng.uniform(0.018, 0.024),
                                 warp=rng.uniform(0.15, 0.3), width_var=0.25, strength=rng.uniform(0.5, 0.7),
                                 colour=(238, 218, 212), coverage=rng.uniform(0.6, 1.0), fade=0.9)
    else:  # pragma: no cover - validated by the caller
        raise DataError(f"unknown phantom class {label}")
    return s


# --- rendering ----------------------------------------------------------------------------------
def render_phantom(label: int, rng: np.random.Generator, size: int, hairs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one phantom image of class ``label`` (an index into :data:`PHANTOM_CLASSES`).

    ``hairs`` is the probability that the image carries hairs. Returns ``(image, lesion_mask,
    attribute_masks)``: uint8 (size, size, 3), uint8 (size, size) in {0, 1} and uint8
    (5, size, size) in {0, 1} in :data:`~dermsynth.data.dataset.ATTRIBUTES` order (always inside the
    lesion mask). All randomness comes from ``rng``.
    """
    if isinstance(label, bool) or int(label) != label or not 0 <= label < len(PHANTOM_CLASSES):
        raise DataError(f"phantom label must be an integer in 0..{len(PHANTOM_CLASSES) - 1}, got {label!r}")
    if isinstance(size, bool) or int(size) != size or size < 16:
        raise DataError(f"phantom image size must be an integer >= 16, got {size!r}")
    try:
        ok = 0.0 <= float(hairs) <= 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"hairs is a probability in [0, 1], got {hairs!r}")
    label, size, hairs = int(label), int(size), float(hairs)
    ss = 2 if size <= 160 else 1  # supersampling factor (the reduction below assumes 1 or 2)
    res = size * ss
    x_full, y_full = _grid(res)
    axis = _axis(res)
    st = _style(label, rng)

    # skin: tone varying per image, smooth texture at two scales, a little redness
    tone = rng.random() ** 1.3
    skin = (np.array((238, 206, 186), _F) * _F(1 - tone) + np.array((172, 120, 90), _F) * _F(tone)
            + rng.normal(0, 5, 3).astype(_F) + np.array((8, -4, -4), _F) * _F(rng.random()))
    tex = _noise(rng, size, min(24, max(8, size // 3)), 1)[0] * _F(rng.uniform(0.02, 0.035))
    tex += _noise(rng, size, 6, 1)[0] * _F(rng.uniform(0.012, 0.03))
    small = (1.0 + tex)[..., None] * skin
    blotch = _smoothstep(_noise(rng, size, 5, 1)[0] - 0.3) * _F(rng.uniform(0.0, 0.25))
    _lerp(small, (205, 120, 115), blotch)
    # the skin is smooth: made at the target size and repeated up to the rendering size
    img = small if ss == 1 else np.repeat(np.repeat(small, ss, axis=0), ss, axis=1)

    # lesion geometry: jittered centre, rotated ellipse (area-preserving aspect), radius modulated
    # by random Fourier harmonics
    rot = rng.uniform(0, 2 * np.pi)
    sq = np.sqrt(st["aspect"])
    k = np.arange(2, 2 + st["harmonics"])
    amps = rng.normal(0, 1, len(k)) / k ** 0.9
    amps *= st["irregular"] / (np.sqrt(np.sum(amps ** 2)) + 1e-9) * np.sqrt(len(k)) * 0.7
    phases = rng.uniform(0, 2 * np.pi, len(k))
    reach = 1.0 + np.abs(amps).sum()
    r0 = min(st["radius"], 0.82 / (reach * sq))
    lim = max(0.0, 0.86 - r0 * reach * sq)
    cx, cy = np.clip(rng.normal(0, 0.08, 2), -min(0.15, lim), min(0.15, lim))

    # everything about the lesion is computed in its bounding box only
    ext = r0 * reach * sq * 1.25 + 0.04  # streaks reach 1.14 lesion radii
    r_lo, r_hi = np.searchsorted(axis, [cy - ext, cy + ext])
    c_lo, c_hi = np.searchsorted(axis, [cx - ext, cx + ext])
    rows, cols = slice(int(r_lo), int(r_hi)), slice(int(c_lo), int(c_hi))
    box = (rows, cols)
    x, y = x_full[box], y_full[box]
    sub = img[box]  # a view: drawing into it draws into the image
    cr, sr = np.float32(np.cos(rot)), np.float32(np.sin(rot))
    dx, dy = x - _F(cx), y - _F(cy)
    u = (dx * cr + dy * sr) * _F(1 / sq)
    v = (-dx * sr + dy * cr) * _F(sq)
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    rad = np.ones_like(theta)
    for kk, a, p in zip(k, amps, phases):
        rad += _F(a) * np.cos(_F(kk) * theta + _F(p))
    rad = np.maximum(rad, 0.5) * _F(r0)
    dn = rho / rad  # normalised radius: < 1 inside the lesion
    body = dn < 1.0
    edge = st["edge"]
    alpha = _smoothstep((1.0 + edge / 2 - dn) / edge)

    def to_xy(frac: np.ndarray, ang: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points at a fraction of the lesion radius along given angles, in image coordinates."""
        rr = r0 * np.maximum(1.0 + sum(a * np.cos(kk * ang + p) for kk, a, p in zip(k, amps, phases)), 0.5)
        uu, vv = frac * rr * np.cos(ang) * sq, frac * rr * np.sin(ang) / sq
        return cx + uu * np.cos(rot) - vv * np.sin(rot), cy + uu * np.sin(rot) + vv * np.cos(rot)

    # lesion colour: base, darker/lighter centre, smooth colour patches, fine texture; pigmented
    # classes are kept clearly darker than the surrounding skin (bcc stand-ins may be lighter)
    dim = 1.0 if label == _BCC else min(1.0, 0.82 * float(skin.mean()) / float(st["base"].mean()))
    lf = (1.0 - _F(st["centre_dark"]) * np.clip(1.0 - dn, 0, 1))[..., None] * (st["base"] * _F(dim))
    patches = [(colour * _F(dim), coverage, strength) for colour, coverage, strength in st["patches"]]
    pn = _noise(rng, res, st["patch_cells"], len(patches), rows, cols)
    for (colour, coverage, strength), field in zip(patches, pn):
        thr = np.quantile(field[body], 1.0 - coverage) if body.any() else 0.0
        _lerp(lf, colour, _smoothstep((field - thr) / 0.6 + 0.5) * _F(strength))
    lf *= (1.0 + _noise(rng, res, min(32, max(8, res // 6)), 1, rows, cols)[0] * _F(0.045))[..., None]
    if "ridges" in st:  # cerebriform ridges and fissures of the keratosis: strongly warped bands
        p = st["ridges"]
        w = _noise(rng, res, 10, 2, rows, cols)
        band = np.sin(_F(p["freq"]) * u + _F(p["warp"]) * w[0]) * _F(0.7) + np.sin(w[1] * _F(3.0)) * _F(0.3)
        lf *= (1.0 + _F(p["depth"]) * band)[..., None]
    _lerp(sub, lf, alpha * _F(st["opacity"]))

    attrs = np.zeros((len(ATTRIBUTES), res, res), dtype=bool)
    lesion = np.zeros((res, res), dtype=bool)
    lesion[box] = body
    inner = _smoothstep((1.0 - dn) / 0.12)  # patterns fade out at the border

    for key, idx in (("network", _A_NET), ("negative", _A_NEG)):
        if key not in st:
            continue
        p = st[key]
        line = _mesh(rng, x, y, rows, cols, res, p["spacing"], p["half_width"], p["warp"], p["width_var"])
        if p["coverage"] < 1.0:
            f = _noise(rng, res, 5, 1, rows, cols)[0]
            thr = np.quantile(f[body], 1.0 - p["coverage"]) if body.any() else 0.0
            region = _smoothstep((f - thr) / 0.5 + 0.5)
        else:
            region = np.ones_like(dn)
        region *= _smoothstep((p["fade"] + 0.1 - dn) / 0.2)
        region *= inner
        if key == "negative":  # darker holes between the light lines
            sub *= (1.0 - 0.12 * region * (1.0 - line) * alpha)[..., None]
        _lerp(sub, p["colour"], line * region * _F(p["strength"]))
        attrs[idx][box] = (region > 0.5) & body

    if "streaks" in st:  # radial lines at the periphery, in one to three angular sectors
        p = st["streaks"]
        m = p["n"]
        step = 2 * np.pi / m
        phi0 = rng.uniform(0, step)
        jit = rng.uniform(-0.2, 0.2, m).astype(_F)
        start = rng.uniform(0.62, 0.8, m).astype(_F)
        stop = rng.uniform(1.03, 1.14, m).astype(_F)
        on = rng.random(m) < 0.85
        centres = rng.uniform(0, 2 * np.pi, p["sectors"])
        width = rng.uniform(0.6, 1.3, p["sectors"])
        t = (theta - _F(phi0)) / _F(step)
        near = np.round(t)
        idx = near.astype(np.int64) % m
        dist = np.abs(t - near - jit[idx]) * _F(step) * rho
        sect = np.zeros(theta.shape, dtype=bool)
        for c, wd in zip(centres, width):
            sect |= np.cos(theta - _F(c)) > np.cos(wd)
        s0, s1 = start[idx], stop[idx]
        band = (dn >= s0) & (dn <= s1) & on[idx] & sect
        hw = _F(p["half_width"]) * (1.0 - 0.6 * np.clip((dn - s0) / (s1 - s0), 0, 1))
        line = np.clip(1.0 - dist / hw, 0, 1) * band
        _lerp(sub, p["colour"], line * _F(p["strength"]))
        region = band & (dist < 1.8 * hw)
        attrs[_A_STREAKS][box] = region
        lesion[box] |= region

    for key, idx in (("globules", _A_GLOB), ("milia", _A_MILIA), ("comedo", None)):
        if key not in st:
            continue
        p = st[key]
        n = p["n"]
        lo, hi = p.get("where", (0.0, 0.8))
        frac = np.sqrt(rng.uniform((lo / hi) ** 2, 1, n)) * hi
        px, py = to_xy(frac, rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(*p["r"], n)
        field = np.zeros((res, res), _F)
        dmask = np.zeros((res, res), dtype=bool)
        _dots(field, dmask, axis, px, py, radii, 1.35)
        if key == "milia":  # a soft whitish halo, then the bright core
            halo = np.zeros((res, res), _F)
            _dots(halo, np.zeros((res, res), dtype=bool), axis, px, py, radii * 1.8, 1.0)
            _lerp(img, (225, 205, 180), halo * _F(0.35))
        _lerp(img, p["colour"], field * _F(p.get("strength", 0.8)))
        if idx is not None:
            attrs[idx] = dmask & lesion

    if "ovoids" in st:  # blue-grey ovoid blobs (bcc), not recorded
        p = st["ovoids"]
        n = p["n"]
        px, py = to_xy(rng.uniform(0.1, 0.7, n), rng.uniform(0, 2 * np.pi, n))
        field = np.zeros((res, res), _F)
        _dots(field, np.zeros((res, res), dtype=bool), axis, px, py, rng.uniform(*p["r"], n), 1.0)
        _lerp(sub, p["colour"], field[box] * _F(0.7) * alpha)
    if "vessels" in st:  # red arborising vessels (bcc), inside the lesion, not recorded
        p = st["vessels"]
        ves = np.zeros(x.shape, _F)
        for _ in range(p["n"]):
            tx, ty = to_xy(rng.uniform(0.0, 0.6, 1), rng.uniform(0, 2 * np.pi, 1))
            ves = np.maximum(ves, _curve(rng, x, y, rng.uniform(0.008, 0.014), span=0.5, curl=1.2,
                                         wiggle=0.05, through=(tx[0], ty[0])))
        _lerp(sub, p["colour"], ves * _F(0.85) * alpha)

    # hairs: thin dark curved lines crossing the picture (not part of any mask)
    # (drawn from their own generator, so that the hairs setting changes nothing else)
    hair_rng = np.random.default_rng(int(rng.integers(2 ** 63)))
    if rng.random() < hairs:
        colour = _jitter(hair_rng, _mix(hair_rng, (26, 18, 14), (74, 54, 40)), 4)
        hair = np.zeros((res, res), _F)
        for _ in range(1 + min(int(hair_rng.poisson(2.0)), 7)):
            hair = np.maximum(hair, _curve(hair_rng, x_full, y_full, hair_rng.uniform(0.008, 0.016)))
        _lerp(img, colour, hair * _F(hair_rng.uniform(0.75, 0.95)))

    # reduce to the target size by area averaging
    if ss > 1:
        img = (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]) * _F(0.25)
        lesion = (lesion[0::2, 0::2].view(np.uint8) + lesion[1::2, 0::2] + lesion[0::2, 1::2]
                  + lesion[1::2, 1::2]) > 2
        attrs = (attrs[:, 0::2, 0::2].view(np.uint8) + attrs[:, 1::2, 0::2] + attrs[:, 0::2, 1::2]
                 + attrs[:, 1::2, 1::2]) >= 2

    # dermoscope field (smooth, so applied at the target size): dark circular vignette (sometimes
    # only the corners), uneven illumination; then a little sensor noise
    xs, ys = _grid(size)
    vr = rng.uniform(0.9, 1.05) if rng.random() < 0.7 else rng.uniform(1.2, 1.4)
    vx, vy = rng.normal(0, 0.03, 2)
    soft = rng.uniform(0.05, 0.12)
    rv = np.sqrt((xs - _F(vx)) ** 2 + (ys - _F(vy)) ** 2)
    light = 1.0 - _F(rng.uniform(0.1, 0.3)) * (rv / _F(vr)) ** 2
    light += _F(rng.normal(0, 0.04)) * xs + _F(rng.normal(0, 0.04)) * ys
    floor = _F(rng.uniform(0.02, 0.08))
    light *= floor + (1 - floor) * _smoothstep((_F(vr) - rv) / _F(soft) + 0.5)
    img *= light[..., None]
    img += rng.standard_normal(img.shape, dtype=_F) * _F(1.5)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    attrs &= lesion[None]
    return out, lesion.astype(np.uint8), attrs.astype(np.uint8)


# --- dataset ------------------------------------------------------------------------------------
def generate_phantom(n: int = 512, size: int = DEFAULT_SIZE, seed: int = 0, class_probs: Sequence[float] | None = None,
                     classes: Sequence[str] | None = None, hairs: float = 0.3) -> LesionDataset:
    """A :class:`LesionDataset` of ``n`` procedural phantom images (not clinical, see module docs).

    ``classes`` picks (and orders) a subset of :data:`PHANTOM_CLASSES` (default: all); labels index
    into it and are drawn per image from ``class_probs`` (non-negative weights, normalised; default
    uniform). ``hairs`` is the probability that an image carries hairs. Image ``i`` uses
    ``np.random.default_rng([seed, i])`` only, so output is deterministic and the first ``m`` images
    of a longer set equal a shorter set made with the same other arguments.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise DataError(f"phantom count n must be an integer >= 1, got {n!r}")
    if isinstance(size, bool) or int(size) != size or size < 16:
        raise DataError(f"phantom image size must be an integer >= 16, got {size!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise DataError(f"phantom seed must be a non-negative integer, got {seed!r}")
    try:
        hairs = float(hairs)
    except (TypeError, ValueError):
        raise DataError(f"hairs is a probability in [0, 1], got {hairs!r}") from None
    if not 0.0 <= hairs <= 1.0:
        raise DataError(f"hairs is a probability in [0, 1], got {hairs!r}")
    n, size, seed = int(n), int(size), int(seed)

    names = list(PHANTOM_CLASSES) if classes is None else [str(c).lower() for c in classes]
    if not names:
        raise DataError("phantom classes must name at least one class")
    unknown = [c for c in names if c not in PHANTOM_CLASSES]
    if unknown:
        raise DataError(f"unknown phantom class(es) {', '.join(map(repr, unknown))}; "
                        f"choose from {', '.join(PHANTOM_CLASSES)}")
    if len(set(names)) != len(names):
        raise DataError(f"phantom classes must not repeat, got {', '.join(names)}")
    codes = [PHANTOM_CLASSES.index(c) for c in names]

    if class_probs is None:
        probs = np.full(len(names), 1.0 / len(names))
    else:
        try:
            probs = np.asarray(class_probs, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"class_probs must be numbers, got {class_probs!r}") from None
        if len(probs) != len(names):
            raise DataError(f"class_probs has {len(probs)} entries but there are {len(names)} classes "
                            f"({', '.join(names)})")
        if not np.all(np.isfinite(probs)) or np.any(probs < 0) or probs.sum() <= 0:
            raise DataError(f"class_probs must be finite, non-negative and not all zero, got {list(probs)}")
        probs = probs / probs.sum()

    require_memory(size * size * (n * (4 + len(ATTRIBUTES)) + _RENDER_BYTES_PER_PIXEL),
                   f"rendering {n} phantom images at {size}x{size} px", f"--size {size}")
    with _single_threaded_blas():  # the small matrix products only lose from BLAS threads
        return _generate(n, size, seed, names, codes, probs, hairs)


def _generate(n: int, size: int, seed: int, names: list[str], codes: list[int], probs: np.ndarray,
              hairs: float) -> LesionDataset:
    cum = np.cumsum(probs)
    cum[-1] = 1.0
    images = np.empty((n, size, size, 3), np.uint8)
    lesion_masks = np.empty((n, size, size), np.uint8)
    attribute_masks = np.empty((n, len(ATTRIBUTES), size, size), np.uint8)
    labels = np.empty(n, np.int64)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        lab = int(np.searchsorted(cum, rng.random(), side="right"))
        lab = min(lab, len(names) - 1)
        while probs[lab] == 0:  # guard against a draw landing on a zero-width bin edge
            lab -= 1 if lab > 0 else -1
        labels[i] = lab
        images[i], lesion_masks[i], attribute_masks[i] = render_phantom(codes[lab], rng, size, hairs)
    ids = [f"phantom_{seed}_{i:06d}" for i in range(n)]
    return LesionDataset(images=images, labels=labels, class_names=names, ids=ids, groups=list(ids),
                         lesion_masks=lesion_masks, attribute_masks=attribute_masks,
                         attribute_names=list(ATTRIBUTES), source="phantom")
