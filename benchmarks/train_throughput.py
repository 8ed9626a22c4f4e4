"""DCGAN 64x64 training throughput (one D step + one G step per batch), in images per second.

Runs the trainer's own step (``dermsynth.train.trainer.GANStep``) on whatever device is present, at batch
64 and 256, in two settings: ``plain`` (fp32, NCHW, eager: what the PyTorch DCGAN example does, minus its
DataLoader) and ``fast`` (bf16 autocast, channels_last, optionally torch.compile; CUDA only). Prints a table
and writes JSON.

    python benchmarks/train_throughput.py [--batches 64,256] [--steps 50] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dermsynth.models import build_gan
from dermsynth.train.sampler import BatchSampler
from dermsynth.train.trainer import GANStep


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def measure(batch: int, device: torch.device, fast: bool, compile: bool, steps: int, warmup: int,
            resolution: int = 64, width: int = 64, z_dim: int = 128) -> float:
    torch.manual_seed(0)
    G, D = build_gan("dcgan", resolution=resolution, z_dim=z_dim, width=width, num_classes=0)
    G, D = G.to(device), D.to(device)
    use_cl = fast and device.type == "cuda"
    if use_cl:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    step = GANStep(G, D, opt_g, opt_d, bf16=use_cl, compile=compile and fast)
    images = np.random.default_rng(0).integers(0, 256, (max(4 * batch, 1024), resolution, resolution, 3), np.uint8)
    sampler = BatchSampler(images, np.zeros(len(images), np.int64), batch, seed=0, device=device)
    noise = torch.Generator(device=device).manual_seed(0)

    def run(n: int) -> torch.Tensor:
        acc = torch.zeros(4, device=device)
        for _ in range(n):
            real, _ = sampler.next()
            if use_cl:
                real = real.contiguous(memory_format=torch.channels_last)
            acc += step(real, None, torch.randn(batch, z_dim, device=device, generator=noise))
        return acc

    run(warmup)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    acc = run(steps)
    acc.cpu()  # the only host sync: waits for all queued work
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 200 on CUDA, 5 on CPU)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile G and D in the fast setting")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    on_gpu = device.type == "cuda"
    steps = args.steps or (200 if on_gpu else 5)
    warmup = args.warmup if args.warmup is not None else (30 if on_gpu else 1)
    modes = ["plain", "fast"] if on_gpu else ["plain"]
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        for mode in modes:
            ips = measure(batch, device, mode == "fast", args.compile, steps, warmup)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if on_gpu else float("nan")
            rows.append({"batch": batch, "mode": mode, "compile": args.compile and mode == "fast",
                         "img_per_s": round(ips, 1), "peak_gib": round(peak, 2)})
            if on_gpu:
                torch.cuda.reset_peak_memory_stats(device)
    result = {"benchmark": "dcgan64_train_throughput", "device": device_name(device),
              "torch": torch.__version__, "date": dt.date.today().isoformat(), "steps": steps, "rows": rows}
    print(f"DCGAN 64x64 training throughput on {result['device']} (torch {torch.__version__}, {steps} timed steps)")
    print(f"{'batch':>6} {'mode':>6} {'compile':>8} {'img/s':>10} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['batch']:>6} {r['mode']:>6} {str(r['compile']):>8} {r['img_per_s']:>10.1f} {r['peak_gib']:>9.2f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
