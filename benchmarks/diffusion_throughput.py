"""DDPM training and sampling throughput at 64 and 256 px, in images per second, with peak GPU memory.

Training: the trainer's own step (``dermsynth.train.steps_diffusion.DiffusionStep``: DDPM's loss at a uniform t,
epsilon target, classifier-free label dropout 0.1, seven classes as HAM10000, gradient clip 1, one AdamW step with
diffusers' example settings) on the preset sized for each resolution (64 px: the diffusers example's U-Net,
256 px: DDPM's 256 px U-Net; both 114M parameters), at DDPM's minibatch 64 unless ``--batch``. Sampling: the
same networks drawing a batch with DDIM (50 steps) and DPM-Solver++ (20 steps), with classifier-free guidance 2
(two network evaluations per step on the doubled batch); ``evals/s`` is denoiser evaluations (image x step) per
second, from which any sampler's cost follows (DDPM's 1000-step chain: 1000 evaluations per image unguided).

Two settings: ``plain`` (fp32, NCHW) and ``fast`` (bf16 autocast, channels_last; CUDA only). A setting that runs
out of GPU memory is recorded as such. Prints a table and writes JSON.

    python benchmarks/diffusion_throughput.py [--resolutions 64,256] [--batch 64] [--steps N] [--json F]
    python benchmarks/diffusion_throughput.py --quick   # the tiny preset at 16/32 px: a CPU smoke run
"""

from __future__ import annotations

import argparse

import torch

from _common import peak_gib, pick_device, print_table, record, time_steps  # this folder is on sys.path when run
from dermsynth.models.diffusion import DEFAULT_SAMPLING_STEPS, PRESET_FOR_SIZE, Denoiser, Diffusion
from dermsynth.data.batch import Batch
from dermsynth.train.steps_diffusion import DiffusionStep

NUM_CLASSES = 7  # HAM10000's
GUIDANCE = 2.0
SAMPLERS = ("ddim", "dpm-solver")


def _denoiser(resolution: int, preset: str, device: torch.device, fast: bool) -> Denoiser:
    torch.manual_seed(0)
    denoiser = Denoiser(resolution, NUM_CLASSES, preset).to(device)
    return denoiser.to(memory_format=torch.channels_last) if fast else denoiser


def training_rate(resolution: int, preset: str, batch: int, device: torch.device, fast: bool, steps: int,
                  warmup: int) -> float:
    """Training images/s of the trainer's own step (``DiffusionStep``: loss, backward, gradient clip, AdamW)."""
    denoiser = _denoiser(resolution, preset, device, fast).train()
    opt = torch.optim.AdamW(denoiser.parameters(), 1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    noise = torch.Generator(device=device).manual_seed(0)
    step = DiffusionStep(denoiser, opt, bf16=fast, batch_size=batch, conditional=True, noise=noise)
    images = torch.rand(batch, 3, resolution, resolution, device=device, generator=noise) * 2 - 1
    if fast:
        images = images.contiguous(memory_format=torch.channels_last)
    data = Batch(images=images, labels=torch.randint(NUM_CLASSES, (batch,), device=device, generator=noise))

    def run(n: int) -> torch.Tensor:
        total = torch.zeros((), device=device)
        for _ in range(n):
            step.begin(0)
            total += step(data)[0]
        return total

    return steps * batch / time_steps(run, steps, warmup, device)


def sampling_rate(resolution: int, preset: str, batch: int, device: torch.device, fast: bool, sampler: str,
                  steps: int) -> float:
    """Sampling images/s of one batch with ``sampler`` at ``steps`` steps and guidance :data:`GUIDANCE`."""
    denoiser, process = _denoiser(resolution, preset, device, fast).eval(), Diffusion("linear", 1000, "epsilon")
    labels = torch.arange(batch) % NUM_CLASSES

    def run(n_steps: int) -> torch.Tensor:  # one batch of n_steps steps
        return process.sample(denoiser, batch, labels=labels, sampler=sampler, steps=n_steps, guidance=GUIDANCE,
                              bf16=fast).mean()

    return batch / time_steps(run, steps, 2, device)  # a 2-step batch first: first-call costs outside the timing


def _guarded(measure, *args) -> tuple[float | None, str]:
    """(rate, status): status ``out of memory`` (rate None) when the GPU cannot hold the setting."""
    try:
        return measure(*args), "ok"
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None, "out of memory"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default=None, help="default 64,256 (--quick: 16,32)")
    ap.add_argument("--batch", type=int, default=None, help="training and sampling minibatch (default 64; quick 4)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default 20 on CUDA, 2 on CPU)")
    ap.add_argument("--sampling-steps", default=None,
                    help="steps per sampler as ddim:N,dpm-solver:N (default 50 and 20; quick 4 and 4)")
    ap.add_argument("--quick", action="store_true", help="the tiny preset at 16/32 px: a smoke run for the CPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    resolutions = [int(r) for r in (args.resolutions or ("16,32" if args.quick else "64,256")).split(",")]
    batch = args.batch or (4 if args.quick else 64)
    steps = args.steps or (20 if on_gpu else 2)
    warmup = 3 if on_gpu else 1
    sampling_steps = {s: (4 if args.quick else DEFAULT_SAMPLING_STEPS[s]) for s in SAMPLERS}
    if args.sampling_steps:
        sampling_steps.update({k: int(v) for k, v in (item.split(":") for item in args.sampling_steps.split(","))})
    rows = []
    for res in resolutions:
        preset = "tiny" if args.quick else PRESET_FOR_SIZE[res]
        for mode in (["plain", "fast"] if on_gpu else ["plain"]):
            fast = mode == "fast"

            def add(task: str, rate: float | None, status: str, evals_per_image: int | None = None) -> None:
                rows.append({"resolution": res, "preset": preset, "batch": batch, "mode": mode, "task": task,
                             "status": status, "img_per_s": None if rate is None else round(rate, 3),
                             "evals_per_s": None if rate is None or evals_per_image is None
                             else round(rate * evals_per_image, 1), "peak_gib": peak_gib(device)})

            add("train", *_guarded(training_rate, res, preset, batch, device, fast, steps, warmup))
            for sampler in SAMPLERS:
                n = sampling_steps[sampler]  # network evaluations per image: steps, twice with guidance
                add(f"sample {sampler} {n}", *_guarded(sampling_rate, res, preset, batch, device, fast, sampler, n),
                    n * (1 if GUIDANCE == 1 else 2))
    out = args.json or f"benchmarks/results/diffusion_throughput{'_quick' if args.quick else ''}.json"
    result = record("diffusion_throughput", device, out, steps=steps, guidance=GUIDANCE, num_classes=NUM_CLASSES,
                    quick=args.quick, rows=rows)
    print(f"DDPM throughput on {result['device']} (torch {torch.__version__}; training {steps} timed steps; "
          f"sampling with guidance {GUIDANCE})")
    print_table([{**r, "img_per_s": r["status"] if r["img_per_s"] is None else r["img_per_s"]} for r in rows],
                [("resolution", "res", 5), ("preset", "preset", 12), ("batch", "batch", 6), ("mode", "mode", 6),
                 ("task", "task", 20), ("img_per_s", "img/s", 10), ("evals_per_s", "evals/s", 10),
                 ("peak_gib", "peak GiB", 9)])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
