"""GAN architectures, selected by name from a small registry.

A registry entry (:class:`ModelSpec`) builds ``(generator, discriminator)`` from keyword options and names
how the shared trainer drives it: a *step* kind (``"gan"``, ``"progressive"``, ``"pyramid"``; see
``dermsynth.train.steps``) and the model's own training defaults, which fill every ``TrainConfig`` field
left at ``None``. Every generator takes ``(z, labels)`` and has ``z_dim``, ``resolution`` and
``num_classes``; every discriminator takes ``(images, labels)`` and returns one logit per image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.models.dcgan import DCGANDiscriminator, DCGANGenerator
from dermsynth.models.lapgan import LAPGANDiscriminator, LAPGANGenerator, build_lapgan
from dermsynth.models.pgan import KARRAS_PAPER_BATCH, PGANDiscriminator, PGANGenerator, build_pgan

GANBuilder = Callable[..., tuple[nn.Module, nn.Module]]


@dataclass(frozen=True)
class ModelSpec:
    """How to build a GAN and how the trainer trains it.

    ``defaults`` maps ``TrainConfig`` field names to values, or to callables of the partly resolved config
    (evaluated after the constant defaults, e.g. a batch schedule that depends on ``size``).
    """

    build: GANBuilder
    step: str = "gan"
    defaults: Mapping[str, Any] = field(default_factory=dict)


# Radford et al. 2015 (seeds 002/004): Adam 2e-4, betas (0.5, 0.999), batch 64, non-saturating BCE.
DCGAN_DEFAULTS: dict[str, Any] = {"loss": "nonsaturating", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5,
                                  "beta2": 0.999, "batch_size": 64, "ema_beta": 0.0, "gp_weight": 0.0,
                                  "drift": 0.0, "steps": 2000}


def _paper_batches(cfg: Any) -> str:
    """Karras et al. appendix A.1 minibatch sizes for every resolution from 4 px up to ``cfg.size`` (or
    ``cfg.batch_size`` at every resolution when that is given)."""
    sizes = [4 * 2 ** level for level in range(cfg.size.bit_length() - 2)]
    return ",".join(f"{r}:{cfg.batch_size or KARRAS_PAPER_BATCH.get(r, 3)}" for r in sizes)


# Karras et al. 2018 (seed 001): WGAN-GP (lambda 10) + drift 1e-3, Adam 1e-3 betas (0, 0.99), G EMA 0.999,
# 600k images per stable and per fade phase; trains until one stable phase at full resolution is done.
PGAN_DEFAULTS: dict[str, Any] = {
    "loss": "wgan", "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.0, "beta2": 0.99, "ema_beta": 0.999,
    "gp_weight": 10.0, "drift": 1e-3, "stable_kimg": 600.0, "fade_kimg": 600.0,
    "batch_size": None,  # accepted (one minibatch for every resolution) but by default per resolution:
    "batch_schedule": _paper_batches,
    "kimg": lambda cfg: (cfg.size.bit_length() - 3) * (cfg.stable_kimg + cfg.fade_kimg) + cfg.stable_kimg,
}


def _build_dcgan(resolution: int, z_dim: int, num_classes: int, width: int = 64, **_: object):
    return (DCGANGenerator(z_dim=z_dim, resolution=resolution, width=width, num_classes=num_classes),
            DCGANDiscriminator(resolution=resolution, width=width, num_classes=num_classes))


MODELS: dict[str, ModelSpec] = {
    "dcgan": ModelSpec(_build_dcgan, "gan", DCGAN_DEFAULTS),
    "pgan": ModelSpec(build_pgan, "progressive", PGAN_DEFAULTS),
    # Denton et al. trained each level as a plain GAN; seed 001 gives no other settings, so DCGAN's (without
    # the gradient penalty: its critics judge a band given the coarser image, not an image alone).
    "lapgan": ModelSpec(build_lapgan, "pyramid", {k: v for k, v in DCGAN_DEFAULTS.items() if k != "gp_weight"}),
}


def register_model(name: str, builder: GANBuilder, step: str = "gan",
                   defaults: Mapping[str, Any] | None = None) -> None:
    """Add a GAN to the registry; ``defaults`` fall back to DCGAN's for fields it does not name."""
    MODELS[name] = ModelSpec(builder, step, {**DCGAN_DEFAULTS, **(defaults or {})})


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name`` (a one-line error listing the known names otherwise)."""
    if name not in MODELS:
        raise DermsynthError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_gan(name: str, **options: object) -> tuple[nn.Module, nn.Module]:
    """Build ``(generator, discriminator)`` for a registered model name."""
    spec = model_spec(name)
    try:
        return spec.build(**options)
    except ValueError as exc:  # e.g. a resolution the architecture cannot make
        raise DermsynthError(f"cannot build {name}: {exc}") from None


__all__ = ["MODELS", "DCGANDiscriminator", "DCGANGenerator", "LAPGANDiscriminator", "LAPGANGenerator",
           "ModelSpec", "PGANDiscriminator", "PGANGenerator", "build_gan", "model_spec", "register_model"]
