"""Per-model training options: one dataclass per model, declared with its registry entry.

Every model takes the common options of ``dermsynth.train.config.TrainConfig`` (data, size, length, logging,
device ...) plus the fields of its own options class here (``ModelSpec.options``): the GAN learning rates and
Adam betas (:class:`AdversarialOptions`), the loss and penalties of the noise -> image GANs, PGAN's phases,
StyleGAN2's regularisation, pix2pixHD's architecture and loss weights, the editors' domains and weights. A
field left at ``None`` takes the model's default (``ModelSpec.defaults``, with the paper it comes from).

``TrainConfig`` is assembled from the common options and every registered options class, so the API stays
one flat config (``TrainConfig(model="stylegan2", r1_gamma=1.0)``) and the CLI one option per field; an option
given for a model whose class lacks it is refused (:meth:`TrainConfig.resolve`), and ``train --help`` lists
the options by model. An options class may add a :meth:`ModelOptions.check` for its own fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dermsynth.errors import DermsynthError
from dermsynth.models.diffusion import INPAINT_DIRECTIONS, Diffusion
from dermsynth.models.perceptual import check_perceptual_spec
from dermsynth.models.pgan import parse_batch_schedule

__all__ = ["AdversarialOptions", "AugmentOptions", "CycleGANOptions", "DCGANOptions", "DiffusionOptions", "FlipOptions",
           "InpaintDiffusionOptions",
           "LAPGANOptions", "LatentOptions", "MapDiffusionOptions", "ModelOptions", "NoiseGANOptions", "PGANOptions",
           "Pix2PixHDOptions", "PresetOptions", "StyleGAN2Options", "TwoDomainOptions", "UNetTranslatorOptions",
           "WidthOptions",
           "option"]


def option(default: Any, help: str) -> Any:
    """A config field with its ``--help`` text (the CLI makes one option per field)."""
    return field(default=default, metadata={"help": help})


def check_choices(cfg: Any, choices: dict[str, tuple[str, ...]]) -> None:
    """A one-line error for the first field of ``choices`` (name -> allowed values) set to another value."""
    for name, allowed in choices.items():
        value = getattr(cfg, name)
        if value is not None and value not in allowed:
            raise DermsynthError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass
class ModelOptions:
    """Base of every model's options (no fields)."""

    @staticmethod
    def check(cfg: Any) -> None:
        """Refuse values of this class's fields that the model cannot take (``cfg``: a TrainConfig whose
        ``None`` fields are not yet resolved); the common checks run in ``TrainConfig.validate``."""


@dataclass
class AdversarialOptions(ModelOptions):
    """A generator and a discriminator, one Adam optimizer each."""

    lr_g: float | None = option(None, "Generator learning rate (model default; may change on --resume).")
    lr_d: float | None = option(None, "Discriminator learning rate (model default; may change on --resume).")
    beta1: float | None = option(None, "Adam beta1 (model default).")
    beta2: float | None = option(None, "Adam beta2 (model default).")


@dataclass
class WidthOptions(ModelOptions):
    """Separate generator and discriminator widths (Furger et al. 2020 balance the two by them, its Table 2)."""

    g_width: int | None = option(None, "Generator's initial features (default --width; Furger et al. 2020 Table 2: "
                                       "1024 for the eczema editors).")
    d_width: int | None = option(None, "Discriminator's initial features (default --width; Furger et al. 2020 Table 2: "
                                       "256 for the eczema editors).")

    @staticmethod
    def check(cfg: Any) -> None:
        for name in ("g_width", "d_width"):
            value = getattr(cfg, name)
            if value is not None and value < 1:
                raise DermsynthError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


@dataclass
class LatentOptions(ModelOptions):
    """Noise -> image generators: the latent and the classes."""

    conditional: bool = option(False, "Class-conditional: label embedding in G, projection in D.")
    z_dim: int = option(128, "Latent dimension (Baur et al. 2018 use 128 for every model; stylegan2: 8 x --width, not a "
                             "free choice).")


@dataclass
class AugmentOptions(ModelOptions):
    """Discriminator augmentation (``dermsynth.train.disc_augment``)."""

    augment: str | None = option(None, "Discriminator augmentation: none | ada (adaptive p, Karras et al. 2020) | "
                                       "fixed (p = --augment-p) | diffaugment (Zhao et al. 2020). Default: ada for "
                                       "stylegan2 (the reference's --aug=ada), else none.")
    augment_p: float = option(0.0, "Augmentation probability: fixed p, or ADA's initial p.")
    ada_target: float = option(0.6, "ADA target of r_t = E[sign(D(real))].")
    ada_kimg: float = option(500.0, "ADA speed: thousands of real images for p to move from 0 to 1.")
    augment_pipe: str = option("bgc", "Transforms of --augment ada/fixed (the reference's --augpipe): blit | geom | "
                                      "color | filter | noise | cutout | bg | bgc | bgcf | bgcfn | bgcfnc.")


@dataclass
class NoiseGANOptions(AugmentOptions, LatentOptions, AdversarialOptions):
    """Noise -> image GANs: latents, classes, the loss, WGAN penalties and discriminator augmentation."""

    loss: str | None = option(None, "GAN loss (the model's default: nonsaturating for dcgan, wgan for pgan).")
    gp_weight: float | None = option(None, "WGAN-GP lambda (pgan 10).")
    drift: float | None = option(None, "Epsilon-drift weight on D(real)^2 (pgan 1e-3).")


@dataclass
class DCGANOptions(WidthOptions, NoiseGANOptions):
    d_scales: int | None = option(None, "Discriminator scales (Furger et al.'s multi-scale D, each on the input "
                                        "average-pooled by 2 once more): 1 (Furger et al. 2020: 2).")


@dataclass
class LAPGANOptions(LatentOptions, AdversarialOptions):
    """LAPGAN: no gradient penalty and no augmentation (its discriminators judge a band given the coarser
    image)."""

    loss: str | None = option(None, "GAN loss (nonsaturating).")
    drift: float | None = option(None, "Epsilon-drift weight on D(real)^2 (0).")


@dataclass
class PGANOptions(NoiseGANOptions):
    stable_kimg: float | None = option(None, "Thousands of images per stable phase (600).")
    fade_kimg: float | None = option(None, "Thousands of images per fade-in phase (600).")
    batch_schedule: str | None = option(None, "Minibatch per resolution, e.g. 4:16,8:16,...,256:14.")

    @staticmethod
    def check(cfg: Any) -> None:
        for name in ("stable_kimg", "fade_kimg"):
            value = getattr(cfg, name)
            if value is not None and not value >= 0:
                raise DermsynthError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if cfg.stable_kimg is not None and cfg.fade_kimg is not None and cfg.stable_kimg + cfg.fade_kimg <= 0:
            raise DermsynthError("--stable-kimg and --fade-kimg cannot both be 0")
        if cfg.batch_schedule is not None:
            parse_batch_schedule(cfg.batch_schedule, cfg.size)


@dataclass
class StyleGAN2Options(AugmentOptions, LatentOptions, AdversarialOptions):
    """StyleGAN2-ADA (its loss is the non-saturating logistic loss with R1; no WGAN penalties)."""

    r1_gamma: float | None = option(None, "R1 weight gamma (by resolution, the ADA paper's configs: <=32 px 0.01, "
                                          "64 px 0.0256, 128 px 0.1024, 256 px 1, 512 px 0.5).")
    r1_interval: int | None = option(None, "Steps between lazy R1 updates (16).")
    pl_weight: float | None = option(None, "Path-length regularisation weight (2; 0 at <=32 px).")
    pl_interval: int | None = option(None, "Steps between lazy path-length updates (4).")
    style_mixing: float | None = option(None, "Style-mixing probability (0.9; 0 at <=32 px).")
    map_layers: int | None = option(None, "Mapping-network depth (8 at 256 px and up, else 2).")
    mbstd_group: int | None = option(None, "Minibatch-stddev group size (by resolution, e.g. 8 at 256 px).")
    fmaps: float | None = option(None, "channel_base = fmaps * 32768 * width / 64 (0.5 at 64-256 px).")
    ema_kimg: float | None = option(None, "G EMA half-life in thousands of images (256 px: 20).")
    ema_rampup: float | None = option(None, "EMA half-life ramp-up, ema_kimg <= rampup * kimg shown (0.05; 0 = none, "
                                            "as at 256 px).")
    d_architecture: str | None = option(None, "Discriminator: resnet (residual blocks) | orig (plain conv blocks, the "
                                              "reference's cifar preset); orig at <=32 px, else resnet.")
    bf16_everywhere: bool = option(False, "Under bf16 autocast (CUDA, bf16 CPUs): run the mapping networks and the R1 / "
                                          "path-length double backward in bf16 too (default: in float32, as the "
                                          "reference keeps them).")

    @staticmethod
    def check(cfg: Any) -> None:
        check_choices(cfg, {"d_architecture": ("resnet", "orig")})


@dataclass
class FlipOptions(ModelOptions):
    """Map -> image and image -> image models: the reference's random horizontal flip of each training example."""

    flip: bool = option(True, "Flip each training example horizontally with probability 1/2 (image, maps and masks "
                              "alike), as pix2pixHD and CycleGAN do; --no-flip = their --no_flip.")


#: pix2pixHD's global generator needs a bottleneck of at least this many pixels
MIN_BOTTLENECK = 8


@dataclass
class Pix2PixHDOptions(FlipOptions, AdversarialOptions):
    d_scales: int | None = option(None, "Discriminator scales (multi-scale D, each on the input average-pooled by 2 "
                                        "once more): 3, the paper's (the code's default is 2).")
    instance: bool = option(True, "Feed the superpixel instance-boundary map besides the semantic map "
                                  "(--no-instance: Bissoto et al.'s variant (c), semantic maps alone).")
    skip_unmasked: bool = option(False, "Skip images without a lesion mask (with a count) instead of failing.")
    perceptual: str | None = option(None, "Perceptual loss network: derm-smallcnn-v1 (the shipped dermoscopy "
                                          "classifier, default), vgg19:FILE (a local torchvision VGG19 state dict, "
                                          "the paper's), classifier:CKPT (dermsynth train-extractor) or off.")
    lambda_feat: float | None = option(None, "Weight of the discriminator feature-matching loss (10).")
    lambda_perceptual: float | None = option(None, "Weight of the perceptual loss (vgg19 and classifier: 10, the "
                                                   "paper's; derm-smallcnn-v1: 8, calibrated to VGG's share).")
    g_downsample: int | None = option(None, "Stride-2 down-samplings of the global generator (4).")
    g_blocks: int | None = option(None, "Residual blocks of the global generator (9).")
    local_enhancers: int | None = option(None, "Local enhancer networks, each doubling the resolution the global "
                                               "generator works at, trained coarse to fine (0).")
    d_layers: int | None = option(None, "Stride-2 layers per patch discriminator (3).")

    @staticmethod
    def check(cfg: Any) -> None:
        if cfg.perceptual is not None:
            check_perceptual_spec(cfg.perceptual)
        if cfg.local_enhancers is not None and cfg.local_enhancers < 0:
            raise DermsynthError(f"--local-enhancers must be >= 0, got {cfg.local_enhancers}")
        if cfg.g_downsample is not None and cfg.g_downsample < 1:
            raise DermsynthError(f"--g-downsample must be >= 1, got {cfg.g_downsample}")
        if cfg.g_downsample is None or cfg.local_enhancers is None:
            return
        halvings = cfg.g_downsample + cfg.local_enhancers
        if cfg.size >> halvings < MIN_BOTTLENECK:  # also a size not divisible by 2^halvings is caught below
            fits = max(0, (cfg.size // MIN_BOTTLENECK).bit_length() - 1 - cfg.local_enhancers)
            raise DermsynthError(
                f"--size {cfg.size} with --g-downsample {cfg.g_downsample}"
                + (f" and --local-enhancers {cfg.local_enhancers}" if cfg.local_enhancers else "")
                + f" leaves the global generator a {cfg.size / 2 ** halvings:g} px bottleneck (pix2pixHD needs >= "
                  f"{MIN_BOTTLENECK}); use "
                + (f"--g-downsample {fits} or less, or " if fits >= 1 else "")
                + ("fewer --local-enhancers, or " if cfg.local_enhancers else "")
                + f"--size {MIN_BOTTLENECK << halvings} or more")


@dataclass
class TwoDomainOptions(FlipOptions, AdversarialOptions):
    """Models trained on two image sets (``--data`` = A, ``--data-b`` = B)."""

    data_b: str | None = option(None, "Second domain (--data is the first); a patch folder as --data alone "
                                      "gives both.")


@dataclass
class UNetTranslatorOptions(WidthOptions, TwoDomainOptions):
    loss: str | None = option(None, "GAN loss (nonsaturating, Furger et al.'s BCE).")
    direction: str = option("add", "add (healthy --data + lesion masks of --data-b -> lesion) or remove (lesion "
                                   "--data + its masks -> healthy like --data-b).")
    truncate_healthy: bool | None = option(None, "--direction add: edit a random subset of the healthy set (--data) "
                                                 "as large as the lesion set (--data-b), as Furger et al. 2020 (4.2) "
                                                 "do; on by default in add mode.")
    relevancy_weight: float | None = option(None, "lambda_REL, weight of the MSE outside the mask (Furger et al. 2020: 10).")

    @staticmethod
    def check(cfg: Any) -> None:
        WidthOptions.check(cfg)
        if cfg.truncate_healthy and cfg.direction != "add":
            raise DermsynthError("--truncate-healthy applies to --model unet-translator --direction add")


@dataclass
class PresetOptions(ModelOptions):
    """Models with named sets of defaults (``ModelSpec.presets``, the first the default)."""

    preset: str | None = option(None, "Named set of defaults, recorded in config.json; options given explicitly "
                                      "override it. cyclegan: zhu2017 (default: Zhu et al. 2017) | furger2020 (Furger "
                                      "et al. 2020, 4.3: U-Net translators, two-scale D, BCE, Adam 5e-5 beta1 0.9, MSE "
                                      "cycle loss, no identity loss). ddpm, ddpm-maps, ddpm-inpaint: the denoiser and "
                                      "its source's training recipe, auto (default: by --size, 32 ddpm-32, 64 "
                                      "example-64, 128 example-128, 256 ddpm-256) | ddpm-32 | example-64 | "
                                      "example-128 | ddpm-256 | tiny; --width scales its channels by width / 64.")


@dataclass
class CycleGANOptions(PresetOptions, WidthOptions, TwoDomainOptions):
    loss: str | None = option(None, "GAN loss (zhu2017: lsgan; furger2020: nonsaturating, the thesis's BCE).")
    cycle_weight: float | None = option(None, "Lambda of the cycle-consistency loss (10).")
    cycle_loss: str | None = option(None, "Cycle-consistency distance: l1 (zhu2017) | mse (furger2020, its Eq. 3).")
    identity_weight: float | None = option(None, "Identity loss weight relative to --cycle-weight (zhu2017 0.5; "
                                                 "furger2020 0; 0 disables it).")
    pool_size: int | None = option(None, "Generated images kept per discriminator's image pool (50; 0 off).")
    cycle_generator: str | None = option(None, "Generators: resnet (zhu2017) | unet (furger2020: the U-Net "
                                               "translator without a mask, output = input + residual).")
    cycle_discriminator: str | None = option(None, "Discriminators: patch (zhu2017, 70x70 PatchGAN) | two-scale "
                                                   "(furger2020, Furger et al.'s multi-scale D).")
    cycle_residual: bool = option(False, "--cycle-generator resnet: output input + residual (Furger et al.'s image "
                                         "modification) instead of the paper's tanh image.")

    @staticmethod
    def check(cfg: Any) -> None:
        WidthOptions.check(cfg)
        check_choices(cfg, {"cycle_loss": ("l1", "mse"), "cycle_generator": ("resnet", "unet"),
                            "cycle_discriminator": ("patch", "two-scale")})
        if cfg.cycle_residual and cfg.cycle_generator == "unet":
            raise DermsynthError("--cycle-residual applies to --cycle-generator resnet (the U-Net translator always "
                                 "outputs input + residual)")


@dataclass
class DiffusionOptions(PresetOptions):
    """Denoising diffusion (``dermsynth.models.diffusion``): the denoiser, the process, AdamW, and the sampler of
    the preview grids and in-training metrics. The defaults are the preset's source's (DDPM, or diffusers'
    unconditional training example)."""

    conditional: bool = option(False, "Class-conditional: label embedding in G, projection in D.")
    prediction: str = option("epsilon", "ddpm: what the denoiser predicts, epsilon (DDPM) | v (Salimans & Ho 2022).")
    schedule: str = option("linear", "ddpm: noise schedule, linear (DDPM) | cosine (improved DDPM).")
    timesteps: int = option(1000, "ddpm: diffusion timesteps T (DDPM 1000).")
    p_uncond: float | None = option(None, "ddpm: probability of training a label as the null class, for "
                                          "classifier-free guidance (--conditional: 0.1, Ho & Salimans 2022).")
    lr: float | None = option(None, "ddpm: AdamW learning rate (the preset's: ddpm-32, tiny 2e-4; example-64/128 "
                                    "1e-4; ddpm-256 2e-5; may change on --resume).")
    beta1: float | None = option(None, "Adam beta1 (model default).")
    beta2: float | None = option(None, "Adam beta2 (model default).")
    weight_decay: float | None = option(None, "ddpm: AdamW weight decay (DDPM 0; diffusers' example 1e-6).")
    warmup: int | None = option(None, "ddpm: steps of linear learning-rate warm-up (DDPM 5000; diffusers' example "
                                      "500).")
    grad_clip: float | None = option(None, "ddpm: gradient-norm clip (1, both sources; 0 = none).")
    sampler: str = option("ddim", "ddpm: sampler of preview grids and in-training metrics, ddpm | ddim | dpm-solver.")
    sampling_steps: int | None = option(None, "ddpm: sampler steps of previews and metrics (ddpm 1000, ddim 50, "
                                              "dpm-solver 20).")
    guidance: float = option(1.0, "ddpm: classifier-free guidance of previews and metrics (1 = none; "
                                  "--conditional).")

    @staticmethod
    def check(cfg: Any) -> None:
        process = Diffusion(cfg.schedule, cfg.timesteps, cfg.prediction)  # checks the three
        if cfg.sampling_steps is not None:
            process.sampling_steps(cfg.sampler, cfg.sampling_steps)
        if cfg.p_uncond is not None and not 0 <= cfg.p_uncond < 1:
            raise DermsynthError(f"--p-uncond must be in [0, 1), got {cfg.p_uncond}")
        if not cfg.conditional and cfg.p_uncond:
            raise DermsynthError("--p-uncond applies to class-conditional models (--conditional)")
        if not (math.isfinite(cfg.guidance) and cfg.guidance >= 0):
            raise DermsynthError(f"--guidance must be a finite number >= 0, got {cfg.guidance}")
        if not cfg.conditional and cfg.guidance != 1.0:
            raise DermsynthError("--guidance (classifier-free guidance) needs a class-conditional model (--conditional)")
        for name in ("weight_decay", "grad_clip", "warmup"):
            value = getattr(cfg, name)
            if value is not None and not value >= 0:
                raise DermsynthError(f"--{name.replace('_', '-')} must be >= 0, got {value}")


@dataclass
class MapDiffusionOptions(DiffusionOptions):
    """Mask-conditioned diffusion (``ddpm-maps``): the semantic (+ instance-boundary) maps of Bissoto et al.'s
    pix2pixHD as extra input channels of the denoiser, on the same data."""

    instance: bool = option(True, "Feed the superpixel instance-boundary map besides the semantic map "
                                  "(--no-instance: Bissoto et al.'s variant (c), semantic maps alone).")
    skip_unmasked: bool = option(False, "Skip images without a lesion mask (with a count) instead of failing.")

    @staticmethod
    def check(cfg: Any) -> None:
        if cfg.conditional:
            raise DermsynthError("--model ddpm-maps is conditioned on lesion maps, not classes; drop --conditional")
        DiffusionOptions.check(cfg)


@dataclass
class InpaintDiffusionOptions(DiffusionOptions):
    """Diffusion inpainting (``ddpm-inpaint``): a denoiser conditioned on the image with the region to repaint
    zeroed and the mask, trained on the healthy / lesion patch sets (``dermsynth patches``)."""

    direction: str = option("add", "ddpm-inpaint: add (repaint lesion patches, --data, inside their own masks) or "
                                   "remove (repaint healthy patches, --data, inside masks of lesion patches, "
                                   "--data-b).")
    data_b: str | None = option(None, "ddpm-inpaint --direction remove: the lesion patches whose masks are "
                                      "repainted (a patch folder as --data alone gives both sets).")

    @staticmethod
    def check(cfg: Any) -> None:
        if cfg.direction not in INPAINT_DIRECTIONS:
            raise DermsynthError(f"--direction must be one of {', '.join(INPAINT_DIRECTIONS)} for --model "
                                 f"ddpm-inpaint, got {cfg.direction!r}")
        if cfg.conditional:
            raise DermsynthError("--model ddpm-inpaint is conditioned on the image around the mask, not classes; "
                                 "drop --conditional")
        DiffusionOptions.check(cfg)
