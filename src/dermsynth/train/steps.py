"""One training step per model kind: the only model-specific code the shared trainer runs.

:class:`GANStep` is one discriminator update then one generator update on the same generated batch, with the
loss chosen by name and optional WGAN-GP penalties (gradient penalty, epsilon-drift). Subclasses override
small hooks only:

* :class:`ProgressiveStep` (PGAN): ``begin`` sets the growth stage and minibatch from the number of real
  images shown and resets Adam at every phase change; ``prepare_real`` pools/blends the reals to the stage.
* :class:`PyramidStep` (LAPGAN): the losses are taken over every Laplacian-pyramid level at once, each G_k
  conditioned on the *real* coarser image.

Every step returns its statistics (d_loss, g_loss, mean real logit, mean fake logit) as one device tensor,
so the caller never forces a host sync. The trainer and the throughput benchmarks share these classes.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.models.lapgan import LevelBatch, level_batches
from dermsynth.models.pgan import PGANSchedule, real_images_at
from dermsynth.train.config import TrainConfig, parse_batch_schedule
from dermsynth.train.distributed import DistInfo
from dermsynth.train.losses import LOSSES
from dermsynth.train.penalties import epsilon_drift, gradient_penalty


class GANStep:
    """One D update then one G update on the same generated batch.

    ``noise`` (a device ``torch.Generator``) draws the gradient penalty's interpolation weights, so they are
    part of the checkpointed RNG state; ``ema`` is the EMA generator, which hooks that change the generator's
    stage must follow. With ``dist`` (multi-process training) the batches given to the step are this rank's
    rows of the global batch; random draws are made for the global batch and sharded the same way, and
    gradients are averaged over ranks before each optimizer step.
    """

    def __init__(self, G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                 loss: str = "nonsaturating", bf16: bool = False, compile: bool = False, *, batch_size: int = 64,
                 gp_weight: float = 0.0, drift: float = 0.0, noise: torch.Generator | None = None,
                 ema: nn.Module | None = None, dist: DistInfo | None = None) -> None:
        if loss not in LOSSES:
            raise DermsynthError(f"unknown loss {loss!r}; available: {', '.join(LOSSES)}")
        self.G_module, self.D_module = G, D  # the plain modules, for their methods and attributes
        self.G, self.D = (torch.compile(G), torch.compile(D)) if compile else (G, D)
        self.opt_g, self.opt_d = opt_g, opt_d
        self.loss_d, self.loss_g = LOSSES[loss]
        self.batch_size, self.gp_weight, self.drift = batch_size, gp_weight, drift
        self.noise, self.ema, self.dist = noise, ema, dist or DistInfo()
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext())

    @classmethod
    def from_config(cls, cfg: TrainConfig, G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
                    opt_d: torch.optim.Optimizer, *, bf16: bool, noise: torch.Generator | None = None,
                    ema: nn.Module | None = None, dist: DistInfo | None = None) -> "GANStep":
        """The step a resolved config asks for."""
        return cls(G, D, opt_g, opt_d, cfg.loss, bf16, cfg.compile, batch_size=cfg.batch_size or 1,
                   gp_weight=cfg.gp_weight or 0.0, drift=cfg.drift or 0.0, noise=noise, ema=ema, dist=dist,
                   **cls.config_options(cfg))

    @classmethod
    def config_options(cls, cfg: TrainConfig) -> dict[str, Any]:
        """Extra constructor options a subclass takes from the config."""
        return {}

    @classmethod
    def steps_to_show(cls, cfg: TrainConfig, images: int) -> int:
        """Steps needed to show ``images`` real images (used to turn --kimg into --steps)."""
        return max(1, math.ceil(images / cfg.batch_size))

    # --- hooks ---------------------------------------------------------------------------------------------

    def begin(self, images_seen: int) -> int:
        """Called before every step with the real images shown so far; returns this step's minibatch size."""
        return self.batch_size

    def prepare_real(self, real: torch.Tensor) -> torch.Tensor:
        """The real batch as D sees it."""
        return real

    def discriminator_loss(self, real: torch.Tensor, labels: torch.Tensor | None,
                           z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """(D loss, real logits, fake logits, what :meth:`generator_loss` needs: here the fake batch)."""
        fake = self.G(z, labels)
        real_logits = self.D(real, labels)
        fake_logits = self.D(fake.detach(), labels)
        d_loss = self.loss_d(real_logits, fake_logits) + self.penalties(real, fake, labels, real_logits)
        return d_loss, real_logits, fake_logits, fake

    def generator_loss(self, fake: Any, labels: torch.Tensor | None) -> torch.Tensor:
        return self.loss_g(self.D(fake, labels))

    def penalties(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None,
                  real_logits: torch.Tensor) -> torch.Tensor | float:
        """gp_weight * gradient penalty + drift * E[D(real)^2] (Gulrajani et al.; Karras et al. A.1).

        The penalty's forward runs under the step's bf16 autocast and its double backward in the same
        precision: bf16 has float32's exponent range, so second-order gradients neither overflow nor
        underflow (the reason fp16 would need loss scaling); the gradient norms and the penalty are
        reduced in float32 (``gradient_penalty``), and the weights' gradients accumulate in float32.
        """
        extra: torch.Tensor | float = 0.0
        if self.gp_weight:
            eps = self.dist.shard(torch.rand(real.shape[0] * self.dist.world, 1, 1, 1, generator=self.noise,
                                             device=real.device, dtype=real.dtype))
            # the eager D: torch.compile does not support the double backward (create_graph) of a compiled graph
            extra = self.gp_weight * gradient_penalty(self.D_module, real, fake, labels, eps=eps)
        if self.drift:
            extra = extra + epsilon_drift(real_logits, self.drift)
        return extra

    def state_dict(self) -> dict[str, Any]:
        """Step state that a checkpoint must keep for an exact resume (none here)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # --- the step ------------------------------------------------------------------------------------------

    def __call__(self, real: torch.Tensor, labels: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        real = self.prepare_real(real)
        with self.autocast:
            d_loss, real_logits, fake_logits, fake = self.discriminator_loss(real, labels, z)
        self._update(self.opt_d, d_loss)
        with self.autocast:
            g_loss = self.generator_loss(fake, labels)
        self._update(self.opt_g, g_loss)
        return torch.stack([d_loss.detach(), g_loss.detach(),
                            real_logits.detach().float().mean(), fake_logits.detach().float().mean()])

    def _update(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.active:
            self.dist.sync_grads(opt)
        opt.step()


def pgan_schedule(cfg: TrainConfig) -> PGANSchedule:
    """The growth schedule of a resolved PGAN config."""
    return PGANSchedule(resolution=cfg.size, stable_kimg=cfg.stable_kimg, fade_kimg=cfg.fade_kimg,
                        batch_sizes=parse_batch_schedule(cfg.batch_schedule, cfg.size))


class ProgressiveStep(GANStep):
    """PGAN: grow 4 px -> full size by the number of real images shown, fading each new block in linearly.

    Optimizer state: Adam's moments (and bias-correction step counts) of G and D are reset whenever the
    phase changes -- at the start of every fade-in and of every stable phase -- as the reference does
    (``reset_opt_for_new_lod=True`` in tkarras/progressive_growing_of_gans ``train.py``): the statistics of
    the old network's layers would otherwise steer the new ones. The phase of the last step is part of the
    checkpoint, so a resumed run resets exactly where an uninterrupted one would.
    """

    def __init__(self, *args: Any, schedule: PGANSchedule, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schedule = schedule
        self.stage = schedule.stage_at(0)
        self.phase: int | None = None

    @classmethod
    def config_options(cls, cfg: TrainConfig) -> dict[str, Any]:
        return {"schedule": pgan_schedule(cfg)}

    @classmethod
    def steps_to_show(cls, cfg: TrainConfig, images: int) -> int:
        return max(1, pgan_schedule(cfg).steps_to_show(images))

    def begin(self, images_seen: int) -> int:
        self.stage = self.schedule.stage_at(images_seen)
        phase = self.schedule.phase_at(images_seen)
        if self.phase is not None and phase != self.phase:
            for opt in (self.opt_g, self.opt_d):
                opt.state.clear()  # Adam restarts lazily from zero moments and step 0
        self.phase = phase
        for net in (self.G_module, self.D_module, self.ema):
            if net is not None:
                net.set_stage(self.stage.level, self.stage.alpha)
        return self.stage.batch_size

    def prepare_real(self, real: torch.Tensor) -> torch.Tensor:
        return real_images_at(real, self.stage.level, self.stage.alpha)

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase = state.get("phase")


class PyramidStep(GANStep):
    """LAPGAN: every level's D_k and G_k trained at once on the real Laplacian pyramid (Denton et al.).

    The levels share no parameters, so one loss over the concatenated logits of all levels trains each
    level's pair exactly as separate GANs would (up to the common 1/levels factor, which Adam ignores).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.gp_weight:
            raise DermsynthError("--gp-weight is not supported for --model lapgan (its critics are conditional "
                                 "per level); use --gp-weight 0")

    def discriminator_loss(self, real: torch.Tensor, labels: torch.Tensor | None,
                           z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[LevelBatch]]:
        n = real.shape[0] * self.dist.world  # noise planes drawn for the global batch, then sharded
        noise = [self.dist.shard(self.G_module.sample_noise(k, n, real.device, self.noise))
                 for k in range(1, self.G_module.num_levels)]
        batches = level_batches(self.G_module, real, labels, z, noise=noise)
        real_logits = self.D_module.pyramid_logits(batches, labels)
        fake_logits = self.D_module.pyramid_logits(batches, labels, fake=True, detach=True)
        d_loss = self.loss_d(real_logits, fake_logits) + self.penalties(real, None, labels, real_logits)
        return d_loss, real_logits, fake_logits, batches

    def generator_loss(self, batches: list[LevelBatch], labels: torch.Tensor | None) -> torch.Tensor:
        return self.loss_g(self.D_module.pyramid_logits(batches, labels, fake=True))


STEPS: dict[str, type[GANStep]] = {"gan": GANStep, "progressive": ProgressiveStep, "pyramid": PyramidStep}


def step_class(name: str) -> type[GANStep]:
    if name not in STEPS:
        raise DermsynthError(f"unknown training step {name!r}; available: {', '.join(STEPS)}")
    return STEPS[name]
