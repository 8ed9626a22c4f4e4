"""Layers shared by every GAN in the registry (written once, imported by each model)."""

from __future__ import annotations

import torch
from torch import nn


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2015 initialisation: conv weights N(0, 0.02), batch-norm scale N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


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


def num_doublings(resolution: int, start: int = 4) -> int:
    """How many x2 upsamplings take ``start`` to ``resolution`` (a power of two)."""
    if resolution < start * 2 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= {start * 2}, got {resolution}")
    return resolution.bit_length() - start.bit_length()
