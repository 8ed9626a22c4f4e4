"""Training options: one dataclass, resolved once against the model's own defaults and written next to the
run's outputs.

Fields left at ``None`` mean "the model's default" (``dermsynth.models.MODELS[name].defaults``): DCGAN's
are the DCGAN papers' (seeds 002/004), PGAN's Karras et al.'s (seed 001). :meth:`TrainConfig.resolve`
fills them in once; ``config.json`` holds the resolved values, so a run's settings are never implicit.

Training length: ``steps`` (optimizer steps) or ``kimg`` (thousands of real images shown to D). ``kimg`` is
converted to the exact number of steps under the model's minibatch sizes (per resolution for PGAN), and the
loop always runs by steps. Give one of them (both only if they agree); with neither, the model decides:
2000 steps for DCGAN/LAPGAN, for PGAN the whole growth plus one stable phase at full resolution.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from dermsynth.errors import DermsynthError

# Options a model may leave unset (they apply only to models whose defaults name them), besides the length.
_LENGTH = ("steps", "kimg")


@dataclass
class TrainConfig:
    """Every option of a GAN training run; ``None`` = the model's default (see the module docstring)."""

    model: str = "dcgan"              # dcgan | pgan | lapgan (the registry in dermsynth.models)
    data: str | None = None           # None -> built-in phantom data
    out: str = "runs/train"
    size: int = 64
    conditional: bool = False         # label embedding in G, projection in D
    z_dim: int = 128                  # seed 001 uses 128 for every model
    width: int = 64                   # base channel width (ngf = ndf; PGAN: fmap_max = 8 * width)
    loss: str | None = None           # nonsaturating (dcgan, lapgan) | wgan (pgan, + gp_weight and drift)
    batch_size: int | None = None     # dcgan/lapgan 64; pgan: one size for every resolution (else batch_schedule)
    steps: int | None = None          # length in optimizer steps (one D update + one G update)
    kimg: float | None = None         # length in thousands of real images shown (converted to steps)
    lr_g: float | None = None
    lr_d: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    ema_beta: float | None = None     # 0 disables the EMA generator (dcgan default); pgan 0.999
    gp_weight: float | None = None    # WGAN-GP lambda (pgan 10)
    drift: float | None = None        # epsilon-drift weight on D(real)^2 (pgan 1e-3)
    stable_kimg: float | None = None  # pgan: thousands of images per stable phase (600)
    fade_kimg: float | None = None    # pgan: thousands of images per fade-in phase (600)
    batch_schedule: str | None = None  # pgan: minibatch per resolution, "4:16,8:16,...,128:16,256:14"
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    bf16: bool = True                 # bf16 autocast, CUDA only
    channels_last: bool = True        # CUDA only
    compile: bool = False             # torch.compile the G and D steps (CUDA)
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: bool = False    # keep ckpt-<step>.pt besides latest.pt
    phantom_n: int = 2048             # size of the built-in set when data is None
    skip_corrupt: bool = False
    overfit_holdout: int = 0          # hold out this many real images (whole lesions) to monitor D over-fitting

    def resolve(self) -> "TrainConfig":
        """A validated copy with every ``None`` replaced by the model's default and ``steps`` set."""
        from dermsynth.models import model_spec
        from dermsynth.train.steps import step_class

        spec = model_spec(self.model)
        cfg = replace(self)
        for f in fields(cfg):
            if f.default is None and f.name not in (*_LENGTH, "data") and f.name not in spec.defaults \
                    and getattr(cfg, f.name) is not None:
                raise DermsynthError(f"--{_opt(f.name)} does not apply to --model {cfg.model}")
        defaults = {k: v for k, v in spec.defaults.items()
                    if not (k in _LENGTH and (cfg.steps is not None or cfg.kimg is not None))}
        # constants first, then the defaults computed from other fields
        for name, value in sorted(defaults.items(), key=lambda kv: callable(kv[1])):
            if getattr(cfg, name) is None:
                setattr(cfg, name, value(cfg) if callable(value) else value)
        cfg.validate()
        if cfg.kimg is not None:
            steps = step_class(spec.step).steps_to_show(cfg, math.ceil(cfg.kimg * 1000))
            if cfg.steps is not None and cfg.steps != steps:
                raise DermsynthError(f"--steps {cfg.steps} and --kimg {cfg.kimg:g} disagree ({cfg.kimg:g} kimg "
                                     f"is {steps} steps); give only one of them")
            cfg.steps = steps
        return cfg

    def validate(self) -> "TrainConfig":
        """Check the options (``None`` fields are not checked: see :meth:`resolve`)."""
        from dermsynth.train.losses import LOSSES

        if self.size < 16 or self.size & (self.size - 1):
            raise DermsynthError(f"--size must be a power of two >= 16, got {self.size}")
        if self.overfit_holdout < 0:
            raise DermsynthError(f"--overfit-holdout must be >= 0, got {self.overfit_holdout}")
        if self.stable_kimg is not None and self.fade_kimg is not None and self.stable_kimg + self.fade_kimg <= 0:
            raise DermsynthError("--stable-kimg and --fade-kimg cannot both be 0")
        for name in ("batch_size", "steps", "log_every", "sample_every", "checkpoint_every", "z_dim", "width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DermsynthError(f"--{_opt(name)} must be >= 1, got {value}")
        for name in ("kimg", "lr_g", "lr_d"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise DermsynthError(f"--{_opt(name)} must be > 0, got {value}")
        for name in ("gp_weight", "drift", "stable_kimg", "fade_kimg"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise DermsynthError(f"--{_opt(name)} must be >= 0, got {value}")
        for name in ("beta1", "beta2", "ema_beta"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise DermsynthError(f"--{_opt(name)} must be in [0, 1), got {value}")
        if self.loss is not None and self.loss not in LOSSES:
            raise DermsynthError(f"unknown --loss {self.loss!r}; available: {', '.join(LOSSES)}")
        if self.batch_schedule is not None:
            parse_batch_schedule(self.batch_schedule, self.size)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def parse_batch_schedule(text: str, size: int) -> dict[int, int]:
    """``"4:16,8:16,16:16"`` -> {4: 16, 8: 16, 16: 16}; every resolution from 4 px to ``size`` must be named."""
    schedule: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            res, batch = (int(v) for v in item.split(":"))
        except ValueError:
            raise DermsynthError(f"--batch-schedule: {item!r} is not RESOLUTION:BATCH (e.g. 4:16,8:16)") from None
        if batch < 1:
            raise DermsynthError(f"--batch-schedule: batch {batch} for {res} px must be >= 1")
        schedule[res] = batch
    needed = [4 * 2 ** level for level in range(size.bit_length() - 2)]
    missing = [r for r in needed if r not in schedule]
    if missing:
        raise DermsynthError(f"--batch-schedule names no minibatch for {', '.join(map(str, missing))} px")
    return {r: schedule[r] for r in needed}


def _opt(name: str) -> str:
    return name.replace("_", "-")
