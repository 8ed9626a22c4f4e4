"""The diffusion training step (issue 19): one denoiser, one AdamW optimizer, the EMA copy the trainer keeps.

The step owns ``networks = {"denoiser": ...}`` and ``optimizers = {"denoiser": ...}`` and samples the
denoiser (its EMA copy for previews and in-training metrics). One training step is one draw of DDPM's simple
loss (``dermsynth.models.diffusion.Diffusion.loss``: uniform t, the epsilon or v target, class labels dropped with
probability ``p_uncond``), a gradient clipped to norm ``grad_clip`` and an AdamW update whose learning rate
ramps up linearly over the first ``warmup`` steps (DDPM: 5000; diffusers' example: 500). Random draws come from
the checkpointed ``noise`` generator for the global batch, each rank keeping its rows, as in the GAN steps.

Previews and in-training metrics draw images with the configured ``sampler`` at ``sampling_steps`` steps and
``guidance``; the map-conditioned model (``ddpm-maps``, :class:`MapDiffusionStep`) denoises given the semantic
(+ instance-boundary) maps of the batch, as extra input channels; the inpainting model (``ddpm-inpaint``,
:class:`InpaintDiffusionStep`) repaints the inside of lesion masks given the rest of the image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dermsynth.models.diffusion import (INPAINT_DIRECTIONS, Denoiser, Draw, class_labels, inpaint_condition,
                                        maps_condition)
from dermsynth.data.batch import Batch
from dermsynth.train.config import TrainConfig
from dermsynth.train.distributed import DistInfo
from dermsynth.errors import DermsynthError
from dermsynth.train.steps import PREVIEW_SIZE, TrainStep, register_step
from dermsynth.train.steps_edit import PREVIEW_EDITS, MaskBorrowing, interleave, mask_rgb


class DiffusionStep(TrainStep):
    """A denoiser trained with DDPM's simple loss (see the module docstring)."""

    stat_names = ("mse_loss", "grad_norm")
    sampled = "denoiser"
    lr_options = {"denoiser": "lr"}

    def __init__(self, denoiser: Denoiser, opt: torch.optim.Optimizer, bf16: bool = False, compile: bool = False, *,
                 batch_size: int = 64, p_uncond: float = 0.1, conditional: bool = False, condition_fields: tuple[str, ...] = (),
                 warmup: int = 0, grad_clip: float = 1.0, sampler: str = "ddim", sampling_steps: int | None = None,
                 guidance: float = 1.0, preview_seed: int = 2, ema_beta: float = 0.0,
                 noise: torch.Generator | None = None, ema: nn.Module | None = None,
                 dist: DistInfo | None = None) -> None:
        super().__init__({"denoiser": denoiser}, {"denoiser": opt}, bf16, batch_size=batch_size, ema_beta=ema_beta,
                         noise=noise, ema=ema, dist=dist)
        self.denoiser, self.opt, self.process = denoiser, opt, denoiser.process
        # the training pass, compiled with --compile (the compiled module reads the denoiser's attributes through)
        self.trained = torch.compile(denoiser) if compile else denoiser
        self.p_uncond, self.conditional, self.condition_fields = p_uncond, conditional, condition_fields
        self.warmup, self.grad_clip = warmup, grad_clip
        self.sampler, self.guidance = sampler, guidance
        self.sampling_steps = self.process.sampling_steps(sampler, sampling_steps)
        self.needs = frozenset({"images", *(("labels",) if conditional else ()), *condition_fields})
        self.sampled_inputs = condition_fields or None  # a map-conditioned denoiser takes its maps
        self.base_lr = float(opt.param_groups[0]["lr"])
        self.steps_done = 0
        self.preview_seed, self.bf16 = preview_seed, bf16

    @classmethod
    def from_config(cls, cfg: TrainConfig, networks: dict[str, nn.Module], *, bf16: bool,
                    noise: torch.Generator | None = None, ema: nn.Module | None = None,
                    dist: DistInfo | None = None) -> "DiffusionStep":
        denoiser = networks["denoiser"]
        opt = torch.optim.AdamW(denoiser.parameters(), lr=cfg.lr, betas=(float(cfg.beta1), float(cfg.beta2)),
                                weight_decay=float(cfg.weight_decay))
        return cls(denoiser, opt, bf16, cfg.compile, batch_size=cfg.batch_size or 1, p_uncond=cfg.p_uncond,
                   conditional=cfg.conditional, warmup=cfg.warmup, grad_clip=cfg.grad_clip, sampler=cfg.sampler,
                   sampling_steps=cfg.sampling_steps, guidance=cfg.guidance, preview_seed=cfg.seed + 2,
                   ema_beta=cfg.ema_beta or 0.0, noise=noise, ema=ema, dist=dist, **cls.config_options(cfg))

    # --- hooks ---------------------------------------------------------------------------------------------

    def begin(self, images_seen: int) -> int:
        self.steps_done = images_seen // self.batch_size  # a fixed minibatch: the optimizer steps taken so far
        return super().begin(images_seen)

    def set_lr(self, opt: torch.optim.Optimizer, lr: float) -> None:
        """The base rate (``--lr-decay-start``, ``--resume``); the warm-up scales it at every step."""
        self.base_lr = lr

    def condition(self, batch: Batch) -> torch.Tensor | None:
        """The conditioning maps of a batch, as channels in [-1, 1] (None for an image-only model)."""
        return maps_condition(*[batch.get(name) for name in self.condition_fields])

    def batch_loss(self, batch: Batch, draw: Draw) -> torch.Tensor:
        """The diffusion loss of a minibatch, its random numbers from ``draw``."""
        return self.process.loss(self.trained, batch.images, batch.labels if self.conditional else None,
                                 self.condition(batch), self.p_uncond, draw=draw)

    def __call__(self, batch: Batch) -> torch.Tensor:
        factor = min(1.0, (self.steps_done + 1) / self.warmup) if self.warmup else 1.0
        for group in self.opt.param_groups:
            group["lr"] = self.base_lr * factor
        like, world = batch.images.new_empty(0, dtype=torch.float32), self.dist.world

        def draw(kind: str, n: int, *shape: int) -> torch.Tensor:  # global-batch draws, this rank's rows
            return self.draw(n * world, *shape, kind=kind, like=like)

        with self.autocast:
            loss = self.batch_loss(batch, draw)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.active:
            self.dist.sync_grads(self.opt)
        params = [p for group in self.opt.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip if self.grad_clip > 0 else float("inf"))
        self.opt.step()
        return torch.stack([loss.detach(), grad_norm.detach().float()])

    def _sample(self, denoiser: nn.Module, n: int, seed: int, labels: torch.Tensor | None,
                condition: torch.Tensor | None) -> torch.Tensor:
        return self.process.sample(denoiser, n, labels=labels, condition=condition, sampler=self.sampler,
                                   steps=self.sampling_steps, guidance=self.guidance if labels is not None else 1.0,
                                   seed=seed, bf16=self.bf16)

    def preview(self, generator: nn.Module, fixed: Batch) -> tuple[torch.Tensor, int]:
        condition = self.condition(fixed)  # the fixed batch's maps (it may hold fewer than PREVIEW_SIZE images)
        n = PREVIEW_SIZE if condition is None else len(fixed)
        labels = torch.arange(n) % generator.num_classes if self.conditional else None
        return self._sample(generator, n, self.preview_seed, labels, condition), 8

    def synthesize(self, generator: nn.Module, n: int, seed: int, source: Batch | None) -> torch.Tensor:
        labels = class_labels(generator.num_classes, seed, range(n)) if self.conditional else None
        condition = self.condition(source) if source is not None else None
        return self._sample(generator, n, seed, labels, condition)

    def synthesis_settings(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "sampling_steps": self.sampling_steps, "guidance": self.guidance}

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr = float(state.get("base_lr", self.base_lr))


class MapDiffusionStep(DiffusionStep):
    """``ddpm-maps``: the denoiser also sees the semantic (+ instance-boundary) maps of each image."""

    @classmethod
    def config_options(cls, cfg: TrainConfig) -> dict[str, Any]:
        return {"condition_fields": ("semantic", "instance") if cfg.instance else ("semantic",)}


class InpaintDiffusionStep(MaskBorrowing, DiffusionStep):
    """``ddpm-inpaint`` (Palette's inpainting, Saharia et al. 2022): the denoiser repaints the masked region of
    an image given the image with that region zeroed and the mask (:func:`inpaint_condition`); outside the mask
    its input holds the clean image and the loss is the MSE inside the mask only (``Diffusion.loss`` with
    ``region``). ``add``: lesion patches (``--data``) in their own masks; ``remove``: healthy patches (``--data``)
    in the masks of lesion patches (``--data-b``) drawn independently, as the U-Net editor's ``add`` pairs them."""

    sampled_inputs = ("images", "masks")

    def __init__(self, *args: Any, direction: str = "add", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if direction not in INPAINT_DIRECTIONS:
            raise DermsynthError(f"--direction must be one of {', '.join(INPAINT_DIRECTIONS)} for --model "
                                 f"ddpm-inpaint, got {direction!r}")
        self.direction = direction
        self.borrows_masks = direction == "remove"  # masks of the lesion set (domain B)
        self.needs = frozenset({"images", "domain_b"} if self.borrows_masks else {"images", "masks"})
        self.needs_b = frozenset({"images", "masks"})
        self.sampled_inputs = type(self).sampled_inputs

    @classmethod
    def config_options(cls, cfg: TrainConfig) -> dict[str, Any]:
        return {"direction": cfg.direction}

    def batch_loss(self, batch: Batch, draw: Draw) -> torch.Tensor:
        masks = self.training_masks(batch)
        return self.process.loss(self.trained, batch.images, None, inpaint_condition(batch.images, masks),
                                 draw=draw, region=masks)

    def _inpaint(self, denoiser: nn.Module, images: torch.Tensor, masks: torch.Tensor, seed: int) -> torch.Tensor:
        return self.process.sample(denoiser, len(images), condition=inpaint_condition(images, masks),
                                   known=(images, masks), sampler=self.sampler, steps=self.sampling_steps,
                                   seed=seed, bf16=self.bf16)

    def preview(self, generator: nn.Module, fixed: Batch) -> tuple[torch.Tensor, int]:
        n = min(PREVIEW_EDITS, len(fixed))
        photo, masks = fixed.images[:n], self.masks_for(fixed, n)
        return interleave(photo, mask_rgb(masks), self._inpaint(generator, photo, masks, self.preview_seed)), 6

    def synthesize(self, generator: nn.Module, n: int, seed: int, source: Batch | None) -> torch.Tensor:
        return self._inpaint(generator, source.images[:n], self.masks_for(source, n), seed)

    def synthesis_settings(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "sampling_steps": self.sampling_steps}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.masks_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.load_masks_state(state)


register_step("ddpm", DiffusionStep)
register_step("ddpm-maps", MapDiffusionStep)
register_step("ddpm-inpaint", InpaintDiffusionStep)
