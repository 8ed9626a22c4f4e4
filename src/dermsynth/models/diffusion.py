"""Denoising diffusion (DDPM / DDIM / DPM-Solver) with diffusers' U-Net and schedulers.

Two parts, both independent of the trainer:

* :class:`Denoiser`: diffusers' ``UNet2DModel`` built from a named preset (:data:`DENOISER_PRESETS`), with an
  optional class embedding (``num_class_embeds`` = classes + 1: the last index is the *null* class of
  classifier-free guidance) and optional conditioning channels concatenated to the noisy image (mask-conditioned
  models).
* :class:`Diffusion`: the forward process (``linear`` betas as DDPM, ``cosine`` as improved DDPM, through
  diffusers' ``DDPMScheduler``), the training loss (MSE on epsilon or v, label dropout for classifier-free
  guidance) and sampling with ``ddpm`` / ``ddim`` / ``dpm-solver`` (diffusers' schedulers), classifier-free
  guidance ``eps_uncond + w (eps_cond - eps_uncond)``, and per-image seeding: image ``i`` of a run depends only
  on the seed and ``i``, never on the batch it was drawn in.

Images are (B, C, H, W) in [-1, 1] as everywhere in dermsynth.

References: Ho et al. 2020 (DDPM), Nichol & Dhariwal 2021 (improved DDPM: cosine schedule), Song et al. 2021
(DDIM), Lu et al. 2022 (DPM-Solver++), Salimans & Ho 2022 (v prediction), Ho & Salimans 2022 (classifier-free
guidance).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from dermsynth.errors import DermsynthError


@dataclass(frozen=True)
class TrainingRecipe:
    """How a preset's source trained it: AdamW learning rate, minibatch, betas, weight decay and learning-rate
    warm-up steps (every source also clips the gradient norm at 1 and keeps an EMA of decay 0.9999)."""

    lr: float
    batch_size: int
    betas: tuple[float, float]
    weight_decay: float
    warmup: int
    source: str


#: Ho et al. 2020, appendix B and their code: Adam 2e-4 (TensorFlow's betas), minibatch 128, 5000 warm-up steps
DDPM_CIFAR10_RECIPE = TrainingRecipe(2e-4, 128, (0.9, 0.999), 0.0, 5000, "DDPM, CIFAR-10")
#: Ho et al. 2020: 2e-5 at 256 px ("unstable to train with the larger learning rate"), minibatch 64
DDPM_256_RECIPE = TrainingRecipe(2e-5, 64, (0.9, 0.999), 0.0, 5000, "DDPM, 256 px")
#: diffusers' train_unconditional.py defaults: AdamW 1e-4, betas 0.95/0.999, weight decay 1e-6, minibatch 16,
#: 500 warm-up steps (then a cosine decay, which we do not follow: the rate stays constant as DDPM's)
DIFFUSERS_EXAMPLE_RECIPE = TrainingRecipe(1e-4, 16, (0.95, 0.999), 1e-6, 500, "diffusers' unconditional example")


@dataclass(frozen=True)
class DenoiserPreset:
    """A U-Net layout: channels per resolution level (the first at full resolution, each next one halved),
    which levels have self-attention, residual blocks per level, dropout, attention head width (None: one head
    over all channels, as DDPM) and GroupNorm groups; ``recipe``: how its source trained it. ``source`` names
    where the numbers come from."""

    channels: tuple[int, ...]
    attention: tuple[bool, ...]
    layers_per_block: int
    dropout: float
    attention_head_dim: int | None
    norm_groups: int
    source: str
    recipe: TrainingRecipe = DDPM_CIFAR10_RECIPE

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.attention):
            raise ValueError("one attention flag per channel level")


# The network of DDPM's 256 px models, which diffusers' unconditional training example and its basic training
# tutorial reuse at 64 and 128 px: six levels, 128-128-256-256-512-512 channels, attention in the fifth.
_SIX_LEVELS = (128, 128, 256, 256, 512, 512)
_ATTENTION_FIFTH = (False, False, False, False, True, False)

#: U-Net presets by name; :data:`PRESET_FOR_SIZE` picks one by image size.
DENOISER_PRESETS: dict[str, DenoiserPreset] = {
    "ddpm-32": DenoiserPreset(
        (128, 256, 256, 256), (False, True, False, False), 2, 0.1, None, 32,
        "Ho et al. 2020, appendix B: the CIFAR-10 model (35.7M parameters; diffusers' google/ddpm-cifar10-32): "
        "ch 128, multipliers 1,2,2,2, two residual blocks per level, attention at 16 px, dropout 0.1"),
    "example-64": DenoiserPreset(
        _SIX_LEVELS, _ATTENTION_FIFTH, 2, 0.0, 8, 32,
        "diffusers examples/unconditional_image_generation/train_unconditional.py at its default --resolution 64: "
        "UNet2DModel 128,128,256,256,512,512, attention in the fifth level (4 px), two blocks per level",
        DIFFUSERS_EXAMPLE_RECIPE),
    "example-128": DenoiserPreset(
        _SIX_LEVELS, _ATTENTION_FIFTH, 2, 0.0, 8, 32,
        "diffusers' basic training tutorial (image_size 128): the example's network at 128 px, attention at 8 px",
        DIFFUSERS_EXAMPLE_RECIPE),
    "ddpm-256": DenoiserPreset(
        _SIX_LEVELS, _ATTENTION_FIFTH, 2, 0.0, None, 32,
        "Ho et al. 2020, appendix B: the LSUN / CelebA-HQ 256 px model (114M parameters; diffusers' "
        "google/ddpm-celebahq-256): ch 128, multipliers 1,1,2,2,4,4, attention at 16 px", DDPM_256_RECIPE),
    "tiny": DenoiserPreset(
        (32, 64, 64), (False, True, False), 1, 0.0, None, 8,
        "ours, for CPU-scale runs: three levels, one block each, attention in the second (16 px at 32 px); "
        "trained as DDPM's CIFAR-10 model"),
}

#: the preset ``preset="auto"`` picks for an image size
PRESET_FOR_SIZE: dict[int, str] = {32: "ddpm-32", 64: "example-64", 128: "example-128", 256: "ddpm-256"}

#: schedule name -> diffusers ``beta_schedule``: DDPM's linear 1e-4..0.02, improved DDPM's cosine (betas <= 0.999)
SCHEDULES: dict[str, str] = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
#: what the network predicts -> diffusers ``prediction_type``
PREDICTIONS: dict[str, str] = {"epsilon": "epsilon", "v": "v_prediction"}
#: sampler name -> diffusers scheduler (DDIM with eta 0; DPM-Solver++ of order 2, diffusers' defaults)
SAMPLERS: dict[str, type] = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm-solver": DPMSolverMultistepScheduler}
#: network evaluations per sample by default: DDPM's full chain, DDIM's and diffusers' pipeline 50, DPM-Solver++'s
#: 20 (Lu et al. 2022 report converged guided samples at 15-20 steps)
DEFAULT_SAMPLING_STEPS: dict[str, int] = {"ddpm": 1000, "ddim": 50, "dpm-solver": 20}

#: a source of random tensors: ``draw(kind, *shape)``, kind ``"uniform"`` ([0, 1)) or ``"normal"``
Draw = Callable[..., torch.Tensor]

#: Ho & Salimans 2022: the class label is dropped (replaced by the null class) with probability 0.1 in training
DEFAULT_P_UNCOND = 0.1


def _choice(value: str, known: Sequence[str], option: str) -> str:
    if value not in known:
        raise DermsynthError(f"{option} must be one of {', '.join(known)}, got {value!r}")
    return value


def preset_name(preset: str, resolution: int) -> str:
    """A preset name checked, ``auto`` replaced by the one sized for ``resolution``."""
    if preset == "auto":
        if resolution not in PRESET_FOR_SIZE:
            raise DermsynthError(f"no denoiser preset is sized for {resolution} px (sized: "
                                 f"{', '.join(map(str, PRESET_FOR_SIZE))}); choose --preset from "
                                 f"{', '.join(DENOISER_PRESETS)}")
        return PRESET_FOR_SIZE[resolution]
    return _choice(preset, list(DENOISER_PRESETS), "--preset")


def resolve_preset(preset: str | DenoiserPreset, resolution: int) -> DenoiserPreset:
    """The preset object for a name (``auto``: the one sized for ``resolution``) or a preset given as is."""
    return preset if isinstance(preset, DenoiserPreset) else DENOISER_PRESETS[preset_name(preset, resolution)]


class Denoiser(nn.Module):
    """The noise (or v) predictor: diffusers' ``UNet2DModel`` over the noisy image and, when
    ``condition_channels`` > 0, conditioning maps concatenated to it as extra input channels. ``width`` scales the
    preset's channels by ``width / 64`` (64: as published). ``process``: the diffusion it was trained for (DDPM's
    linear 1000-step epsilon process by default), which samplers of a checkpoint use.

    With ``num_classes`` > 0 it is class-conditional with ``num_classes + 1`` class embeddings added to the
    time embedding (diffusers' ``num_class_embeds``); label :attr:`null_class` (= ``num_classes``) is the
    unconditional one of classifier-free guidance.
    """

    def __init__(self, resolution: int, num_classes: int = 0, preset: str | DenoiserPreset = "auto",
                 image_channels: int = 3, condition_channels: int = 0, width: int = 64,
                 process: Diffusion | None = None) -> None:
        super().__init__()
        self.process = process or Diffusion()
        layout = resolve_preset(preset, resolution)
        if resolution % 2 ** (len(layout.channels) - 1):
            raise DermsynthError(f"a {len(layout.channels)}-level denoiser cannot take {resolution} px images")
        # --width scales every level's channels by width / 64 (64: the preset as published)
        channels = tuple(c * width // 64 for c in layout.channels)
        if width < 1 or any(c % layout.norm_groups or c * 64 != width * layout.channels[i]
                            for i, c in enumerate(channels)):
            raise DermsynthError(f"--width {width} does not scale the preset's channels {layout.channels} (x width / "
                                 f"64) to multiples of its {layout.norm_groups} normalisation groups")
        self.resolution, self.num_classes = resolution, num_classes
        self.image_channels, self.condition_channels = image_channels, condition_channels
        self.unet = UNet2DModel(
            sample_size=resolution, in_channels=image_channels + condition_channels, out_channels=image_channels,
            block_out_channels=channels, layers_per_block=layout.layers_per_block, dropout=layout.dropout,
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in layout.attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(layout.attention)),
            attention_head_dim=layout.attention_head_dim, norm_num_groups=layout.norm_groups,
            num_class_embeds=num_classes + 1 if num_classes > 0 else None)

    @property
    def null_class(self) -> int:
        """The label of the unconditional (dropped-label) embedding."""
        return self.num_classes

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction for ``noisy`` images at ``timesteps`` (a scalar or one per image). A class-conditional
        denoiser given no ``labels`` predicts unconditionally (the null class)."""
        if (condition is None) != (self.condition_channels == 0):
            raise DermsynthError(f"this denoiser takes {self.condition_channels} conditioning channels; got "
                                 f"{'none' if condition is None else condition.shape[1]}")
        x = noisy if condition is None else torch.cat([noisy, condition.to(noisy.dtype)], dim=1)
        if self.num_classes > 0 and labels is None:
            labels = torch.full((noisy.shape[0],), self.null_class, dtype=torch.long, device=noisy.device)
        elif self.num_classes == 0:
            labels = None
        return self.unet(x, timesteps, class_labels=labels).sample


def guided_prediction(denoiser: Denoiser, noisy: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                      guidance: float, condition: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ``out_uncond + w (out_cond - out_uncond)`` from one
    network call on the doubled batch. ``w = 1`` is the conditional prediction, ``w = 0`` the unconditional one
    (Ho & Salimans write the same rule with ``w - 1``: their w = 0.1-0.3 is 1.1-1.3 here)."""
    null = torch.full_like(labels, denoiser.null_class)
    both = denoiser(torch.cat([noisy, noisy]), t, torch.cat([labels, null]),
                    None if condition is None else torch.cat([condition, condition]))
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


def _keyed_generator(seed: int, *key: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, *key)`` through numpy's SeedSequence (no collisions between keys)."""
    if seed < 0:
        raise DermsynthError(f"--seed must be >= 0, got {seed}")
    state = np.random.SeedSequence([seed, *key]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def image_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of image ``index`` of a run seeded ``seed``: all of that image's noise comes from it,
    so an image does not depend on which batch (or device) drew it."""
    return _keyed_generator(seed, index)


def class_labels(num_classes: int, seed: int, indices: Sequence[int]) -> torch.Tensor:
    """Uniform random class labels, label ``i`` a function of ``seed`` and ``i`` alone (a stream apart from the
    images' noise)."""
    return torch.tensor([int(torch.randint(num_classes, (1,), generator=_keyed_generator(seed, i, 1)))
                         for i in indices], dtype=torch.long)


@dataclass(frozen=True)
class Diffusion:
    """A Gaussian diffusion process: ``timesteps`` noise levels on a ``linear`` or ``cosine`` schedule, a network
    trained to predict ``epsilon`` or ``v``."""

    schedule: str = "linear"
    timesteps: int = 1000
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        _choice(self.schedule, list(SCHEDULES), "--schedule")
        _choice(self.prediction, list(PREDICTIONS), "--prediction")
        if not 2 <= self.timesteps <= 100_000:
            raise DermsynthError(f"--timesteps must be in [2, 100000], got {self.timesteps}")

    def scheduler(self, sampler: str = "ddpm"):
        """A fresh diffusers scheduler of this process (``ddpm``: DDPM's own, the forward process of training)."""
        cls = SAMPLERS[_choice(sampler, list(SAMPLERS), "--sampler")]
        return cls(num_train_timesteps=self.timesteps, beta_schedule=SCHEDULES[self.schedule],
                   prediction_type=PREDICTIONS[self.prediction])

    @cached_property
    def _forward(self) -> DDPMScheduler:
        return self.scheduler("ddpm")

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``alpha_bar_t`` for t = 0 .. T-1 (float32, CPU)."""
        return self._forward.alphas_cumprod.cpu()

    def add_noise(self, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """A draw of q(x_t | x_0): ``sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise``."""
        return self._forward.add_noise(clean, noise, t)

    def target(self, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network learns to output: the noise, or ``v = sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x_0``."""
        return noise if self.prediction == "epsilon" else self._forward.get_velocity(clean, noise, t)

    def loss(self, denoiser: Denoiser, clean: torch.Tensor, labels: torch.Tensor | None = None,
             condition: torch.Tensor | None = None, p_uncond: float = DEFAULT_P_UNCOND,
             generator: torch.Generator | None = None, draw: Draw | None = None,
             region: torch.Tensor | None = None) -> torch.Tensor:
        """DDPM's simple loss: the MSE between the network output and :meth:`target` at a uniform random t.

        ``region`` (B, 1, H, W) in {0, 1} (inpainting): only those pixels are noised, the others enter the
        network clean, as :meth:`sample` holds them given ``known``, and the MSE is the mean over the region's
        elements (:func:`inpaint_mse`).

        Labels are replaced by the null class with probability ``p_uncond`` (classifier-free guidance training).
        Random draws, in this order: t (uniform), the noise (normal), the label dropout (uniform, only with
        labels and ``p_uncond`` > 0), from ``draw(kind, *shape)`` (kind ``"uniform"`` or ``"normal"``, float32 on
        the images' device; a training step passes one that draws for the global batch and keeps its rank's
        rows), else from ``generator``.
        """
        if draw is None:
            def draw(kind: str, *shape: int) -> torch.Tensor:
                fn = torch.randn if kind == "normal" else torch.rand
                return fn(*shape, generator=generator, device=clean.device)
        b = clean.shape[0]
        t = (draw("uniform", b) * self.timesteps).long().clamp_(max=self.timesteps - 1)
        noise = draw("normal", *clean.shape).to(clean.dtype)
        if labels is not None and denoiser.num_classes > 0 and p_uncond > 0:
            drop = draw("uniform", b) < p_uncond
            labels = torch.where(drop, torch.full_like(labels, denoiser.null_class), labels)
        noisy = self.add_noise(clean, noise, t)
        if region is not None:
            noisy = keep_known(noisy, clean, region)
        out = denoiser(noisy, t, labels, condition)
        if region is not None:
            return inpaint_mse(out, self.target(clean, noise, t), region)
        return F.mse_loss(out.float(), self.target(clean, noise, t).float())

    def sampling_steps(self, sampler: str, steps: int | None) -> int:
        """``steps`` checked against the process (None: the sampler's default, at most ``timesteps``)."""
        steps = min(DEFAULT_SAMPLING_STEPS[_choice(sampler, list(SAMPLERS), "--sampler")], self.timesteps) \
            if steps is None else steps
        if not 1 <= steps <= self.timesteps:
            raise DermsynthError(f"--sampling-steps must be in [1, {self.timesteps}] (the training timesteps), "
                                 f"got {steps}")
        return steps

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, n: int, *, labels: torch.Tensor | None = None,
               condition: torch.Tensor | None = None, sampler: str = "ddim", steps: int | None = None,
               guidance: float = 1.0, seed: int = 0, first_index: int = 0, bf16: bool = False,
               known: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``n`` images in [-1, 1] on the denoiser's device: images ``first_index .. first_index + n - 1`` of the
        run seeded ``seed`` (each a function of the seed and its index only).

        ``labels`` (n,) condition a class-conditional denoiser (None: the null class, i.e. unconditional);
        ``guidance`` != 1 applies classifier-free guidance and needs labels. ``bf16``: the network under bfloat16
        autocast (CUDA); the scheduler arithmetic stays float32. ``known`` = (images (n, C, H, W), masks
        (n, 1, H, W)) inpaints: outside the mask (0) every step's input holds the given clean pixels (Palette's
        sampler), and so does the result; the images' size is theirs (the U-Net is convolutional).
        """
        steps = self.sampling_steps(sampler, steps)
        if not math.isfinite(guidance) or guidance < 0:
            raise DermsynthError(f"--guidance must be a finite number >= 0, got {guidance}")
        if guidance != 1.0 and (denoiser.num_classes == 0 or labels is None):
            raise DermsynthError("--guidance needs a class-conditional model and class labels "
                                 "(classifier-free guidance mixes the conditional and unconditional predictions)")
        device = next(denoiser.parameters()).device
        labels = None if labels is None else labels.to(device)
        condition = None if condition is None else condition.to(device)
        gens = [image_generator(seed, first_index + i) for i in range(n)]
        height = width = denoiser.resolution
        if known is not None:
            known = tuple(k.to(device).float() for k in known)
            height, width = known[0].shape[-2:]
        sched = self.scheduler(sampler)
        sched.set_timesteps(steps, device=device)
        x = randn_tensor((n, denoiser.image_channels, height, width), generator=gens, device=device) \
            * sched.init_noise_sigma
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        for t in sched.timesteps:
            if known is not None:
                x = keep_known(x, *known)
            x_in = sched.scale_model_input(x, t)
            with autocast:
                if guidance == 1.0:  # one call instead of the doubled batch
                    out = denoiser(x_in, t, labels, condition)
                else:
                    out = guided_prediction(denoiser, x_in, t, labels, guidance, condition)
            x = sched.step(out.float(), t, x, generator=gens).prev_sample
        if known is not None:
            x = keep_known(x, *known)
        return x.clamp(-1.0, 1.0)


def keep_known(x: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` inside ``mask`` (1: the region to repaint), ``known`` outside it."""
    return torch.where(mask.to(torch.bool), x, known.to(x.dtype))


def inpaint_mse(out: torch.Tensor, target: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The MSE over the elements inside ``region`` (B, 1, H, W) in {0, 1}, all images' together. Outside it the
    network saw clean pixels, whose noise it cannot predict, and the edit pastes the input back there. Palette's
    code averages ``region * error`` over every element instead, which scales the loss with the mask's area."""
    weight = region.float().expand_as(out)
    return ((out.float() - target.float()) ** 2 * weight).sum() / weight.sum().clamp(min=1)


def inpaint_condition(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The conditioning of an inpainting denoiser (Palette; Stable Diffusion's inpainting U-Net): the image with
    the region to repaint zeroed (0: mid grey in [-1, 1]) and the mask (1 inside) as a fourth channel."""
    masks = masks.float()
    return torch.cat([images.float() * (1 - masks), masks], dim=1)


def build_diffusion(resolution: int, num_classes: int = 0, width: int = 64, preset: str = "auto",
                    schedule: str = "linear", timesteps: int = 1000, prediction: str = "epsilon",
                    condition_channels: int = 0, **_: object) -> dict[str, nn.Module]:
    """The registry builder: ``{"denoiser": Denoiser}`` carrying its :class:`Diffusion` (latent options such as
    ``z_dim``, which every noise model's options include, mean nothing here and are ignored)."""
    process = Diffusion(schedule, timesteps, prediction)
    return {"denoiser": Denoiser(resolution, num_classes, preset, condition_channels=condition_channels, width=width,
                                 process=process)}


#: what an inpainting denoiser paints inside its masks: ``add`` a lesion (trained on lesion patches and their
#: own masks), ``remove`` one (trained on healthy patches with the masks of lesion patches)
INPAINT_DIRECTIONS: tuple[str, ...] = ("add", "remove")


def build_inpainting(resolution: int, direction: str = "add", **options: Any) -> dict[str, nn.Module]:
    """The registry builder of ``ddpm-inpaint``: :func:`build_diffusion` conditioned on :func:`inpaint_condition`
    (image + mask channels), its ``direction`` recorded on the denoiser."""
    _choice(direction, INPAINT_DIRECTIONS, "--direction")
    networks = build_diffusion(resolution, condition_channels=4, **options)  # RGB with the region zeroed + mask
    networks["denoiser"].direction = direction
    return networks


def maps_condition(*maps: torch.Tensor | None) -> torch.Tensor | None:
    """Conditioning maps in {0, 1} (e.g. the semantic channels and the instance-boundary map) as the denoiser's
    extra input channels in [-1, 1], the range of its images (None without maps)."""
    present = [m for m in maps if m is not None]
    return torch.cat(present, dim=1) * 2 - 1 if present else None


def _recipe(cfg: Any) -> TrainingRecipe:
    return resolve_preset(cfg.preset, cfg.size).recipe


# Training defaults (``TrainConfig`` fields): the preset's recipe (DDPM's or the diffusers example's), gradients
# clipped at norm 1 and an EMA of decay 0.9999 (both sources), classifier-free label dropout 0.1 for class-conditional
# models (Ho & Salimans), previews and metrics drawn with DDIM at 50 steps.
DIFFUSION_DEFAULTS: dict[str, Any] = {
    "lr": lambda cfg: _recipe(cfg).lr, "batch_size": lambda cfg: _recipe(cfg).batch_size,
    "beta1": lambda cfg: _recipe(cfg).betas[0], "beta2": lambda cfg: _recipe(cfg).betas[1],
    "weight_decay": lambda cfg: _recipe(cfg).weight_decay, "warmup": lambda cfg: _recipe(cfg).warmup,
    "grad_clip": 1.0, "ema_beta": 0.9999, "steps": 2000,
    "p_uncond": lambda cfg: DEFAULT_P_UNCOND if cfg.conditional else 0.0,
    "sampling_steps": lambda cfg: Diffusion(cfg.schedule, cfg.timesteps, cfg.prediction).sampling_steps(cfg.sampler,
                                                                                                         None),
}


def diffusion_options(cfg: Any, data: Any) -> dict[str, Any]:
    """Builder options from a resolved config (the preset by name, ``auto`` resolved, so a checkpoint names it)."""
    return {"preset": preset_name(cfg.preset, cfg.size), "schedule": cfg.schedule, "timesteps": cfg.timesteps,
            "prediction": cfg.prediction}


def diffusion_inpaint_options(cfg: Any, data: Any) -> dict[str, Any]:
    """Builder options of the inpainting model: as :func:`diffusion_options`, plus its direction."""
    return {**diffusion_options(cfg, data), "direction": cfg.direction}


def diffusion_maps_options(cfg: Any, data: Any) -> dict[str, Any]:
    """Builder options of the mask-conditioned model: as :func:`diffusion_options`, plus one conditioning channel
    per semantic channel (the lesion, and the five ISIC attributes when the data have attribute masks, as
    ``dermsynth.data.maps.semantic_channels``; models do not import the data layer) and the instance-boundary map."""
    semantic = 6 if data.attribute_masks is not None else 1
    return {**diffusion_options(cfg, data), "condition_channels": semantic + (1 if cfg.instance else 0)}


__all__ = ["DDPM_256_RECIPE", "DDPM_CIFAR10_RECIPE", "DEFAULT_P_UNCOND", "DEFAULT_SAMPLING_STEPS",
           "DENOISER_PRESETS", "DIFFUSERS_EXAMPLE_RECIPE", "DIFFUSION_DEFAULTS", "Denoiser", "DenoiserPreset",
           "Diffusion", "Draw", "PREDICTIONS", "PRESET_FOR_SIZE", "SAMPLERS", "SCHEDULES", "TrainingRecipe",
           "INPAINT_DIRECTIONS", "build_diffusion", "build_inpainting", "class_labels", "diffusion_inpaint_options",
           "inpaint_condition", "inpaint_mse", "keep_known", "diffusion_maps_options", "diffusion_options",
           "guided_prediction", "image_generator",
           "maps_condition", "preset_name", "resolve_preset"]
