"""StyleGAN2-ADA training throughput at 64, 128 and 256 px, in images per second, with peak GPU memory.

Runs the trainer's own step (``dermsynth.train.steps_stylegan2.StyleGAN2Step``: G main, lazy path length every
4 steps, D main, lazy R1 every 16, style mixing, ADA pipeline on every D input) with the registry's
configuration at each resolution (``dermsynth.models.stylegan2.config_for``; 256 px = the ADA paper's
``paper256``: fmaps 0.5, minibatch 64, 8 mapping layers) at full width. The timed steps are a multiple of 16 so
the lazy regularisers count at their real rate. Two settings: ``plain`` (fp32, NCHW, eager) and ``fast``
(bf16 autocast, channels_last, plus torch.compile with ``--compile``; CUDA only). Prints a table, writes JSON.

Reference speed (stylegan2-ada-pytorch README, 256 px, one V100, paper256-like config): 21.6-24.2 s/kimg,
i.e. about 45 img/s.

    python benchmarks/stylegan2_throughput.py [--resolutions 64,128,256] [--steps 48] [--compile] [--json F]
    python benchmarks/stylegan2_throughput.py --quick   # tiny networks at 16/32 px: a CPU smoke run
"""

from __future__ import annotations

import argparse

import torch

from _common import networks_on, peak_gib, pick_device, random_image_minibatches, record, step_loop, time_steps  # this folder is on sys.path
from dermsynth.models import build_gan
from dermsynth.models.stylegan2 import config_for, stylegan2_options
from dermsynth.train.config import TrainConfig
from dermsynth.train.steps_stylegan2 import StyleGAN2Step


def measure(resolution: int, device: torch.device, fast: bool, compile: bool, steps: int, warmup: int, width: int,
            batch_size: int | None, augment: str) -> tuple[float, int]:
    """Images/s of StyleGAN2-ADA training at ``resolution``; returns (img/s, minibatch)."""
    torch.manual_seed(0)
    cfg = TrainConfig(model="stylegan2", size=resolution, width=width, batch_size=batch_size, augment=augment,
                      augment_p=0.2, compile=compile, steps=1).resolve()
    G, D = build_gan("stylegan2", resolution=resolution, width=width, num_classes=0, **stylegan2_options(cfg, None))
    G, D, use_cl = networks_on(G, D, device, fast)
    cfg.compile = compile and use_cl
    step = StyleGAN2Step.from_config(cfg, {"generator": G, "discriminator": D}, bf16=use_cl,
                                     noise=torch.Generator(device=device).manual_seed(0))
    batch = cfg.batch_size
    sampler = random_image_minibatches(max(8 * batch, 64), resolution, batch, device)
    run = step_loop(step, sampler, use_cl, advance=True)
    return steps * batch / time_steps(run, steps, warmup, device), batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default=None, help="resolutions to time (default 64,128,256)")
    ap.add_argument("--width", type=int, default=None, help="width (64 = the paper's size)")
    ap.add_argument("--batch-size", type=int, default=None, help="minibatch (default: the configuration's)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 48 on CUDA, 16 on CPU)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--augment", default="ada", help="none | ada | fixed | diffaugment (default ada)")
    ap.add_argument("--compile", action="store_true", help="torch.compile G and D in the fast setting")
    ap.add_argument("--quick", action="store_true", help="tiny networks at 16/32 px, batch 8: a CPU smoke run")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    resolutions = [int(r) for r in (args.resolutions or ("16,32" if args.quick else "64,128,256")).split(",")]
    width = args.width or (4 if args.quick else 64)
    batch_size = args.batch_size or (8 if args.quick else None)
    steps = args.steps or (16 if args.quick or not on_gpu else 48)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick or not on_gpu else 16)
    modes = ["plain", "fast"] if on_gpu else ["plain"]
    rows = []
    for res in resolutions:
        for mode in modes:
            ips, batch = measure(res, device, mode == "fast", args.compile, steps, warmup, width, batch_size,
                                 args.augment)
            rows.append({"resolution": res, "config": config_for(res)[0], "batch": batch, "mode": mode,
                         "compile": args.compile and mode == "fast", "img_per_s": round(ips, 1),
                         "s_per_kimg": round(1000 / ips, 1), "peak_gib": peak_gib(device)})
    out = args.json or f"benchmarks/results/stylegan2_throughput{'_quick' if args.quick else ''}.json"
    result = record("stylegan2_train_throughput", device, out, width=width, steps=steps, augment=args.augment,
                    quick=args.quick, rows=rows)
    print(f"StyleGAN2-ADA training throughput (width {width}, --augment {args.augment}) on {result['device']} "
          f"(torch {torch.__version__}, {steps} timed steps)")
    print(f"{'res':>5} {'config':>9} {'batch':>6} {'mode':>6} {'compile':>8} {'img/s':>10} {'s/kimg':>9} "
          f"{'peak GiB':>9}")
    for r in rows:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        print(f"{r['resolution']:>5} {r['config']:>9} {r['batch']:>6} {r['mode']:>6} {str(r['compile']):>8} "
              f"{r['img_per_s']:>10.1f} {r['s_per_kimg']:>9.1f} {peak:>9}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
