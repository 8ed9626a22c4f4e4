"""The main job end to end: data -> DCGAN -> samples -> SWD against its lower bound -> HTML report.

On the built-in phantom data by default (procedural, not clinical); ``data=`` runs it on real images.
Re-running resumes the training in ``<out>/train`` (an interrupted demo loses no work).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dermsynth.defaults import DEMO_THREADS
from dermsynth.device import fixed_threads, resolve_device
from dermsynth.errors import DermsynthError, require_at_least
from dermsynth.io import check_writable_dir, read_json, write_json
from dermsynth.metrics.swd import SWDResult, disjoint_halves, swd
from dermsynth.models import build_gan
from dermsynth.report.figures import image_grid, save_png, to_uint8
from dermsynth.report.html import HTMLReport
from dermsynth.sample import latent_walk, load_generator, sample_images, sample_latents
from dermsynth.train import TrainConfig, TrainingInterrupted, train
from dermsynth.train.trainer import load_training_data, model_options


@contextlib.contextmanager
def rerun_to_continue(command: str, run: str | Path) -> Iterator[None]:
    """For commands that resume their training by themselves (demo, compare: no --resume option): an
    interrupted run's message says to run ``command`` again instead of the trainer's "--resume"."""
    try:
        yield
    except TrainingInterrupted as exc:
        where = str(exc).split(";")[0]  # "interrupted at step N"
        exc.args = (f"{where}; checkpoint saved in {run}; run `{command}` with the same options again to "
                    f"continue",)
        raise


@dataclass
class DemoResult:
    report: Path
    swd_lower_bound: SWDResult
    swd_untrained: SWDResult
    swd_trained: SWDResult


def run_demo(data: str | None = None, out: str | Path = "runs/demo", size: int | None = None,
             steps: int | None = None, batch_size: int = 64, eval_images: int = 1024, device: str = "auto",
             seed: int = 0, progress: bool = True, threads: int | None = DEMO_THREADS) -> DemoResult:
    """Train a small DCGAN, sample it and write ``<out>/report.html``; returns the SWD numbers too.

    Defaults are sized for minutes on a 2-core CPU (32 px, 4,000 steps) and 64 px on a GPU. On the CPU it runs
    with ``threads`` threads (:data:`~dermsynth.defaults.DEMO_THREADS`; ``DERMSYNTH_THREADS`` wins), so that its
    numbers do not depend on how busy the machine is.
    """
    require_at_least("--steps", steps)  # 0 is not "the default"
    require_at_least("--size", size)
    dev = resolve_device(device)
    with fixed_threads(threads if dev.type == "cpu" else None) as cpu_threads:
        return _demo(data, Path(out), size, steps, batch_size, eval_images, dev, seed, progress, cpu_threads)


def _demo(data: str | None, out: Path, size: int | None, steps: int | None, batch_size: int, eval_images: int,
          dev: torch.device, seed: int, progress: bool, cpu_threads: int) -> DemoResult:
    on_gpu = dev.type == "cuda"
    size = (64 if on_gpu else 32) if size is None else size
    steps = (3000 if on_gpu else 4000) if steps is None else steps
    check_writable_dir(out, "--out")
    _check_same_size(out, size)
    cfg = TrainConfig(model="dcgan", data=data, out=str(out / "train"), size=size, steps=steps,
                      batch_size=batch_size, width=64 if on_gpu else 32, ema_beta=0.0, seed=seed,
                      device=str(dev), sample_every=max(steps // 5, 1), checkpoint_every=max(steps // 5, 1),
                      log_every=max(steps // 100, 1))
    dataset = load_training_data(cfg, progress)
    with rerun_to_continue(f"dermsynth demo --out {out}", cfg.out):
        result = train(cfg, dataset=dataset, resume=True, progress=progress)

    # SWD needs equal set sizes: the real set is split into two disjoint halves A and B;
    # lower bound = SWD(A, B); each generator is scored against A with as many samples as B.
    half = min(eval_images, len(dataset)) // 2
    idx_a, idx_b = disjoint_halves(len(dataset), half, seed)
    real_a, real_b = np.asarray(dataset.images[idx_a]), np.asarray(dataset.images[idx_b])
    model = load_generator(result.checkpoint, dev)
    fake, _ = sample_images(model, half, seed)
    z, _ = sample_latents(model, half, seed)  # the same latents

    torch.manual_seed(cfg.seed)  # the trainer's initialisation: the "step 0" generator
    untrained, _ = build_gan(cfg.model, **model_options(cfg, dataset))
    untrained = untrained.to(dev).eval()
    with torch.no_grad():
        fake0 = np.concatenate([to_uint8(untrained(zb.to(dev))) for zb in z.split(256)])

    swd_kw = dict(seed=seed, device=str(dev), progress=progress)
    lower, before, after = swd(real_a, real_b, **swd_kw), swd(real_a, fake0, **swd_kw), swd(real_a, fake, **swd_kw)

    save_png(image_grid(fake[:64], nrow=8), out / "fake.png", min_side=512)
    save_png(image_grid(real_b[:64], nrow=8), out / "real.png", min_side=512)
    latent_walk(result.checkpoint, out / "latent_walk.png", rows=4, steps=8, seed=seed, device=str(dev))
    numbers = {"lower_bound": lower.as_dict(), "untrained": before.as_dict(), "trained": after.as_dict(),
               "images_per_set": half, "steps": result.step, "size": size, "data": dataset.source,
               "device": str(dev), "cpu_threads": cpu_threads}
    write_json(out / "swd.json", numbers)

    report = HTMLReport("dermsynth demo: DCGAN on " + ("built-in phantom data" if data is None else str(data)))
    if data is None:
        report.paragraph("The built-in data are procedural phantoms (dermoscopy-like drawings made by "
                         "dermsynth.data.phantom), not clinical images. Pass --data to use real images.")
    report.paragraph(f"{len(dataset)} training images at {size}x{size}, classes: "
                     + ", ".join(f"{k} {v}" for k, v in dataset.class_counts().items())
                     + f". DCGAN trained for {result.step} steps at batch {batch_size} on {dev}"
                     + (f" ({cpu_threads} CPU threads)." if dev.type == "cpu" else "."))
    report.heading("Real vs generated")
    report.images([("real (half B; every real image here was also in the GAN's training set)", out / "real.png"),
                   (f"generated, step {result.step}", out / "fake.png")])
    report.heading("Training")
    report.images([("losses", result.out / "losses.png"), ("latent walks (slerp)", out / "latent_walk.png")])
    report.heading("Sliced Wasserstein distance (x1e3, Laplacian pyramid, Karras et al. 2018)")
    header = ["level (px)", "lower bound: real A vs real B", "untrained G vs real A", "trained G vs real A"]
    rows = [[f"{r}", lo, b, a] for r, lo, b, a in zip(lower.resolutions, lower.per_level, before.per_level, after.per_level)]
    rows.append(["mean", lower.mean, before.mean, after.mean])
    report.table(header, rows, caption=f"{half} images per set. Lower is better; the lower bound is what two "
                 "disjoint samples of the real data score. SWD normalises each set per colour channel, so it "
                 "does not see a global colour cast.")
    report.write(out / "report.html")
    return DemoResult(out / "report.html", lower, before, after)


def _check_same_size(out: Path, size: int) -> None:
    """A re-run resumes ``<out>/train``: refuse another image size, naming the options that work."""
    config = out / "train" / "config.json"
    if not config.is_file():
        return
    saved_size = read_json(config, "demo training config").get("size")
    if saved_size is not None and int(saved_size) != int(size):
        raise DermsynthError(f"{out} holds a demo trained at {saved_size}px; pass --size {saved_size} to continue "
                             f"it, or choose another --out for a {size}px demo")
