"""The one training loop every model in the registry shares.

The loop knows nothing of the model it trains: the registry builds the model's networks by name and names
a *step* (``dermsynth.train.steps``) that owns them: it builds its optimizers, declares the batch fields it
needs, draws its own noise, updates its networks and returns named statistics, and names the network that is
sampled. The loop iterates over the step's ``networks`` and ``optimizers`` for the checkpoint, the resume,
the finite check and the DDP broadcast; it never names a generator or a discriminator. Around it: EMA of the
sampled network, preview grids the step draws, loss curves (CSV + PNG with the
step's column names), optional in-training metrics with a ``best.pt`` snapshot, atomic checkpoints with every
RNG state and the number of real images shown (so ``resume=True`` continues exactly as an uninterrupted
run, also across PGAN phase changes), and data-parallel training when started by ``torchrun``
(``dermsynth.train.distributed``).

Reliability: a run holds a lock on its folder (a second run into the same ``out`` is refused; a killed
run's lock dies with it); Ctrl-C or SIGTERM (``timeout``, SLURM, Kubernetes) finish the current step, save
a checkpoint and stop; a non-finite or exploding statistic or weight (``dermsynth.train.divergence``) stops the
run with an error naming the steps and never overwrites the last good checkpoint; ``--resume`` refuses options
that cannot change, other training data (by fingerprint) and a length behind the run, and records the options
that may change.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import fcntl
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.maps import masked_subset
from dermsynth.data.prepare import content_hash, load_dataset
from dermsynth.data.patches import patch_domains
from dermsynth.data.splits import ids_fingerprint, split_part
from dermsynth.device import bf16_native, resolve_device, runtime_info
from dermsynth.errors import CheckpointError, DermsynthError
from dermsynth.io import append_csv_row, check_writable_dir, read_csv_rows, write_csv, write_json
from dermsynth.progress import tqdm
from dermsynth.models import build_networks, model_spec
from dermsynth.models.options import FlipOptions
from dermsynth.report.figures import image_grid, plot_curves, save_png, to_uint8
from dermsynth.data.batch import Batch, batch_from_dataset
from dermsynth.checkpoint import FORMAT, assert_finite_weights, load_checkpoint, save_checkpoint
from dermsynth.train.config import TrainConfig, parse_batch_schedule
from dermsynth.train.distributed import DistInfo, init_distributed
from dermsynth.train.divergence import DivergenceCheck, not_finite
from dermsynth.train.in_training_metrics import in_training_metrics
from dermsynth.train.monitor import OverfitMonitor, split_holdout
from dermsynth.train.minibatches import Minibatches
from dermsynth.train.steps import PREVIEW_SIZE, GANStep, TrainStep, ema_beta_at, step_class

__all__ = ["GANStep", "MetricsHook", "RunLocked", "TrainResult", "TrainingDiverged", "TrainingInterrupted",
           "ema_beta_at", "load_training_data", "model_options", "train", "update_ema"]

#: data paths stored resolved (and, on --resume, compared by the fingerprint of their contents)
_DATA_PATHS = ("data", "data_b", "split")
#: options ``--resume`` may change (applied, and recorded in config.json with the step); every other option
#: is fixed by the run (model, data, size, architecture, schedule, seed) and a different value is an error
LOSSES_CSV, OVERFIT_CSV, METRICS_CSV = "losses.csv", "overfit.csv", "metrics.csv"  # logs in the run folder
RESUME_MUTABLE = ("steps", "kimg", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "device",
                  "lr_g", "lr_d", "lr", "bf16", "channels_last", "compile", "metrics", "metric_every", "metric_real",
                  "metric_images", "tensorboard")


class TrainingInterrupted(DermsynthError):
    """Raised after Ctrl-C or SIGTERM once the checkpoint of the last finished step is on disk.

    ``exit_code`` is the shell convention for the signal: 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TrainingDiverged(DermsynthError):
    """A statistic or weight became NaN/inf or exploded (``dermsynth.train.divergence``); the last good checkpoint
    was kept."""


class RunLocked(DermsynthError):
    """Another training run is writing into the same output folder."""


class MetricsHook(Protocol):
    """In-training metrics (e.g. ``dermsynth.metrics.registry.TrainingMetrics``).

    ``names``: the metrics, lower is better, the first decides ``best.pt``; called with ``sample_fn(n, seed)``
    returning ``n`` uint8 (N, H, W, 3) images of the current sampled network (its EMA copy when there is one),
    it returns ``{name: value}``."""

    names: list[str]

    def __call__(self, sample_fn: Callable[[int, int], np.ndarray]) -> Mapping[str, float]: ...


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    step: int


def model_options(cfg: TrainConfig, data: LesionDataset) -> dict:
    """Keyword options for the model builder; stored in checkpoints so samplers can rebuild the sampled network."""
    spec = model_spec(cfg.model)
    return {"resolution": cfg.size, "z_dim": cfg.z_dim, "width": cfg.width,
            "num_classes": data.num_classes if cfg.conditional else 0, **spec.extra_options(cfg, data)}


def load_training_data(cfg: TrainConfig, progress: bool = True, source: str | None = None) -> LesionDataset:
    """The dataset a config names (``source`` overrides ``cfg.data``): built-in phantom data when None."""
    spec = source if source is not None else (cfg.data if cfg.data is not None else f"phantom:{cfg.phantom_n}")
    return load_dataset(spec, size=cfg.size, skip_corrupt=cfg.skip_corrupt, progress=progress)


def lr_factor(step: int, steps: int, decay_start: float) -> float:
    """The learning-rate multiplier of update ``step`` (0-based) of a ``steps``-long run: 1 until the fraction
    ``decay_start`` of the run, then falling linearly to ``1 / (steps - start)`` at the last update, as the
    CycleGAN and pix2pixHD code's linear schedule (their last epoch, too, trains at a small non-zero rate)."""
    start = round(decay_start * steps)
    if step < start or start >= steps:
        return 1.0
    return (steps - step) / (steps - start)


def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers (BN statistics) copied."""
    with torch.no_grad():
        ema_p, p = list(ema.parameters()), list(model.parameters())
        torch._foreach_lerp_(ema_p, p, 1.0 - beta)
        for b_ema, b in zip(ema.buffers(), model.buffers()):
            b_ema.copy_(b)


@dataclass
class _Run:
    """Everything one training run holds fixed while the loop advances ``step`` (built by :func:`train`)."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    dist: DistInfo
    data: LesionDataset
    held_out: LesionDataset | None
    options: dict            # model builder options (in every checkpoint)
    inputs: tuple[str, ...]  # the batch fields the sampled network takes, in call order
    noise: torch.Generator
    train_step: TrainStep    # owns the networks, their optimizers and the EMA copy
    sampler: Minibatches
    sampler_b: Minibatches | None
    fixed: Batch             # the preview grid's real batch
    metrics: MetricsHook | None
    sync_buffers: bool
    changes: list[dict]      # options changed on --resume, with the step each took effect
    divergence: DivergenceCheck
    data_seen: dict          # what the run trains on: resolved paths and fingerprints (checked on --resume)
    log_state: dict | None = None  # statistics summed since the last log row, from the checkpoint

    @property
    def ckpt_path(self) -> Path:
        return self.out / "latest.pt"


def train(cfg: TrainConfig, dataset: LesionDataset | None = None, resume: bool = False, progress: bool = True,
          *, dataset_b: LesionDataset | None = None, metrics: MetricsHook | None = None,
          given: set[str] | None = None) -> TrainResult:
    """Train the model that ``cfg.model`` names; see :class:`TrainConfig` for every option.

    ``cfg`` is resolved against the model's defaults first (:meth:`TrainConfig.resolve`). With
    ``resume=True`` training continues from ``<out>/latest.pt`` (if present) up to the new ``steps``/``kimg``
    (the model's default length when neither is given); ``given`` names the options the user set
    explicitly (default: those that differ from :class:`TrainConfig`'s defaults): an option that cannot
    change on resume is an error, one that may (:data:`RESUME_MUTABLE`) is applied and recorded.
    ``dataset_b`` is the second domain of two-domain models (else ``cfg.data_b`` is loaded); ``metrics``
    scores the generator every ``cfg.metric_every`` kimg (default: the ``cfg.metrics`` it names, built from the final
    config, after a resume has merged the checkpoint's). Under ``torchrun``
    every rank runs this function; rank 0 alone writes files.
    """
    spec = model_spec(cfg.model)
    cfg.refuse_foreign(given)  # e.g. --direction for dcgan, even at its default value
    cfg = replace(cfg, **{k: _resolved(getattr(cfg, k)) for k in _DATA_PATHS})
    data_b_given = cfg.data_b is not None or dataset_b is not None  # not the half of a patch folder
    if spec.data_domain is not None:  # a patch folder as --data alone: its healthy/ and lesion/ sets
        cfg = replace(cfg, **dict(zip(("data", "data_b"), patch_domains(cfg.data, cfg.data_b, spec.data_domain(cfg)))))
    out = Path(cfg.out)
    ckpt_path = out / "latest.pt"
    state, changes = None, []
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        assert_finite_weights(state, ckpt_path)  # a diverged checkpoint (earlier versions wrote them) is no start
        cfg, changes = _resume_config(cfg, state, given)
    elif not resume and ckpt_path.exists():
        raise DermsynthError(f"{out} already holds a run (latest.pt); pass --resume to continue it "
                             f"or choose another --out")
    cfg = cfg.resolve()
    if state is not None and cfg.steps < int(state["step"]):
        raise DermsynthError(f"--resume: the run in {out} is at step {state['step']}, beyond --steps {cfg.steps}; "
                             f"give a longer --steps/--kimg to continue it (or sample its latest.pt as it is)")
    if cfg.metrics and metrics is None:
        metrics = in_training_metrics(cfg)

    dist = init_distributed(cfg.device)
    device = resolve_device(cfg.device)
    if dist.active and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (LOCAL_RANK)
    if dist.is_main:
        check_writable_dir(out, "--out")  # before any data is loaded
    torch.manual_seed(cfg.seed)
    data = dataset if dataset is not None else load_training_data(cfg, progress and dist.is_main)
    if cfg.split is not None:  # never the validation or test images of a classifier study
        data = split_part(data, cfg.split, "train", real_fraction=cfg.real_fraction)
    _check_data(data, cfg, "--data")
    if spec.masks_required:
        data = masked_subset(data, cfg.skip_unmasked)
    held_out = None
    if cfg.overfit_holdout:
        data, held_out = split_holdout(data, cfg.overfit_holdout, cfg.seed)

    options = model_options(cfg, data)
    bf16, channels_last = precision(cfg, device)
    memory = {"memory_format": torch.channels_last} if channels_last else {}
    networks = {name: net.to(device).to(**memory) for name, net in build_networks(cfg.model, **options).items()}
    kind = step_class(spec.step)
    ema = copy.deepcopy(networks[kind.sampled]).eval().requires_grad_(False) if cfg.ema_beta > 0 else None
    divergence = DivergenceCheck(kind.stat_names, networks)  # the initial weights' RMS (the seed's, on resume too)
    noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    train_step: TrainStep = kind.from_config(cfg, networks, bf16=bf16, noise=noise, ema=ema,
                                           dist=dist)
    if (cfg.augment or "none") != "none" and getattr(train_step, "augment", None) is None:
        raise DermsynthError(f"--augment {cfg.augment} does not apply to --model {cfg.model}; use --augment none")
    # Batch sizes are global (all ranks together); the sampler validates the largest one.
    max_batch = max(parse_batch_schedule(cfg.batch_schedule, cfg.size).values()) if cfg.batch_schedule \
        else cfg.batch_size
    flip = issubclass(spec.options, FlipOptions) and cfg.flip  # map -> image, image -> image models
    sampler_b, data_b = None, None
    if data_b_given and "domain_b" not in train_step.needs:  # e.g. ddpm-inpaint --direction add
        raise DermsynthError(f"--data-b does not apply to --model {cfg.model} under these options (it trains on "
                             f"--data alone)")
    if "domain_b" in train_step.needs:
        data_b = dataset_b
        if data_b is None:
            if cfg.data_b is None:
                raise DermsynthError(f"--model {cfg.model} trains on two domains: give --data-b (and --data)")
            data_b = load_training_data(cfg, progress and dist.is_main, source=cfg.data_b)
        _check_data(data_b, cfg, "--data-b")
        data, data_b = spec.prepare_domains(cfg, data, data_b)
        sampler_b = Minibatches(data_b, max_batch, cfg.seed + 7, device,
                                 needs=getattr(train_step, "needs_b", frozenset({"images"})), dist=dist, flip=flip)
    sampler = Minibatches(data, max_batch, cfg.seed, device, needs=train_step.needs, dist=dist, flip=flip)
    data_seen = {"data": {"path": cfg.data, "count": len(data), "sha256": content_hash(data)}}
    if sampler_b is not None:
        data_seen["data_b"] = {"path": cfg.data_b, "count": len(data_b), "sha256": content_hash(data_b)}
    if state is not None:
        _check_same_data(state, data_seen)
    preview_rows = np.sort(np.random.default_rng(cfg.seed + 2).permutation(len(data))[:PREVIEW_SIZE])
    fixed = batch_from_dataset(data, preview_rows, train_step.needs, device)
    inputs = tuple(train_step.sampled_inputs or spec.inputs)  # e.g. pix2pixHD --no-instance
    divergence.stat_names = list(train_step.stat_names)  # e.g. with aug_p under --augment
    run = _Run(cfg, out, device, dist, data, held_out, options, inputs, noise, train_step, sampler, sampler_b, fixed,
               metrics, sync_buffers=False, changes=changes, divergence=divergence, data_seen=data_seen)
    step, images_seen, best = 0, 0, math.inf
    if state is not None:
        _restore(state, run)
        step, images_seen = int(state["step"]), int(state.get("images_seen", 0))
        best = float(state.get("best_metric", math.inf))
        for change in changes:  # learning rates given on resume replace the checkpoint's
            for name, option in train_step.lr_options.items():
                if change["option"] == option:
                    train_step.set_lr(train_step.optimizers[name], change["to"])
        run.changes = list(state.get("config_changes", [])) + [{**c, "step": step} for c in changes]
    # Every rank starts from rank 0's weights (as DDP does), whatever its own initialisation was; the sampled
    # network's batch-norm statistics (computed from each rank's own rows) are re-broadcast every step, as DDP's
    # broadcast_buffers (the other networks only ever run in training mode, where running statistics are unused).
    if dist.active:
        dist.broadcast_state(*networks.values(), ema)
    run.sync_buffers = dist.active and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                           for m in networks[kind.sampled].modules())

    main = dist.is_main
    lock = _RunLock(out) if main else contextlib.nullcontext()
    with lock:
        if main:
            (out / "samples").mkdir(exist_ok=True)
            _save_config(cfg, run.changes, out / "config.json", device)
            write_json(out / "data.json", _data_summary(data))
            for log in (LOSSES_CSV, OVERFIT_CSV, METRICS_CSV):
                _truncate_log(out / log, step)
            if state is None:
                _save_real_grid(data, out / "real.png")
        return _loop(run, step, images_seen, best, progress)


def _loop(run: _Run, step: int, images_seen: int, best: float, progress: bool) -> TrainResult:
    """Train from ``step`` to ``run.cfg.steps``: log, preview, score, checkpoint; stop on a signal or divergence."""
    cfg, out, ckpt_path, device, dist, data = run.cfg, run.out, run.ckpt_path, run.device, run.dist, run.data
    train_step = run.train_step
    sampled, ema = train_step.networks[train_step.sampled], train_step.ema
    # every network (and the EMA copy) is checked for non-finite or exploded weights
    watched = {**train_step.networks, **({f"{train_step.sampled} (EMA)": ema} if ema is not None else {})}
    lr_flags = ", ".join(f"--{o.replace('_', '-')}" for o in train_step.lr_options.values()) or "the learning rate"
    sampler, sampler_b, fixed, metrics, inputs = run.sampler, run.sampler_b, run.fixed, run.metrics, run.inputs
    losses_csv, overfit_csv, metrics_csv = out / LOSSES_CSV, out / OVERFIT_CSV, out / METRICS_CSV
    main = dist.is_main
    use_cuda = device.type == "cuda"
    channels_last = precision(cfg, device)[1]
    autocast = train_step.autocast
    stat_names = list(train_step.stat_names)
    monitor = (OverfitMonitor(data, run.held_out, device, needs=train_step.needs, seed=cfg.seed)
               if run.held_out is not None and main else None)
    metric_every = round(cfg.metric_every * 1000) if metrics is not None else 0
    board = _tensorboard(out / "tensorboard", step) if cfg.tensorboard and main else None
    last_good = {"step": int(step)}
    log_sum = torch.zeros(len(stat_names), device=device)
    log_n, log_from = 0, step + 1
    if run.log_state is not None:  # steps since the last log row before the checkpoint: the row comes out whole
        log_sum.copy_(run.log_state["sum"])
        log_n, log_from = int(run.log_state["n"]), int(run.log_state["from"])

    def checkpoint_state() -> dict:
        return _state(run, step, images_seen, best, {"sum": log_sum.cpu().clone(), "n": log_n, "from": log_from})

    def refuse_diverged(reasons: list[str], first: int) -> None:
        if reasons:
            raise TrainingDiverged(_diverged(reasons, first, step, ckpt_path, last_good["step"], lr_flags))

    def checkpoint() -> Path:
        # never write a diverged state: statistics since the last log row, then every weight
        refuse_diverged(not_finite([k for k, ok in zip(stat_names, torch.isfinite(log_sum).tolist()) if not ok])
                        or run.divergence.weights(watched), step)
        state = checkpoint_state()
        path = save_checkpoint(state, ckpt_path)
        last_good["step"] = step
        if cfg.keep_checkpoints:
            save_checkpoint(state, out / f"ckpt-{step:07d}.pt")
        plot_curves(losses_csv, out / "losses.png")
        if "aug_p" in stat_names:
            plot_curves(losses_csv, out / "aug_p.png", ["aug_p"], ylabel="augmentation probability p",
                        title="discriminator augmentation (ADA) p")
        if monitor is not None:
            plot_curves(overfit_csv, out / "overfit.png", ["d_train", "d_heldout", "gap"], ylabel="mean D logit",
                        title="discriminator over-fitting: training vs held-out real images")
        return path

    def eval_generator() -> nn.Module:
        return ema if ema is not None else sampled

    @contextlib.contextmanager
    def frozen(g: nn.Module, seed: int):
        # eval mode, no grad, a forked RNG: models that draw noise inside (LAPGAN's bands) give comparable
        # images and leave the training's random stream untouched
        was_training = g.training
        g.eval()
        try:
            with torch.no_grad(), autocast, torch.random.fork_rng(devices=[device] if use_cuda else []):
                torch.manual_seed(seed)
                yield
        finally:
            g.train(was_training)

    def sample_grid() -> None:
        g = eval_generator()
        with frozen(g, cfg.seed + 3):
            images, nrow = train_step.preview(g, fixed)
        grid = image_grid(to_uint8(images), nrow=nrow)
        save_png(grid, out / "samples" / f"step-{step:07d}.png")
        if board is not None:
            board.add_image("samples", grid, step, dataformats="HWC")

    def score() -> None:
        nonlocal best
        g = eval_generator()

        sampled_for_metrics = {"seconds": 0.0, "images": 0}

        def sample_fn(n: int, seed: int) -> np.ndarray:
            t0 = time.perf_counter()
            chunks = []
            for start in range(0, n, 64):
                k = min(64, n - start)
                source = (batch_from_dataset(data, np.arange(start, start + k) % len(data), train_step.needs, device)
                          if "z" not in inputs else None)
                with frozen(g, seed * 1_000_003 + start):
                    chunks.append(to_uint8(train_step.synthesize(g, k, seed * 1_000_003 + start, source).float()))
            sampled_for_metrics["seconds"] += time.perf_counter() - t0  # to_uint8 waited for the device
            sampled_for_metrics["images"] += n
            return np.concatenate(chunks)

        values = dict(metrics(sample_fn))
        names = list(metrics.names)
        # steps whose synthesis has settings of its own (a diffusion sampler) state them and its cost per image
        notes = train_step.synthesis_settings()
        per_image = sampled_for_metrics["seconds"] / max(1, sampled_for_metrics["images"])
        cost = {**notes, "sample_s_per_img": f"{per_image:.4g}"} if notes else {}
        append_csv_row(metrics_csv, ["step", "kimg", *names, *cost], [step, f"{images_seen / 1000:.3f}",
                                                                   *[f"{values[k]:.6g}" for k in names],
                                                                   *cost.values()])
        plot_curves(metrics_csv, out / "metrics.png", names, ylabel="metric (lower is better)",
                    title="metrics during training")
        if board is not None:
            for k in names:
                board.add_scalar(f"metrics/{k}", values[k], step)
        if values[names[0]] < best:
            best = float(values[names[0]])
            refuse_diverged(run.divergence.weights(watched), step)
            save_checkpoint(checkpoint_state(), out / "best.pt")

    log_images, t_log = 0, time.perf_counter()  # img_per_s: this session's images and time since its last row
    bar = tqdm(total=cfg.steps, initial=step, unit="step", disable=not (progress and main), dynamic_ncols=True)
    with (open(losses_csv, "a", newline="") if main else contextlib.nullcontext()) as log_file, \
            _StopOnSignal() as stop:
        writer = csv.writer(log_file) if main else None
        if main and log_file.tell() == 0:
            writer.writerow(["step", *stat_names, "img_per_s"])
        stopping = False
        decays = cfg.lr_decay_start < 1
        while step < cfg.steps and not stopping:
            if decays and (factor := lr_factor(step, cfg.steps, cfg.lr_decay_start)) < 1:
                for name, option in train_step.lr_options.items():
                    train_step.set_lr(train_step.optimizers[name], getattr(cfg, option) * factor)
            batch_size = train_step.begin(images_seen)  # the global minibatch; PGAN: sets the stage
            batch = sampler.next(batch_size)           # this rank's rows of it
            if sampler_b is not None:
                batch.domain_b = sampler_b.next(batch_size)
            if channels_last:
                batch.images = batch.images.contiguous(memory_format=torch.channels_last)
            stats = train_step(batch)
            if run.sync_buffers:
                dist.broadcast_state(sampled, buffers_only=True)
            if ema is not None:
                update_ema(ema, sampled, train_step.ema_decay(step, images_seen))
            step += 1
            before = images_seen
            images_seen += batch_size
            # Accumulate on the device; the host reads it only every log_every steps (no per-step sync).
            log_sum += stats
            log_n += 1
            log_images += batch_size
            bar.update(1)
            at_log = step % cfg.log_every == 0 or step == cfg.steps
            if at_log:
                values = (dist.mean(log_sum) / log_n).tolist()
                now = time.perf_counter()
                ips = log_images / max(now - t_log, 1e-9)
                if main:
                    writer.writerow([step, *[f"{v:.5f}" for v in values], f"{ips:.1f}"])
                    log_file.flush()
                    bar.set_postfix({**{k: f"{v:.3f}" for k, v in zip(stat_names[:2], values)},
                                     "img_s": f"{ips:.0f}", "kimg": f"{images_seen / 1000:.1f}"})
                    if board is not None:
                        for k, v in zip(stat_names, values):
                            board.add_scalar(f"train/{k}", v, step)
                        board.add_scalar("train/img_per_s", ips, step)
                        board.flush()
                refuse_diverged(run.divergence.statistics(values) or run.divergence.weights(watched), log_from)
                log_sum.zero_()
                log_n, log_images, t_log, log_from = 0, 0, now, step + 1
                if monitor is not None:
                    d_train, d_held = monitor.measure(train_step)
                    append_csv_row(overfit_csv, ["step", "d_train", "d_heldout", "gap"],
                                [step, f"{d_train:.5f}", f"{d_held:.5f}", f"{d_train - d_held:.5f}"])
            if main and (step % cfg.sample_every == 0 or step == cfg.steps):
                sample_grid()
            if main and metric_every and (images_seen // metric_every > before // metric_every or step == cfg.steps):
                score()
            if main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                checkpoint()
            # Under torchrun the ranks agree on stopping where they read the logs anyway (no extra host sync),
            # so every rank stops after the same step; a single process stops after the current step.
            stopping = (at_log and dist.any(stop.requested, device)) if dist.active else stop.requested
    bar.close()
    if board is not None:
        board.close()
    if step < cfg.steps:  # stopped by Ctrl-C or SIGTERM
        if main:
            checkpoint()
        name = "SIGTERM" if stop.signum == signal.SIGTERM else "Ctrl-C"
        raise TrainingInterrupted(f"{name} at step {step}; checkpoint saved to {ckpt_path}; continue with "
                                  f"the same command and --resume", exit_code=128 + int(stop.signum or 2))
    return TrainResult(out=out, checkpoint=ckpt_path, step=step)


def _tensorboard(path: Path, step: int):
    """A TensorBoard writer for ``--tensorboard`` (an optional dependency, imported only when asked for).

    ``purge_step`` drops events a crashed run logged past its last checkpoint, as ``_truncate_log`` does."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (optional dependency)
    except ImportError:
        raise DermsynthError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(path), purge_step=step + 1 if step else None)


def _check_data(data: LesionDataset, cfg: TrainConfig, option: str) -> None:
    if data.size != cfg.size:
        raise DermsynthError(f"{option}: data is {data.size}px but the model is configured for {cfg.size}px")
    if cfg.conditional and data.num_classes < 1:
        raise DermsynthError(f"--conditional needs labelled data; {option} has no classes")


def _diverged(reasons: list[str], first: int, last: int, ckpt_path: Path, good_step: int, lr_flags: str) -> str:
    where = f"step {last}" if first >= last else f"steps {first}-{last}"
    kept = (f"the last good checkpoint {ckpt_path} (step {good_step}) is kept" if good_step and ckpt_path.exists()
            else "no checkpoint was written")
    return (f"training diverged at {where}: {'; '.join(reasons)}; {kept}; lower {lr_flags} (or change the loss) "
            f"and --resume")


def _resolved(path: str | None) -> str | None:
    """An existing file or folder as its absolute path (``imgs/`` and ``./imgs`` are one folder); anything else
    (``phantom:N``, a dataset name, None) as given."""
    if path is None or ":" in path.split("/")[0] or not Path(path).exists():
        return path
    return str(Path(path).resolve())


def _check_same_data(state: dict, seen: dict) -> None:
    """Refuse a resume on other training data than the checkpoint's (count and content hash), whatever the
    paths are called; checkpoints before fingerprints (no ``data_seen``) are compared by path only."""
    saved = state.get("data_seen") or {}
    for key, now in seen.items():
        before = saved.get(key)
        if before is None:
            continue
        if (before["count"], before["sha256"]) != (now["count"], now["sha256"]):
            flag = "--" + key.replace("_", "-")
            raise DermsynthError(
                f"--resume: {flag} {now['path'] or '(given in memory)'} is not the data the run was trained on "
                f"({now['count']} images, content {now['sha256'][:12]}; the run had {before['count']} images, "
                f"{before['sha256'][:12]} from {before['path'] or '(given in memory)'}); resume on the same "
                f"data or start a new --out")


#: options whose absence from a resumed run's config means a run made before they existed, with their value then
#: (stylegan2 before the plain cifar D and the float32 mapping / penalties: the residual D, bf16 throughout)
ABSENT_BEFORE: dict[str, Any] = {"flip": False, "d_architecture": "resnet", "bf16_everywhere": True}


def _resume_config(cfg: TrainConfig, state: dict, given: set[str] | None) -> tuple[TrainConfig, list[dict]]:
    """The checkpoint's config with the options the user may change applied; errors for the others."""
    # an option added later is absent from older runs' configs: it takes the value that reproduces how they trained
    saved = TrainConfig.from_dict({**ABSENT_BEFORE, **state["config"]}).applicable()  # (earlier versions recorded
    # every model's options)
    saved = replace(saved, **{k: _resolved(getattr(saved, k)) for k in _DATA_PATHS})  # earlier: as typed
    # data whose fingerprint the checkpoint holds may come from another path: its contents are compared instead
    mutable = (*RESUME_MUTABLE, *(state.get("data_seen") or {}))
    defaults = TrainConfig()
    if given is None:
        given = {f.name for f in fields(TrainConfig) if getattr(cfg, f.name) != getattr(defaults, f.name)}
    fixed = [f.name for f in fields(TrainConfig)
             if f.name in given and f.name not in mutable and f.name != "out"
             and getattr(cfg, f.name) != getattr(saved, f.name)]
    if fixed:
        diffs = ", ".join(f"--{k.replace('_', '-')} {getattr(cfg, k)} (the run has {getattr(saved, k)})" for k in fixed)
        raise DermsynthError(f"--resume cannot change {diffs}; drop the option(s) or start a new --out")
    changes = []
    for key in mutable:
        new, old = getattr(cfg, key), getattr(saved, key)
        if key in given and new != old:
            changes.append({"option": key, "from": old, "to": new})
        # the length is always the command's (the model's default when neither is given); others only if given
        if key in ("steps", "kimg") or key in given:
            setattr(saved, key, new)
    return saved, changes


def precision(cfg: TrainConfig, device: torch.device) -> tuple[bool, bool]:
    """(bf16 autocast, channels_last) of a run on ``device``: both on CUDA, and on a CPU that computes bf16
    natively (:func:`dermsynth.device.bf16_native`), unless ``--no-bf16`` / ``--no-channels-last``."""
    bf16 = bool(cfg.bf16) and bf16_native(device)
    return bf16, bool(cfg.channels_last) and (device.type == "cuda" or bf16)


def _save_config(cfg: TrainConfig, changes: list[dict], path: Path, device: torch.device) -> None:
    """config.json: the resolved options, every change made on --resume with the step it took effect, and
    where this session (the latest) runs (device, torch, CPU threads)."""
    write_json(path, {**cfg.to_dict(), **({"resume_changes": changes} if changes else {}),
                      "runtime": runtime_info(device, *precision(cfg, device))})


class _RunLock:
    """An exclusive lock on ``out/.lock`` held for the whole run (``flock``: released by the kernel when
    the process dies, so a killed run never leaves a stale lock behind)."""

    def __init__(self, out: Path) -> None:
        self.path = out / ".lock"
        self._file = None

    def __enter__(self) -> "_RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+")
        except OSError as exc:
            raise DermsynthError(f"cannot write to --out {self.path.parent}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunLocked(f"{self.path.parent} is in use by another training run (pid {holder}); wait for it "
                            f"to finish or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


class _StopOnSignal:
    """Turn the first Ctrl-C (SIGINT) or SIGTERM into a request to stop after the current step (so the
    checkpoint written then is a consistent state that resumes exactly); a second one interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def _state(run: _Run, step: int, images_seen: int, best: float, log_state: dict) -> dict:
    """The checkpoint: everything an exact resume, a sampler and an audit of the run need."""
    return {
        "format": FORMAT,
        "config": run.cfg.to_dict(),
        "config_changes": run.changes,
        "model": run.cfg.model,
        "model_options": run.options,
        "sampled": run.train_step.sampled,       # the network a sampler rebuilds
        "sampled_inputs": list(run.inputs),  # the batch fields it takes, in call order ("z", "labels") or maps
        "class_names": list(run.data.class_names),
        "data": _data_summary(run.data),
        "step": step,
        "images_seen": images_seen,  # real images shown: PGAN's growth stage and phase derive from it
        "best_metric": best,
        "data_seen": run.data_seen,  # resolved paths and fingerprints of the training data
        "divergence": run.divergence.state_dict(),
        "log_state": log_state,      # statistics summed since the last log row: losses.csv resumes exactly
        "step_state": run.train_step.state_dict(),
        "networks": {name: net.state_dict() for name, net in run.train_step.networks.items()},
        "ema": {} if run.train_step.ema is None else {run.train_step.sampled: run.train_step.ema.state_dict()},
        "optimizers": {name: opt.state_dict() for name, opt in run.train_step.optimizers.items()},
        "sampler": run.sampler.state_dict(),
        "sampler_b": None if run.sampler_b is None else run.sampler_b.state_dict(),
        "noise_rng": run.noise.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore(state: dict, run: _Run) -> None:
    """Load a checkpoint's networks, optimizers, samplers, step state and random streams into ``run``."""
    train_step = run.train_step
    try:
        for name, net in train_step.networks.items():
            net.load_state_dict(state["networks"][name])
        if train_step.ema is not None and train_step.sampled in state["ema"]:
            train_step.ema.load_state_dict(state["ema"][train_step.sampled])
        for name, opt in train_step.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match the model: {str(exc).splitlines()[0]}") from None
    run.sampler.load_state_dict(state["sampler"])
    if run.sampler_b is not None and state.get("sampler_b") is not None:
        run.sampler_b.load_state_dict(state["sampler_b"])
    train_step.load_state_dict(state.get("step_state", {}))
    run.divergence.load_state_dict(state.get("divergence"))
    run.log_state = state.get("log_state")
    run.noise.set_state(state["noise_rng"])
    torch.set_rng_state(state["torch_rng"])
    if torch.cuda.is_available() and state.get("cuda_rng"):
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def _data_summary(data: LesionDataset) -> dict:
    return {"source": data.source, "count": len(data), "size": data.size,
            "class_names": list(data.class_names), "class_counts": data.class_counts(),
            "ids_sha256": ids_fingerprint(data.ids)}  # which real images (augment checks a GAN's subset)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step``: a crashed run may have logged beyond its last checkpoint."""
    rows = read_csv_rows(path)
    if rows:
        write_csv(path, None, rows[:1] + [r for r in rows[1:] if int(r[0]) <= step])


def _save_real_grid(data: LesionDataset, path: Path, n: int = PREVIEW_SIZE) -> None:
    idx = np.random.default_rng(0).choice(len(data), size=min(n, len(data)), replace=False)
    save_png(image_grid(np.asarray(data.images[np.sort(idx)]), nrow=8), path)
