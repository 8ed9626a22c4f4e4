"""GAN architectures, selected by name from a small registry.

A registry entry (:class:`ModelSpec`) builds the model's *named networks* (``{"generator": G,
"discriminator": D}`` for the GANs; the names are the checkpoint's keys and the training step's, see
``dermsynth.train.steps``) from keyword options and names how the shared trainer drives it: a *step* kind (``"gan"``, ``"progressive"``, ``"pyramid"``, ...; see
``dermsynth.train.steps``), the model's own training defaults, which fill every ``TrainConfig`` field left at
``None``, and what its generator takes (``inputs``, batch field names in call order; recorded in every
checkpoint). Noise -> image generators take ``(z, labels)`` and have ``z_dim``, ``resolution`` and
``num_classes``; map -> image generators take the maps they name (e.g. ``("semantic", "instance")``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.models.dcgan import DCGANDiscriminator, DCGANGenerator
from dermsynth.models.lapgan import LAPGANDiscriminator, LAPGANGenerator, build_lapgan
from dermsynth.models.options import (CycleGANOptions, DCGANOptions, DiffusionOptions, InpaintDiffusionOptions, LAPGANOptions, MapDiffusionOptions, ModelOptions, NoiseGANOptions,
                                      PGANOptions, Pix2PixHDOptions, StyleGAN2Options, UNetTranslatorOptions)
from dermsynth.models.perceptual import default_lambda
from dermsynth.models.pix2pixhd import MultiScaleDiscriminator, build_pix2pixhd
from dermsynth.models.pgan import KARRAS_PAPER_BATCH, PGANDiscriminator, PGANGenerator, build_pgan, pgan_schedule
from dermsynth.models.stylegan2 import STYLEGAN2_DEFAULTS, build_stylegan2, stylegan2_options
from dermsynth.models.diffusion import (DENOISER_PRESETS, DIFFUSION_DEFAULTS, build_diffusion, build_inpainting,
                                        diffusion_inpaint_options, diffusion_maps_options, diffusion_options)
from dermsynth.models.editing import build_cyclegan, build_unet_editor
import dermsynth.models.classifiers  # noqa: E402,F401  (registers the "classifier" perceptual network)

GANBuilder = Callable[..., tuple[nn.Module, nn.Module]]
#: a registry builder: keyword options -> the model's networks by name
NetworksBuilder = Callable[..., dict[str, nn.Module]]
#: the names of a GAN's two networks, in the order its builder returns them
GAN_NETWORKS: tuple[str, ...] = ("generator", "discriminator")


def gan_networks(builder: GANBuilder) -> NetworksBuilder:
    """A ``(generator, discriminator)`` builder as a registry builder of named networks."""
    def build(**options: Any) -> dict[str, nn.Module]:
        return dict(zip(GAN_NETWORKS, builder(**options)))
    build.__doc__ = builder.__doc__
    return build

#: what a noise -> image generator takes: a latent batch and (conditional models) class labels
NOISE_INPUTS: tuple[str, ...] = ("z", "labels")


def _fixed_batch_steps(cfg: Any, images: int) -> int:
    return max(1, math.ceil(images / cfg.batch_size))


def _pgan_steps(cfg: Any, images: int) -> int:
    return max(1, pgan_schedule(cfg).steps_to_show(images))


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model's networks and how the trainer trains it.

    ``build`` returns the networks by name (a GAN's ``(G, D)`` builder is wrapped by :func:`gan_networks`).

    ``options`` is the dataclass of the options the model takes besides the common ones
    (``dermsynth.models.options``); ``defaults`` maps those and common ``TrainConfig`` field names to values,
    or to callables of the partly resolved config (evaluated after the constant defaults, e.g. a batch
    schedule that depends on ``size``). A model's name, builder, step, options and defaults are this one entry.
    """

    build: NetworksBuilder
    step: str = "gan"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = NOISE_INPUTS
    #: optimizer steps that show ``images`` real images under a resolved config (turns --kimg into --steps)
    steps_for_images: Callable[[Any, int], int] = field(default=lambda cfg, images: _fixed_batch_steps(cfg, images))
    #: builder options beyond resolution/z_dim/width/num_classes, from (resolved config, training data)
    extra_options: Callable[[Any, Any], dict[str, Any]] = field(default=lambda cfg, data: {})
    #: trains on images with a lesion mask only (the others are skipped with ``--skip-unmasked``, else an error)
    masks_required: bool = False
    #: two-domain models: which patch set (``healthy`` / ``lesion``) ``--data`` stands for under a config, so
    #: that a patch folder given as ``--data`` alone is split into its two domains (``data.patches``)
    data_domain: Callable[[Any], str] | None = None
    #: two-domain models: (A, B) as the model trains on them, from (resolved config, A, B)
    prepare_domains: Callable[[Any, Any, Any], tuple[Any, Any]] = field(default=lambda cfg, a, b: (a, b))
    #: the options the model takes besides the common ones (their fields, help and checks)
    options: type[ModelOptions] = NoiseGANOptions
    #: how samples are truncated: "latent" (z components resampled beyond a threshold, Furger et al. 2020), "w"
    #: (toward the average w by psi: StyleGAN), or None. A generator that renormalises z (PGAN's pixel norm,
    #: StyleGAN's second-moment normalisation) undoes latent resampling, so "latent" would be a silent no-op there.
    truncation: str | None = "latent"
    #: named sets of defaults (``--preset``) over ``defaults``, the first the default; recorded in config.json
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# Radford et al. 2015 (Essipova et al. 2020 and Lunagariya & Patel): Adam 2e-4, betas (0.5, 0.999), batch 64,
# non-saturating BCE.
DCGAN_DEFAULTS: dict[str, Any] = {"loss": "nonsaturating", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5,
                                  "beta2": 0.999, "batch_size": 64, "ema_beta": 0.0, "gp_weight": 0.0,
                                  "drift": 0.0, "steps": 2000}


def _paper_batches(cfg: Any) -> str:
    """Karras et al. appendix A.1 minibatch sizes for every resolution from 4 px up to ``cfg.size`` (or
    ``cfg.batch_size`` at every resolution when that is given)."""
    sizes = [4 * 2 ** level for level in range(cfg.size.bit_length() - 2)]
    return ",".join(f"{r}:{cfg.batch_size or KARRAS_PAPER_BATCH.get(r, 3)}" for r in sizes)


# Karras et al. 2018 (Baur et al. 2018): WGAN-GP (lambda 10) + drift 1e-3, Adam 1e-3 betas (0, 0.99), G EMA 0.999,
# 600k images per stable and per fade phase; trains until one stable phase at full resolution is done.
PGAN_DEFAULTS: dict[str, Any] = {
    "loss": "wgan", "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.0, "beta2": 0.99, "ema_beta": 0.999,
    "gp_weight": 10.0, "drift": 1e-3, "stable_kimg": 600.0, "fade_kimg": 600.0,
    "batch_size": None,  # accepted (one minibatch for every resolution) but by default per resolution:
    "batch_schedule": _paper_batches,
    "kimg": lambda cfg: (cfg.size.bit_length() - 3) * (cfg.stable_kimg + cfg.fade_kimg) + cfg.stable_kimg,
}


# Furger et al. 2020, sections 3.2 and 4.2 (the minibatch is not given there: ours).
# Add mode cuts the healthy set to the lesion set's size (their 4.2).
UNET_TRANSLATOR_DEFAULTS: dict[str, Any] = {"loss": "nonsaturating", "lr_g": 5e-5, "lr_d": 5e-5, "beta1": 0.9,
                                            "beta2": 0.999, "batch_size": 16, "ema_beta": 0.0, "steps": 2000,
                                            "relevancy_weight": 10.0,
                                            "truncate_healthy": lambda cfg: cfg.direction == "add"}
def _truncate_healthy(cfg: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """Furger et al. 2020 (4.2): with ``--truncate-healthy``, the healthy photos the add editor edits (A) are cut to
    a seeded random subset as large as the lesion set (B); the removal discriminator keeps every healthy image."""
    if cfg.truncate_healthy and cfg.direction == "add":
        return a.random_subset(len(b), cfg.seed), b
    return a, b


# Zhu et al. 2017 (CycleGAN) section 4 / appendix 7.1: LSGAN, Adam 2e-4 betas (0.5, 0.999), minibatch 1, cycle
# lambda 10, identity loss 0.5 * lambda (the code's default), a pool of 50 generated images per discriminator; the
# learning rates constant for the first half of the run, then falling linearly to 0 (100 + 100 epochs).
CYCLEGAN_DEFAULTS: dict[str, Any] = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "batch_size": 1,
                                     "ema_beta": 0.0, "steps": 2000, "cycle_weight": 10.0, "identity_weight": 0.5,
                                     "pool_size": 50, "lr_decay_start": 0.5, "loss": "lsgan", "cycle_loss": "l1",
                                     "cycle_generator": "resnet", "cycle_discriminator": "patch"}

# Furger et al. 2020, 4.3 (with 2.2's Eq. 3 and 4.2's optimiser): U-Net translators, the two-scale D, the BCE loss
# of their other models, Adam 5e-5 betas (0.9, 0.999), an MSE cycle loss with lambda 10, no identity loss. Not
# given there, so Zhu et al.'s: the image pool, the linear decay over the second half; the minibatch is 16 (the
# U-Net editor's, ours: the two-scale D has batch norm). Their extra healthy images for D: D_A sees every healthy
# image (no truncation of domain A; minibatches of A and B are drawn independently, so set sizes need no match).
CYCLEGAN_PRESETS: dict[str, dict[str, Any]] = {
    "zhu2017": {},
    "furger2020": {"cycle_generator": "unet", "cycle_discriminator": "two-scale", "loss": "nonsaturating",
                   "lr_g": 5e-5, "lr_d": 5e-5, "beta1": 0.9, "beta2": 0.999, "cycle_loss": "mse",
                   "identity_weight": 0.0, "batch_size": 16},
}


def _cyclegan_options(cfg: Any, data: Any) -> dict[str, Any]:
    return {"residual": cfg.cycle_residual, "generator": cfg.cycle_generator,
            "discriminator": cfg.cycle_discriminator, "g_width": cfg.g_width, "d_width": cfg.d_width}


# Wang et al. 2018 (pix2pixHD, Bissoto et al. 2018): LSGAN, Adam 2e-4 betas (0.5, 0.999), ngf = ndf = 64, 4
# down-samplings and 9 residual blocks in the global generator, patch discriminators of 3 layers, feature matching
# and perceptual loss weights 10, the learning rates constant for half the run, then falling linearly to 0 (niter =
# niter_decay = 100 epochs): the code's defaults. Discriminator scales: 3, the paper's (section 3.2, "3
# discriminators"), which its scripts for the full coarse-to-fine model also pass (--num_D 3); the code's default
# num_D is 2 (its 512 px global-only scripts). Bissoto et al. do not say, and 3 scales keep the coarsest
# discriminator's view of the lesion's shape at our small resolutions. The paper trains with minibatch 1; ours is
# 4 (instance norm makes the networks independent of the minibatch, and 4 keeps a GPU busier). No EMA generator
# (pix2pixHD has none). Perceptual network: the paper's ImageNet VGG19 cannot be downloaded here, so the shipped
# dermoscopy classifier (derm-smallcnn-v1) stands in, its weight set so that the term takes VGG's share of G's loss
# (dermsynth.models.perceptual); --perceptual vgg19:FILE uses a local VGG19 at the paper's weight 10. Coarse to
# fine (--local-enhancers > 0): the global generator alone for the first half of the steps, the finest enhancer
# alone for the next 5 %, then all jointly (the reference's separate global run + niter_fix_global;
# dermsynth.train.steps_translate).
PIX2PIXHD_DEFAULTS: dict[str, Any] = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "batch_size": 4,
                                      "ema_beta": 0.0, "steps": 2000, "d_scales": 3, "d_layers": 3, "g_downsample": 4,
                                      "g_blocks": 9, "local_enhancers": 0, "lambda_feat": 10.0,
                                      "perceptual": "derm-smallcnn-v1", "lr_decay_start": 0.5,
                                      "lambda_perceptual": lambda cfg: default_lambda(cfg.perceptual)}


def _build_dcgan(resolution: int, z_dim: int, num_classes: int, width: int = 64, d_scales: int = 1,
                 g_width: int | None = None, d_width: int | None = None, **_: object):
    """DCGAN; with ``d_scales`` > 1 its discriminator becomes Furger et al.'s multi-scale one (one DCGAN
    discriminator per scale, logits averaged); ``g_width``/``d_width`` default to ``width``."""
    G = DCGANGenerator(z_dim=z_dim, resolution=resolution, width=g_width or width, num_classes=num_classes)
    width = d_width or width
    if d_scales == 1:
        return G, DCGANDiscriminator(resolution=resolution, width=width, num_classes=num_classes)
    if resolution >> (d_scales - 1) < 8:
        raise ValueError(f"{d_scales} discriminator scales reduce {resolution} px below 8 px")
    return G, MultiScaleDiscriminator.build(
        lambda k: DCGANDiscriminator(resolution=resolution >> k, width=width, num_classes=num_classes), d_scales,
        average=True)


def _dcgan_options(cfg: Any, data: Any) -> dict[str, Any]:
    # recorded only where they differ from the former defaults, so checkpoints keep their former options
    options = {} if cfg.d_scales in (None, 1) else {"d_scales": cfg.d_scales}
    return {**options, **{k: getattr(cfg, k) for k in ("g_width", "d_width") if getattr(cfg, k) is not None}}


def _pix2pixhd_options(cfg: Any, data: Any) -> dict[str, Any]:
    # the lesion channel, and the five ISIC attributes when the data have attribute masks (as
    # dermsynth.data.maps.semantic_channels; models do not import the data layer)
    semantic_nc = 6 if data.attribute_masks is not None else 1
    return {"semantic_nc": semantic_nc, "instance": bool(cfg.instance), "n_downsample": cfg.g_downsample,
            "n_blocks": cfg.g_blocks, "local_enhancers": cfg.local_enhancers, "d_layers": cfg.d_layers,
            "d_scales": cfg.d_scales}


#: the denoiser presets as ``--preset`` choices (each sets the denoiser and, through DIFFUSION_DEFAULTS, its source's
#: training recipe); ``auto``, the default, picks the one sized for ``--size``
DIFFUSION_PRESETS: dict[str, dict[str, Any]] = {name: {} for name in ("auto", *DENOISER_PRESETS)}


MODELS: dict[str, ModelSpec] = {
    "dcgan": ModelSpec(gan_networks(_build_dcgan), "gan", {**DCGAN_DEFAULTS, "d_scales": 1}, extra_options=_dcgan_options,
                       options=DCGANOptions),
    "pgan": ModelSpec(gan_networks(build_pgan), "progressive", PGAN_DEFAULTS, steps_for_images=_pgan_steps,
                      options=PGANOptions, truncation=None),
    # Denton et al. trained each level as a plain GAN; Baur et al. 2018 gives no other settings, so DCGAN's (without
    # the gradient penalty: its critics judge a band given the coarser image, not an image alone).
    "lapgan": ModelSpec(gan_networks(build_lapgan), "pyramid", {k: v for k, v in DCGAN_DEFAULTS.items() if k != "gp_weight"},
                        options=LAPGANOptions),
    # Furger et al. 2020 (4.2): Adam 5e-5, betas (0.9, 0.999), relevancy weight 10; its adversarial loss is DCGAN's
    # (BCE); it gives no minibatch, 16 is ours
    "unet-translator": ModelSpec(gan_networks(build_unet_editor), "unet-translator", UNET_TRANSLATOR_DEFAULTS,
                                 inputs=("images", "masks"),
                                 extra_options=lambda cfg, data: {"direction": cfg.direction, "g_width": cfg.g_width,
                                                                  "d_width": cfg.d_width},
                                 data_domain=lambda cfg: "lesion" if cfg.direction == "remove" else "healthy",
                                 prepare_domains=_truncate_healthy, options=UNetTranslatorOptions),
    "cyclegan": ModelSpec(gan_networks(build_cyclegan), "cyclegan", CYCLEGAN_DEFAULTS, inputs=("images",),
                          data_domain=lambda cfg: "healthy",
                          extra_options=_cyclegan_options, options=CycleGANOptions, presets=CYCLEGAN_PRESETS),
    "pix2pixhd": ModelSpec(gan_networks(build_pix2pixhd), "pix2pixhd", PIX2PIXHD_DEFAULTS,
                           inputs=("semantic", "instance"), extra_options=_pix2pixhd_options, masks_required=True,
                           options=Pix2PixHDOptions),
    # Karras et al. 2020 (StyleGAN2-ADA): the reference configuration at the run's resolution
    "stylegan2": ModelSpec(gan_networks(build_stylegan2), "stylegan2", STYLEGAN2_DEFAULTS,
                           extra_options=stylegan2_options, options=StyleGAN2Options, truncation="w"),
    # Ho et al. 2020 (DDPM), sampled by DDPM / DDIM / DPM-Solver; each preset trained as its source (see
    # dermsynth.models.diffusion); no latent to truncate: classifier-free guidance instead
    "ddpm": ModelSpec(build_diffusion, "ddpm", DIFFUSION_DEFAULTS, extra_options=diffusion_options,
                      options=DiffusionOptions, truncation=None, presets=DIFFUSION_PRESETS),
    # Bissoto et al.'s task by diffusion: DDPM with the semantic (+ instance) maps concatenated to its input,
    # trained on the same data as pix2pixHD
    "ddpm-maps": ModelSpec(build_diffusion, "ddpm-maps", DIFFUSION_DEFAULTS, inputs=("semantic", "instance"),
                           extra_options=diffusion_maps_options, masks_required=True,
                           options=MapDiffusionOptions, truncation=None, presets=DIFFUSION_PRESETS),
    # Furger et al.'s lesion editing by diffusion inpainting (Saharia et al. 2022, Palette): the denoiser sees the
    # image with the region to repaint zeroed and the mask; add: lesion patches in their own masks, remove: healthy
    # patches in lesion patches' masks (--data-b)
    "ddpm-inpaint": ModelSpec(build_inpainting, "ddpm-inpaint", DIFFUSION_DEFAULTS, inputs=("images", "masks"),
                              extra_options=diffusion_inpaint_options,
                              data_domain=lambda cfg: "healthy" if cfg.direction == "remove" else "lesion",
                              options=InpaintDiffusionOptions, truncation=None,
                              presets=DIFFUSION_PRESETS),
}


def register_model(name: str, builder: GANBuilder, step: str = "gan",
                   defaults: Mapping[str, Any] | None = None, inputs: tuple[str, ...] = NOISE_INPUTS,
                   steps_for_images: Callable[[Any, int], int] | None = None,
                   extra_options: Callable[[Any, Any], dict[str, Any]] | None = None) -> None:
    """Add a GAN (``builder`` returns ``(generator, discriminator)``) to the registry; ``defaults`` fall back to
    DCGAN's for fields it does not name. Models with other networks: add a :class:`ModelSpec` to :data:`MODELS`."""
    extra = {k: v for k, v in (("steps_for_images", steps_for_images), ("extra_options", extra_options))
             if v is not None}
    MODELS[name] = ModelSpec(gan_networks(builder), step, {**DCGAN_DEFAULTS, **(defaults or {})}, inputs, **extra)


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name`` (a one-line error listing the known names otherwise)."""
    if name not in MODELS:
        raise DermsynthError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_networks(name: str, **options: object) -> dict[str, nn.Module]:
    """Build the named networks of a registered model (a GAN: ``{"generator": G, "discriminator": D}``)."""
    spec = model_spec(name)
    try:
        return spec.build(**options)
    except ValueError as exc:  # e.g. a resolution the architecture cannot make
        raise DermsynthError(f"cannot build {name}: {exc}") from None


def build_gan(name: str, **options: object) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` of a registered GAN (:func:`build_networks` for any model)."""
    networks = build_networks(name, **options)
    return networks["generator"], networks["discriminator"]


__all__ = ["MODELS", "NOISE_INPUTS", "DCGANDiscriminator", "DCGANGenerator", "LAPGANDiscriminator", "LAPGANGenerator",
           "GAN_NETWORKS", "ModelSpec", "PGANDiscriminator", "PGANGenerator", "build_gan", "build_networks", "gan_networks",
           "model_spec", "register_model"]
