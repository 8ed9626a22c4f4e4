"""Layers shared by every GAN in the registry (written once, imported by each model)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def normal_init(module: nn.Module, *, zero_bias: bool = True) -> None:
    """N(0, 0.02) weights of every conv / transposed conv / linear / embedding layer and N(1, 0.02) batch-norm
    scales (bias 0): Radford et al. 2015's initialisation, CycleGAN's ``init_type normal`` (gain 0.02) and, with
    ``zero_bias=False`` (conv biases keep PyTorch's default, as its ``weights_init`` leaves them), pix2pixHD's."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if zero_bias and getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


#: Radford et al. 2015 initialisation (DCGAN, LAPGAN)
dcgan_init = normal_init


class LabelEmbedding(nn.Module):
    """Class label -> dense vector, concatenated to the latent code in a conditional generator."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)


class ProjectionHead(nn.Module):
    """Projection discriminator output (Miyato & Koyama 2018): logit = psi(h) + <embed(y), sum_xy h>.

    ``psi`` is the unconditional head; with ``num_classes == 0`` only it is used.
    """

    def __init__(self, unconditional_head: nn.Module, channels: int, num_classes: int) -> None:
        super().__init__()
        self.head = unconditional_head
        self.embed = nn.Embedding(num_classes, channels) if num_classes > 0 else None

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        logit = self.head(features).flatten(1).mean(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a class-conditional discriminator needs labels")
            pooled = features.sum(dim=(2, 3))
            logit = logit + (self.embed(labels).to(pooled.dtype) * pooled).sum(1)
        return logit


def upsample_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour upsampling to ``size`` px (a PGAN still growing outputs fewer pixels; Karras' generator
    likewise shows its lower-resolution output enlarged to full size)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="nearest")


def num_doublings(resolution: int, start: int = 4) -> int:
    """How many x2 upsamplings take ``start`` to ``resolution`` (a power of two)."""
    if resolution < start * 2 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= {start * 2}, got {resolution}")
    return resolution.bit_length() - start.bit_length()


# --- Progressive-GAN building blocks (Karras et al. 2018), reusable by any model ---------------------------


class EqualizedConv2d(nn.Module):
    """Conv with an equalised learning rate (Karras et al. 2018, sec. 4.1).

    Weights are stored N(0, 1) and multiplied at runtime by He's constant ``gain / sqrt(fan_in)``, so Adam
    sees every layer at the same scale. Padding defaults to "same" (``kernel_size // 2``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int | None = None,
                 gain: float = math.sqrt(2.0), bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Dense layer with an equalised learning rate: N(0, 1) weights scaled by ``gain / sqrt(in_features)``."""

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2.0), bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit mean square over channels (dim 1): x / sqrt(mean(x^2) + eps)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Append one feature map: the std over a group of samples, averaged over features and pixels.

    As in Karras et al.: the batch is split into groups of ``group_size`` samples (sample i belongs to group
    ``i % (N / G)``); per group the population std of every feature and pixel is taken, averaged to a scalar and
    broadcast as an extra channel. If N is not divisible, G is the largest divisor of N that is <= group_size.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        y = x.float().reshape(g, n // g, c, h, w)
        std = (y.var(dim=0, unbiased=False) + self.eps).sqrt()          # (N/G, C, H, W)
        stat = std.mean(dim=(1, 2, 3)).to(x.dtype)                       # (N/G,)
        stat = stat.reshape(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, stat], dim=1)
