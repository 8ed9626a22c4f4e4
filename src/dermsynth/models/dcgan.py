"""DCGAN (Radford et al. 2015) as used in Essipova et al. 2020 and Lunagariya & Patel: the classic 64x64 networks
and a 32x32 variant.

Generator: z (+ label embedding) -> 4x4 transposed conv, then stride-2 transposed convs with batch-norm and
ReLU doubling the size up to the target, tanh output. Discriminator: the mirror image with stride-2 convs
and LeakyReLU(0.2) (no batch-norm on the first layer), ending in a 4x4 valid conv -> one logit per image.
Any power-of-two resolution >= 16 works; channel widths double per halving of the size.
"""

from __future__ import annotations

import torch
from torch import nn

from dermsynth.models.layers import LabelEmbedding, ProjectionHead, dcgan_init, num_doublings


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int = 128, resolution: int = 64, width: int = 64, num_classes: int = 0,
                 embed_dim: int | None = None) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.num_classes = z_dim, resolution, num_classes
        n_up = num_doublings(resolution)  # 64 -> 4 (4->8->16->32->64)
        channels = [width * 2 ** (n_up - 1 - i) for i in range(n_up)]  # 64px: 512, 256, 128, 64
        embed_dim = embed_dim or z_dim
        self.label_embedding = LabelEmbedding(num_classes, embed_dim) if num_classes > 0 else None
        in_dim = z_dim + (embed_dim if num_classes > 0 else 0)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, channels[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("a class-conditional generator needs labels")
            z = self.label_embedding(z, labels)
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 64, width: int = 64, num_classes: int = 0) -> None:
        super().__init__()
        self.resolution, self.num_classes = resolution, num_classes
        n_down = num_doublings(resolution)
        channels = [width * 2 ** i for i in range(n_down)]  # 64px: 64, 128, 256, 512
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.output = ProjectionHead(nn.Conv2d(channels[-1], 1, 4, 1, 0, bias=False), channels[-1], num_classes)
        dcgan_init(self)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One real/fake logit per image (pre-sigmoid)."""
        return self.output(self.features(images), labels)
