"""Training options: one dataclass, resolved once and written next to the run's outputs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dermsynth.errors import DermsynthError


@dataclass
class TrainConfig:
    """Every option of a GAN training run (defaults follow the DCGAN papers, seeds 002/004)."""

    model: str = "dcgan"
    data: str | None = None          # None -> built-in phantom data
    out: str = "runs/train"
    size: int = 64
    conditional: bool = False         # label embedding in G, projection in D
    z_dim: int = 128                  # seed 001 uses 128 for every model
    width: int = 64                   # base channel width (ngf = ndf)
    loss: str = "nonsaturating"
    batch_size: int = 64
    steps: int = 2000                 # one step = one D update + one G update
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_beta: float = 0.0             # 0 disables the EMA generator; e.g. 0.999
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

    def validate(self) -> "TrainConfig":
        if self.size < 16 or self.size & (self.size - 1):
            raise DermsynthError(f"--size must be a power of two >= 16, got {self.size}")
        if self.overfit_holdout < 0:
            raise DermsynthError(f"--overfit-holdout must be >= 0, got {self.overfit_holdout}")
        for name in ("batch_size", "steps", "log_every", "sample_every", "checkpoint_every", "z_dim", "width"):
            if getattr(self, name) < 1:
                raise DermsynthError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_beta < 1.0:
            raise DermsynthError(f"--ema-beta must be in [0, 1), got {self.ema_beta}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
