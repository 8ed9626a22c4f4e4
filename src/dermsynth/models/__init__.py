"""GAN architectures, selected by name from a small registry.

A registry entry builds ``(generator, discriminator)`` from keyword options. Every generator takes
``(z, labels)`` and has ``z_dim``, ``resolution`` and ``num_classes``; every discriminator takes
``(images, labels)`` and returns one logit per image. The trainer needs nothing else.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.models.dcgan import DCGANDiscriminator, DCGANGenerator

GANBuilder = Callable[..., tuple[nn.Module, nn.Module]]


def _build_dcgan(resolution: int, z_dim: int, num_classes: int, width: int = 64, **_: object):
    return (DCGANGenerator(z_dim=z_dim, resolution=resolution, width=width, num_classes=num_classes),
            DCGANDiscriminator(resolution=resolution, width=width, num_classes=num_classes))


MODELS: dict[str, GANBuilder] = {"dcgan": _build_dcgan}


def register_model(name: str, builder: GANBuilder) -> None:
    """Add a GAN to the registry (later models: pgan, lapgan, ...)."""
    MODELS[name] = builder


def build_gan(name: str, **options: object) -> tuple[nn.Module, nn.Module]:
    """Build ``(generator, discriminator)`` for a registered model name."""
    if name not in MODELS:
        raise DermsynthError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**options)
    except ValueError as exc:  # e.g. a resolution the architecture cannot make
        raise DermsynthError(f"cannot build {name}: {exc}") from None


__all__ = ["MODELS", "DCGANDiscriminator", "DCGANGenerator", "build_gan", "register_model"]
