"""Discriminator augmentation for any GAN: the ADA pipeline, its adaptive probability, and DiffAugment.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (StyleGAN2-ADA): every image
the discriminator sees -- real and generated, in D's and G's losses and in the penalties -- passes through
one differentiable pipeline, so G is never pushed to reproduce the augmentations ("non-leaking" as long as
p < ~0.8). Each transform is applied to each image independently with probability ``p`` (times the
transform's strength). The transforms and their magnitudes are the reference's (``training/augment.py`` of
NVlabs/stylegan2-ada-pytorch, the "bgc" preset plus cutout):

* pixel blitting: x-flip, 90 degree rotations, integer translation (uniform, up to 0.125 of the side);
* geometric: isotropic scaling (log2-normal, std 0.2), arbitrary rotation (uniform, applied before and after
  the anisotropic scaling, each with probability ``1 - sqrt(1 - p)`` so that "rotated at all" has
  probability p), anisotropic scaling (log2-normal, std 0.2);
* colour, as 4x4 matrices on homogeneous RGB in [-1, 1]: brightness (additive N(0, 0.2)), contrast
  (log2-normal, std 0.5), luma flip (Householder reflection about the luma axis), hue rotation (uniform
  around the luma axis), saturation (log2-normal, std 1);
* cutout (off in the paper's default set): a square of half the side, centred uniformly, set to 0.

Differences from the reference, which uses custom CUDA ops: the geometric transforms are one
``affine_grid`` + bilinear ``grid_sample`` with reflection padding, without the reference's 2x supersampling
through a wavelet filter (so rotations and scalings are slightly more aliased); fractional translation and
additive noise are not included. Integer translations, flips and 90 degree turns land on pixel centres and
are exact. Everything is plain torch, runs on CPU and GPU, and in float32 inside any bf16 autocast (the
result is cast back to the input's dtype).

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

import torch
import torch.nn.functional as F

from dermsynth.errors import DermsynthError

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
    """Per-transform strengths (multipliers of p; 0 disables) and magnitudes; defaults: the reference's."""

    xflip: float = 1.0
    rotate90: float = 1.0
    xint: float = 1.0
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    lumaflip: float = 1.0
    hue: float = 1.0
    saturation: float = 1.0
    cutout: float = 0.0
    xint_max: float = 0.125
    scale_std: float = 0.2
    rotate_max: float = 1.0
    aniso_std: float = 0.2
    brightness_std: float = 0.2
    contrast_std: float = 0.5
    hue_max: float = 1.0
    saturation_std: float = 1.0
    cutout_size: float = 0.5

    @classmethod
    def only(cls, *names: str, **magnitudes: float) -> "AugmentSpec":
        """A spec with only the named transforms on (strength 1), e.g. ``AugmentSpec.only("brightness")``."""
        switches = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "brightness", "contrast", "lumaflip",
                    "hue", "saturation", "cutout")
        unknown = set(names) - set(switches)
        if unknown:
            raise ValueError(f"unknown transforms {sorted(unknown)}; known: {', '.join(switches)}")
        return cls(**{k: float(k in names) for k in switches}, **magnitudes)


# --- 2D (3x3) and colour (4x4) matrices, batched -------------------------------------------------------------

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


_LUMA = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3.0)  # the luma axis in homogeneous RGB


def _rotate_luma(theta: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` about the luma axis (Rodrigues), as 4x4 matrices."""
    v = _LUMA[:3].to(theta.device)
    cross = torch.tensor([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]], device=theta.device)
    c, s = theta.cos()[:, None, None], theta.sin()[:, None, None]
    r = c * torch.eye(3, device=theta.device) + s * cross + (1 - c) * torch.outer(v, v)
    m = _eye(theta.shape[0], 4, theta.device)
    m[:, :3, :3] = r
    return m


def _where(mask: torch.Tensor, value: torch.Tensor, neutral: float) -> torch.Tensor:
    return torch.where(mask, value, torch.full_like(value, neutral))


# --- the ADA pipeline ------------------------------------------------------------------------------------------

def augment_images(images: torch.Tensor, p: torch.Tensor | float, draw: Draw,
                   spec: AugmentSpec = AugmentSpec()) -> torch.Tensor:
    """The ADA pipeline on (N, C, H, W) images in [-1, 1] with probability ``p`` per transform (see module).

    Differentiable with respect to ``images``; ``p = 0`` (a float) returns ``images`` itself, a zero tensor p
    gives the identity up to float rounding of the resampling grid.
    """
    if isinstance(p, (int, float)) and p == 0:
        return images
    n, c, h, w = images.shape
    dev = images.device
    with torch.autocast(dev.type, enabled=False):
        x = images.float()
        p = torch.as_tensor(p, dtype=torch.float32, device=dev)

        def chance(strength: float) -> torch.Tensor:
            return draw("uniform", n) < p * strength

        # Geometric transforms: G maps output pixel coordinates (centred) to input ones.
        G = _eye(n, 3, dev)
        geometric = False
        if spec.xflip:
            i = _where(chance(spec.xflip), torch.floor(draw("uniform", n) * 2), 0.0)
            G = G @ _scale2d(1 - 2 * i, torch.ones_like(i))
            geometric = True
        if spec.rotate90:
            i = _where(chance(spec.rotate90), torch.floor(draw("uniform", n) * 4), 0.0)
            G = G @ _rotate2d(-math.pi / 2 * i)
            geometric = True
        if spec.xint:
            t = (draw("uniform", n, 2) * 2 - 1) * spec.xint_max
            t = torch.where(chance(spec.xint)[:, None], t, torch.zeros_like(t))
            G = G @ _translate2d(torch.round(t[:, 0] * w), torch.round(t[:, 1] * h))
            geometric = True
        if spec.scale:
            s = _where(chance(spec.scale), torch.exp2(draw("normal", n) * spec.scale_std), 1.0)
            G = G @ _scale2d(1 / s, 1 / s)
            geometric = True
        p_rot = 1 - torch.sqrt((1 - spec.rotate * p).clamp(0, 1))  # P(pre or post rotation) = p
        if spec.rotate:
            theta = _where(draw("uniform", n) < p_rot, (draw("uniform", n) * 2 - 1) * math.pi * spec.rotate_max, 0.0)
            G = G @ _rotate2d(-theta)
            geometric = True
        if spec.aniso:
            s = _where(chance(spec.aniso), torch.exp2(draw("normal", n) * spec.aniso_std), 1.0)
            G = G @ _scale2d(1 / s, s)
            geometric = True
        if spec.rotate:
            theta = _where(draw("uniform", n) < p_rot, (draw("uniform", n) * 2 - 1) * math.pi * spec.rotate_max, 0.0)
            G = G @ _rotate2d(-theta)
        if geometric:
            # pixels -> affine_grid's normalised coordinates ([-1, 1] across each side, align_corners=False)
            to_px = _scale2d(torch.full((n,), w / 2.0, device=dev), torch.full((n,), h / 2.0, device=dev))
            theta = torch.linalg.inv(to_px) @ G @ to_px
            grid = F.affine_grid(theta[:, :2, :], [n, c, h, w], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

        # Colour transforms: one 4x4 matrix per image on homogeneous RGB.
        if c == 3 and any((spec.brightness, spec.contrast, spec.lumaflip, spec.hue, spec.saturation)):
            C = _eye(n, 4, dev)
            v = _LUMA.to(dev)
            vv = torch.outer(v, v)
            eye4 = torch.eye(4, device=dev)
            if spec.brightness:
                b = _where(chance(spec.brightness), draw("normal", n) * spec.brightness_std, 0.0)
                C = _translate3d(b) @ C
            if spec.contrast:
                k = _where(chance(spec.contrast), torch.exp2(draw("normal", n) * spec.contrast_std), 1.0)
                C = _scale3d(k) @ C
            if spec.lumaflip:
                i = _where(chance(spec.lumaflip), torch.floor(draw("uniform", n) * 2), 0.0)
                C = (eye4 - 2 * vv * i[:, None, None]) @ C
            if spec.hue:
                theta = _where(chance(spec.hue), (draw("uniform", n) * 2 - 1) * math.pi * spec.hue_max, 0.0)
                C = _rotate_luma(theta) @ C
            if spec.saturation:
                s = _where(chance(spec.saturation), torch.exp2(draw("normal", n) * spec.saturation_std), 1.0)
                C = (vv + (eye4 - vv) * s[:, None, None]) @ C
            x = (C[:, :3, :3] @ x.reshape(n, 3, h * w) + C[:, :3, 3:]).reshape(n, 3, h, w)

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
    if mode == "none":
        return None
    return Augmentation(mode, p=float(cfg.augment_p), target=float(cfg.ada_target), kimg=float(cfg.ada_kimg),
                        device=device, reduce=reduce)
