"""Discriminator augmentation for any GAN: the ADA pipeline, its adaptive probability, and DiffAugment.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (StyleGAN2-ADA): every image
the discriminator sees -- real and generated, in D's and G's losses and in the penalties -- passes through
one differentiable pipeline, so G is never pushed to reproduce the augmentations ("non-leaking" as long as
p < ~0.8). Each transform is applied to each image independently with probability ``p`` (times the
transform's strength). The transforms, their magnitudes, their order and the named pipes (``--augment-pipe``:
blit, geom, color, filter, noise, cutout, bg, bgc (default, as the reference's ``--augpipe``), bgcf, bgcfn,
bgcfnc) are the reference's (``training/augment.py`` of NVlabs/stylegan2-ada-pytorch):

* pixel blitting: x-flip, 90 degree rotations, integer translation (uniform, up to 0.125 of the side);
* geometric: isotropic scaling (log2-normal, std 0.2), arbitrary rotation (uniform, applied before and after
  the anisotropic scaling, each with probability ``1 - sqrt(1 - p)`` so that "rotated at all" has
  probability p), anisotropic scaling (log2-normal, std 0.2), fractional translation (normal, std 0.125 of
  the side);
* colour, as 4x4 matrices on homogeneous RGB in [-1, 1]: brightness (additive N(0, 0.2)), contrast
  (log2-normal, std 0.5), luma flip (Householder reflection about the luma axis), hue rotation (uniform
  around the luma axis), saturation (log2-normal, std 1);
* image-space filtering: four frequency bands (a sym2 wavelet filter bank) each amplified log2-normally (std
  1), the expected power kept; needs images larger than 21 px;
* additive RGB noise (per-image sigma = |N(0, 0.1)|) and cutout (a square of half the side, set to 0).

All blits and geometric transforms are executed at once as the reference does: reflection padding wide enough
for the transformed corners, 2x upsampling through the sym6 wavelet low-pass filter, bilinear resampling and
an anti-aliased 2x downsampling. (A consequence the reference shares: sym6 is not linear-phase, so an x-flip
is a flip plus a shift of about 0.1 pixel, not a pixel-exact mirror.) Random draws are made in the
reference's order and shapes: with the same RNG state the output equals the reference's to float rounding
(``benchmarks/ada_reference_parity.py``, max 2.4e-6 for bgcfnc). Plain torch, CPU and GPU, float32 inside any
bf16 autocast (the result is cast back to the input's dtype).

:class:`Augmentation` holds the mode (``none | ada | fixed | diffaugment``), the probability ``p`` (a device
tensor, so nothing syncs the host) and, for ADA, the controller: every ``interval`` (4) D steps,
``r_t = E[sign(D(real))]`` over those steps, and ``p += sign(r_t - target) * images / (ada_kimg * 1000)``,
clamped to [0, 1] -- p can go from 0 to 1 in ``ada_kimg`` (500) thousand real images. Its state (p and the
accumulator) is part of the step's checkpoint, so a resume continues with the same p.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training", policy
"color,translation,cutout") is applied to every image with no probability: brightness U(-0.5, 0.5),
saturation x U(0, 2), contrast x U(0.5, 1.5), integer translation up to 1/8 of the side with zero fill, and a
cutout of half the side.

Randomness comes from a ``draw(kind, *shape)`` callable (``kind`` "normal" or "uniform"); the training steps
pass one that draws from their checkpointed generator, so runs resume bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dermsynth.errors import DermsynthError
from dermsynth.models.stylegan2 import upfirdn2d

Draw = Callable[..., torch.Tensor]

#: the ``--augment`` choices
AUGMENT_MODES: tuple[str, ...] = ("none", "ada", "fixed", "diffaugment")


def torch_draw(device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Draw:
    """A ``draw(kind, *shape)`` from torch's RNG (or ``generator``) on ``device``."""
    def draw(kind: str, *shape: int) -> torch.Tensor:
        fn = torch.randn if kind == "normal" else torch.rand
        return fn(*shape, device=device, generator=generator)
    return draw


@dataclass(frozen=True)
class AugmentSpec:
    """Per-transform strengths (multipliers of p; 0 disables) and magnitudes; defaults: the reference's ``bgc``
    pipe (blit + geometric + colour) with its magnitudes."""

    xflip: float = 1.0
    rotate90: float = 1.0
    xint: float = 1.0
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    xfrac: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    lumaflip: float = 1.0
    hue: float = 1.0
    saturation: float = 1.0
    imgfilter: float = 0.0
    noise: float = 0.0
    cutout: float = 0.0
    xint_max: float = 0.125
    scale_std: float = 0.2
    rotate_max: float = 1.0
    aniso_std: float = 0.2
    xfrac_std: float = 0.125
    brightness_std: float = 0.2
    contrast_std: float = 0.5
    hue_max: float = 1.0
    saturation_std: float = 1.0
    imgfilter_bands: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    imgfilter_std: float = 1.0
    noise_std: float = 0.1
    cutout_size: float = 0.5

    @classmethod
    def only(cls, *names: str, **magnitudes: Any) -> "AugmentSpec":
        """A spec with only the named transforms on (strength 1), e.g. ``AugmentSpec.only("brightness")``."""
        unknown = set(names) - set(TRANSFORMS)
        if unknown:
            raise ValueError(f"unknown transforms {sorted(unknown)}; known: {', '.join(TRANSFORMS)}")
        return cls(**{k: float(k in names) for k in TRANSFORMS}, **magnitudes)

    @classmethod
    def pipe(cls, name: str) -> "AugmentSpec":
        """The reference's named pipe (``--augpipe``): blit, geom, color, filter, noise, cutout, bg, bgc, ..."""
        if name not in AUGMENT_PIPES:
            raise DermsynthError(f"unknown --augment-pipe {name!r}; choose from {', '.join(AUGMENT_PIPES)}")
        return cls.only(*AUGMENT_PIPES[name])


#: every transform, in the order the pipeline applies them
TRANSFORMS: tuple[str, ...] = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness",
                               "contrast", "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout")
_BLIT = ("xflip", "rotate90", "xint")
_GEOM = ("scale", "rotate", "aniso", "xfrac")
_COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
#: the reference's ``--augpipe`` choices (train.py of stylegan2-ada-pytorch); ``bgc`` is its default
AUGMENT_PIPES: dict[str, tuple[str, ...]] = {
    "blit": _BLIT, "geom": _GEOM, "color": _COLOR, "filter": ("imgfilter",), "noise": ("noise",),
    "cutout": ("cutout",), "bg": _BLIT + _GEOM, "bgc": _BLIT + _GEOM + _COLOR,
    "bgcf": _BLIT + _GEOM + _COLOR + ("imgfilter",), "bgcfn": _BLIT + _GEOM + _COLOR + ("imgfilter", "noise"),
    "bgcfnc": _BLIT + _GEOM + _COLOR + ("imgfilter", "noise", "cutout"),
}

# Daubechies symlet filters (PyWavelets' values, as the reference lists them): sym6 is the low-pass filter of
# the 2x supersampling around the geometric transforms, sym2 builds the image-space filter bank.
_SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
_SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
         0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252, -0.021060292512300564,
         0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
_GEOM_FILTER = torch.tensor(_SYM6, dtype=torch.float64)
_GEOM_FILTER = (_GEOM_FILTER / _GEOM_FILTER.sum()).float()  # normalised to unit DC gain, as setup_filter does
#: the expected power spectrum (1/f) of the four filter bands
_BAND_POWER = torch.tensor([10.0, 1.0, 1.0, 1.0]) / 13


def _filter_bank() -> torch.Tensor:
    """The reference's 4-band filter bank (4, taps): band 0 low-pass, 1-3 successive octaves of high-pass."""
    lo = np.asarray(_SYM2)
    hi = lo * ((-1) ** np.arange(lo.size))
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(4, 1)
    for i in range(1, bank.shape[0]):
        bank = np.dstack([bank, np.zeros_like(bank)]).reshape(bank.shape[0], -1)[:, :-1]
        bank = np.stack([np.convolve(row, lo2) for row in bank])
        bank[i, (bank.shape[1] - hi2.size) // 2:(bank.shape[1] + hi2.size) // 2] += hi2
    return torch.as_tensor(bank, dtype=torch.float32)


_FILTER_BANK = _filter_bank()


# --- 2D (3x3) and colour (4x4) matrices, batched; the *_inv forms are the reference's ---------------------------

def _eye(n: int, size: int, device: torch.device) -> torch.Tensor:
    return torch.eye(size, device=device).repeat(n, 1, 1)


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(sx.shape[0], 3, sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(tx.shape[0], 3, tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _rotate2d(theta: torch.Tensor) -> torch.Tensor:
    m = _eye(theta.shape[0], 3, theta.device)
    c, s = theta.cos(), theta.sin()
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _scale2d_inv(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _scale2d(1 / sx, 1 / sy)


def _translate2d_inv(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _translate2d(-tx, -ty)


def _rotate2d_inv(theta: torch.Tensor) -> torch.Tensor:
    return _rotate2d(-theta)


_LUMA = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3.0)  # the luma axis in homogeneous RGB


def _rotate_luma(theta: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` about the luma axis (the reference's ``rotate3d``), as 4x4 matrices."""
    vx, vy, vz = _LUMA[:3].to(theta.device)
    s, c = theta.sin(), theta.cos()
    cc = 1 - c
    m = _eye(theta.shape[0], 4, theta.device)
    rows = ((vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s),
            (vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s),
            (vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            m[:, i, j] = value
    return m


def _where(mask: torch.Tensor, value: torch.Tensor, neutral: float) -> torch.Tensor:
    return torch.where(mask, value, torch.full_like(value, neutral))


def _resample(x: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """Apply output -> input pixel transforms ``G_inv`` (N, 3, 3; centred pixel coordinates) as the reference:
    reflection padding wide enough for every transformed corner, 2x upsampling through the sym6 low-pass filter,
    bilinear resampling (zeros outside), and anti-aliased 2x downsampling back to the input size."""
    n, c, h, w = x.shape
    dev = x.device
    cx, cy = (w - 1) / 2, (h - 1) / 2
    corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=dev)
    cp = G_inv @ corners.t()                                            # (N, 3, 4)
    pad = _GEOM_FILTER.numel() // 4
    margin = cp[:, :2, :].permute(1, 0, 2).flatten(1)                   # (2, N * 4)
    margin = torch.cat([-margin, margin]).max(dim=1).values             # x0, y0, x1, y1
    margin = margin + torch.tensor([pad * 2 - cx, pad * 2 - cy] * 2, device=dev)
    margin = margin.clamp(min=0).minimum(torch.tensor([w - 1, h - 1] * 2, device=dev, dtype=margin.dtype))
    mx0, my0, mx1, my1 = (int(v) for v in margin.ceil().tolist())      # one host sync, as the reference
    x = F.pad(x, [mx0, mx1, my0, my1], mode="reflect")
    G_inv = _translate2d(torch.full((n,), (mx0 - mx1) / 2, device=dev), torch.full((n,), (my0 - my1) / 2, device=dev)) @ G_inv
    f = _GEOM_FILTER.to(dev)
    taps = f.numel()
    x = upfirdn2d(x, f, up=2, pad=((taps + 1) // 2, taps // 2 - 1, (taps + 1) // 2, taps // 2 - 1), gain=4.0)
    two, half = torch.full((n,), 2.0, device=dev), torch.full((n,), -0.5, device=dev)
    G_inv = _scale2d(two, two) @ G_inv @ _scale2d_inv(two, two)
    G_inv = _translate2d(half, half) @ G_inv @ _translate2d_inv(half, half)
    shape = [n, c, (h + pad * 2) * 2, (w + pad * 2) * 2]
    G_inv = (_scale2d(torch.full((n,), 2 / x.shape[3], device=dev), torch.full((n,), 2 / x.shape[2], device=dev)) @ G_inv
             @ _scale2d_inv(torch.full((n,), 2 / shape[3], device=dev), torch.full((n,), 2 / shape[2], device=dev)))
    grid = F.affine_grid(G_inv[:, :2, :], shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    crop = -pad * 2
    return upfirdn2d(x, f, down=2, pad=(crop + (taps - 1) // 2, crop + (taps - 2) // 2,
                                        crop + (taps - 1) // 2, crop + (taps - 2) // 2), flip_filter=True)


# --- the ADA pipeline ------------------------------------------------------------------------------------------

def augment_images(images: torch.Tensor, p: torch.Tensor | float, draw: Draw,
                   spec: AugmentSpec = AugmentSpec()) -> torch.Tensor:
    """The ADA pipeline on (N, C, H, W) images in [-1, 1] with probability ``p`` per transform (see module).

    Random draws are made in the reference's order and shapes, so a ``draw`` on the same RNG reproduces the
    reference's augmentations. Differentiable with respect to ``images``; ``p = 0`` (a float) returns
    ``images`` itself, a zero tensor p gives the identity up to float rounding of the resampling.
    """
    if isinstance(p, (int, float)) and p == 0:
        return images
    n, c, h, w = images.shape
    dev = images.device
    with torch.autocast(dev.type, enabled=False):
        x = images.float()
        p = torch.as_tensor(p, dtype=torch.float32, device=dev)

        def chance(strength: float, *shape: int) -> torch.Tensor:
            return draw("uniform", n, *shape) < p * strength

        # Pixel blitting and general geometric transforms: G_inv maps output pixels (centred) to input ones.
        G_inv = _eye(n, 3, dev)
        if spec.xflip:
            i = torch.floor(draw("uniform", n) * 2)
            G_inv = G_inv @ _scale2d_inv(1 - 2 * _where(chance(spec.xflip), i, 0.0), torch.ones_like(i))
        if spec.rotate90:
            i = torch.floor(draw("uniform", n) * 4)
            G_inv = G_inv @ _rotate2d_inv(-math.pi / 2 * _where(chance(spec.rotate90), i, 0.0))
        if spec.xint:
            t = (draw("uniform", n, 2) * 2 - 1) * spec.xint_max
            t = torch.where(chance(spec.xint, 1), t, torch.zeros_like(t))
            G_inv = G_inv @ _translate2d_inv(torch.round(t[:, 0] * w), torch.round(t[:, 1] * h))
        if spec.scale:
            s = torch.exp2(draw("normal", n) * spec.scale_std)
            s = _where(chance(spec.scale), s, 1.0)
            G_inv = G_inv @ _scale2d_inv(s, s)
        p_rot = 1 - torch.sqrt((1 - spec.rotate * p).clamp(0, 1))  # P(pre or post rotation) = p
        if spec.rotate:
            theta = (draw("uniform", n) * 2 - 1) * math.pi * spec.rotate_max
            G_inv = G_inv @ _rotate2d_inv(-_where(draw("uniform", n) < p_rot, theta, 0.0))  # before aniso
        if spec.aniso:
            s = torch.exp2(draw("normal", n) * spec.aniso_std)
            s = _where(chance(spec.aniso), s, 1.0)
            G_inv = G_inv @ _scale2d_inv(s, 1 / s)
        if spec.rotate:
            theta = (draw("uniform", n) * 2 - 1) * math.pi * spec.rotate_max
            G_inv = G_inv @ _rotate2d_inv(-_where(draw("uniform", n) < p_rot, theta, 0.0))  # after aniso
        if spec.xfrac:
            t = draw("normal", n, 2) * spec.xfrac_std
            t = torch.where(chance(spec.xfrac, 1), t, torch.zeros_like(t))
            G_inv = G_inv @ _translate2d_inv(t[:, 0] * w, t[:, 1] * h)
        if any(getattr(spec, k) for k in _BLIT + _GEOM):
            x = _resample(x, G_inv)

        # Colour transforms: one 4x4 matrix per image on homogeneous RGB.
        if c == 3 and any(getattr(spec, k) for k in _COLOR):
            C = _eye(n, 4, dev)
            v = _LUMA.to(dev)
            vv = torch.outer(v, v)
            eye4 = torch.eye(4, device=dev)
            if spec.brightness:
                b = draw("normal", n) * spec.brightness_std
                C = _translate3d(_where(chance(spec.brightness), b, 0.0)) @ C
            if spec.contrast:
                k = torch.exp2(draw("normal", n) * spec.contrast_std)
                C = _scale3d(_where(chance(spec.contrast), k, 1.0)) @ C
            if spec.lumaflip:
                i = torch.floor(draw("uniform", n) * 2)
                C = (eye4 - 2 * vv * _where(chance(spec.lumaflip), i, 0.0)[:, None, None]) @ C
            if spec.hue:
                theta = (draw("uniform", n) * 2 - 1) * math.pi * spec.hue_max
                C = _rotate_luma(_where(chance(spec.hue), theta, 0.0)) @ C
            if spec.saturation:
                s = torch.exp2(draw("normal", n) * spec.saturation_std)
                C = (vv + (eye4 - vv) * _where(chance(spec.saturation), s, 1.0)[:, None, None]) @ C
            x = (C[:, :3, :3] @ x.reshape(n, 3, h * w) + C[:, :3, 3:]).reshape(n, 3, h, w)

        # Image-space filtering: each of 4 frequency bands amplified log2-normally, total power kept.
        if spec.imgfilter:
            bank = _FILTER_BANK.to(dev)
            if min(h, w) <= bank.shape[1] // 2:
                raise DermsynthError(f"the imgfilter augmentation (pipes with 'f') needs images larger than "
                                     f"{bank.shape[1] // 2} px (its filter bank has {bank.shape[1]} taps); got {h}x{w}")
            g = torch.ones(n, 4, device=dev)
            for i, band in enumerate(spec.imgfilter_bands):
                t_i = torch.exp2(draw("normal", n) * spec.imgfilter_std)
                t_i = _where(chance(spec.imgfilter * band), t_i, 1.0)
                t = torch.ones(n, 4, device=dev)
                t[:, i] = t_i
                t = t / (_BAND_POWER.to(dev) * t.square()).sum(dim=-1, keepdim=True).sqrt()  # keep the power
                g = g * t
            taps = (g @ bank).repeat_interleave(c, dim=0)[:, None]          # (N * C, 1, taps)
            half = bank.shape[1] // 2
            y = F.pad(x.reshape(1, n * c, h, w), [half] * 4, mode="reflect")
            y = F.conv2d(y, taps[:, :, None, :], groups=n * c)
            x = F.conv2d(y, taps[:, :, :, None], groups=n * c).reshape(n, c, h, w)

        if spec.noise:
            sigma = draw("normal", n, 1, 1, 1).abs() * spec.noise_std
            sigma = torch.where(chance(spec.noise, 1, 1, 1), sigma, torch.zeros_like(sigma))
            x = x + draw("normal", n, c, h, w) * sigma

        if spec.cutout:
            x = x * cutout_mask(n, h, w, _where(chance(spec.cutout), torch.full((n,), spec.cutout_size, device=dev),
                                                0.0), draw("uniform", n, 2))
    return x.to(images.dtype)


def _translate3d(b: torch.Tensor) -> torch.Tensor:
    m = _eye(b.shape[0], 4, b.device)
    m[:, :3, 3] = b[:, None]
    return m


def _scale3d(k: torch.Tensor) -> torch.Tensor:
    m = _eye(k.shape[0], 4, k.device)
    for i in range(3):
        m[:, i, i] = k
    return m


def cutout_mask(n: int, h: int, w: int, size: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) mask, 0 inside a square of side ``size`` (fraction of the side) centred at ``centre``
    ((N, 2) in [0, 1], x then y), 1 elsewhere."""
    dev = size.device
    xs = (torch.arange(w, device=dev) + 0.5) / w
    ys = (torch.arange(h, device=dev) + 0.5) / h
    out_x = (xs[None, :] - centre[:, :1]).abs() >= size[:, None] / 2          # (N, W)
    out_y = (ys[None, :] - centre[:, 1:]).abs() >= size[:, None] / 2          # (N, H)
    return (out_x[:, None, :] | out_y[:, :, None]).float()[:, None]


# --- DiffAugment -----------------------------------------------------------------------------------------------

def diff_augment(images: torch.Tensor, draw: Draw, translation: float = 0.125, cutout: float = 0.5) -> torch.Tensor:
    """DiffAugment "color,translation,cutout" (Zhao et al. 2020) on (N, 3, H, W) images in [-1, 1]."""
    n, _, h, w = images.shape
    dev = images.device
    with torch.autocast(dev.type, enabled=False):
        x = images.float()
        x = x + (draw("uniform", n, 1, 1, 1) - 0.5)                                     # brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (draw("uniform", n, 1, 1, 1) * 2) + mean                       # saturation
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (draw("uniform", n, 1, 1, 1) + 0.5) + mean                     # contrast
        # translation by whole pixels, zero fill (the reference pads by one zero pixel and clamps into it)
        sy, sx = int(h * translation + 0.5), int(w * translation + 0.5)
        ty = (torch.floor(draw("uniform", n) * (2 * sy + 1)) - sy).long()
        tx = (torch.floor(draw("uniform", n) * (2 * sx + 1)) - sx).long()
        rows = (torch.arange(h, device=dev)[None, :] + ty[:, None] + 1).clamp(0, h + 1)   # (N, H)
        cols = (torch.arange(w, device=dev)[None, :] + tx[:, None] + 1).clamp(0, w + 1)   # (N, W)
        padded = F.pad(x, [1, 1, 1, 1])
        batch = torch.arange(n, device=dev)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        # cutout: a square of side round(ratio * side), offset uniform over the image
        ch, cw = int(h * cutout + 0.5), int(w * cutout + 0.5)
        oy = torch.floor(draw("uniform", n) * (h + (1 - ch % 2))).long() - ch // 2
        ox = torch.floor(draw("uniform", n) * (w + (1 - cw % 2))).long() - cw // 2
        ar_y, ar_x = torch.arange(h, device=dev)[None, :], torch.arange(w, device=dev)[None, :]
        in_y = (ar_y >= oy[:, None]) & (ar_y < oy[:, None] + ch)
        in_x = (ar_x >= ox[:, None]) & (ar_x < ox[:, None] + cw)
        x = x * (~(in_y[:, :, None] & in_x[:, None, :])).float()[:, None]
    return x.to(images.dtype)


# --- the mode, p and the ADA controller --------------------------------------------------------------------------

class Augmentation:
    """What the discriminator sees under ``--augment MODE``, with p and (ADA) its controller.

    ``augmentation(images, draw)`` augments a batch; :meth:`observe` takes D's logits on the (augmented)
    reals of every D step and, in ``ada`` mode, adjusts p every ``interval`` steps. ``reduce`` averages a
    tensor over data-parallel ranks (so every rank adjusts p identically).
    """

    def __init__(self, mode: str, p: float = 0.0, target: float = 0.6, kimg: float = 500.0, interval: int = 4,
                 spec: AugmentSpec = AugmentSpec(), device: torch.device | str = "cpu",
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if mode not in AUGMENT_MODES:
            raise DermsynthError(f"unknown --augment {mode!r}; choose from {', '.join(AUGMENT_MODES)}")
        if not 0.0 <= p <= 1.0:
            raise DermsynthError(f"--augment-p must be in [0, 1], got {p}")
        if not 0.0 < target < 1.0:
            raise DermsynthError(f"--ada-target must be in (0, 1), got {target}")
        if not kimg > 0:
            raise DermsynthError(f"--ada-kimg must be > 0, got {kimg}")
        self.mode, self.target, self.kimg, self.interval, self.spec = mode, target, kimg, interval, spec
        self.reduce = reduce or (lambda t: t)
        self.p = torch.tensor(float(p), device=device)
        self._signs = torch.zeros(2, device=device)  # sum of sign(D(real)), number of logits
        self._images = 0                              # real images since the last adjustment
        self._steps = 0                               # D steps since the last adjustment

    def __call__(self, images: torch.Tensor, draw: Draw) -> torch.Tensor:
        if self.mode == "diffaugment":
            return diff_augment(images, draw)
        return augment_images(images, self.p, draw, self.spec)

    def observe(self, real_logits: torch.Tensor, global_batch: int) -> None:
        """ADA: accumulate sign(D(real)); every ``interval`` steps move p towards keeping r_t at the target."""
        if self.mode != "ada":
            return
        logits = real_logits.detach().float()
        self._signs += torch.stack([logits.sign().sum(), torch.tensor(float(logits.numel()), device=logits.device)])
        self._images += int(global_batch)
        self._steps += 1
        if self._steps % self.interval == 0:
            total = self.reduce(self._signs)
            r_t = total[0] / total[1]
            adjust = torch.sign(r_t - self.target) * self._images / (self.kimg * 1000)
            self.p = (self.p + adjust).clamp(0.0, 1.0)
            self._signs = torch.zeros_like(self._signs)
            self._images, self._steps = 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p.detach().cpu().clone(), "signs": self._signs.detach().cpu().clone(),
                "images": self._images, "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.p.device
        self.p = state["p"].to(device)
        self._signs = state["signs"].to(device)
        self._images, self._steps = int(state["images"]), int(state["steps"])


def augmentation_from_config(cfg: Any, device: torch.device | str = "cpu",
                             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Augmentation | None:
    """The :class:`Augmentation` a config's ``--augment`` options ask for (None for ``none``)."""
    mode = getattr(cfg, "augment", "none") or "none"
    if mode not in AUGMENT_MODES:
        raise DermsynthError(f"unknown --augment {mode!r}; choose from {', '.join(AUGMENT_MODES)}")
    pipe = getattr(cfg, "augment_pipe", "bgc") or "bgc"
    if mode in ("none", "diffaugment") and pipe != "bgc":
        raise DermsynthError(f"--augment-pipe {pipe} applies to --augment ada or fixed, not {mode}")
    if mode == "none":
        return None
    return Augmentation(mode, p=float(cfg.augment_p), target=float(cfg.ada_target), kimg=float(cfg.ada_kimg),
                        spec=AugmentSpec.pipe(pipe), device=device, reduce=reduce)
