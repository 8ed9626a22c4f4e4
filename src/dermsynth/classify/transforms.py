"""The classic transforms for classifier training: Essipova et al.'s Keras ``ImageDataGenerator`` augmentation set, as
batched PyTorch on the images' device.

Essipova et al. 2020 trains its CNN with ``rotation_range=45, width_shift_range=0.1, height_shift_range=0.1,
shear_range=0.01, zoom_range=[0.9, 1.25], brightness_range=[0.7, 1.3], horizontal_flip=True,
fill_mode='reflect'``. What those Keras parameters mean, and what :class:`TransformConfig` does:

* ``rotation``: angle uniform in [-45, 45] degrees.
* ``width_shift`` / ``height_shift``: shift uniform in [-0.1, 0.1] of the width / height (values < 1 are
  fractions of the side in Keras).
* ``shear``: a shear **angle in degrees** (Keras >= 2 passes it through ``np.deg2rad``), uniform in
  [-0.01, 0.01] degrees, i.e. a practically invisible shear of ~2e-4 rad. Kept for fidelity.
* ``zoom``: two factors ``zx, zy`` drawn independently, uniform in [0.9, 1.25]. They scale the *sampling
  grid*: a factor > 1 samples a larger region, so the lesion looks smaller (zoom out); < 1 zooms in.
* ``brightness``: one factor uniform in [0.7, 1.3] multiplying all channels, clipped to the valid range
  (PIL ``ImageEnhance.Brightness``, which Keras uses; we do not reproduce the min-max stretch some Keras
  versions applied before it).
* ``horizontal_flip``: mirror left-right with probability 1/2 (``vertical_flip`` stays off, as in the seed).
* ``fill_mode='reflect'``: points that fall outside the image read its mirror image about the border
  (scipy's half-sample ``reflect``, the same as ``grid_sample(padding_mode="reflection",
  align_corners=False)``); interpolation is bilinear (Keras' ``order=1``).

As in Keras, one output-to-input affine map per image, ``rotation @ shift @ shear @ zoom`` about the image
centre, is applied with one ``F.affine_grid`` + ``F.grid_sample`` over the whole batch; the flip is folded
into the same map; brightness follows. (Keras rotates about a centre half a pixel off; we use the true
centre.) All random numbers come from the given :class:`torch.Generator` in one fixed-shape draw, so a
batch's transforms are fully determined by the generator state, and changing one range leaves the
others' draws unchanged. Images are float (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dermsynth.errors import DermsynthError

__all__ = ["TransformConfig", "ESSIPOVA2020_TRANSFORMS", "affine_matrices", "transform_batch"]

_DRAWS = 9  # rotation, shift_y, shift_x, shear, zoom_y, zoom_x, h-flip, v-flip, brightness


@dataclass(frozen=True)
class TransformConfig:
    """Transform ranges with Keras ``ImageDataGenerator`` meanings (defaults: Essipova et al.'s values)."""

    rotation: float = 45.0  # degrees, uniform in [-rotation, rotation]
    width_shift: float = 0.1  # fraction of the width
    height_shift: float = 0.1  # fraction of the height
    shear: float = 0.01  # degrees (Keras shear_range is an angle in degrees)
    zoom: tuple[float, float] = (0.9, 1.25)  # sampling-grid scale; > 1 zooms out
    brightness: tuple[float, float] = (0.7, 1.3)  # intensity factor
    horizontal_flip: bool = True
    vertical_flip: bool = False

    @classmethod
    def identity(cls) -> "TransformConfig":
        """All ranges zero: the output reproduces the input."""
        return cls(rotation=0.0, width_shift=0.0, height_shift=0.0, shear=0.0, zoom=(1.0, 1.0),
                   brightness=(1.0, 1.0), horizontal_flip=False, vertical_flip=False)

    def validate(self) -> "TransformConfig":
        if min(self.rotation, self.width_shift, self.height_shift, self.shear) < 0:
            raise DermsynthError(f"transform ranges must be non-negative: {self}")
        for name, (lo, hi) in (("zoom", self.zoom), ("brightness", self.brightness)):
            if not 0 < lo <= hi:
                raise DermsynthError(f"transform {name} range must satisfy 0 < low <= high, got {(lo, hi)}")
        return self


ESSIPOVA2020_TRANSFORMS = TransformConfig()


def _uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


def affine_matrices(n: int, height: int, width: int, cfg: TransformConfig,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``affine_grid`` thetas (n, 2, 3) and brightness factors (n,), on the generator's device.

    Built in pixel units about the image centre in Keras' (row, col) order, then converted to
    ``affine_grid``'s normalised (x, y) = (col, row) coordinates (``align_corners=False``).
    """
    cfg.validate()
    u = torch.rand(n, _DRAWS, generator=generator, device=generator.device, dtype=torch.float64)
    theta = torch.deg2rad(_uniform(u[:, 0], -cfg.rotation, cfg.rotation))
    ty = _uniform(u[:, 1], -cfg.height_shift, cfg.height_shift) * height  # rows (Keras tx)
    tx = _uniform(u[:, 2], -cfg.width_shift, cfg.width_shift) * width  # cols (Keras ty)
    shear = torch.deg2rad(_uniform(u[:, 3], -cfg.shear, cfg.shear))
    zy, zx = _uniform(u[:, 4], *cfg.zoom), _uniform(u[:, 5], *cfg.zoom)
    one, zero = torch.ones_like(theta), torch.zeros_like(theta)

    def mat(a, b, c, d, e, f) -> torch.Tensor:  # rows of a batch of 3x3 homogeneous (row, col) matrices
        return torch.stack([torch.stack([a, b, c], -1), torch.stack([d, e, f], -1),
                            torch.stack([zero, zero, one], -1)], -2)

    c, s = torch.cos(theta), torch.sin(theta)
    m = (mat(c, -s, zero, s, c, zero) @ mat(one, zero, ty, zero, one, tx)
         @ mat(one, -torch.sin(shear), zero, zero, torch.cos(shear), zero) @ mat(zy, zero, zero, zero, zx, zero))
    flip_x = torch.where(u[:, 6] < 0.5, -one, one) if cfg.horizontal_flip else one
    flip_y = torch.where(u[:, 7] < 0.5, -one, one) if cfg.vertical_flip else one
    m = m @ mat(flip_y, zero, zero, zero, flip_x, zero)  # mirror the output: fold into the same map
    # (row, col) -> (x, y) = (col, row), then pixels -> normalised units (x_norm = 2 x / W)
    perm = torch.tensor([1, 0, 2], device=m.device)
    m = m[:, perm][:, :, perm]
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=m.dtype, device=m.device)
    lin = m[:, :2, :2] * scale[:, None] / scale[None, :]
    shift = m[:, :2, 2] * scale
    out = torch.cat([lin, shift[:, :, None]], dim=2).float()
    return out, _uniform(u[:, 8], *cfg.brightness).float()


def transform_batch(images: torch.Tensor, cfg: TransformConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply one random transform per image to float images (N, C, H, W) in [0, 1].

    The random parameters are drawn on ``generator.device`` (a CPU generator gives the same
    transforms on any device) and applied on ``images.device``.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise DermsynthError(f"transform_batch expects float images (N, C, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
    n, _, h, w = images.shape
    theta, bright = affine_matrices(n, h, w, cfg, generator)
    theta, bright = theta.to(images.device), bright.to(images.device, images.dtype)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.brightness != (1.0, 1.0):
        out = (out * bright[:, None, None, None]).clamp_(0.0, 1.0)
    return out
