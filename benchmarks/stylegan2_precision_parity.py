"""StyleGAN2-ADA under bf16: do the penalties and a short training agree with float32?

Three precisions of the trainer's own step (``dermsynth.train.steps_stylegan2.StyleGAN2Step``):

* ``fp32``: no autocast;
* ``bf16``: the default under bf16 autocast -- synthesis and discriminator layers in bf16, the mapping networks
  and the R1 / path-length passes with their double backward in float32 (as stylegan2-ada-pytorch keeps them);
* ``bf16_everywhere``: ``--bf16-everywhere``, all of it in bf16.

Part 1: the R1 and path-length penalties of freshly initialised networks (several seeds, the same reals,
latents and noise) -- relative difference to fp32. Part 2: ``--steps`` training steps from the same
initialisation on the same random images (ADA off, so the paths only differ by precision): the losses and
penalties along the way and, at the end, the mean absolute difference of the EMA-free generators' images for
fixed latents and noise, relative to fp32 -- and the step time of each precision. Writes JSON.

    python benchmarks/stylegan2_precision_parity.py [--resolution 64] [--width 32] [--steps 64] [--json F]
    python benchmarks/stylegan2_precision_parity.py --quick    # tiny networks at 16 px: a CPU smoke run
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import pick_device, random_image_minibatches, record, step_loop  # this folder is on sys.path
from dermsynth.models import build_networks
from dermsynth.models.stylegan2 import stylegan2_options
from dermsynth.train.config import TrainConfig
from dermsynth.train.steps_stylegan2 import StyleGAN2Step

PRECISIONS = {"fp32": (False, False), "bf16": (True, False), "bf16_everywhere": (True, True)}


def make_step(precision: str, resolution: int, width: int, batch: int, seed: int,
              device: torch.device) -> StyleGAN2Step:
    bf16, everywhere = PRECISIONS[precision]
    cfg = TrainConfig(model="stylegan2", size=resolution, width=width, batch_size=batch, augment="none",
                      pl_weight=2.0, bf16_everywhere=everywhere, steps=1).resolve()
    torch.manual_seed(seed)
    networks = build_networks("stylegan2", resolution=resolution, width=width, num_classes=0,
                              **stylegan2_options(cfg, None))
    networks = {name: net.to(device) for name, net in networks.items()}
    return StyleGAN2Step.from_config(cfg, networks, bf16=bf16, noise=torch.Generator(device=device).manual_seed(seed))


def penalties(step: StyleGAN2Step, seed: int, batch: int, device: torch.device) -> tuple[float, float]:
    """(R1, path-length penalty) on seeded reals, latents and noise."""
    G = step.G_module
    g = torch.Generator(device=device).manual_seed(seed)
    real = torch.rand(batch, 3, G.resolution, G.resolution, generator=g, device=device) * 2 - 1
    r1 = step.r1_penalty(real, None)[0].item()
    torch.manual_seed(seed)
    step.noise.manual_seed(seed)
    z = torch.randn(max(batch // 2, 1), G.z_dim, generator=g, device=device)
    return r1, step.path_length_penalty(z, None)[0].item()


def train_run(precision: str, resolution: int, width: int, batch: int, steps: int,
              device: torch.device) -> dict:
    """``steps`` steps from seed 0's initialisation; per-step statistics, final images, seconds per step."""
    step = make_step(precision, resolution, width, batch, 0, device)
    torch.manual_seed(1)
    sampler = random_image_minibatches(max(4 * batch, 32), resolution, batch, device)
    run = step_loop(step, sampler, channels_last=False, advance=True)
    stats = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        stats.append(run(1).cpu().tolist())
    seconds = (time.perf_counter() - t0) / steps
    G = step.G_module.eval()
    with torch.no_grad():
        z = torch.randn(16, G.z_dim, generator=torch.Generator(device=device).manual_seed(7), device=device)
        images = G(z, None, noise_mode="const").float().cpu()
    return {"stats": stats, "images": images, "s_per_step": seconds, "names": list(step.stat_names)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=None, help="default 64 (16 with --quick)")
    ap.add_argument("--width", type=int, default=None, help="64 = the paper's size (default 32; 4 with --quick)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 32 (8 with --quick)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 64; 5 with --quick)")
    ap.add_argument("--seeds", type=int, default=8, help="initialisations for the penalty comparison")
    ap.add_argument("--quick", action="store_true", help="tiny networks at 16 px: a CPU smoke run")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    resolution = args.resolution or (16 if args.quick else 64)
    width = args.width or (4 if args.quick else 32)
    batch = args.batch_size or (8 if args.quick else 32)
    steps = args.steps or (5 if args.quick else 64)
    seeds = min(args.seeds, 3) if args.quick else args.seeds

    rows = []
    for seed in range(seeds):
        ref = penalties(make_step("fp32", resolution, width, batch, seed, device), seed, batch, device)
        for precision in ("bf16", "bf16_everywhere"):
            got = penalties(make_step(precision, resolution, width, batch, seed, device), seed, batch, device)
            rows.append({"seed": seed, "precision": precision, "r1_fp32": ref[0], "r1": got[0],
                         "r1_rel_diff": abs(got[0] / ref[0] - 1), "pl_fp32": ref[1], "pl": got[1],
                         "pl_rel_diff": abs(got[1] / ref[1] - 1)})

    runs = {p: train_run(p, resolution, width, batch, steps, device) for p in PRECISIONS}
    ref = runs["fp32"]
    scale = ref["images"].abs().mean().item()
    training = {}
    for precision, result in runs.items():
        final = dict(zip(result["names"], result["stats"][-1]))
        training[precision] = {"s_per_step": round(result["s_per_step"], 4), "final": final,
                               "image_mean_abs_diff_rel": (result["images"] - ref["images"]).abs().mean().item()
                               / max(scale, 1e-12)}
    out = args.json or f"benchmarks/results/stylegan2_precision_parity{'_quick' if args.quick else ''}.json"
    result = record("stylegan2_precision_parity", device, out, resolution=resolution, width=width, batch=batch,
                    steps=steps, quick=args.quick, penalties=rows, training=training)
    print(f"StyleGAN2 bf16 vs fp32 at {resolution} px, width {width}, batch {batch} on {result['device']}")
    for precision in ("bf16", "bf16_everywhere"):
        mine = [r for r in rows if r["precision"] == precision]
        print(f"  {precision:>16}: penalties at init, max relative difference to fp32 over {seeds} seeds: "
              f"R1 {max(r['r1_rel_diff'] for r in mine):.2e}, path length {max(r['pl_rel_diff'] for r in mine):.2e}")
    for precision, t in training.items():
        print(f"  {precision:>16}: {steps} steps, {t['s_per_step'] * 1000:.1f} ms/step, final d_loss "
              f"{t['final']['d_loss']:.4f} g_loss {t['final']['g_loss']:.4f}, images vs fp32 (mean |diff| / "
              f"mean |fp32|) {t['image_mean_abs_diff_rel']:.3e}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
