"""GANs and diffusion side by side on the same real images (issue 19 §5): one table row per generator checkpoint.

Every generator was trained on the same part of a saved split (``--split``, ``--real-fraction``); each is scored
against the split's held-out **test** images with the metric registry (FD, KID and precision / recall / density /
coverage on the shipped extractor derm-smallcnn-v1; SWD x1e3), and the training images themselves are scored the
same way as the **real-vs-real floor** (what a perfect generator that only reproduced real images of that set would
get at that N). Each generator draws as many images of each class as the training set holds (its class mix), so a
class-conditional model is not penalised for another class mix; the time to draw them is reported per image.

The memorisation audit (``dermsynth.metrics.memorisation``, SSIM) compares every generated image with its nearest
training image and flags those closer than all but 1 % of the held-out test images get; it is repeated for the small
classes given by ``--audit-classes`` (``--audit-n`` images of the class each, against that class's training and
test images), where few training images make copying easiest. One sample grid per generator (a row per class).

    python benchmarks/generator_comparison.py --data ../shared/data/ham10000 --size 32 --split split.json \\
        --real-fraction 0.1 --run dcgan=runs/gan-dcgan-0.1/latest.pt --run ddpm=runs/ddpm/latest.pt \\
        --grid-dir docs --json benchmarks/results/generator_comparison.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import pick_device, record  # this folder is on sys.path when run
from dermsynth.data.prepare import load_dataset
from dermsynth.data.splits import split_part
from dermsynth.metrics.features import load_shipped_extractor
from dermsynth.metrics.memorisation import memorisation_audit
from dermsynth.metrics.registry import ImageSet, MetricOptions, RealSet, compute_metrics
from dermsynth.report.figures import image_grid, save_png
from dermsynth.sample import diffuse, diffusion_sampling, load_generator, sample_images

METRICS = ["fid", "kid", "prdc", "swd"]


def scores(real: RealSet, images: np.ndarray, opts: MetricOptions) -> dict:
    """The headline numbers of :data:`METRICS` for ``images`` against the held-out ``real`` set."""
    m = compute_metrics(METRICS, real, ImageSet(images), opts)
    return {"fid": m["fid"]["fid"], "kid": m["kid"]["kid"], "precision": m["prdc"]["precision"],
            "recall": m["prdc"]["recall"], "density": m["prdc"]["density"], "coverage": m["prdc"]["coverage"],
            "swd_x1e3": m["swd"]["swd"], "swd_lower_bound_x1e3": m["swd"].get("swd_lower_bound")}


def audit(generated: np.ndarray, train: np.ndarray, heldout: np.ndarray, device) -> dict:
    """SSIM memorisation audit of ``generated`` against ``train``, the threshold set by ``heldout``."""
    result = memorisation_audit(generated, train, heldout, metric="ssim", device=device)
    s = result.summary
    return {"n_generated": s["n_generated"], "n_train": s["n_train"], "n_heldout": s["n_heldout"],
            "ssim_threshold": 1 - s["threshold"], "n_flagged": s["n_flagged"],
            "fraction_flagged": s["fraction_flagged"], "n_exact_copies": s["n_exact_duplicates"],
            "median_nn_ssim_generated": 1 - s["median_generated_distance"],
            "median_nn_ssim_heldout": 1 - s["median_heldout_distance"],
            "nn_ssim_generated_p90": float(np.percentile(1 - result.table["distance"].to_numpy(), 90)),
            "nn_ssim_heldout_p90": float(np.percentile(1 - result.heldout_distances, 90))}


def draw(model, counts: dict[str, int], seed: int, sampling=None) -> tuple[np.ndarray, float]:
    """``counts[c]`` images of each class c (one unconditional draw of their sum for an unconditional model) and
    the seconds it took; ``sampling`` (a diffusion model's sampler and steps) replaces the run's own."""
    start = time.perf_counter()

    def one(n: int, s: int, c: str | None) -> np.ndarray:
        if sampling is None:
            return sample_images(model, n, s, class_name=c)[0]
        labels = None if c is None else torch.full((n,), model.class_index(c), dtype=torch.long)
        return diffuse(model, n, s, labels, sampling)

    if not model.conditional:
        images = one(sum(counts.values()), seed, None)
    else:
        images = np.concatenate([one(n, seed + i, c) for i, (c, n) in enumerate(counts.items()) if n > 0])
    return images, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--split", required=True, help="the saved split the generators were trained with")
    ap.add_argument("--real-fraction", type=float, default=None, help="the training images' nested fraction")
    ap.add_argument("--run", action="append", required=True, help="NAME=CHECKPOINT, repeated")
    ap.add_argument("--sampler", action="append", default=[],
                    help="NAME=SAMPLER[:STEPS]: diffusion run NAME sampled so (default: the run's own sampler)")
    ap.add_argument("--audit-classes", default="df,vasc")
    ap.add_argument("--audit-n", type=int, default=200, help="generated images per audited class")
    ap.add_argument("--grid-dir", default=None, help="write <dir>/generator_comparison_<NAME>.png here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="benchmarks/results/generator_comparison.json")
    args = ap.parse_args()
    device = pick_device(args.device)
    data = load_dataset(args.data, size=args.size)
    train = split_part(data, args.split, "train", args.real_fraction)
    test = split_part(data, args.split, "test")
    counts = train.class_counts()
    opts = MetricOptions(extractor=load_shipped_extractor(), device=device, seed=args.seed)
    test_images, train_images = np.asarray(test.images), np.asarray(train.images)
    real = RealSet(test_images, name="test images")
    rows = {"real-vs-real floor (the training images)": {
        "scores": scores(real, train_images, opts),
        "audit": audit(train_images[: len(train_images) // 2], train_images[len(train_images) // 2:],
                       test_images, device)}}
    by_class = {c: (train.labels == i, test.labels == i) for i, c in enumerate(train.class_names)}
    samplers = dict(s.split("=", 1) for s in args.sampler)
    for spec in args.run:
        name, checkpoint = spec.split("=", 1)
        model = load_generator(checkpoint, device=device)
        sampling = None
        if name in samplers:
            sampler, _, steps = samplers[name].partition(":")
            sampling = diffusion_sampling(model, sampler, int(steps) if steps else None)
        images, seconds = draw(model, counts, args.seed, sampling)
        row = {"checkpoint": checkpoint, "model": model.model, "step": model.step,
               "sampling": None if not model.diffusion else
               vars(sampling or diffusion_sampling(model)),
               "sampling_seconds_per_image": seconds / len(images), "n": len(images),
               "scores": scores(real, images, opts), "audit": audit(images, train_images, test_images, device)}
        for c in filter(None, args.audit_classes.split(",")):
            in_train, in_test = by_class[c]
            class_images, _ = draw(model, {c: args.audit_n}, args.seed + 1000, sampling) if model.conditional else (None, 0)
            if class_images is not None and in_train.any() and in_test.any():
                row[f"audit_{c}"] = audit(class_images, train_images[in_train], test_images[in_test], device)
        if args.grid_dir:
            grid = np.concatenate([draw(model, {c: 8}, args.seed + 2000, sampling)[0] for c in train.class_names]) \
                if model.conditional else images[:56]
            save_png(image_grid(grid, nrow=8), Path(args.grid_dir) / f"generator_comparison_{name}.png", min_side=512)
        rows[name] = row
        print(f"{name}: done", flush=True)
    if args.grid_dir:
        real_grid = np.concatenate([train_images[train.labels == i][:8] for i in range(len(train.class_names))])
        save_png(image_grid(real_grid, nrow=8), Path(args.grid_dir) / "generator_comparison_real.png", min_side=512)

    head = ["generator", "FD", "KID", "precision", "recall", "density", "coverage", "SWD x1e3",
            "s / image", "NN SSIM median (held-out)", "flagged", "exact copies"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, row in rows.items():
        s, a = row["scores"], row["audit"]
        print(f"| {name} | {s['fid']:.2f} | {s['kid']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | "
              f"{s['density']:.3f} | {s['coverage']:.3f} | {s['swd_x1e3']:.1f} | "
              f"{row.get('sampling_seconds_per_image', float('nan')):.4f} | {a['median_nn_ssim_generated']:.3f} "
              f"({a['median_nn_ssim_heldout']:.3f}) | {a['n_flagged']} / {a['n_generated']} | {a['n_exact_copies']} |")
    for c in filter(None, args.audit_classes.split(",")):
        for name, row in rows.items():
            if f"audit_{c}" in row:
                a = row[f"audit_{c}"]
                print(f"{c} {name}: NN SSIM median {a['median_nn_ssim_generated']:.3f} (held-out "
                      f"{a['median_nn_ssim_heldout']:.3f}, n_train {a['n_train']}, n_heldout {a['n_heldout']}), "
                      f"flagged {a['n_flagged']} / {a['n_generated']}, exact {a['n_exact_copies']}")
    record("generator_comparison", device, args.json, data=args.data, size=args.size, split=args.split,
           real_fraction=args.real_fraction, n_train=len(train), n_test=len(test), train_class_counts=counts,
           rows=rows)


if __name__ == "__main__":
    main()
