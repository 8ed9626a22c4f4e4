"""Progressive GAN (Karras et al. 2018) as used for 256px skin lesions in Baur et al. 2018 (latent 128).

Both networks hold every resolution's layers from the start and are *grown* by :meth:`set_stage`: at
``level`` L (resolution ``4 * 2**L``) only blocks 0..L are used, and for ``alpha < 1`` the newest block is
faded in. Generator: pixel-normalised latent -> dense 4x4 + 3x3 conv, then per level a nearest x2 upsample and
two 3x3 convs (LeakyReLU 0.2 and pixel norm after each), a 1x1 toRGB per level, linear output. Discriminator:
the mirror image (1x1 fromRGB, two 3x3 convs and a 2x2 average pool per level), ending in minibatch-stddev,
3x3 conv, 4x4 conv and a dense logit (plus a projection term when class-conditional). Every conv/dense layer
uses an equalised learning rate. Channels at level L: ``min(fmap_base / 2**(L+1), fmap_max)`` (Karras' nf()).

Training (see :class:`PGANSchedule`): WGAN-GP with drift (``dermsynth.train.penalties``), Adam lr 1e-3,
betas (0, 0.99), eps 1e-8, generator EMA 0.999; the trainer sets the stage from the number of real images
shown and feeds reals through :func:`real_images_at`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.models.layers import (EqualizedConv2d, EqualizedLinear, LabelEmbedding, MinibatchStdDev, PixelNorm,
                                     ProjectionHead, num_doublings)

LEAK = 0.2
# Minibatch size per resolution: the official single-GPU preset ("preset-v2-1gpu", minibatch_base 4) of
# github.com/tkarras/progressive_growing_of_gans; the paper's appendix A.1 used 16 up to 128px, 14 at 256px.
KARRAS_1GPU_BATCH: dict[int, int] = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}
# The paper's appendix A.1 (8 GPUs): 16 up to 128 px, then 14, 6, 3 -- the trainer's default.
KARRAS_PAPER_BATCH: dict[int, int] = {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 16, 256: 14, 512: 6, 1024: 3}


def pgan_channels(level: int, fmap_base: int = 8192, fmap_max: int = 512) -> int:
    """Feature maps at ``level`` (resolution 4 * 2**level): min(fmap_base / 2**(level + 1), fmap_max)."""
    return max(1, min(fmap_base // 2 ** (level + 1), fmap_max))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample2(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


def _conv(c_in: int, c_out: int, kernel: int = 3, padding: int | None = None,
          pixel_norm: bool = False) -> list[nn.Module]:
    """Equalised conv ("same" padding unless given) + LeakyReLU(0.2) (+ pixel norm in the generator)."""
    layers: list[nn.Module] = [EqualizedConv2d(c_in, c_out, kernel, padding=padding), nn.LeakyReLU(LEAK)]
    return layers + [PixelNorm()] if pixel_norm else layers


class _Growing(nn.Module):
    """Growth state shared by G and D: ``level`` (a Python int, kept in the state dict as extra state) and
    ``alpha`` (a buffer, so changing it every step neither syncs the device nor recompiles a compiled model)."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.max_level = num_doublings(resolution)
        self.level = self.max_level  # a fresh model is full grown: what samplers loading a checkpoint expect
        self.register_buffer("alpha", torch.ones(()))

    @property
    def current_resolution(self) -> int:
        return 4 * 2 ** self.level

    def set_stage(self, level: int, alpha: float = 1.0) -> None:
        """Use blocks 0..level; ``alpha`` in [0, 1] fades the newest one in (ignored at level 0)."""
        if not 0 <= level <= self.max_level:
            raise ValueError(f"level must be in [0, {self.max_level}], got {level}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.level = int(level)
        self.alpha.fill_(float(alpha))

    def _fade(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """lerp(old, new, alpha): exactly ``old`` at alpha 0 and exactly ``new`` at alpha 1."""
        return torch.lerp(old, new, self.alpha.to(new.dtype))

    def get_extra_state(self) -> dict[str, Any]:
        return {"level": self.level}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        level = int(state["level"])
        if not 0 <= level <= self.max_level:
            raise ValueError(f"saved level {level} does not fit a {self.resolution}px model")
        self.level = level

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, level={self.level}"


class PGANGenerator(_Growing):
    def __init__(self, z_dim: int = 128, resolution: int = 256, num_classes: int = 0, fmap_base: int = 8192,
                 fmap_max: int = 512, embed_dim: int | None = None) -> None:
        super().__init__(resolution)
        self.z_dim, self.num_classes = z_dim, num_classes
        ch = [pgan_channels(level, fmap_base, fmap_max) for level in range(self.max_level + 1)]
        embed_dim = embed_dim or z_dim
        self.label_embedding = LabelEmbedding(num_classes, embed_dim) if num_classes > 0 else None
        in_dim = z_dim + (embed_dim if num_classes > 0 else 0)
        first = nn.Sequential(
            PixelNorm(),  # of [z, embedding], as Karras normalises [latent, labels]
            EqualizedLinear(in_dim, ch[0] * 16, gain=math.sqrt(2.0) / 4),  # the "4x4 conv" on a 1x1 input
            nn.Unflatten(1, (ch[0], 4, 4)), nn.LeakyReLU(LEAK), PixelNorm(),
            *_conv(ch[0], ch[0], pixel_norm=True))
        self.blocks = nn.ModuleList([first] + [
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                          *_conv(ch[level - 1], ch[level], pixel_norm=True),
                          *_conv(ch[level], ch[level], pixel_norm=True))
            for level in range(1, self.max_level + 1)])
        self.to_rgb = nn.ModuleList([EqualizedConv2d(c, 3, 1, gain=1.0) for c in ch])

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images at the current resolution (linear output, trained towards [-1, 1])."""
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("a class-conditional generator needs labels")
            z = self.label_embedding(z, labels)
        h = self.blocks[0](z)
        for level in range(1, self.level):
            h = self.blocks[level](h)
        if self.level == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[self.level](self.blocks[self.level](h))
        return self._fade(upsample2(self.to_rgb[self.level - 1](h)), new)


class PGANDiscriminator(_Growing):
    def __init__(self, resolution: int = 256, num_classes: int = 0, fmap_base: int = 8192, fmap_max: int = 512,
                 mbstd_group_size: int = 4) -> None:
        super().__init__(resolution)
        self.num_classes = num_classes
        ch = [pgan_channels(level, fmap_base, fmap_max) for level in range(self.max_level + 1)]
        self.from_rgb = nn.ModuleList([nn.Sequential(*_conv(3, c, kernel=1)) for c in ch])
        last = nn.Sequential(MinibatchStdDev(mbstd_group_size), *_conv(ch[0] + 1, ch[0]),
                             *_conv(ch[0], ch[0], kernel=4, padding=0))  # 4x4 -> 1x1: the paper's dense
        self.blocks = nn.ModuleList([last] + [
            nn.Sequential(*_conv(ch[level], ch[level]), *_conv(ch[level], ch[level - 1]), nn.AvgPool2d(2))
            for level in range(1, self.max_level + 1)])
        self.output = ProjectionHead(nn.Sequential(nn.Flatten(), EqualizedLinear(ch[0], 1, gain=1.0)), ch[0],
                                     num_classes)
        if self.output.embed is not None:  # projection term on the same O(1) scale as the dense head
            nn.init.normal_(self.output.embed.weight, 0.0, 1.0 / math.sqrt(ch[0]))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C0, 1, 1) features of images at the current resolution, before the output head."""
        if images.shape[-1] != self.current_resolution or images.shape[-2] != self.current_resolution:
            raise ValueError(f"the discriminator is at {self.current_resolution}px (level {self.level}) but got "
                             f"{tuple(images.shape[-2:])} images; see real_images_at()")
        h = self.from_rgb[self.level](images)
        if self.level > 0:
            h = self._fade(self.from_rgb[self.level - 1](downsample2(images)), self.blocks[self.level](h))
        for level in range(self.level - 1, 0, -1):
            h = self.blocks[level](h)
        return self.blocks[0](h)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One WGAN critic score per image."""
        return self.output(self.features(images), labels)


def real_images_at(images: torch.Tensor, level: int, alpha: float = 1.0) -> torch.Tensor:
    """Real images as the networks see them at (level, alpha): average-pooled to 4 * 2**level pixels and, while
    fading in, lerped from the nearest-upsampled half-resolution version (Karras' blending of reals by lod)."""
    size = 4 * 2 ** level
    factor = images.shape[-1] // size
    if factor < 1 or factor * size != images.shape[-1]:
        raise ValueError(f"cannot pool {images.shape[-1]}px images to {size}px")
    x = F.avg_pool2d(images, factor) if factor > 1 else images
    if level > 0 and alpha < 1.0:
        x = torch.lerp(upsample2(downsample2(x)), x, alpha)
    return x


class Stage(NamedTuple):
    level: int
    alpha: float
    batch_size: int

    @property
    def resolution(self) -> int:
        return 4 * 2 ** self.level


@dataclass(frozen=True)
class PGANSchedule:
    """When to grow, as in Karras' ``TrainingSchedule`` (counted in real images shown, not steps).

    Phase p (0-based) shows ``stable_kimg`` thousand images at level p, then ``fade_kimg`` thousand while level
    p + 1 fades in (alpha 0 -> 1 linearly); after the last fade the full resolution trains for good. Minibatch
    size is looked up by the current resolution (``default_batch`` if absent); defaults are the official
    single-GPU preset (see ``KARRAS_1GPU_BATCH``) and lod_training_kimg = lod_transition_kimg = 600.
    """

    resolution: int = 256
    stable_kimg: float = 600.0
    fade_kimg: float = 600.0
    batch_sizes: Mapping[int, int] = field(default_factory=lambda: dict(KARRAS_1GPU_BATCH))
    default_batch: int = 4

    def __post_init__(self) -> None:
        num_doublings(self.resolution)
        if self.stable_kimg < 0 or self.fade_kimg < 0 or self.stable_kimg + self.fade_kimg <= 0:
            raise ValueError("stable_kimg and fade_kimg must be >= 0 and not both 0")

    @property
    def max_level(self) -> int:
        return num_doublings(self.resolution)

    @property
    def images_to_full_resolution(self) -> int:
        """Real images shown before the last fade-in has finished."""
        return self.max_level * (round(self.stable_kimg * 1000) + round(self.fade_kimg * 1000))

    def stage_at(self, images_seen: int) -> Stage:
        """(level, alpha, batch_size) after ``images_seen`` real images (integer arithmetic, exact at boundaries)."""
        stable, fade = round(self.stable_kimg * 1000), round(self.fade_kimg * 1000)
        phase, t = divmod(int(images_seen), stable + fade)
        if phase >= self.max_level:
            level, alpha = self.max_level, 1.0
        elif t < stable:
            level, alpha = phase, 1.0
        else:
            level, alpha = phase + 1, (t - stable) / fade
        return Stage(level, alpha, self.batch_sizes.get(4 * 2 ** level, self.default_batch))

    def phase_at(self, images_seen: int) -> int:
        """Phase index: stable 4 px (0), fade-in 8 px (1), stable 8 px (2), ..., the final stable (2 * max_level)."""
        stable, fade = round(self.stable_kimg * 1000), round(self.fade_kimg * 1000)
        phase, t = divmod(int(images_seen), stable + fade)
        return 2 * self.max_level if phase >= self.max_level else 2 * phase + int(t >= stable)

    def steps_to_show(self, images: int, start: int = 0) -> int:
        """Optimizer steps that show at least ``images`` real images in all, starting at ``start`` shown.

        Exact (each step's minibatch is the one of the stage it starts in), jumping over runs of equal
        minibatches so a full 256 px schedule takes microseconds."""
        stable, fade = round(self.stable_kimg * 1000), round(self.fade_kimg * 1000)
        # the minibatch can only change where a new resolution starts fading in
        changes = [p * (stable + fade) + stable for p in range(self.max_level)]
        steps, seen = 0, int(start)
        while seen < images:
            batch = self.stage_at(seen).batch_size
            limit = min([images] + [c for c in changes if c > seen])
            k = max(1, -(-(limit - seen) // batch))
            steps, seen = steps + k, seen + k * batch
        return steps


def parse_batch_schedule(text: str, size: int) -> dict[int, int]:
    """``"4:16,8:16,16:16"`` -> {4: 16, 8: 16, 16: 16}; every resolution from 4 px to ``size`` must be named."""
    schedule: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            res, batch = (int(v) for v in item.split(":"))
        except ValueError:
            raise DermsynthError(f"--batch-schedule: {item!r} is not RESOLUTION:BATCH (e.g. 4:16,8:16)") from None
        if batch < 1:
            raise DermsynthError(f"--batch-schedule: batch {batch} for {res} px must be >= 1")
        schedule[res] = batch
    needed = [4 * 2 ** level for level in range(size.bit_length() - 2)]
    missing = [r for r in needed if r not in schedule]
    if missing:
        raise DermsynthError(f"--batch-schedule names no minibatch for {', '.join(map(str, missing))} px")
    return {r: schedule[r] for r in needed}


def pgan_schedule(cfg: Any) -> PGANSchedule:
    """The growth schedule of a resolved PGAN training config."""
    return PGANSchedule(resolution=cfg.size, stable_kimg=cfg.stable_kimg, fade_kimg=cfg.fade_kimg,
                        batch_sizes=parse_batch_schedule(cfg.batch_schedule, cfg.size))


def build_pgan(resolution: int, z_dim: int, num_classes: int, width: int = 64,
               **_: object) -> tuple[PGANGenerator, PGANDiscriminator]:
    """Registry builder: ``width`` 64 gives the paper's fmap_max 512 / fmap_base 8192 (fmap_max = 8 * width)."""
    fmap_max = 8 * width
    return (PGANGenerator(z_dim=z_dim, resolution=resolution, num_classes=num_classes, fmap_base=16 * fmap_max,
                          fmap_max=fmap_max),
            PGANDiscriminator(resolution=resolution, num_classes=num_classes, fmap_base=16 * fmap_max,
                              fmap_max=fmap_max))
