"""Training options: one dataclass, resolved once against the model's own defaults and written next to the
run's outputs.

Fields left at ``None`` mean "the model's default" (``dermsynth.models.MODELS[name].defaults``): DCGAN's
are the DCGAN papers' (Essipova et al. 2020 and Lunagariya & Patel), PGAN's Karras et al.'s (Baur et al. 2018).
:meth:`TrainConfig.resolve` fills them in once; ``config.json`` holds the resolved values, so a run's settings are
never implicit.

Training length: ``steps`` (optimizer steps) or ``kimg`` (thousands of real images shown to D). ``kimg`` is
converted to the exact number of steps under the model's minibatch sizes (per resolution for PGAN), and the
loop always runs by steps. Give one of them (both only if they agree); with neither, the model decides:
2000 steps for DCGAN/LAPGAN, for PGAN the whole growth plus one stable phase at full resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dermsynth.data.splits import check_real_fraction
from dermsynth.defaults import DEFAULT_PHANTOM_N, DEFAULT_SIZE
from dermsynth.errors import DermsynthError
from dermsynth.io import write_json
from dermsynth.models import model_spec
from dermsynth.models.perceptual import check_perceptual_spec
from dermsynth.models.pgan import parse_batch_schedule  # noqa: F401  (re-exported: the CLI's option)
from dermsynth.train.losses import LOSSES

# Options a model may leave unset (they apply only to models whose defaults name them), besides the length.
_LENGTH = ("steps", "kimg")
# ``None``-default options that are not model defaults: they apply to every model
_ANY_MODEL = (*_LENGTH, "data", "data_b", "split", "real_fraction", "metric_real", "lr_decay_start", "augment")
#: what a ``None`` option of every model becomes when its model names no default
_ANY_MODEL_DEFAULTS: dict[str, Any] = {"lr_decay_start": 1.0, "augment": "none"}


def _opt(default: Any, help: str) -> Any:
    """A config field with its ``--help`` text (the CLI makes one option per field)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every option of a GAN training run; ``None`` = the model's default (see the module docstring)."""

    model: str = _opt("dcgan", "Model name (the registry in dermsynth.models).")
    data: str | None = _opt(None, "Training images: dataset root, folder, prepared cache, .npz or phantom:N "
                                  "(default: the built-in phantom data).")
    data_b: str | None = _opt(None, "Second domain of two-domain models (CycleGAN: the B images; --data is A).")
    split: str | None = _opt(None, "A saved split (`dermsynth split`, or an augment run's split.json): train on its "
                                   "train part only, e.g. the synthetic source of an augmentation study.")
    real_fraction: float | None = _opt(None, "With --split: train on this nested fraction of its train part, the "
                                             "same images as `dermsynth augment --real-fraction` uses (0 < f <= 1).")
    out: str = _opt("runs/train", "Run folder: checkpoints, logs, sample grids.")
    size: int = _opt(DEFAULT_SIZE, "Image side in pixels (a power of two >= 16).")
    conditional: bool = _opt(False, "Class-conditional: label embedding in G, projection in D.")
    z_dim: int = _opt(128, "Latent dimension (Baur et al. 2018 uses 128 for every model).")
    width: int = _opt(64, "Base channel width (ngf = ndf; PGAN: fmap_max = 8 * width).")
    loss: str | None = _opt(None, "GAN loss (the model's default: nonsaturating for dcgan/lapgan, wgan for pgan).")
    batch_size: int | None = _opt(None, "Minibatch (dcgan/lapgan 64; pgan: one size for every resolution).")
    steps: int | None = _opt(None, "Length in optimizer steps (one D update + one G update).")
    kimg: float | None = _opt(None, "Length in thousands of real images shown (converted to steps).")
    lr_g: float | None = _opt(None, "Generator learning rate (model default; may change on --resume).")
    lr_d: float | None = _opt(None, "Discriminator learning rate (model default; may change on --resume).")
    lr_decay_start: float | None = _opt(None, "Fraction of the run after which both learning rates fall linearly "
                                              "to 0 at its last step (cyclegan, pix2pixhd 0.5: their 100 constant + "
                                              "100 decaying epochs; other models 1 = constant).")
    beta1: float | None = _opt(None, "Adam beta1 (model default).")
    beta2: float | None = _opt(None, "Adam beta2 (model default).")
    ema_beta: float | None = _opt(None, "EMA decay of the generator copy; 0 disables it (dcgan 0, pgan 0.999).")
    gp_weight: float | None = _opt(None, "WGAN-GP lambda (pgan 10).")
    drift: float | None = _opt(None, "Epsilon-drift weight on D(real)^2 (pgan 1e-3).")
    stable_kimg: float | None = _opt(None, "pgan: thousands of images per stable phase (600).")
    fade_kimg: float | None = _opt(None, "pgan: thousands of images per fade-in phase (600).")
    batch_schedule: str | None = _opt(None, "pgan: minibatch per resolution, e.g. 4:16,8:16,...,256:14.")
    seed: int = _opt(0, "Seed of weights, batch order and noise.")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N.")
    bf16: bool = _opt(True, "bf16 autocast (CUDA only).")
    channels_last: bool = _opt(True, "channels_last memory format (CUDA only).")
    compile: bool = _opt(False, "torch.compile the G and D steps (CUDA).")
    log_every: int = _opt(50, "Steps between rows of losses.csv (and the divergence check).")
    sample_every: int = _opt(500, "Steps between preview grids in OUT/samples.")
    checkpoint_every: int = _opt(500, "Steps between checkpoints (latest.pt).")
    keep_checkpoints: bool = _opt(False, "Keep ckpt-<step>.pt besides latest.pt.")
    phantom_n: int = _opt(DEFAULT_PHANTOM_N, "Size of the built-in phantom set when --data is not given.")
    skip_corrupt: bool = _opt(False, "Skip unreadable images with a warning instead of failing.")
    overfit_holdout: int = _opt(0, "Hold out this many real images (whole lesions) to monitor D over-fitting.")
    metrics: str = _opt("", "Metrics scored during training, comma-separated (e.g. swd,fid; the first decides "
                            "best.pt; lower is better).")
    metric_every: float = _opt(50.0, "kimg between in-training metric evaluations.")
    metric_real: str | None = _opt(None, "Real images the metrics compare with (default: the training data).")
    metric_images: int = _opt(1024, "Images per set for in-training metrics.")
    tensorboard: bool = _opt(False, "Also log statistics, preview grids and metrics to OUT/tensorboard "
                                    "(needs the tensorboard package).")
    direction: str = _opt("add", "unet-translator: add (healthy --data + lesion masks of --data-b -> lesion) or "
                                 "remove (lesion --data + its masks -> healthy like --data-b).")
    truncate_healthy: bool = _opt(False, "unet-translator --direction add: edit a random subset of the healthy "
                                         "set (--data) as large as the lesion set (--data-b), as Furger et al. 2020.")
    relevancy_weight: float | None = _opt(None, "unet-translator: lambda_REL, weight of the MSE outside the mask "
                                                "(Furger et al. 2020: 10).")
    cycle_weight: float | None = _opt(None, "cyclegan: lambda of the cycle-consistency L1 loss (10).")
    identity_weight: float | None = _opt(None, "cyclegan: identity loss weight relative to --cycle-weight (0.5; "
                                               "0 disables it).")
    pool_size: int | None = _opt(None, "cyclegan: generated images kept per discriminator's image pool (50; 0 off).")
    d_scales: int | None = _opt(None, "Discriminator scales (multi-scale D, each on the input average-pooled by 2 "
                                      "once more): dcgan 1 (Furger et al. 2020: 2), pix2pixhd 3.")
    instance: bool = _opt(True, "pix2pixhd: feed the superpixel instance-boundary map besides the semantic map "
                                "(--no-instance: Bissoto et al.'s variant (c), semantic maps alone).")
    skip_unmasked: bool = _opt(False, "Map models: skip images without a lesion mask (with a count) instead of "
                                      "failing.")
    perceptual: str | None = _opt(None, "pix2pixhd: perceptual loss network: off, vgg19:FILE (a local torchvision "
                                        "VGG19 state dict) or classifier:CKPT (dermsynth train-extractor); off.")
    lambda_feat: float | None = _opt(None, "pix2pixhd: weight of the discriminator feature-matching loss (10).")
    lambda_perceptual: float | None = _opt(None, "pix2pixhd: weight of the perceptual loss (10).")
    g_downsample: int | None = _opt(None, "pix2pixhd: stride-2 down-samplings of the global generator (4).")
    g_blocks: int | None = _opt(None, "pix2pixhd: residual blocks of the global generator (9).")
    local_enhancers: int | None = _opt(None, "pix2pixhd: local enhancer networks, each doubling the resolution "
                                             "the global generator works at (0).")
    d_layers: int | None = _opt(None, "pix2pixhd: stride-2 layers per patch discriminator (3).")
    augment: str | None = _opt(None, "Discriminator augmentation (any GAN but lapgan): none | ada (adaptive p, "
                                      "Karras et al. 2020) | fixed (p = --augment-p) | diffaugment (Zhao et al. "
                                      "2020). Default: ada for stylegan2 (as the reference's --aug=ada), else none.")
    augment_p: float = _opt(0.0, "Augmentation probability: fixed p, or ADA's initial p.")
    augment_pipe: str = _opt("bgc", "Transforms of --augment ada/fixed (the reference's --augpipe): blit | geom | "
                                    "color | filter | noise | cutout | bg | bgc | bgcf | bgcfn | bgcfnc.")
    ada_target: float = _opt(0.6, "ADA target of r_t = E[sign(D(real))].")
    ada_kimg: float = _opt(500.0, "ADA speed: thousands of real images for p to move from 0 to 1.")
    r1_gamma: float | None = _opt(None, "stylegan2: R1 weight gamma (by resolution, the ADA paper's configs: "
                                        "<=32 px 0.01, 64 px 0.0256, 128 px 0.1024, 256 px 1, 512 px 0.5).")
    r1_interval: int | None = _opt(None, "stylegan2: steps between lazy R1 updates (16).")
    pl_weight: float | None = _opt(None, "stylegan2: path-length regularisation weight (2; 0 at <=32 px).")
    pl_interval: int | None = _opt(None, "stylegan2: steps between lazy path-length updates (4).")
    style_mixing: float | None = _opt(None, "stylegan2: style-mixing probability (0.9; 0 at <=32 px).")
    map_layers: int | None = _opt(None, "stylegan2: mapping-network depth (8 at 256 px and up, else 2).")
    mbstd_group: int | None = _opt(None, "stylegan2: minibatch-stddev group size (by resolution, e.g. 8 at 256 px).")
    fmaps: float | None = _opt(None, "stylegan2: channel_base = fmaps * 32768 * width / 64 (0.5 at 64-256 px).")
    ema_kimg: float | None = _opt(None, "stylegan2: G EMA half-life in thousands of images (256 px: 20).")
    ema_rampup: float | None = _opt(None, "stylegan2: EMA half-life ramp-up, ema_kimg <= rampup * kimg shown "
                                          "(0.05; 0 = none, as at 256 px).")
    cycle_residual: bool = _opt(False, "cyclegan: generators output input + residual (Furger et al.'s image "
                                       "modification) instead of the paper's tanh image.")

    def resolve(self) -> "TrainConfig":
        """A validated copy with every ``None`` replaced by the model's default and ``steps`` set."""
        spec = model_spec(self.model)
        cfg = replace(self)
        for f in fields(cfg):
            if f.default is None and f.name not in _ANY_MODEL and f.name not in spec.defaults \
                    and getattr(cfg, f.name) is not None:
                raise DermsynthError(f"--{_flag(f.name)} does not apply to --model {cfg.model}")
        defaults = {k: v for k, v in spec.defaults.items()
                    if not (k in _LENGTH and (cfg.steps is not None or cfg.kimg is not None))}
        # constants first, then the defaults computed from other fields
        for name, value in sorted(defaults.items(), key=lambda kv: callable(kv[1])):
            if getattr(cfg, name) is None:
                setattr(cfg, name, value(cfg) if callable(value) else value)
        for name, value in _ANY_MODEL_DEFAULTS.items():
            if getattr(cfg, name) is None:
                setattr(cfg, name, value)
        cfg.validate()
        if cfg.kimg is not None:
            steps = spec.steps_for_images(cfg, math.ceil(cfg.kimg * 1000))
            if cfg.steps is not None and cfg.steps != steps:
                raise DermsynthError(f"--steps {cfg.steps} and --kimg {cfg.kimg:g} disagree ({cfg.kimg:g} kimg "
                                     f"is {steps} steps); give only one of them")
            cfg.steps = steps
        return cfg

    def validate(self) -> "TrainConfig":
        """Check the options (``None`` fields are not checked: see :meth:`resolve`)."""
        if self.size < 16 or self.size & (self.size - 1):
            raise DermsynthError(f"--size must be a power of two >= 16, got {self.size}")
        if self.real_fraction is not None:
            if self.split is None:
                raise DermsynthError("--real-fraction takes a fraction of a split's train part: give --split too")
            check_real_fraction(self.real_fraction)
        if self.overfit_holdout < 0:
            raise DermsynthError(f"--overfit-holdout must be >= 0, got {self.overfit_holdout}")
        if self.stable_kimg is not None and self.fade_kimg is not None and self.stable_kimg + self.fade_kimg <= 0:
            raise DermsynthError("--stable-kimg and --fade-kimg cannot both be 0")
        for name in ("batch_size", "steps", "log_every", "sample_every", "checkpoint_every", "z_dim", "width",
                     "metric_images", "d_scales", "g_blocks", "d_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DermsynthError(f"--{_flag(name)} must be >= 1, got {value}")
        for name in ("kimg", "lr_g", "lr_d", "metric_every"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise DermsynthError(f"--{_flag(name)} must be > 0, got {value}")
        if self.truncate_healthy and (self.model != "unet-translator" or self.direction != "add"):
            raise DermsynthError("--truncate-healthy applies to --model unet-translator --direction add")
        if self.lr_decay_start is not None and not 0 <= self.lr_decay_start <= 1:
            raise DermsynthError(f"--lr-decay-start must be in [0, 1], got {self.lr_decay_start}")
        for name in ("gp_weight", "drift", "stable_kimg", "fade_kimg"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise DermsynthError(f"--{_flag(name)} must be >= 0, got {value}")
        for name in ("beta1", "beta2", "ema_beta"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise DermsynthError(f"--{_flag(name)} must be in [0, 1), got {value}")
        if self.loss is not None and self.loss not in LOSSES:
            raise DermsynthError(f"unknown --loss {self.loss!r}; available: {', '.join(LOSSES)}")
        if self.batch_schedule is not None:
            parse_batch_schedule(self.batch_schedule, self.size)
        if self.perceptual is not None:
            check_perceptual_spec(self.perceptual)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())


def _flag(name: str) -> str:
    return name.replace("_", "-")
