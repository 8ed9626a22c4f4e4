"""DCGAN training throughput (one D step + one G step per batch), in images per second.

Runs the trainer's own step (``dermsynth.train.trainer.GANStep``) on whatever device is present, at batch
64 and 256 (64x64 by default), in two settings: ``plain`` (fp32, NCHW, eager: what the PyTorch DCGAN example
does, minus its DataLoader) and ``fast`` (bf16 autocast, channels_last, optionally torch.compile; on CUDA and on
CPUs with native bf16, AVX512-BF16/AMX, as training uses it). Prints a table and writes JSON.

    python benchmarks/train_throughput.py [--batches 64,256] [--resolution 64] [--steps 50] [--compile] [--json F]
"""

from __future__ import annotations

import argparse

import torch

from _common import networks_on, peak_gib, pick_device, random_image_minibatches, record, step_loop, time_steps  # this folder is on sys.path when run
from dermsynth.device import bf16_native
from dermsynth.models import build_gan
from dermsynth.train.steps import GANStep


def measure(batch: int, device: torch.device, fast: bool, compile: bool, steps: int, warmup: int,
            resolution: int = 64, width: int = 64, z_dim: int = 128) -> float:
    torch.manual_seed(0)
    G, D = build_gan("dcgan", resolution=resolution, z_dim=z_dim, width=width, num_classes=0)
    G, D, use_cl = networks_on(G, D, device, fast)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    noise = torch.Generator(device=device).manual_seed(0)
    step = GANStep(G, D, opt_g, opt_d, bf16=use_cl, compile=compile and fast, batch_size=batch, noise=noise)
    sampler = random_image_minibatches(max(4 * batch, 1024), resolution, batch, device)

    run = step_loop(step, sampler, use_cl)

    return steps * batch / time_steps(run, steps, warmup, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 200 on CUDA, 5 on CPU)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile G and D in the fast setting")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    steps = args.steps or (200 if on_gpu else 5)
    warmup = args.warmup if args.warmup is not None else (30 if on_gpu else 1)
    modes = ["plain", "fast"] if bf16_native(device) else ["plain"]
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        for mode in modes:
            ips = measure(batch, device, mode == "fast", args.compile, steps, warmup, args.resolution, args.width)
            rows.append({"batch": batch, "mode": mode, "compile": args.compile and mode == "fast",
                         "img_per_s": round(ips, 1), "peak_gib": peak_gib(device)})
    name = "dcgan64_train_throughput" if args.resolution == 64 else f"dcgan{args.resolution}_train_throughput"
    result = record(name, device, args.json, steps=steps, rows=rows, resolution=args.resolution, width=args.width,
                    threads=torch.get_num_threads())
    print(f"DCGAN {args.resolution}x{args.resolution} training throughput on {result['device']} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} timed steps)")
    print(f"{'batch':>6} {'mode':>6} {'compile':>8} {'img/s':>10} {'peak GiB':>9}")
    for r in rows:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        print(f"{r['batch']:>6} {r['mode']:>6} {str(r['compile']):>8} {r['img_per_s']:>10.1f} {peak:>9}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
