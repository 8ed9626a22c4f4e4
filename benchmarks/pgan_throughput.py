"""PGAN training throughput in the stable 64, 128 and 256 px phases, in images per second, with peak GPU memory.

Runs the trainer's own PGAN step (``dermsynth.train.steps.ProgressiveStep``: WGAN-GP + drift, one D step + one
G step per minibatch) on the full-size networks of Karras et al. (latent 128, fmap_max 512, built for 256 px),
grown to each resolution, at the paper's minibatch per resolution (16, 16, 14). Two settings: ``plain``
(fp32, NCHW, eager) and ``fast`` (bf16 autocast, channels_last, plus torch.compile with ``--compile``; CUDA
only). Prints a table and writes JSON.

    python benchmarks/pgan_throughput.py [--resolutions 64,128,256] [--steps N] [--compile] [--json out.json]
    python benchmarks/pgan_throughput.py --quick   # tiny networks and sizes: a CPU smoke run in seconds
"""

from __future__ import annotations

import argparse

import torch

from _common import networks_on, peak_gib, pick_device, random_image_minibatches, record, step_loop, time_steps  # this folder is on sys.path when run
from dermsynth.models import build_gan
from dermsynth.models.pgan import KARRAS_PAPER_BATCH, PGANSchedule
from dermsynth.train.steps import ProgressiveStep


def measure(resolution: int, target: int, device: torch.device, fast: bool, compile: bool, steps: int, warmup: int,
            width: int, z_dim: int = 128) -> tuple[float, int]:
    """Images/s of the stable ``resolution`` px phase of a PGAN built for ``target`` px; returns (img/s, batch)."""
    torch.manual_seed(0)
    G, D = build_gan("pgan", resolution=target, z_dim=z_dim, width=width, num_classes=0)
    G, D, use_cl = networks_on(G, D, device, fast)
    opt_g = torch.optim.Adam(G.parameters(), 1e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), 1e-3, betas=(0.0, 0.99))
    schedule = PGANSchedule(resolution=target, batch_sizes=KARRAS_PAPER_BATCH)
    level = (resolution // 4).bit_length() - 1
    images_seen = level * round((schedule.stable_kimg + schedule.fade_kimg) * 1000)  # start of the stable phase
    noise = torch.Generator(device=device).manual_seed(0)
    step = ProgressiveStep(G, D, opt_g, opt_d, "wgan", bf16=use_cl, compile=compile and use_cl, gp_weight=10.0,
                           drift=1e-3, noise=noise, schedule=schedule)
    batch = step.begin(images_seen)
    assert step.stage.resolution == resolution and step.stage.alpha == 1.0
    sampler = random_image_minibatches(max(8 * batch, 64), target, batch, device)

    run = step_loop(step, sampler, use_cl, images_seen)  # same phase: sets the stage, never resets Adam

    return steps * batch / time_steps(run, steps, warmup, device), batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default=None, help="stable phases to time (default 64,128,256)")
    ap.add_argument("--target", type=int, default=None, help="resolution the networks are built for (default 256)")
    ap.add_argument("--width", type=int, default=None, help="PGAN width (64 = the paper's fmap_max 512)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on CUDA, 3 on CPU)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile G and D in the fast setting")
    ap.add_argument("--quick", action="store_true", help="tiny networks at 16/32 px: a smoke run for the CPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    resolutions = [int(r) for r in (args.resolutions or ("16,32" if args.quick else "64,128,256")).split(",")]
    target = args.target or max(resolutions + ([] if args.quick else [256]))
    width = args.width or (2 if args.quick else 64)
    steps = args.steps or (2 if args.quick else 50 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick or not on_gpu else 10)
    modes = ["plain", "fast"] if on_gpu else ["plain"]
    rows = []
    for res in resolutions:
        for mode in modes:
            ips, batch = measure(res, target, device, mode == "fast", args.compile, steps, warmup, width)
            rows.append({"resolution": res, "batch": batch, "mode": mode, "compile": args.compile and mode == "fast",
                         "img_per_s": round(ips, 1), "peak_gib": peak_gib(device)})
    out = args.json or f"benchmarks/results/pgan_throughput{'_quick' if args.quick else ''}.json"
    result = record("pgan_train_throughput", device, out, target=target, width=width, steps=steps,
                    quick=args.quick, rows=rows)
    print(f"PGAN training throughput (stable phases, WGAN-GP, built for {target} px, width {width}) on "
          f"{result['device']} (torch {torch.__version__}, {steps} timed steps)")
    print(f"{'res':>5} {'batch':>6} {'mode':>6} {'compile':>8} {'img/s':>10} {'peak GiB':>9}")
    for r in rows:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        print(f"{r['resolution']:>5} {r['batch']:>6} {r['mode']:>6} {str(r['compile']):>8} {r['img_per_s']:>10.1f} "
              f"{peak:>9}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
