"""GAN losses, selected by name. Each takes discriminator logits and returns a scalar tensor."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from dermsynth.train.penalties import wgan_d_loss, wgan_g_loss


def nonsaturating_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """BCE of D on reals (target 1) and fakes (target 0): softplus(-r) + softplus(f)."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def nonsaturating_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(G(z)) = softplus(-f) (Goodfellow et al. 2014)."""
    return F.softplus(-fake_logits.float()).mean()


def lsgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss 0.5 * (E(D(x) - 1)^2 + E D(G(z))^2) (Mao et al.; CycleGAN halves it)."""
    return 0.5 * ((real.float() - 1).square().mean() + fake.float().square().mean())


def lsgan_g(fake: torch.Tensor) -> torch.Tensor:
    """LSGAN generator loss E(D(G(z)) - 1)^2."""
    return (fake.float() - 1).square().mean()


LOSSES: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "nonsaturating": (nonsaturating_d, nonsaturating_g),
    # Wasserstein critic loss; PGAN adds the gradient penalty and drift (TrainConfig gp_weight, drift).
    "wgan": (wgan_d_loss, wgan_g_loss),
    # least squares (Mao et al. 2017): pix2pixHD's and CycleGAN's
    "lsgan": (lsgan_d, lsgan_g),
}
