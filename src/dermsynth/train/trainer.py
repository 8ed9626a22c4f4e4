"""The one training loop every GAN in the registry shares.

Per step: one discriminator update on a real batch and a generated batch, then one generator update on the
same generated batch. What differs between models lives in the model's step class
(``dermsynth.train.steps``: GANStep for DCGAN, ProgressiveStep for PGAN, PyramidStep for LAPGAN), named by
its registry entry; the loop only asks the step for the minibatch size before each step and counts the real
images shown. Around it: EMA of the generator, fixed-noise sample grids, loss curves (CSV + PNG), atomic
checkpoints with every RNG state and the number of real images shown (so ``resume=True`` continues exactly
as an uninterrupted run, also across PGAN phase changes), a checkpoint on Ctrl-C so an interrupted run loses
no work, and data-parallel training when started by ``torchrun`` (``dermsynth.train.distributed``).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dermsynth.data.dataset import LesionDataset
from dermsynth.device import resolve_device
from dermsynth.errors import CheckpointError, DermsynthError
from dermsynth.models import build_gan, model_spec
from dermsynth.models.layers import upsample_to
from dermsynth.report.figures import image_grid, plot_curves, save_png, to_uint8
from dermsynth.train.checkpoint import load_checkpoint, save_checkpoint
from dermsynth.train.config import TrainConfig, parse_batch_schedule
from dermsynth.train.distributed import init_distributed
from dermsynth.train.monitor import OverfitMonitor, split_holdout
from dermsynth.train.sampler import BatchSampler
from dermsynth.train.steps import GANStep, step_class

LOSS_COLUMNS = ["d_loss", "g_loss", "d_real", "d_fake"]
GRID_SIZE = 64


class TrainingInterrupted(DermsynthError):
    """Raised after Ctrl-C once the checkpoint of the last finished step is on disk."""


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    step: int


def model_options(cfg: TrainConfig, num_classes: int) -> dict:
    """Keyword options for the model builder; stored in checkpoints so samplers can rebuild G."""
    return {"resolution": cfg.size, "z_dim": cfg.z_dim, "width": cfg.width,
            "num_classes": num_classes if cfg.conditional else 0}


def load_training_data(cfg: TrainConfig, progress: bool = True) -> LesionDataset:
    """The dataset a config names: built-in phantom data when ``cfg.data`` is None."""
    from dermsynth.data.prepare import load_dataset

    spec = cfg.data if cfg.data is not None else f"phantom:{cfg.phantom_n}"
    return load_dataset(spec, size=cfg.size, skip_corrupt=cfg.skip_corrupt, progress=progress)


def ema_beta_at(beta: float, step: int) -> float:
    """The EMA decay used after ``step`` finished steps: ``min(beta, (1 + step) / (10 + step))``.

    The warm-up of TensorFlow's ExponentialMovingAverage(num_updates): early on the average follows the
    generator closely, so a short run (or a PGAN that changes stage every few thousand images) is not
    sampled from an average dominated by its random initialisation. A function of the step only, so a
    resumed run uses the same decays as an uninterrupted one.
    """
    return min(beta, (1.0 + step) / (10.0 + step))


def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers (BN statistics) copied."""
    with torch.no_grad():
        ema_p, p = list(ema.parameters()), list(model.parameters())
        torch._foreach_lerp_(ema_p, p, 1.0 - beta)
        for b_ema, b in zip(ema.buffers(), model.buffers()):
            b_ema.copy_(b)


def train(cfg: TrainConfig, dataset: LesionDataset | None = None, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Train the GAN that ``cfg.model`` names; see :class:`TrainConfig` for every option.

    ``cfg`` is resolved against the model's defaults first (:meth:`TrainConfig.resolve`). With
    ``resume=True`` training continues from ``<out>/latest.pt`` (if present) up to the new ``steps``/``kimg``
    (the model's default length when neither is given). Under ``torchrun`` every rank runs this function;
    rank 0 alone writes files.
    """
    out = Path(cfg.out)
    ckpt_path = out / "latest.pt"
    state = None
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(state["config"])
        # The architecture, data and schedule come from the checkpoint; only the length and logging may change.
        for key in ("steps", "kimg", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "device"):
            setattr(saved, key, getattr(cfg, key))
        cfg = saved
    elif not resume and ckpt_path.exists():
        raise DermsynthError(f"{out} already holds a run (latest.pt); pass --resume to continue it "
                             f"or choose another --out")
    cfg = cfg.resolve()

    dist = init_distributed(cfg.device)
    device = resolve_device(cfg.device)
    if dist.active and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (LOCAL_RANK)
    torch.manual_seed(cfg.seed)
    data = dataset if dataset is not None else load_training_data(cfg, progress and dist.is_main)
    if data.size != cfg.size:
        raise DermsynthError(f"data is {data.size}px but the model is configured for {cfg.size}px")
    if cfg.conditional and data.num_classes < 1:
        raise DermsynthError("--conditional needs labelled data; this dataset has no classes")

    held_out = None
    if cfg.overfit_holdout:
        data, held_out = split_holdout(data, cfg.overfit_holdout, cfg.seed)

    options = model_options(cfg, data.num_classes)
    G, D = build_gan(cfg.model, **options)
    G, D = G.to(device), D.to(device)
    use_cuda = device.type == "cuda"
    if use_cuda and cfg.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema_beta > 0 else None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(float(cfg.beta1), float(cfg.beta2)))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(float(cfg.beta1), float(cfg.beta2)))

    noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    gan_step = step_class(model_spec(cfg.model).step).from_config(
        cfg, G, D, opt_g, opt_d, bf16=use_cuda and cfg.bf16, noise=noise, ema=G_ema, dist=dist)
    # Batch sizes are global (all ranks together); the sampler validates the largest one.
    max_batch = max(parse_batch_schedule(cfg.batch_schedule, cfg.size).values()) if cfg.batch_schedule \
        else cfg.batch_size
    sampler = BatchSampler(data.images, data.labels, max_batch, cfg.seed, device, dist=dist)
    grid_gen = torch.Generator().manual_seed(cfg.seed + 2)
    fixed_z = torch.randn(GRID_SIZE, cfg.z_dim, generator=grid_gen).to(device)
    fixed_y = (torch.arange(GRID_SIZE) % max(data.num_classes, 1)).to(device)
    step, images_seen = 0, 0
    if state is not None:
        _restore(state, G, D, G_ema, opt_g, opt_d, sampler, noise, gan_step)
        step, images_seen = int(state["step"]), int(state.get("images_seen", 0))
    # Every rank starts from rank 0's weights (as DDP does), whatever its own initialisation was; batch-norm
    # statistics (computed from each rank's own rows) are re-broadcast every step, as DDP's broadcast_buffers.
    if dist.active:
        dist.broadcast_state(G, D, G_ema)
    sync_buffers = dist.active and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in G.modules())

    main = dist.is_main
    losses_csv, overfit_csv = out / "losses.csv", out / "overfit.csv"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
        cfg.save(out / "config.json")
        (out / "data.json").write_text(json.dumps(_data_summary(data), indent=2) + "\n")
        for log in (losses_csv, overfit_csv):
            _truncate_log(log, step)
        if state is None:
            _save_real_grid(data, out / "real.png")

    autocast = gan_step.autocast
    conditional = cfg.conditional
    monitor = OverfitMonitor(data, held_out, device, seed=cfg.seed) if held_out is not None and main else None

    def checkpoint() -> Path:
        state = _state(cfg, step, images_seen, options, data, G, D, G_ema, opt_g, opt_d, sampler, noise, gan_step)
        path = save_checkpoint(state, ckpt_path)
        if cfg.keep_checkpoints:
            save_checkpoint(state, out / f"ckpt-{step:07d}.pt")
        plot_curves(losses_csv, out / "losses.png")
        if monitor is not None:
            plot_curves(overfit_csv, out / "overfit.png", ["d_train", "d_heldout", "gap"], ylabel="mean D logit",
                        title="discriminator over-fitting: training vs held-out real images")
        return path

    def sample_grid() -> None:
        g = G_ema if G_ema is not None else G
        was_training = g.training
        g.eval()
        # A forked RNG: models that draw noise inside (LAPGAN's bands) give comparable grids and leave the
        # training's random stream untouched.
        with torch.no_grad(), autocast, torch.random.fork_rng(devices=[device] if use_cuda else []):
            torch.manual_seed(cfg.seed + 3)
            imgs = upsample_to(g(fixed_z, fixed_y if conditional else None), cfg.size)  # PGAN while growing
        g.train(was_training)
        save_png(image_grid(to_uint8(imgs), nrow=8), out / "samples" / f"step-{step:07d}.png")

    log_sum = torch.zeros(len(LOSS_COLUMNS), device=device)
    log_n, log_images, t_log = 0, 0, time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, unit="step", disable=not (progress and main), dynamic_ncols=True)
    with (open(losses_csv, "a", newline="") if main else contextlib.nullcontext()) as log_file, \
            _StopOnInterrupt() as stop:
        writer = csv.writer(log_file) if main else None
        if main and log_file.tell() == 0:
            writer.writerow(["step", *LOSS_COLUMNS, "img_per_s"])
        stopping = False
        while step < cfg.steps and not stopping:
            batch = gan_step.begin(images_seen)  # the global minibatch; PGAN: sets the stage
            real, labels = sampler.next(batch)   # this rank's rows of it
            if use_cuda and cfg.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            z = dist.shard(torch.randn(batch, cfg.z_dim, device=device, generator=noise))
            stats = gan_step(real, labels if conditional else None, z)
            if sync_buffers:
                dist.broadcast_state(G, buffers_only=True)
            if G_ema is not None:
                update_ema(G_ema, G, ema_beta_at(cfg.ema_beta, step))
            step += 1
            images_seen += batch
            # Accumulate on the device; the host reads it only every log_every steps (no per-step sync).
            log_sum += stats
            log_n += 1
            log_images += batch
            bar.update(1)
            at_log = step % cfg.log_every == 0 or step == cfg.steps
            if at_log:
                values = (dist.mean(log_sum) / log_n).tolist()
                now = time.perf_counter()
                ips = log_images / max(now - t_log, 1e-9)
                log_sum.zero_()
                log_n, log_images, t_log = 0, 0, now
                if main:
                    writer.writerow([step, *[f"{v:.5f}" for v in values], f"{ips:.1f}"])
                    log_file.flush()
                    bar.set_postfix(d=f"{values[0]:.3f}", g=f"{values[1]:.3f}", img_s=f"{ips:.0f}",
                                    kimg=f"{images_seen / 1000:.1f}")
                if monitor is not None:
                    d_train, d_held = monitor.measure(_SeesRealsAsTrained(D, gan_step), conditional, autocast)
                    _append_row(overfit_csv, ["step", "d_train", "d_heldout", "gap"],
                                [step, f"{d_train:.5f}", f"{d_held:.5f}", f"{d_train - d_held:.5f}"])
            if main and (step % cfg.sample_every == 0 or step == cfg.steps):
                sample_grid()
            if main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                checkpoint()
            # Under torchrun the ranks agree on stopping where they read the logs anyway (no extra host sync),
            # so every rank stops after the same step; a single process stops after the current step.
            stopping = (at_log and dist.any(stop.requested, device)) if dist.active else stop.requested
    bar.close()
    if step < cfg.steps:  # stopped by Ctrl-C
        if main:
            checkpoint()
        raise TrainingInterrupted(f"interrupted at step {step}; checkpoint saved to {ckpt_path}; "
                                  f"continue with --resume")
    return TrainResult(out=out, checkpoint=ckpt_path, step=step)


class _SeesRealsAsTrained(nn.Module):
    """D fed real images the way the step shows them (PGAN: pooled and blended to the current stage)."""

    def __init__(self, D: nn.Module, gan_step: GANStep) -> None:
        super().__init__()
        self.D, self.prepare = D, gan_step.prepare_real

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.D(self.prepare(images), labels)


class _StopOnInterrupt:
    """Turn the first Ctrl-C into a request to stop after the current step (so the checkpoint written
    then is a consistent state that resumes exactly); a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _state(cfg, step, images_seen, options, data, G, D, G_ema, opt_g, opt_d, sampler, noise, gan_step) -> dict:
    return {
        "format": "dermsynth-gan-1",
        "config": cfg.to_dict(),
        "model": cfg.model,
        "model_options": options,
        "class_names": list(data.class_names),
        "data": _data_summary(data),
        "step": step,
        "images_seen": images_seen,  # real images shown: PGAN's growth stage and phase derive from it
        "step_state": gan_step.state_dict(),
        "generator": G.state_dict(),
        "discriminator": D.state_dict(),
        "generator_ema": None if G_ema is None else G_ema.state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "sampler": sampler.state_dict(),
        "noise_rng": noise.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore(state, G, D, G_ema, opt_g, opt_d, sampler, noise, gan_step) -> None:
    try:
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        if G_ema is not None and state.get("generator_ema") is not None:
            G_ema.load_state_dict(state["generator_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match the model: {str(exc).splitlines()[0]}") from None
    sampler.load_state_dict(state["sampler"])
    gan_step.load_state_dict(state.get("step_state", {}))
    noise.set_state(state["noise_rng"])
    torch.set_rng_state(state["torch_rng"])
    if torch.cuda.is_available() and state.get("cuda_rng"):
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def _data_summary(data: LesionDataset) -> dict:
    return {"source": data.source, "count": len(data), "size": data.size,
            "class_names": list(data.class_names), "class_counts": data.class_counts()}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step``: a crashed run may have logged beyond its last checkpoint."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def _append_row(path: Path, header: list[str], row: list) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(header)
        w.writerow(row)


def _save_real_grid(data: LesionDataset, path: Path, n: int = GRID_SIZE) -> None:
    idx = np.random.default_rng(0).choice(len(data), size=min(n, len(data)), replace=False)
    save_png(image_grid(np.asarray(data.images[np.sort(idx)]), nrow=8), path)
