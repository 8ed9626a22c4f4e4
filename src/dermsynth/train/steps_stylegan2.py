"""The StyleGAN2-ADA training step (``--model stylegan2``), after ``training/loss.py`` and
``training/training_loop.py`` of NVlabs/stylegan2-ada-pytorch (Karras et al. 2020).

Per step, in the reference's phase order, each phase with its own fresh latents:

1. **Gmain**: non-saturating logistic loss softplus(-D(aug(G(z)))); style mixing with probability
   ``style_mixing`` (0.9): a second latent's w replaces the styles from a random layer on (one cutoff per batch).
2. **Greg** every ``pl_interval`` (4) steps: path-length regularisation on half the batch
   (``pl_batch_shrink`` 2): ``a = |J_w^T y|`` with ``y ~ N(0, I) / sqrt(H W)``, penalty ``(a - a_mean)^2``
   times ``pl_weight`` (2), ``a_mean`` an exponential average (decay 0.01) kept in the checkpoint; the loss is
   multiplied by the interval (lazy regularisation) and takes its own Adam step.
3. **Dmain**: softplus(D(aug(G(z)))) + softplus(-D(aug(x))); ADA's controller sees D(aug(x)).
4. **Dreg** every ``r1_interval`` (16) steps: R1 = ``gamma / 2 * |grad_x D(aug(x))|^2`` (w.r.t. the
   un-augmented reals), times the interval, its own Adam step.

Lazy regularisation rescales both Adams (Karras et al. 2020, appendix B): ``lr * c`` and ``beta ** c`` with
``c = interval / (interval + 1)``. The generator EMA has a half-life of ``ema_kimg`` thousand images, ramped
up as ``min(ema_kimg * 1000, images_seen * ema_rampup)`` when ``ema_rampup`` > 0: decay
``0.5 ** (batch / half_life)``. Double backward (R1, path length) uses the eager modules (compiled graphs
have none); ``--compile`` therefore compiles D's main passes only (G runs as mapping + synthesis, for style
mixing and the path length).

Mixed precision (bf16 autocast on CUDA or a bf16-capable CPU): the synthesis and discriminator layers run in
bf16; the mapping networks and the R1 / path-length passes with their double backward run in float32, as the
reference keeps them (it runs fp16 only in the 4 highest-resolution blocks); ``bf16_everywhere`` puts those
under bf16 too (``benchmarks/stylegan2_precision_parity.py`` measures the difference). Noise inputs are drawn inside G from torch's RNG, which the checkpoint keeps;
under ``torchrun`` every rank draws the same noise for its own rows and keeps its own path-length mean (as
the reference does), so a multi-GPU run is not bit-identical to a single-process one.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from dermsynth.models.stylegan2 import MappingNetwork
from dermsynth.train.disc_augment import augmentation_from_config
from dermsynth.data.batch import Batch
from dermsynth.train.config import TrainConfig
from dermsynth.train.distributed import DistInfo
from dermsynth.train.steps import GANStep, register_step


def lazy_factor(interval: int) -> float:
    """c = interval / (interval + 1): the share of Adam updates that are main (not regularisation) steps."""
    return interval / (interval + 1)


class StyleGAN2Step(GANStep):
    """StyleGAN2-ADA's losses and lazy regularisation (see the module docstring)."""

    stat_names = ("d_loss", "g_loss", "d_real", "d_fake", "r1_penalty", "pl_penalty", "pl_mean", "aug_p")

    def __init__(self, *args: Any, r1_gamma: float = 10.0, r1_interval: int = 16, pl_weight: float = 2.0,
                 pl_interval: int = 4, pl_decay: float = 0.01, pl_batch_shrink: int = 2, style_mixing: float = 0.9,
                 ema_kimg: float = 10.0, ema_rampup: float = 0.0, bf16_everywhere: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the reference's mixed precision keeps the mapping networks and the double backward in float32
        self.penalty_precision = self.autocast if bf16_everywhere else contextlib.nullcontext()
        for net in (self.G_module, self.D_module, self.ema):
            for module in (net.modules() if net is not None else ()):
                if isinstance(module, MappingNetwork):
                    module.autocast = bf16_everywhere
        self.stat_names = type(self).stat_names  # aug_p is always a column here (0 without --augment)
        self.r1_gamma, self.r1_interval = float(r1_gamma), int(r1_interval)
        self.pl_weight, self.pl_interval = float(pl_weight), int(pl_interval)
        self.pl_decay, self.pl_batch_shrink = float(pl_decay), int(pl_batch_shrink)
        self.style_mixing = float(style_mixing)
        self.ema_kimg, self.ema_rampup = float(ema_kimg), float(ema_rampup)
        device = self.noise.device if self.noise is not None else torch.device("cpu")
        self.pl_mean = torch.zeros((), device=device)
        self.last = torch.zeros(2, device=device)  # the latest R1 and path-length penalties (logged every step)
        self.batch_idx = 0
        self.factors = {id(self.opt_g): lazy_factor(self.pl_interval), id(self.opt_d): lazy_factor(self.r1_interval)}
        for opt in (self.opt_g, self.opt_d):
            c = self.factors[id(opt)]
            for group in opt.param_groups:
                group["lr"] = group["lr"] * c
                group["betas"] = tuple(b ** c for b in group["betas"])

    @classmethod
    def from_config(cls, cfg: TrainConfig, networks: dict[str, nn.Module], *, bf16: bool,
                    noise: torch.Generator | None = None, ema: nn.Module | None = None,
                    dist: DistInfo | None = None) -> "StyleGAN2Step":
        device = noise.device if noise is not None else "cpu"
        return cls(*cls.adam_pair(cfg, networks), "nonsaturating", bf16, cfg.compile, batch_size=cfg.batch_size,
                   conditional=cfg.conditional, z_dim=None, preview_seed=cfg.seed + 2, ema_beta=cfg.ema_beta or 0.0,
                   noise=noise, ema=ema, dist=dist,
                   augment=augmentation_from_config(cfg, device, (dist or DistInfo()).mean),
                   r1_gamma=cfg.r1_gamma, r1_interval=cfg.r1_interval, pl_weight=cfg.pl_weight,
                   pl_interval=cfg.pl_interval, style_mixing=cfg.style_mixing, ema_kimg=cfg.ema_kimg,
                   ema_rampup=cfg.ema_rampup, bf16_everywhere=cfg.bf16_everywhere)

    # --- protocol ------------------------------------------------------------------------------------------

    def begin(self, images_seen: int) -> int:
        self.batch_idx = images_seen // self.batch_size
        return super().begin(images_seen)

    def ema_decay(self, step: int, images_seen: int) -> float:
        """0.5 ** (batch / half-life), half-life = ema_kimg * 1000 images, ramped up by ``ema_rampup``."""
        half_life = self.ema_kimg * 1000
        if self.ema_rampup > 0:
            half_life = min(half_life, images_seen * self.ema_rampup)
        return 0.5 ** (self.global_batch / max(half_life, 1e-8))

    def set_lr(self, opt: torch.optim.Optimizer, lr: float) -> None:
        super().set_lr(opt, lr * self.factors[id(opt)])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pl_mean": self.pl_mean.detach().cpu().clone(),
                "last": self.last.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "pl_mean" in state:
            self.pl_mean = state["pl_mean"].to(self.pl_mean.device)
            self.last = state["last"].to(self.last.device)

    # --- the losses ----------------------------------------------------------------------------------------

    def run_G(self, z: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, ws) with style mixing; the mixing draws come from ``noise`` (the same on every rank)."""
        G = self.G_module
        ws = G.mapping(z, labels)
        if self.style_mixing > 0:
            num_ws = ws.shape[1]
            u = torch.rand(2, generator=self.noise, device=ws.device)
            cutoff = torch.floor(u[0] * (num_ws - 1)) + 1                  # uniform in [1, num_ws)
            cutoff = torch.where(u[1] < self.style_mixing, cutoff, torch.full_like(cutoff, num_ws))
            z2 = self.draw(self.global_batch, self.z_dim, like=z)[:z.shape[0]]
            ws2 = G.mapping(z2, labels, update_w_avg=False)
            mix = torch.arange(num_ws, device=ws.device)[None, :, None] >= cutoff
            ws = torch.where(mix, ws2, ws)
        return G.synthesize(ws), ws

    def path_length_penalty(self, z: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(``(|J_w^T y| - a_mean)^2`` averaged over ``z``'s rows, a zero term that touches the images), updating
        the running mean ``a_mean``; in float32 unless ``bf16_everywhere``."""
        with self.penalty_precision:
            fake, ws = self.run_G(z, labels)
            pl_noise = self.draw(self.global_batch, *fake.shape[1:], like=z)[:z.shape[0]]
            pl_noise = pl_noise / (fake.shape[2] * fake.shape[3]) ** 0.5
            (grads,) = torch.autograd.grad((fake.float() * pl_noise).sum(), ws, create_graph=True)
        lengths = grads.float().square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(lengths.mean(), self.pl_decay)  # as the reference: not detached here
        self.pl_mean = pl_mean.detach()
        keep_graph = fake.float()[:, 0, 0, 0].mean() * 0  # as the reference: the loss touches the images
        return (lengths - pl_mean).square().mean(), keep_graph

    def r1_penalty(self, real: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(``|grad_x D(aug(x))|^2`` averaged over the batch, D's logits); in float32 unless ``bf16_everywhere``."""
        real_tmp = real.detach().requires_grad_(True)
        with self.penalty_precision:
            logits = self.D_module(self.seen(real_tmp), labels)
            (grads,) = torch.autograd.grad(logits.float().sum(), real_tmp, create_graph=True)
        return grads.float().square().sum(dim=(1, 2, 3)).mean(), logits

    def __call__(self, batch: Batch) -> torch.Tensor:
        labels = batch.labels if self.conditional else None
        real = batch.images
        n, gb = real.shape[0], self.global_batch

        # Gmain
        self.D_module.requires_grad_(False)
        z = self.draw(gb, self.z_dim, like=real)
        with self.autocast:
            fake, _ = self.run_G(z, labels)
            g_loss = self.loss_g(self.D(self.seen(fake), labels))
        self._update(self.opt_g, g_loss)

        # Greg: path length, lazily
        if self.pl_weight and self.batch_idx % self.pl_interval == 0:
            k = max(n // self.pl_batch_shrink, 1)
            z = self.draw(gb, self.z_dim, like=real)[:k]
            penalty, keep_graph = self.path_length_penalty(z, None if labels is None else labels[:k])
            self._update(self.opt_g, (penalty * self.pl_weight + keep_graph) * self.pl_interval)
            self.last[1] = penalty.detach()
        self.D_module.requires_grad_(True)

        # Dmain
        z = self.draw(gb, self.z_dim, like=real)
        with torch.no_grad(), self.autocast:
            fake, _ = self.run_G(z, labels)
        with self.autocast:
            fake_logits = self.D(self.seen(fake), labels)
            real_logits = self.D(self.seen(real), labels)
            d_loss = self.loss_d(real_logits, fake_logits)
        self._update(self.opt_d, d_loss)
        if self.augment is not None:
            self.augment.observe(real_logits, gb)

        # Dreg: R1 on the un-augmented reals, lazily
        if self.r1_gamma and self.batch_idx % self.r1_interval == 0:
            r1, logits = self.r1_penalty(real, labels)
            self._update(self.opt_d, (r1 * (self.r1_gamma / 2) + logits.float().mean() * 0) * self.r1_interval)
            self.last[0] = r1.detach()

        p = self.augment.p.float() if self.augment is not None else torch.zeros((), device=real.device)
        return torch.stack([d_loss.detach(), g_loss.detach(), real_logits.detach().float().mean(),
                            fake_logits.detach().float().mean(), self.last[0], self.last[1], self.pl_mean, p])


register_step("stylegan2", StyleGAN2Step)

__all__ = ["StyleGAN2Step", "lazy_factor"]
