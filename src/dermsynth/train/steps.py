"""The step protocol every model trains through, and the steps of the noise -> image GANs.

A *step* is everything model-specific the shared trainer runs; the loop itself never knows which model it
trains. A step

* declares the batch fields it ``needs`` (``dermsynth.data.batch``: images, labels, masks, semantic and
  instance maps, a second domain), and the minibatch stream builds exactly those;
* says, in :meth:`~TrainStep.begin`, how large the next global minibatch is (PGAN: by resolution);
* is called on a :class:`~dermsynth.data.batch.Batch` and returns its statistics as one device tensor in the
  order of ``stat_names`` (the header of ``losses.csv``), so the loop never forces a host sync;
* draws its own noise (latents, penalty weights) from ``noise``, the device generator whose state the
  checkpoint keeps;
* makes its own preview grid (:meth:`~TrainStep.preview`) and images for in-training metrics
  (:meth:`~TrainStep.synthesize`), and scores real batches for the over-fitting monitor
  (:meth:`~TrainStep.real_logits`);
* keeps in :meth:`~TrainStep.state_dict` whatever else an exact resume needs.

A step owns its networks (as the CycleGAN code's ``BaseModel`` with its ``model_names`` and
``optimizers``): the registry builds the model's networks by name (``dermsynth.models.build_networks``), the
trainer copies the one the step names ``sampled`` for the EMA (when ``--ema-beta`` > 0), and
:meth:`TrainStep.from_config` takes both and builds its optimizers. The step then exposes

* ``networks`` (name -> module) and ``optimizers`` (name -> optimizer): the trainer saves and restores each
  under its name in the checkpoint, checks every network for non-finite weights, and broadcasts them to
  every rank under ``torchrun``;
* ``lr_options`` (optimizer name -> the config field of its learning rate): the trainer's linear decay
  (``--lr-decay-start``) and learning rates changed on ``--resume`` go through :meth:`TrainStep.set_lr`;
* ``sampled`` and ``ema``: the network ``dermsynth sample`` rebuilds and the preview grid and metrics draw
  from, and its EMA copy.

The trainer never names a generator or a discriminator: a GAN step is an :class:`AdversarialStep`
(``generator`` + ``discriminator``, one Adam each); a diffusion step would own one denoiser, one optimizer
and its EMA.

Steps here: :class:`GANStep` is one discriminator update then one generator update on the same generated
batch, with the loss chosen by name and optional WGAN-GP penalties (gradient penalty, epsilon-drift).
Subclasses override small hooks only:

* :class:`ProgressiveStep` (PGAN): ``begin`` sets the growth stage and minibatch from the number of real
  images shown and resets Adam at every phase change; ``prepare_real`` pools/blends the reals to the stage.
* :class:`PyramidStep` (LAPGAN): the losses are taken over every Laplacian-pyramid level at once, each G_k
  conditioned on the *real* coarser image.

The trainer and the throughput benchmarks share these classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dermsynth.device import autocast_bf16
from dermsynth.errors import DermsynthError
from dermsynth.models.lapgan import LevelBatch, level_batches
from dermsynth.models.layers import upsample_to
from dermsynth.models.pgan import PGANSchedule, pgan_schedule, real_images_at
from dermsynth.train.disc_augment import Augmentation, augmentation_from_config
from dermsynth.data.batch import Batch
from dermsynth.train.config import TrainConfig
from dermsynth.train.distributed import DistInfo
from dermsynth.train.losses import LOSSES
from dermsynth.train.penalties import epsilon_drift, gradient_penalty

PREVIEW_SIZE = 64  # images in every preview grid (8 x 8)


def ema_beta_at(beta: float, step: int) -> float:
    """The EMA decay used after ``step`` finished steps: ``min(beta, (1 + step) / (10 + step))``.

    The warm-up of TensorFlow's ExponentialMovingAverage(num_updates): early on the average follows the
    generator closely, so a short run (or a PGAN that changes stage every few thousand images) is not
    sampled from an average dominated by its random initialisation. A function of the step only, so a
    resumed run uses the same decays as an uninterrupted one.
    """
    return min(beta, (1.0 + step) / (10.0 + step))


class TrainStep:
    """The protocol (see the module docstring) with the parts every step shares.

    A step owns its networks and optimizers: ``networks`` maps names to the plain modules (the names are the
    registry builder's and the checkpoint's keys), ``optimizers`` maps names to optimizers, ``lr_options``
    names for each optimizer the config field that holds its learning rate (the trainer applies the linear
    ``--lr-decay-start`` schedule and learning rates changed on ``--resume`` through :meth:`set_lr`),
    ``sampled`` names the network that is sampled, previewed and EMA-averaged, and ``ema`` is that EMA copy
    (or None). ``noise`` is the checkpointed device generator for every random draw of the step, ``dist``
    this process's place in a multi-process job: batches given to the step are this rank's rows of the global
    batch, random draws are made for the global batch and sharded the same way, and gradients are averaged
    over ranks before each optimizer step (:meth:`_update`).
    """

    #: batch fields the minibatch stream must fill (``images`` is always there)
    needs: frozenset[str] = frozenset({"images"})
    #: names of the statistics ``__call__`` returns, in order: the columns of losses.csv
    stat_names: tuple[str, ...] = ("d_loss", "g_loss", "d_real", "d_fake")
    #: the network that is sampled, previewed and EMA-averaged (a key of ``networks``)
    sampled: str = "generator"
    #: what the sampled network takes, recorded in checkpoints, when it depends on the config (else the
    #: registry's ``inputs``)
    sampled_inputs: tuple[str, ...] | None = None
    #: optimizer name -> the config field holding its learning rate
    lr_options: dict[str, str] = {}

    def __init__(self, networks: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                 bf16: bool = False, *, batch_size: int = 64, ema_beta: float = 0.0,
                 noise: torch.Generator | None = None, ema: nn.Module | None = None,
                 dist: DistInfo | None = None) -> None:
        self.networks, self.optimizers = dict(networks), dict(optimizers)
        self.batch_size, self.ema_beta = batch_size, ema_beta
        self.noise, self.ema, self.dist = noise, ema, dist or DistInfo()
        device = next((p.device for net in self.networks.values() for p in net.parameters()), torch.device("cpu"))
        self.autocast = autocast_bf16(device, bf16)  # on the networks' device: CUDA or a bf16-capable CPU
        self.global_batch = batch_size

    @classmethod
    def from_config(cls, cfg: TrainConfig, networks: dict[str, nn.Module], *, bf16: bool,
                    noise: torch.Generator | None = None, ema: nn.Module | None = None,
                    dist: DistInfo | None = None) -> "TrainStep":
        """The step a resolved config asks for, on the registry's ``networks`` (it builds its optimizers);
        ``ema``: the EMA copy of ``networks[cls.sampled]`` or None."""
        raise NotImplementedError

    @classmethod
    def config_options(cls, cfg: TrainConfig) -> dict[str, Any]:
        """Extra constructor options a subclass takes from the config."""
        return {}

    # --- hooks ---------------------------------------------------------------------------------------------

    def begin(self, images_seen: int) -> int:
        """Called before every step with the real images shown so far; returns this step's global minibatch."""
        self.global_batch = self.batch_size
        return self.batch_size

    def __call__(self, batch: Batch) -> torch.Tensor:
        """One training step on this rank's rows of the global batch; statistics in ``stat_names`` order."""
        raise NotImplementedError

    def ema_decay(self, step: int, images_seen: int) -> float:
        """The EMA decay after ``step`` finished steps (``images_seen`` real images shown)."""
        return ema_beta_at(self.ema_beta, step)

    def preview(self, generator: nn.Module, fixed: Batch) -> tuple[torch.Tensor, int]:
        """(images in [-1, 1], images per row) for the sample grid; ``generator`` is the sampled network (or its
        EMA copy), ``fixed`` the same real batch of :data:`PREVIEW_SIZE` images at every call. Runs under
        no_grad, autocast and a forked, seeded RNG."""
        raise NotImplementedError

    def synthesize(self, generator: nn.Module, n: int, seed: int, source: Batch | None) -> torch.Tensor:
        """``n`` generated images in [-1, 1] for in-training metrics, reproducible by ``seed``; map-conditioned
        steps translate ``source`` (real batch of ``n`` rows) instead of drawing latents."""
        raise NotImplementedError

    def synthesis_settings(self) -> dict[str, Any]:
        """Settings of :meth:`synthesize` that metrics.csv states beside each score, with the sampling cost per
        image (a diffusion sampler and its steps); none for one-pass generators."""
        return {}

    def real_logits(self, batch: Batch) -> torch.Tensor:
        """D's logits for a real batch as D sees it in training (the over-fitting monitor; adversarial steps)."""
        raise DermsynthError("--overfit-holdout needs a model with a discriminator")

    def state_dict(self) -> dict[str, Any]:
        """Step state that a checkpoint must keep for an exact resume (none here)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def set_lr(self, opt: torch.optim.Optimizer, lr: float) -> None:
        """Set an optimizer's learning rate (``--lr-decay-start``, ``--resume``; steps that scale their rates
        override this)."""
        for group in opt.param_groups:
            group["lr"] = lr

    # --- shared helpers ------------------------------------------------------------------------------------

    def draw(self, *shape: int, kind: str = "normal", like: torch.Tensor | None = None) -> torch.Tensor:
        """A random tensor for the *global* batch (leading dimension), drawn from the checkpointed ``noise``
        generator, and this rank's rows of it."""
        device = like.device if like is not None else (self.noise.device if self.noise is not None else "cpu")
        dtype = like.dtype if like is not None else torch.float32
        fn = torch.randn if kind == "normal" else torch.rand
        return self.dist.shard(fn(*shape, generator=self.noise, device=device, dtype=dtype))

    def _update(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.active:
            self.dist.sync_grads(opt)
        opt.step()


def adam(module: nn.Module, lr: float, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam over ``module``'s parameters with the config's betas."""
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(float(cfg.beta1), float(cfg.beta2)))


class AdversarialStep(TrainStep):
    """A generator G and a discriminator D (``networks["generator"]``, ``networks["discriminator"]``; each
    may hold several networks, e.g. CycleGAN's two generators) with one Adam optimizer each, as the GAN
    papers' code has.

    ``G``/``D`` are the plain modules (``G_module``/``D_module``; ``G``/``D`` may be their compiled versions),
    ``opt_g``/``opt_d`` their optimizers, ``ema`` the EMA generator or None.
    """

    sampled = "generator"
    lr_options = {"generator": "lr_g", "discriminator": "lr_d"}

    def __init__(self, G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                 bf16: bool = False, compile: bool = False, *, batch_size: int = 64, ema_beta: float = 0.0,
                 noise: torch.Generator | None = None, ema: nn.Module | None = None,
                 dist: DistInfo | None = None) -> None:
        super().__init__({"generator": G, "discriminator": D}, {"generator": opt_g, "discriminator": opt_d}, bf16,
                         batch_size=batch_size, ema_beta=ema_beta, noise=noise, ema=ema, dist=dist)
        self.G_module, self.D_module = G, D  # the plain modules, for their methods and attributes
        self.G, self.D = (torch.compile(G), torch.compile(D)) if compile else (G, D)
        self.opt_g, self.opt_d = opt_g, opt_d

    @staticmethod
    def adam_pair(cfg: TrainConfig, networks: dict[str, nn.Module]) -> tuple[nn.Module, nn.Module, Any, Any]:
        """(G, D, Adam of G at ``lr_g``, Adam of D at ``lr_d``) of a resolved config."""
        G, D = networks["generator"], networks["discriminator"]
        return G, D, adam(G, cfg.lr_g, cfg), adam(D, cfg.lr_d, cfg)

    @classmethod
    def from_config(cls, cfg: TrainConfig, networks: dict[str, nn.Module], *, bf16: bool,
                    noise: torch.Generator | None = None, ema: nn.Module | None = None,
                    dist: DistInfo | None = None) -> "AdversarialStep":
        return cls(*cls.adam_pair(cfg, networks), bf16, cfg.compile, batch_size=cfg.batch_size or 1,
                   ema_beta=cfg.ema_beta or 0.0, noise=noise, ema=ema, dist=dist, **cls.config_options(cfg))

    def real_logits(self, batch: Batch) -> torch.Tensor:
        """D's logits for a real batch as D sees it in training (the over-fitting monitor)."""
        raise NotImplementedError


class GANStep(AdversarialStep):
    """Noise -> image: one D update then one G update on the same generated batch.

    G takes ``(z, labels)``, D ``(images, labels)``; labels only when ``conditional``. ``noise`` also draws
    the gradient penalty's interpolation weights. ``augment`` (``--augment``, see
    ``dermsynth.train.disc_augment``) transforms every image D sees -- reals and fakes, in D's and G's losses
    and in the penalties -- and adds the column ``aug_p``; ADA adjusts its p from D's logits on the reals.
    The over-fitting monitor (:meth:`real_logits`) scores un-augmented reals.
    """

    def __init__(self, G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                 loss: str = "nonsaturating", bf16: bool = False, compile: bool = False, *, batch_size: int = 64,
                 gp_weight: float = 0.0, drift: float = 0.0, conditional: bool = False, z_dim: int | None = None,
                 preview_seed: int = 2, ema_beta: float = 0.0, noise: torch.Generator | None = None,
                 ema: nn.Module | None = None, dist: DistInfo | None = None,
                 augment: Augmentation | None = None) -> None:
        if loss not in LOSSES:
            raise DermsynthError(f"unknown loss {loss!r}; available: {', '.join(LOSSES)}")
        super().__init__(G, D, opt_g, opt_d, bf16, compile, batch_size=batch_size, ema_beta=ema_beta,
                         noise=noise, ema=ema, dist=dist)
        self.loss_d, self.loss_g = LOSSES[loss]
        self.gp_weight, self.drift = gp_weight, drift
        self.conditional = conditional
        self.needs = frozenset({"images", "labels"}) if conditional else frozenset({"images"})
        self.z_dim = int(z_dim if z_dim is not None else G.z_dim)
        # the preview latents: the same every call (and the same as before the step protocol existed)
        num_classes = max(int(getattr(G, "num_classes", 0)), 1)
        self.preview_z = torch.randn(PREVIEW_SIZE, self.z_dim, generator=torch.Generator().manual_seed(preview_seed))
        self.preview_y = torch.arange(PREVIEW_SIZE) % num_classes
        self.augment = augment
        if augment is not None:
            self.stat_names = (*self.stat_names, "aug_p")

    @classmethod
    def from_config(cls, cfg: TrainConfig, networks: dict[str, nn.Module], *, bf16: bool,
                    noise: torch.Generator | None = None, ema: nn.Module | None = None,
                    dist: DistInfo | None = None) -> "GANStep":
        return cls(*cls.adam_pair(cfg, networks), cfg.loss, bf16, cfg.compile, batch_size=cfg.batch_size or 1,
                   gp_weight=cfg.gp_weight or 0.0, drift=cfg.drift or 0.0, conditional=cfg.conditional,
                   z_dim=cfg.z_dim, preview_seed=cfg.seed + 2, ema_beta=cfg.ema_beta or 0.0, noise=noise,
                   ema=ema, dist=dist, augment=augmentation_from_config(
                       cfg, noise.device if noise is not None else "cpu", (dist or DistInfo()).mean),
                   **cls.config_options(cfg))

    # --- hooks ---------------------------------------------------------------------------------------------

    def prepare_real(self, real: torch.Tensor) -> torch.Tensor:
        """The real batch as D sees it."""
        return real

    def seen(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` augmented as D sees them (themselves without ``--augment``); random draws from ``noise``."""
        if self.augment is None:
            return images
        world, like = self.dist.world, images.new_empty(0, dtype=torch.float32)  # float32 draws on the images' device
        return self.augment(images, lambda kind, n, *shape: self.draw(n * world, *shape, kind=kind, like=like))

    def discriminator_loss(self, real: torch.Tensor, labels: torch.Tensor | None,
                           z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """(D loss, real logits, fake logits, what :meth:`generator_loss` needs: here the fake batch)."""
        fake = self.G(z, labels)
        real_seen, fake_seen = self.seen(real), self.seen(fake.detach())
        real_logits = self.D(real_seen, labels)
        fake_logits = self.D(fake_seen, labels)
        d_loss = self.loss_d(real_logits, fake_logits) + self.penalties(real_seen, fake_seen, labels, real_logits)
        return d_loss, real_logits, fake_logits, fake

    def generator_loss(self, fake: Any, labels: torch.Tensor | None) -> torch.Tensor:
        return self.loss_g(self.D(self.seen(fake), labels))

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
            eps = self.draw(real.shape[0] * self.dist.world, 1, 1, 1, kind="uniform", like=real)
            # the eager D: torch.compile does not support the double backward (create_graph) of a compiled graph
            extra = self.gp_weight * gradient_penalty(self.D_module, real, fake, labels, eps=eps)
        if self.drift:
            extra = extra + epsilon_drift(real_logits, self.drift)
        return extra

    # --- the step ------------------------------------------------------------------------------------------

    def __call__(self, batch: Batch) -> torch.Tensor:
        labels = batch.labels if self.conditional else None
        z = self.draw(self.global_batch, self.z_dim, like=batch.images)
        real = self.prepare_real(batch.images)
        with self.autocast:
            d_loss, real_logits, fake_logits, fake = self.discriminator_loss(real, labels, z)
        self._update(self.opt_d, d_loss)
        if self.augment is not None:
            self.augment.observe(real_logits, self.global_batch)
        with self.autocast:
            g_loss = self.generator_loss(fake, labels)
        self._update(self.opt_g, g_loss)
        stats = [d_loss.detach(), g_loss.detach(), real_logits.detach().float().mean(),
                 fake_logits.detach().float().mean()]
        if self.augment is not None:
            stats.append(self.augment.p.float())
        return torch.stack(stats)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.augment is None else {"augment": self.augment.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.augment is not None and "augment" in state:
            self.augment.load_state_dict(state["augment"])

    def _labels_for(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return torch.randint(int(self.G_module.num_classes), (n,), generator=generator)

    def preview(self, generator: nn.Module, fixed: Batch) -> tuple[torch.Tensor, int]:
        device = fixed.images.device
        labels = self.preview_y.to(device) if self.conditional else None
        images = generator(self.preview_z.to(device), labels)
        return upsample_to(images, fixed.images.shape[-1]), 8  # PGAN while growing: enlarged to full size

    def synthesize(self, generator: nn.Module, n: int, seed: int, source: Batch | None) -> torch.Tensor:
        device = next(generator.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=gen)
        labels = self._labels_for(n, gen)
        images = generator(z.to(device), None if labels is None else labels.to(device))
        return upsample_to(images, int(generator.resolution))

    def real_logits(self, batch: Batch) -> torch.Tensor:
        return self.D(self.prepare_real(batch.images), batch.labels if self.conditional else None)


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
        self.global_batch = self.stage.batch_size
        return self.global_batch

    def prepare_real(self, real: torch.Tensor) -> torch.Tensor:
        return real_images_at(real, self.stage.level, self.stage.alpha)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "phase": self.phase}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
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
        if self.augment is not None:
            raise DermsynthError("--augment is not supported for --model lapgan (its discriminators judge a band "
                                 "given the coarser image, which would need one transform for both); use "
                                 "--augment none")

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


STEPS: dict[str, type[TrainStep]] = {"gan": GANStep, "progressive": ProgressiveStep, "pyramid": PyramidStep}


def register_step(name: str, cls: type[TrainStep]) -> None:
    """Make a step class available to registry entries as ``ModelSpec.step = name``."""
    STEPS[name] = cls


def step_class(name: str) -> type[TrainStep]:
    if name not in STEPS:
        raise DermsynthError(f"unknown training step {name!r}; available: {', '.join(STEPS)}")
    return STEPS[name]
