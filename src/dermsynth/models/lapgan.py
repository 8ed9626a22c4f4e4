"""LAPGAN (Denton et al. 2015): a Laplacian pyramid of conditional GANs, compared with PGAN in Baur et al. 2018.

Level 0 is the coarsest (``base`` px, default 8) and level K the full resolution, ``base * 2**K``. G_0 is a
small DCGAN generator making a ``base`` px image from z; each G_k (k >= 1) sees the upsampled coarser image
(plus a noise plane and, if class-conditional, label planes) and outputs the Laplacian band to add to it.
D_0 judges ``base`` px images; D_k judges ``coarse_up + band`` concatenated with ``coarse_up`` (the
conditioning). Each level is trained independently on the *real* pyramid (:func:`level_batches`); sampling
(:meth:`LAPGANGenerator.forward`) chains the levels. Pyramid ops: ``down`` = 5-tap binomial blur (reflect
padding) then decimation, ``up`` = bilinear x2; band_k = x_k - up(down(x_k)), so reconstruction is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.models.dcgan import DCGANGenerator
from dermsynth.models.layers import ProjectionHead, dcgan_init, num_doublings

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def blur_downsample(x: torch.Tensor) -> torch.Tensor:
    """Gaussian-pyramid REDUCE: 5x5 binomial blur (reflect padding), keep every second pixel."""
    k = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device)
    kernel = (torch.outer(k, k) / k.sum() ** 2).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, stride=2, groups=x.shape[1])


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Pyramid EXPAND: bilinear x2."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def gaussian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[x blurred-downsampled ``levels`` times, ..., x], coarsest first."""
    pyramid = [x]
    for _ in range(levels):
        pyramid.insert(0, blur_downsample(pyramid[0]))
    return pyramid


def laplacian_bands(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """LAPGAN's pyramid, **coarsest first**: [low-pass image, band_1, ..., band_levels], band_k = x_k - up(x_{k-1}).

    (:func:`dermsynth.metrics.swd.laplacian_pyramid` is SWD's, finest first, with other filters.)
    """
    gauss = gaussian_pyramid(x, levels)
    return [gauss[0]] + [fine - upsample(coarse) for coarse, fine in zip(gauss[:-1], gauss[1:])]


def reconstruct(pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`laplacian_bands`: x_k = up(x_{k-1}) + band_k."""
    x = pyramid[0]
    for band in pyramid[1:]:
        x = upsample(x) + band
    return x


def _label_planes(embed: nn.Embedding | None, labels: torch.Tensor | None, like: torch.Tensor) -> list[torch.Tensor]:
    """Class embedding broadcast to constant feature maps the size of ``like`` (empty if unconditional)."""
    if embed is None:
        return []
    if labels is None:
        raise ValueError("a class-conditional LAPGAN needs labels")
    e = embed(labels).to(like.dtype)
    return [e[:, :, None, None].expand(-1, -1, *like.shape[-2:])]


class _BandGenerator(nn.Module):
    """G_k, k >= 1: [coarse_up, noise, label planes] -> ``depth`` 3x3 convs (BN + ReLU between) -> RGB band."""

    def __init__(self, width: int, depth: int, noise_channels: int, num_classes: int, label_channels: int) -> None:
        super().__init__()
        self.label_embed = nn.Embedding(num_classes, label_channels) if num_classes > 0 else None
        c_in = 3 + noise_channels + (label_channels if num_classes > 0 else 0)
        layers: list[nn.Module] = []
        for c in [c_in] + [width] * (depth - 2):
            layers += [nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
        self.net = nn.Sequential(*layers, nn.Conv2d(width, 3, 3, 1, 1))
        dcgan_init(self)

    def forward(self, coarse_up: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.net(torch.cat([coarse_up, noise.to(coarse_up.dtype),
                                   *_label_planes(self.label_embed, labels, coarse_up)], dim=1))


class _LevelDiscriminator(nn.Module):
    """D_k: stride-2 4x4 convs (LeakyReLU 0.2, batch norm after the first) down to 4x4, then a projection head."""

    def __init__(self, resolution: int, in_channels: int, width: int, max_width: int, num_classes: int) -> None:
        super().__init__()
        chans = [min(width * 2 ** i, max_width) for i in range(num_doublings(resolution))]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.output = ProjectionHead(nn.Conv2d(chans[-1], 1, 4, 1, 0, bias=False), chans[-1], num_classes)
        dcgan_init(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.features(x), labels)


class LAPGANGenerator(nn.Module):
    def __init__(self, z_dim: int = 128, resolution: int = 256, num_classes: int = 0, base: int = 8,
                 width: int = 64, depth: int = 3, noise_channels: int = 1, label_channels: int = 4) -> None:
        super().__init__()
        num_doublings(base)  # base must be a power of two >= 8 (G_0 is a DCGAN generator)
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        self.z_dim, self.resolution, self.num_classes = z_dim, resolution, num_classes
        self.base, self.noise_channels = base, noise_channels
        self.num_levels = num_doublings(resolution, start=base) + 1  # levels 0..K
        # G_0: a DCGAN generator whose 4x4 layer has 8 * width channels, like DCGAN's at 64 px
        g0 = DCGANGenerator(z_dim=z_dim, resolution=base, width=max(1, width * 64 // base), num_classes=num_classes)
        self.generators = nn.ModuleList([g0] + [
            _BandGenerator(width, depth, noise_channels, num_classes, label_channels)
            for _ in range(1, self.num_levels)])

    def level_resolution(self, k: int) -> int:
        return self.base * 2 ** k

    def sample_noise(self, k: int, n: int, device: torch.device | str | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard-normal noise planes (N, noise_channels, r_k, r_k) for level k >= 1."""
        r = self.level_resolution(k)
        return torch.randn(n, self.noise_channels, r, r, device=device, generator=generator)

    def level_fake(self, k: int, coarse_up: torch.Tensor | None, z: torch.Tensor,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
        """G_k alone. k = 0: ``z`` is the latent (N, z_dim), output a ``base`` px image, ``coarse_up`` is None.
        k >= 1: ``z`` is a noise plane from :meth:`sample_noise`, output the band to add to ``coarse_up``."""
        if k == 0:
            return self.generators[0](z, labels)
        if coarse_up is None:
            raise ValueError(f"level {k} needs the upsampled coarser image")
        return self.generators[k](coarse_up, z, labels)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Sample full-resolution images: x_0 = G_0(z), x_k = up(x_{k-1}) + G_k(up(x_{k-1}), noise_k).

        ``noise[k - 1]`` is level k's noise plane; by default drawn from the global torch RNG.
        """
        x = self.level_fake(0, None, z, labels)
        for k in range(1, self.num_levels):
            coarse_up = upsample(x)
            n_k = noise[k - 1] if noise is not None else self.sample_noise(k, z.shape[0], z.device)
            x = coarse_up + self.level_fake(k, coarse_up, n_k, labels)
        return x


class LevelBatch(NamedTuple):
    """One pyramid level of a training batch: conditioning, the real target and G_k's fake target."""

    level: int
    cond: torch.Tensor | None  # real upsampled coarser image (None at level 0)
    real: torch.Tensor         # level 0: the real ``base`` px image; k >= 1: the real Laplacian band
    fake: torch.Tensor         # G_k's output for the same conditioning


def level_batches(G: LAPGANGenerator, real: torch.Tensor, labels: torch.Tensor | None, z: torch.Tensor,
                  generator: torch.Generator | None = None,
                  noise: Sequence[torch.Tensor] | None = None) -> list[LevelBatch]:
    """Every level's (cond, real, fake) for full-resolution reals, each G_k conditioned on the REAL pyramid.

    ``z`` feeds G_0; the noise planes of levels >= 1 are ``noise[k - 1]`` if given, else drawn from
    ``generator`` (on ``real``'s device).
    """
    gauss = gaussian_pyramid(real, G.num_levels - 1)
    batches = [LevelBatch(0, None, gauss[0], G.level_fake(0, None, z, labels))]
    for k in range(1, G.num_levels):
        cond = upsample(gauss[k - 1])
        plane = noise[k - 1] if noise is not None else G.sample_noise(k, real.shape[0], real.device, generator)
        batches.append(LevelBatch(k, cond, gauss[k] - cond, G.level_fake(k, cond, plane, labels)))
    return batches


class LAPGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 256, num_classes: int = 0, base: int = 8, width: int = 64,
                 max_width: int = 512) -> None:
        super().__init__()
        self.resolution, self.num_classes, self.base = resolution, num_classes, base
        self.num_levels = num_doublings(resolution, start=base) + 1
        self.discriminators = nn.ModuleList([
            _LevelDiscriminator(base * 2 ** k, 3 if k == 0 else 6, width, max_width, num_classes)
            for k in range(self.num_levels)])

    def level_logits(self, k: int, x: torch.Tensor, cond: torch.Tensor | None = None,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
        """D_k. k = 0: ``x`` is a ``base`` px image. k >= 1: ``x`` is a band, judged as [cond + x, cond]."""
        if k == 0:
            return self.discriminators[0](x, labels)
        if cond is None:
            raise ValueError(f"level {k} needs the upsampled coarser image")
        return self.discriminators[k](torch.cat([cond + x, cond], dim=1), labels)

    def pyramid_logits(self, batches: Sequence[LevelBatch], labels: torch.Tensor | None = None, fake: bool = False,
                       detach: bool = False) -> torch.Tensor:
        """Logits of every level's real (or fake) target, concatenated level after level: (N * levels,)."""
        logits = []
        for b in batches:
            x = b.fake if fake else b.real
            logits.append(self.level_logits(b.level, x.detach() if detach else x, b.cond, labels))
        return torch.cat(logits)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Registry contract: one logit per full-resolution image, from the finest D conditioned on the image's
        own blurred-downsampled-upsampled version."""
        cond = upsample(blur_downsample(images))
        return self.level_logits(self.num_levels - 1, images - cond, cond, labels)


def build_lapgan(resolution: int, z_dim: int, num_classes: int, width: int = 64, base: int = 8,
                 **_: object) -> tuple[LAPGANGenerator, LAPGANDiscriminator]:
    """Registry builder (Baur et al. 2018: latent 128, 256 px)."""
    return (LAPGANGenerator(z_dim=z_dim, resolution=resolution, num_classes=num_classes, base=base, width=width),
            LAPGANDiscriminator(resolution=resolution, num_classes=num_classes, base=base, width=width))
