"""WGAN-GP losses and regularisers (Gulrajani et al. 2017; drift term from Karras et al. 2018).

The PGAN critic loss is ``wgan_d_loss(r, f) + 10 * gradient_penalty(D, real, fake) + epsilon_drift(r)`` and the
generator loss ``wgan_g_loss(f)``. All return float32 scalars.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def wgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Critic loss E[D(fake)] - E[D(real)]."""
    return fake_logits.float().mean() - real_logits.float().mean()


def wgan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss -E[D(fake)]."""
    return -fake_logits.float().mean()


def epsilon_drift(real_logits: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """eps * E[D(real)^2]: keeps the critic's output from drifting far from zero (Karras et al., appendix A.1)."""
    return eps * real_logits.float().square().mean()


def gradient_penalty(D: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     labels: torch.Tensor | None = None, target: float = 1.0,
                     generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - target)^2] at x_hat = eps * real + (1 - eps) * fake, eps ~ U[0, 1) per sample.

    ``eps`` is drawn as ``torch.rand(N, 1, 1, 1, generator=generator)`` on the images' device unless given
    (multi-GPU training draws it for the global batch and passes each rank its rows); the caller multiplies
    by lambda (10). The graph is kept (create_graph) so the penalty can be backpropagated into D.
    """
    if eps is None:
        eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, device=real.device,
                         dtype=real.dtype)
    x_hat = torch.lerp(fake.detach(), real.detach(), eps).requires_grad_(True)
    logits = D(x_hat, labels)
    (grad,) = torch.autograd.grad(logits.float().sum(), x_hat, create_graph=True)
    norms = grad.float().flatten(1).norm(2, dim=1)
    return (norms - target).square().mean()
