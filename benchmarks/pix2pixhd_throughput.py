"""pix2pixHD training throughput at 256 and 512 px, in images per second, with peak GPU memory.

Runs the trainer's own pix2pixHD step (``dermsynth.train.steps_translate.Pix2PixHDStep``: LSGAN over 3
discriminator scales + feature matching, G then D update) on the paper's networks (ngf = ndf = 64, global
generator with 4 down-samplings and 9 residual blocks, 3 patch discriminators of 3 layers), semantic maps of
6 channels + the instance-boundary map, at minibatch 4 (the registry default). The perceptual loss is off (the
default here: no VGG19 weights); ``--perceptual-vgg`` adds a randomly initialised VGG19 of the same cost.
Two settings: ``plain`` (fp32, NCHW, eager) and ``fast`` (bf16 autocast, channels_last, + torch.compile with
``--compile``; CUDA only). Prints a table and writes JSON.

    python benchmarks/pix2pixhd_throughput.py [--resolutions 256,512] [--batch 4] [--steps N] [--json out.json]
    python benchmarks/pix2pixhd_throughput.py --quick   # tiny networks at 32 px: a CPU smoke run in seconds
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import networks_on, peak_gib, pick_device, record, step_loop, time_steps  # this folder is on sys.path when run
from dermsynth.data.dataset import LesionDataset
from dermsynth.models import build_gan
from dermsynth.models.perceptual import VGG19Features
from dermsynth.train.minibatches import Minibatches
from dermsynth.train.steps_translate import Pix2PixHDStep


def map_minibatches(n: int, resolution: int, batch: int, device: torch.device) -> Minibatches:
    """Random images, random lesion/attribute masks and blocky superpixels (the content does not change the speed)."""
    rng = np.random.default_rng(0)
    side = resolution // 16
    ids = np.arange(16 * 16, dtype=np.int32).reshape(16, 16).repeat(side, 0).repeat(side, 1)
    data = LesionDataset(images=rng.integers(0, 256, (n, resolution, resolution, 3), np.uint8),
                         labels=np.zeros(n, np.int64), class_names=[], ids=[str(i) for i in range(n)],
                         lesion_masks=np.ones((n, resolution, resolution), np.uint8),
                         attribute_masks=rng.integers(0, 2, (n, 5, resolution, resolution), np.uint8),
                         instance_maps=np.broadcast_to(ids, (n, resolution, resolution)).copy())
    return Minibatches(data, batch, seed=0, device=device, needs=("images", "semantic", "instance"))


def measure(resolution: int, batch: int, device: torch.device, fast: bool, compile: bool, steps: int, warmup: int,
            width: int, n_downsample: int, n_blocks: int, perceptual: bool) -> float:
    torch.manual_seed(0)
    G, D = build_gan("pix2pixhd", resolution=resolution, width=width, semantic_nc=6, instance=True,
                     n_downsample=n_downsample, n_blocks=n_blocks, d_layers=3, d_scales=3)
    G, D, use_cl = networks_on(G, D, device, fast)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    net = VGG19Features().to(device) if perceptual else None
    step = Pix2PixHDStep(G, D, opt_g, opt_d, bf16=use_cl, compile=compile and use_cl, batch_size=batch,
                         perceptual=net)
    sampler = map_minibatches(max(4 * batch, 8), resolution, batch, device)

    run = step_loop(step, sampler, use_cl)

    return steps * batch / time_steps(run, steps, warmup, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default=None, help="image sides to time (default 256,512)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 2 on CPU)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile G and D in the fast setting")
    ap.add_argument("--perceptual-vgg", action="store_true", help="add a (random-weight) VGG19 perceptual loss")
    ap.add_argument("--quick", action="store_true", help="tiny networks at 32 px: a smoke run for the CPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    resolutions = [int(r) for r in (args.resolutions or ("32" if args.quick else "256,512")).split(",")]
    width, n_down, n_blocks = (8, 2, 2) if args.quick else (64, 4, 9)
    steps = args.steps or (2 if args.quick or not on_gpu else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick or not on_gpu else 5)
    modes = ["plain", "fast"] if on_gpu else ["plain"]
    rows = []
    for res in resolutions:
        for mode in modes:
            ips = measure(res, args.batch, device, mode == "fast", args.compile, steps, warmup, width, n_down,
                          n_blocks, args.perceptual_vgg)
            rows.append({"resolution": res, "batch": args.batch, "mode": mode,
                         "compile": args.compile and mode == "fast", "img_per_s": round(ips, 2),
                         "peak_gib": peak_gib(device)})
    out = args.json or f"benchmarks/results/pix2pixhd_throughput{'_quick' if args.quick else ''}.json"
    result = record("pix2pixhd_train_throughput", device, out, width=width, n_downsample=n_down, n_blocks=n_blocks,
                    perceptual_vgg=args.perceptual_vgg, steps=steps, quick=args.quick, rows=rows)
    print(f"pix2pixHD training throughput (ngf {width}, {n_down} down-samplings, {n_blocks} blocks, 3 D scales"
          f"{', VGG19 perceptual' if args.perceptual_vgg else ''}) on {result['device']} "
          f"(torch {torch.__version__}, {steps} timed steps)")
    print(f"{'res':>5} {'batch':>6} {'mode':>6} {'compile':>8} {'img/s':>10} {'peak GiB':>9}")
    for r in rows:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        print(f"{r['resolution']:>5} {r['batch']:>6} {r['mode']:>6} {str(r['compile']):>8} {r['img_per_s']:>10.2f} "
              f"{peak:>9}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
