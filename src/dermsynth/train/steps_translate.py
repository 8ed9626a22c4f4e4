"""The pix2pixHD step (Wang et al. 2018; Bissoto et al. 2018): semantic (+ instance-boundary) maps -> image.

One step, as NVIDIA/pix2pixHD ``train.py``/``pix2pixHD_model.py``: G translates the batch's maps; the
multi-scale discriminator judges (map, image) pairs. Losses, summed over the discriminator scales:

* D: LSGAN, 0.5 * (E(D(map, real) - 1)^2 + E D(map, fake)^2) per scale;
* G: LSGAN E(D(map, fake) - 1)^2, plus ``lambda_feat`` x the feature-matching loss (L1 between D's
  intermediate features of the fake and of the real pair, every layer but the output, weighted
  4 / (n_layers + 1) per layer and 1 / num_D per scale), plus ``lambda_perceptual`` x the perceptual loss of
  the network ``--perceptual`` names (``dermsynth.models.perceptual``; by default the shipped
  dermoscopy classifier derm-smallcnn-v1, standing in for the paper's VGG19).

G is updated first, then D, with losses from the same forward passes (the reference's order).

Coarse to fine (``--local-enhancers`` L > 0), as the reference trains its full model (a separate run of the global
generator at half resolution, then ``--niter_fix_global`` epochs of the finest enhancer alone, then everything):

* ``global`` (the first :data:`GLOBAL_FRACTION` of the steps): the global generator with its own output layer
  (``forward_global``) on the maps and images reduced L times; only the discriminator scales L, L + 1, ... judge
  (each at the scale it is built for); only the global generator (and its output layer) is updated;
* ``enhancer`` (the next :data:`ENHANCER_FRACTION`): the full generator; only the finest enhancer (with the final
  output layer) is updated, the rest fixed, as the reference's ``niter_fix_global``;
* ``joint``: every generator parameter (but the unused global output layer).

G's Adam state restarts at each stage change (the reference builds a new optimizer for each); D and its Adam
state carry on. The stage follows from the step number, so a resumed run changes stage where an uninterrupted one
does. The step needs no noise. Its batch fields ``semantic`` (bit-coded maps unpacked into channels on the device)
and ``instance`` (superpixel ids turned into the boundary map on the device) are made by :mod:`dermsynth.data.batch`
from
``dermsynth.data.maps``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.data.batch import Batch
from dermsynth.data.maps import render_maps
from dermsynth.errors import DermsynthError
from dermsynth.models.perceptual import PerceptualNet, load_perceptual
from dermsynth.models.pix2pixhd import downsample
from dermsynth.train.config import TrainConfig
from dermsynth.train.distributed import DistInfo
from dermsynth.train.steps import AdversarialStep, register_step
from dermsynth.train.losses import lsgan_d, lsgan_g

PREVIEW_ROWS = 16  # map | synthetic | real triplets in a preview grid (two per row)
#: coarse-to-fine stages as fractions of the run: the reference trains the global generator for as many epochs
#: (train_512p: 100 + 100) as the full model afterwards (train_1024p_12G: 100 + 100, 20 of them enhancer-only;
#: the 24G script 50 + 50, 10 enhancer-only), so half the steps, then a tenth of the rest
GLOBAL_FRACTION, ENHANCER_FRACTION = 0.5, 0.05
STAGES = ("global", "enhancer", "joint")


def coarse_to_fine_stage(step: int, steps: int, local_enhancers: int) -> str:
    """The stage of optimizer step ``step`` (0-based) of a ``steps``-step run (see the module docstring)."""
    if not local_enhancers:
        return "joint"
    if step < round(GLOBAL_FRACTION * steps):
        return "global"
    if step < round((GLOBAL_FRACTION + ENHANCER_FRACTION) * steps):
        return "enhancer"
    return "joint"


def trained_parameters(G: nn.Module, stage: str) -> list[nn.Parameter]:
    """The generator parameters a stage updates (see the module docstring)."""
    if stage == "global":
        return [*G.global_net.parameters(), *G.global_head.parameters()]
    if stage == "enhancer":
        return [*G.enhancers[-1].parameters(), *G.head.parameters()]
    head = set(G.global_head.parameters()) if G.global_head is not None else set()
    return [p for p in G.parameters() if p not in head]


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]], n_layers: int) -> torch.Tensor:
    """pix2pixHD's discriminator feature-matching loss (before lambda_feat): sum over scales and layers (the
    output layer excluded) of L1(fake feature, real feature detached) * 4 / (n_layers + 1) / num_D."""
    weight = 4.0 / (n_layers + 1) / len(fake)
    return sum(weight * F.l1_loss(f.float(), r.detach().float())
               for scale_f, scale_r in zip(fake, real) for f, r in zip(scale_f[:-1], scale_r[:-1]))


class Pix2PixHDStep(AdversarialStep):
    """pix2pixHD: LSGAN over the scales + feature matching + optional perceptual loss (see module docstring)."""

    stat_names = ("d_loss", "g_loss", "d_real", "d_fake", "g_gan", "g_feat", "g_perceptual")

    def __init__(self, G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                 bf16: bool = False, compile: bool = False, *, batch_size: int = 4, ema_beta: float = 0.0,
                 noise: torch.Generator | None = None, ema: nn.Module | None = None, dist: DistInfo | None = None,
                 lambda_feat: float = 10.0, lambda_perceptual: float = 10.0,
                 perceptual: PerceptualNet | None = None, steps: int = 0) -> None:
        super().__init__(G, D, opt_g, opt_d, bf16, compile, batch_size=batch_size, ema_beta=ema_beta, noise=noise,
                         ema=ema, dist=dist)
        self.instance = bool(G.instance)
        self.needs = frozenset({"images", "semantic", "instance"} if self.instance else {"images", "semantic"})
        self.sampled_inputs = ("semantic", "instance") if self.instance else ("semantic",)
        self.lambda_feat, self.lambda_perceptual = float(lambda_feat), float(lambda_perceptual)
        self.perceptual = perceptual
        self.n_layers = int(D.n_layers)
        self.steps, self.local_enhancers = int(steps), int(self.G_module.local_enhancers)
        self.stage: str | None = None

    @classmethod
    def config_options(cls, cfg: TrainConfig) -> dict[str, Any]:
        if (getattr(cfg, "augment", None) or "none") != "none":
            raise DermsynthError("--augment is not supported for --model pix2pixhd (its discriminators judge "
                                 "(map, image) pairs); use --augment none")
        if cfg.conditional:
            raise DermsynthError("--conditional does not apply to --model pix2pixhd (it is conditioned on maps; "
                                 "the class of a synthetic image is its source map's)")
        return {"lambda_feat": cfg.lambda_feat, "lambda_perceptual": cfg.lambda_perceptual,
                "perceptual": load_perceptual(cfg.perceptual or "off"), "steps": cfg.steps}

    @classmethod
    def from_config(cls, cfg: TrainConfig, networks: dict[str, nn.Module], *, bf16: bool,
                    noise: torch.Generator | None = None, ema: nn.Module | None = None,
                    dist: DistInfo | None = None) -> "Pix2PixHDStep":
        step = super().from_config(cfg, networks, bf16=bf16, noise=noise, ema=ema, dist=dist)
        if step.perceptual is not None:
            step.perceptual.to(next(step.G_module.parameters()).device)
        return step  # type: ignore[return-value]

    def begin(self, images_seen: int) -> int:
        stage = coarse_to_fine_stage(images_seen // self.batch_size, self.steps, self.local_enhancers)
        if stage != self.stage:
            if self.stage is not None:
                self.opt_g.state.clear()  # a new Adam for the new stage, as the reference
            self._enter(stage)
        return super().begin(images_seen)

    def _enter(self, stage: str) -> None:
        trained = set(trained_parameters(self.G_module, stage))
        for p in self.G_module.parameters():  # fixed parameters get no gradient, so Adam leaves them as they are
            p.requires_grad_(p in trained)
        self.stage = stage

    def _generate(self, generator: nn.Module, semantic: torch.Tensor, instance: torch.Tensor | None) -> torch.Tensor:
        """Full-size images: during the global stage the global generator's, up-sampled (previews, metrics)."""
        if self.stage != "global":
            return generator(semantic, instance)
        return F.interpolate(generator.forward_global(semantic, instance), scale_factor=2 ** self.local_enhancers,
                             mode="nearest")

    def _losses(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        cond, real = self.G_module.condition(batch.semantic, batch.instance), batch.images
        first_scale = 0
        if self.stage == "global":
            fake = self.G_module.forward_global(batch.semantic, batch.instance)
            first_scale = self.local_enhancers
            for _ in range(first_scale):
                cond, real = downsample(cond), downsample(real)
        else:
            fake = self.G(batch.semantic, batch.instance)
        pred_fake_d = self.D(cond, fake.detach(), first_scale)
        pred_real = self.D(cond, real, first_scale)
        d_loss = sum(lsgan_d(r[-1], f[-1]) for r, f in zip(pred_real, pred_fake_d))
        pred_fake = self.D(cond, fake, first_scale)
        g_gan = sum(lsgan_g(f[-1]) for f in pred_fake)
        g_feat = self.lambda_feat * feature_matching(pred_fake, pred_real, self.n_layers) if self.lambda_feat \
            else torch.zeros((), device=fake.device)
        g_perc = (self.lambda_perceptual * self.perceptual.loss(fake, real)
                  if self.perceptual is not None and self.lambda_perceptual else torch.zeros((), device=fake.device))
        d_real = torch.stack([r[-1].detach().float().mean() for r in pred_real]).mean()
        d_fake = torch.stack([f[-1].detach().float().mean() for f in pred_fake_d]).mean()
        return d_loss, g_gan + g_feat + g_perc, d_real, d_fake, g_gan, g_feat, g_perc

    def __call__(self, batch: Batch) -> torch.Tensor:
        with self.autocast:
            d_loss, g_loss, *stats = self._losses(batch)
        # G first, then D, as pix2pixHD's train.py (D's loss was taken before either update; G's backward also
        # leaves gradients in D, which D's update clears first)
        self._update(self.opt_g, g_loss)
        self._update(self.opt_d, d_loss)
        return torch.stack([d_loss.detach().float(), g_loss.detach().float(), *[s.detach().float() for s in stats]])

    def preview(self, generator: nn.Module, fixed: Batch) -> tuple[torch.Tensor, int]:
        """Rows of map | synthetic | real, two triplets per row."""
        n = min(PREVIEW_ROWS, len(fixed))
        semantic = fixed.semantic[:n]
        instance = None if fixed.instance is None else fixed.instance[:n]
        fake = self._generate(generator, semantic, instance).float()
        maps = render_maps(semantic[:, :generator.semantic_nc], instance)
        return torch.stack([maps, fake, fixed.images[:n].float()], dim=1).flatten(0, 1), 6

    def synthesize(self, generator: nn.Module, n: int, seed: int, source: Batch | None) -> torch.Tensor:
        if source is None:
            raise DermsynthError("pix2pixhd translates maps; it needs a source batch")
        return self._generate(generator, source.semantic[:n], None if source.instance is None else source.instance[:n])

    def real_logits(self, batch: Batch) -> torch.Tensor:
        """Per image: the patch logits of the real pair averaged over patches and scales."""
        cond = self.G_module.condition(batch.semantic, batch.instance)
        return torch.stack([p[-1].float().flatten(1).mean(1) for p in self.D(cond, batch.images)]).mean(0)


    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stage": self.stage}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("stage") is not None:  # the checkpoint's stage, its Adam state kept
            self._enter(state["stage"])


register_step("pix2pixhd", Pix2PixHDStep)
