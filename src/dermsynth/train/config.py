"""Training options: the common options plus each model's own, resolved once against the model's defaults and
written next to the run's outputs.

A model's options are a dataclass declared with its registry entry (``ModelSpec.options``, see
``dermsynth.models.options``); :class:`TrainConfig` is assembled from :class:`CommonOptions` and every
registered model's options, so the API is one flat config and the CLI one option per field (``train --help``
groups them by model). An option given for a model that does not take it is refused with one line.

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
from dataclasses import Field, asdict, dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any

from dermsynth.data.splits import check_real_fraction
from dermsynth.defaults import DEFAULT_PHANTOM_N, DEFAULT_SIZE
from dermsynth.errors import DermsynthError
from dermsynth.io import write_json
from dermsynth.models import MODELS, model_spec
from dermsynth.models.options import option
from dermsynth.models.pgan import parse_batch_schedule  # noqa: F401  (re-exported: the CLI's option)
from dermsynth.train.losses import LOSSES

__all__ = ["CommonOptions", "TrainConfig", "model_fields", "option_groups"]

_LENGTH = ("steps", "kimg")
#: what a ``None`` option of every model becomes when its model names no default
_ANY_MODEL_DEFAULTS: dict[str, Any] = {"lr_decay_start": 1.0, "augment": "none"}  # where the model takes them


@dataclass
class CommonOptions:
    """The options every model takes (its own are ``ModelSpec.options``, ``dermsynth.models.options``)."""

    model: str = option("dcgan", "Model name (the registry in dermsynth.models).")
    data: str | None = option(None, "Training images: dataset root, folder, prepared cache, .npz or phantom:N "
                                    "(default: the built-in phantom data).")
    split: str | None = option(None, "A saved split (`dermsynth split`, or an augment run's split.json): train on "
                                     "its train part only, e.g. the synthetic source of an augmentation study.")
    real_fraction: float | None = option(None, "With --split: train on this nested fraction of its train part, "
                                               "the same images as `dermsynth augment --real-fraction` uses "
                                               "(0 < f <= 1).")
    out: str = option("runs/train", "Run folder: checkpoints, logs, sample grids.")
    size: int = option(DEFAULT_SIZE, "Image side in pixels (a power of two >= 16).")
    width: int = option(64, "Base channel width (ngf = ndf; PGAN: fmap_max = 8 * width).")
    batch_size: int | None = option(None, "Minibatch (the model's default; pgan: one size for every resolution).")
    steps: int | None = option(None, "Length in optimizer steps.")
    kimg: float | None = option(None, "Length in thousands of real images shown (converted to steps).")
    lr_decay_start: float | None = option(None, "Fraction of the run after which every learning rate falls linearly "
                                                "to 0 at its last step (cyclegan, pix2pixhd 0.5: their 100 constant "
                                                "+ 100 decaying epochs; other models 1 = constant).")
    ema_beta: float | None = option(None, "EMA decay of the sampled network's copy; 0 disables it (dcgan 0, pgan "
                                          "0.999).")
    seed: int = option(0, "Seed of weights, batch order and noise.")
    device: str = option("auto", "auto | cpu | cuda | cuda:N.")
    bf16: bool = option(True, "bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX; "
                              "DERMSYNTH_CPU_BF16=0|1 overrides the detection); float32 elsewhere.")
    channels_last: bool = option(True, "channels_last memory format where bf16 autocast runs.")
    compile: bool = option(False, "torch.compile the networks' training passes (CUDA).")
    log_every: int = option(50, "Steps between rows of losses.csv (and the divergence check).")
    sample_every: int = option(500, "Steps between preview grids in OUT/samples.")
    checkpoint_every: int = option(500, "Steps between checkpoints (latest.pt).")
    keep_checkpoints: bool = option(False, "Keep ckpt-<step>.pt besides latest.pt.")
    phantom_n: int = option(DEFAULT_PHANTOM_N, "Size of the built-in phantom set when --data is not given.")
    skip_corrupt: bool = option(False, "Skip unreadable images with a warning instead of failing.")
    overfit_holdout: int = option(0, "Hold out this many real images (whole lesions) to monitor D over-fitting.")
    metrics: str = option("", "Metrics scored during training, comma-separated (e.g. swd,fid; the first decides "
                              "best.pt; lower is better).")
    metric_every: float = option(50.0, "kimg between in-training metric evaluations.")
    metric_real: str | None = option(None, "Real images the metrics compare with (default: the training data).")
    metric_images: int = option(1024, "Images per set for in-training metrics.")
    tensorboard: bool = option(False, "Also log statistics, preview grids and metrics to OUT/tensorboard "
                                      "(needs the tensorboard package).")


_COMMON = frozenset(f.name for f in fields(CommonOptions))


def model_fields(model: str) -> set[str]:
    """The options ``model`` takes besides the common ones (the fields of its ``ModelSpec.options``)."""
    return {f.name for f in fields(model_spec(model).options)}


def option_groups() -> dict[str, list[Field]]:
    """``{"common": common fields, model name: its own fields}``, for ``train --help``."""
    return {"common": list(fields(CommonOptions)), **{name: list(fields(spec.options)) for name, spec in MODELS.items()}}


def _model_option_fields() -> list[tuple[str, Any, Field]]:
    """Every registered model's option fields, each name once (a name several models share must have one type and
    default there)."""
    seen: dict[str, Field] = {}
    for name, spec in MODELS.items():
        for f in fields(spec.options):
            first = seen.setdefault(f.name, f)
            if (first.default, str(first.type)) != (f.default, str(f.type)):
                raise TypeError(f"option {f.name} of {name} differs from another model's in type or default")
    return [(f.name, f.type, field(default=f.default, metadata=f.metadata)) for f in seen.values()
            if f.name not in _COMMON]


class _TrainConfigMethods:
    """Methods of :data:`TrainConfig` (a dataclass assembled from the options classes)."""

    def resolve(self) -> "TrainConfig":
        """A validated copy with every ``None`` replaced by the model's default and ``steps`` set."""
        spec = model_spec(self.model)
        cfg = replace(self)
        cfg.refuse_foreign()
        preset = {}
        if spec.presets:
            cfg.preset = cfg.preset or next(iter(spec.presets))
            if cfg.preset not in spec.presets:
                raise DermsynthError(f"unknown --preset {cfg.preset!r} for --model {cfg.model}; available: "
                                     f"{', '.join(spec.presets)}")
            preset = spec.presets[cfg.preset]
        defaults = {k: v for k, v in {**spec.defaults, **preset}.items()
                    if not (k in _LENGTH and (cfg.steps is not None or cfg.kimg is not None))}
        # constants first, then the defaults computed from other fields
        for name, value in sorted(defaults.items(), key=lambda kv: callable(kv[1])):
            if getattr(cfg, name) is None:
                setattr(cfg, name, value(cfg) if callable(value) else value)
        for name, value in _ANY_MODEL_DEFAULTS.items():
            if getattr(cfg, name) is None and (name in _COMMON or name in model_fields(cfg.model)):
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
        model_spec(self.model).options.check(self)  # the model's own options first
        if self.size < 16 or self.size & (self.size - 1):
            raise DermsynthError(f"--size must be a power of two >= 16, got {self.size}")
        if self.real_fraction is not None:
            if self.split is None:
                raise DermsynthError("--real-fraction takes a fraction of a split's train part: give --split too")
            check_real_fraction(self.real_fraction)
        if self.overfit_holdout < 0:
            raise DermsynthError(f"--overfit-holdout must be >= 0, got {self.overfit_holdout}")
        for name in ("batch_size", "steps", "log_every", "sample_every", "checkpoint_every", "z_dim", "width",
                     "metric_images", "d_scales", "g_blocks", "d_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DermsynthError(f"--{_flag(name)} must be >= 1, got {value}")
        for name in ("kimg", "lr_g", "lr_d", "metric_every"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise DermsynthError(f"--{_flag(name)} must be > 0, got {value}")
        if self.lr_decay_start is not None and not 0 <= self.lr_decay_start <= 1:
            raise DermsynthError(f"--lr-decay-start must be in [0, 1], got {self.lr_decay_start}")
        for name in ("gp_weight", "drift"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise DermsynthError(f"--{_flag(name)} must be >= 0, got {value}")
        for name in ("beta1", "beta2", "ema_beta"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise DermsynthError(f"--{_flag(name)} must be in [0, 1), got {value}")
        if self.loss is not None and self.loss not in LOSSES:
            raise DermsynthError(f"unknown --loss {self.loss!r}; available: {', '.join(LOSSES)}")
        check_option_ranges(self)
        return self

    def foreign(self, given: set[str] | None = None) -> list[str]:
        """Option fields set for a model that does not take them: those ``given`` (default: those that differ
        from their default)."""
        own = _COMMON | model_fields(self.model)
        return [f.name for f in fields(self) if f.name not in own
                and (f.name in given if given is not None else getattr(self, f.name) != f.default)]

    def refuse_foreign(self, given: set[str] | None = None) -> None:
        """A one-line error naming the first option the model does not take (:meth:`foreign`)."""
        extra = self.foreign(given)
        if extra:
            raise DermsynthError(f"--{_flag(extra[0])} does not apply to --model {self.model}"
                                 + (f" (nor {', '.join('--' + _flag(k) for k in extra[1:])})" if extra[1:] else ""))

    def applicable(self) -> "TrainConfig":
        """A copy with the options the model does not take at their defaults (configs of earlier versions
        recorded every model's options)."""
        cfg = replace(self)
        for f in fields(cfg):
            if f.name in self.foreign():
                setattr(cfg, f.name, f.default)
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())


#: Every option of a training run: :class:`CommonOptions` plus every registered model's options (one flat
#: dataclass: ``TrainConfig(model="stylegan2", r1_gamma=1.0)``); ``None`` = the model's default.
TrainConfig = make_dataclass(
    "TrainConfig", [(f.name, f.type, field(default=f.default, metadata=f.metadata)) for f in fields(CommonOptions)]
    + _model_option_fields(), bases=(_TrainConfigMethods,), namespace={"__module__": __name__})
TrainConfig.__doc__ = ("Every option of a training run: the common options plus every model's own "
                       "(``ModelSpec.options``); ``None`` = the model's default (see the module docstring).")


def _flag(name: str) -> str:
    return name.replace("_", "-")


# --- range checks of single options (issue 18: nonsense that was accepted, or crashed later) --------------

#: counts that must be >= 1 (0 would divide by zero or build nothing)
_POSITIVE_COUNTS = ("r1_interval", "pl_interval", "map_layers", "mbstd_group")
#: loss weights and other amounts that must be finite and >= 0
_NON_NEGATIVE = ("lambda_feat", "lambda_perceptual", "relevancy_weight", "cycle_weight", "identity_weight",
                 "r1_gamma", "pl_weight", "ema_kimg", "ema_rampup", "pool_size", "g_downsample", "local_enhancers",
                 "ada_kimg", "gp_weight", "drift", "stable_kimg", "fade_kimg")
#: amounts that must be finite and > 0
_POSITIVE_FINITE = ("fmaps", "lr_g", "lr_d", "kimg", "metric_every")
#: probabilities
_FRACTIONS = ("style_mixing", "augment_p", "ada_target")


def check_option_ranges(cfg: TrainConfig) -> None:
    """One-line errors for options outside their range (``None`` = the model's default, not checked)."""
    def given(name: str) -> list[tuple[str, Any]]:
        value = getattr(cfg, name, None)  # a name no registered model takes any more: nothing to check
        return [] if value is None else [(name, value)]

    for name, value in (kv for n in _POSITIVE_COUNTS for kv in given(n)):
        if value < 1:
            raise DermsynthError(f"--{_flag(name)} must be >= 1, got {value}")
    for name, value in (kv for n in (*_NON_NEGATIVE, *_POSITIVE_FINITE) for kv in given(n)):
        if not math.isfinite(value):
            raise DermsynthError(f"--{_flag(name)} must be a finite number, got {value}")
    for name, value in (kv for n in _NON_NEGATIVE for kv in given(n)):
        if value < 0:
            raise DermsynthError(f"--{_flag(name)} must be >= 0, got {value}")
    for name, value in (kv for n in _POSITIVE_FINITE for kv in given(n)):
        if not value > 0:
            raise DermsynthError(f"--{_flag(name)} must be > 0, got {value}")
    for name, value in (kv for n in _FRACTIONS for kv in given(n)):
        if not 0 <= value <= 1:
            raise DermsynthError(f"--{_flag(name)} must be in [0, 1], got {value}")

