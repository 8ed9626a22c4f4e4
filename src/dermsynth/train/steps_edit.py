"""Training steps of the lesion-editing models: Furger et al.'s U-Net editor and CycleGAN.

Both train on two domains (the trainer's ``--data`` = A, ``--data-b`` = B; see ``dermsynth.data.patches``
for the healthy / lesion patch sets):

* ``unet-translator`` (Furger et al. 2020, 4.2): ``G(photo, mask)`` edits ``photo`` inside ``mask``; its loss is the
  adversarial loss plus ``relevancy_weight`` (lambda_REL = 10) times the relevancy loss, the MSE between
  input and output outside the mask (:func:`relevancy_loss`). ``--direction add``: A = healthy patches,
  B = lesion patches; each healthy photo gets the mask of a lesion patch drawn independently (the same mask
  is reused with many healthy photos, Furger et al.'s trick) and D tells real lesion patches from the edits.
  ``--direction remove``: A = lesion patches with their own masks, B = healthy patches, which D sees as the
  reals (with a larger healthy set, the "extra healthy images for the removal discriminator").
* ``cyclegan`` (Zhu et al. 2017; ``--preset furger2020``: Furger et al.'s variant, BCE and an MSE cycle loss
  without identity loss): LSGAN losses, cycle-consistency L1 (lambda 10), optional identity L1
  (``identity_weight`` x lambda, 0.5 by default), discriminators trained on a pool of the last 50 generated
  images (:class:`ImagePool`, in the checkpoint with its contents for an exact resume). One update of both
  generators, then one of both discriminators, as the CycleGAN code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.models.editing import UNET_DIRECTIONS, mask_change
from dermsynth.data.batch import Batch
from dermsynth.train.config import TrainConfig
from dermsynth.train.losses import LOSSES
from dermsynth.train.steps import PREVIEW_SIZE, AdversarialStep, register_step

PREVIEW_EDITS = 16  # edits per preview grid: 8 rows of two (input | mask | output) or (input | out | recon)


def relevancy_loss(photo: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Furger et al.'s relevancy loss: mean over all elements of ((1 - m) * x - (1 - m) * G(x, m))^2."""
    keep = 1.0 - mask.float()
    return F.mse_loss(photo.float() * keep, edited.float() * keep)


def _loss_pair(loss: str) -> tuple[Any, Any]:
    """(D loss, G loss) of a registered GAN loss (a one-line error naming the known ones otherwise)."""
    if loss not in LOSSES:
        raise DermsynthError(f"unknown loss {loss!r}; available: {', '.join(LOSSES)}")
    return LOSSES[loss]


#: the cycle-consistency distances: Zhu et al.'s L1, Furger et al.'s MSE (their Eq. 3)
CYCLE_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


def mask_rgb(mask: torch.Tensor) -> torch.Tensor:
    """A {0, 1} mask as a white-on-black image in [-1, 1]."""
    return mask.float().expand(-1, 3, -1, -1) * 2 - 1


def interleave(*columns: torch.Tensor) -> torch.Tensor:
    """Tiles of several (N, 3, H, W) columns in row order: col0[0], col1[0], ..., col0[1], ..."""
    return torch.stack([c.float() for c in columns], dim=1).flatten(0, 1)


def _check_weight(value: float, flag: str) -> float:
    if value is None or not value >= 0:
        raise DermsynthError(f"--{flag} must be >= 0, got {value}")
    return float(value)


class MaskBorrowing:
    """A step whose photos get the masks of another set (``borrows_masks``: domain B's lesion masks, each photo one
    drawn independently, Furger et al.'s trick) or else bring their own. The first borrowed masks seen are kept
    (and checkpointed) for previews and in-training metrics, whose batches come from ``--data`` alone."""

    borrows_masks: bool = False
    preview_masks: torch.Tensor | None = None

    def training_masks(self, batch: Batch) -> torch.Tensor:
        """The masks of a training batch's photos."""
        if not self.borrows_masks:
            return batch.masks
        masks = batch.domain_b.masks
        if self.preview_masks is None:
            self.preview_masks = masks[:PREVIEW_SIZE].detach().clone()
        return masks

    def masks_for(self, source: Batch, n: int) -> torch.Tensor:
        """Masks of the first ``n`` photos of a preview or metrics batch."""
        if not self.borrows_masks:
            return source.masks[:n]
        if self.preview_masks is None:
            raise DermsynthError("the model has seen no lesion masks of --data-b yet (no training step was run)")
        reps = -(-n // len(self.preview_masks))
        return self.preview_masks.repeat(reps, 1, 1, 1)[:n].to(source.images.device)

    def masks_state(self) -> dict[str, Any]:
        return {"preview_masks": None if self.preview_masks is None else self.preview_masks.cpu()}

    def load_masks_state(self, state: dict[str, Any]) -> None:
        masks = state.get("preview_masks")
        device = self.noise.device if getattr(self, "noise", None) is not None else "cpu"
        self.preview_masks = None if masks is None else masks.to(device)


class UNetEditorStep(MaskBorrowing, AdversarialStep):
    """Furger et al.'s targeted add / remove: one D update, then one G update (adversarial + lambda_REL * relevancy)."""

    stat_names = ("d_loss", "g_loss", "adv_loss", "rel_loss", "change_inside", "change_outside", "d_real", "d_fake")

    def __init__(self, *args: Any, loss: str = "nonsaturating", direction: str = "add",
                 relevancy_weight: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if direction not in UNET_DIRECTIONS:
            raise DermsynthError(f"--direction must be one of {', '.join(UNET_DIRECTIONS)} for --model "
                                 f"unet-translator, got {direction!r}")
        self.direction = direction
        self.loss_d, self.loss_g = _loss_pair(loss)
        self.relevancy_weight = _check_weight(relevancy_weight, "relevancy-weight")
        # add: masks come from the lesion set (domain B); remove: each lesion patch brings its own
        self.needs = frozenset({"images", "domain_b"} | ({"masks"} if direction == "remove" else set()))
        self.needs_b = frozenset({"images", "masks"} if direction == "add" else {"images"})
        self.borrows_masks = direction == "add"  # add: masks come from the lesion set; remove: each brings its own

    @classmethod
    def config_options(cls, cfg: TrainConfig) -> dict[str, Any]:
        return {"loss": cfg.loss or "nonsaturating", "direction": cfg.direction,
                "relevancy_weight": cfg.relevancy_weight}

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(photos to edit, their masks, the real target-domain images D sees)."""
        return batch.images, self.training_masks(batch), batch.domain_b.images

    def __call__(self, batch: Batch) -> torch.Tensor:
        photo, mask, real = self.inputs(batch)
        with self.autocast:
            fake = self.G(photo, mask)
            real_logits = self.D(real)
            fake_logits = self.D(fake.detach())
            d_loss = self.loss_d(real_logits, fake_logits)
        self._update(self.opt_d, d_loss)
        with self.autocast:
            adv = self.loss_g(self.D(fake))
            rel = relevancy_loss(photo, fake, mask)
            g_loss = adv + self.relevancy_weight * rel
        self._update(self.opt_g, g_loss)
        inside, outside = mask_change(photo, fake.detach(), mask)
        return torch.stack([d_loss.detach(), g_loss.detach(), adv.detach(), rel.detach(), inside, outside,
                            real_logits.detach().float().mean(), fake_logits.detach().float().mean()])

    def preview(self, generator: nn.Module, fixed: Batch) -> tuple[torch.Tensor, int]:
        n = min(PREVIEW_EDITS, len(fixed))
        photo = fixed.images[:n]
        mask = self.masks_for(fixed, n)
        return interleave(photo, mask_rgb(mask), generator(photo, mask).clamp(-1, 1)), 6

    def synthesize(self, generator: nn.Module, n: int, seed: int, source: Batch | None) -> torch.Tensor:
        return generator(source.images[:n], self.masks_for(source, n)).clamp(-1, 1)

    def real_logits(self, batch: Batch) -> torch.Tensor:
        # the over-fitting monitor holds out rows of --data (A), whose images D never sees as reals in
        # `add` mode; its logits on them still show how D scores unseen images of that set
        return self.D(batch.images)

    def state_dict(self) -> dict[str, Any]:
        return self.masks_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_masks_state(state)


class ImagePool:
    """CycleGAN's history of generated images (Shrivastava et al. 2017; Zhu et al. 4): while the pool is not
    full, each new image is stored and returned; then, with probability 1/2, a random stored image is
    returned and replaced by the new one, else the new one is returned.

    The random numbers are given by the caller (drawn from the step's checkpointed generator), so the pool
    is reproducible; :meth:`state_dict` holds its contents.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.images: torch.Tensor | None = None  # (count, 3, H, W)

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    def query(self, images: torch.Tensor, coin: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
        """The images D is shown for the new batch ``images``; ``coin``, ``pick``: uniform [0, 1) per image."""
        if self.size == 0:
            return images
        images = images.detach()
        out = []
        for i, image in enumerate(images):
            if len(self) < self.size:
                self.images = image[None].clone() if self.images is None else torch.cat([self.images, image[None]])
                out.append(image)
            elif coin[i] > 0.5:
                j = int(pick[i] * self.size)  # the one host sync per image the reference pool has too
                out.append(self.images[j].clone())
                self.images[j] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": None if self.images is None else self.images.cpu()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str) -> None:
        self.images = None if state.get("images") is None else state["images"].to(device)


class CycleGANStep(AdversarialStep):
    """Zhu et al. 2017: both generators updated on the GAN (LSGAN) + cycle (L1; Furger et al.: MSE) (+ identity)
    losses, then both discriminators on real images vs pooled translations."""

    needs = frozenset({"images", "domain_b"})
    needs_b = frozenset({"images"})
    stat_names = ("d_loss", "g_loss", "gan_loss", "cycle_loss", "identity_loss", "d_real", "d_fake")

    def __init__(self, *args: Any, cycle_weight: float = 10.0, identity_weight: float = 0.5, pool_size: int = 50,
                 loss: str = "lsgan", cycle_loss: str = "l1", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_d, self.loss_g = _loss_pair(loss)
        if cycle_loss not in CYCLE_LOSSES:
            raise DermsynthError(f"--cycle-loss must be one of {', '.join(CYCLE_LOSSES)}, got {cycle_loss!r}")
        self.cycle_distance = CYCLE_LOSSES[cycle_loss]
        self.cycle_weight = _check_weight(cycle_weight, "cycle-weight")
        self.identity_weight = _check_weight(identity_weight, "identity-weight")
        if pool_size is None or pool_size < 0:
            raise DermsynthError(f"--pool-size must be >= 0, got {pool_size}")
        self.pools = {"a": ImagePool(pool_size), "b": ImagePool(pool_size)}

    @classmethod
    def config_options(cls, cfg: TrainConfig) -> dict[str, Any]:
        return {"cycle_weight": cfg.cycle_weight, "identity_weight": cfg.identity_weight,
                "pool_size": cfg.pool_size, "loss": cfg.loss or "lsgan", "cycle_loss": cfg.cycle_loss or "l1"}

    def _pooled(self, name: str, fake: torch.Tensor) -> torch.Tensor:
        n = fake.shape[0] * self.dist.world
        coin = self.draw(n, kind="uniform", like=fake.float())
        pick = self.draw(n, kind="uniform", like=fake.float())
        return self.pools[name].query(fake, coin, pick)

    def __call__(self, batch: Batch) -> torch.Tensor:
        G, D = self.G_module, self.D_module
        real_a, real_b = batch.images, batch.domain_b.images
        D.requires_grad_(False)  # the generators' update needs no discriminator gradients
        with self.autocast:
            fake_b, fake_a = G.g_ab(real_a), G.g_ba(real_b)
            gan = self.loss_g(D.d_b(fake_b)) + self.loss_g(D.d_a(fake_a))
            cycle = (self.cycle_distance(G.g_ba(fake_b).float(), real_a.float())
                     + self.cycle_distance(G.g_ab(fake_a).float(), real_b.float()))
            identity = torch.zeros((), device=real_a.device)
            if self.identity_weight:
                identity = (F.l1_loss(G.g_ab(real_b).float(), real_b.float())
                            + F.l1_loss(G.g_ba(real_a).float(), real_a.float()))
            g_loss = gan + self.cycle_weight * cycle + self.identity_weight * self.cycle_weight * identity
        self._update(self.opt_g, g_loss)
        D.requires_grad_(True)
        pool_b, pool_a = self._pooled("b", fake_b), self._pooled("a", fake_a)
        with self.autocast:
            real_a_logits, real_b_logits = D.d_a(real_a), D.d_b(real_b)
            fake_a_logits, fake_b_logits = D.d_a(pool_a), D.d_b(pool_b)
            d_loss = self.loss_d(real_a_logits, fake_a_logits) + self.loss_d(real_b_logits, fake_b_logits)
        self._update(self.opt_d, d_loss)
        real_logits = torch.cat([real_a_logits.flatten(), real_b_logits.flatten()])
        fake_logits = torch.cat([fake_a_logits.flatten(), fake_b_logits.flatten()])
        return torch.stack([d_loss.detach(), g_loss.detach(), gan.detach(), cycle.detach(), identity.detach(),
                            real_logits.detach().float().mean(), fake_logits.detach().float().mean()])

    def preview(self, generator: nn.Module, fixed: Batch) -> tuple[torch.Tensor, int]:
        photo = fixed.images[:PREVIEW_EDITS]
        out = generator(photo, "ab")
        return interleave(photo, out, generator(out, "ba")), 6

    def synthesize(self, generator: nn.Module, n: int, seed: int, source: Batch | None) -> torch.Tensor:
        return generator(source.images[:n], "ab")

    def real_logits(self, batch: Batch) -> torch.Tensor:
        logits = self.D_module.d_a(batch.images)
        return logits.reshape(logits.shape[0], -1).mean(1)

    def state_dict(self) -> dict[str, Any]:
        return {"pools": {k: p.state_dict() for k, p in self.pools.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.noise.device if self.noise is not None else "cpu"
        for k, p in state.get("pools", {}).items():
            self.pools[k].load_state_dict(p, device)


register_step("unet-translator", UNetEditorStep)
register_step("cyclegan", CycleGANStep)
