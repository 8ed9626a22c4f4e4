"""Is the shipped extractor's FID a useful distance? FID of real held-out images against degraded copies of
other real held-out images, at growing strength of blur, noise, JPEG and colour cast
(:mod:`dermsynth.metrics.distort`), and of a trained against an untrained generator.

The held-out images are the test split of the extractor's own lesion-grouped split of HAM10000 (same seed and
fractions as ``dermsynth train-extractor``: no image or lesion of it was used in training), read at the
extractor's input size and divided into two disjoint halves A (reference) and B (degraded): FID(A, B) at
strength 0 is the real-vs-real floor at that N. The paired design scores B against its own degraded copy
(0 at strength 0), which isolates the distortion from the sampling noise. ``--checkpoint``: a generator (e.g. trained on the training
split) scored against the test split at its own resolution, beside the same architecture with freshly
initialised weights and the real-vs-real floor at that resolution and N.

    python benchmarks/extractor_sensitivity.py [--data ../shared/data/ham10000] [--checkpoint runs/gan/latest.pt]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from _common import pick_device, record  # this folder is on sys.path when run
from dermsynth.data.splits import split_dataset
from dermsynth.data.prepare import load_dataset
from dermsynth.metrics.distort import STRENGTHS, distort
from dermsynth.metrics.features import load_shipped_extractor, shipped_extractor_card
from dermsynth.metrics.registry import MetricOptions, RealSet, compute_metrics
from dermsynth.metrics.swd import disjoint_halves
from dermsynth.sample import load_generator, sample_images


def held_out(data: str, size: int, seed: int):
    """The test split of the extractor's lesion-grouped split, at ``size`` px."""
    ds = load_dataset(data, size=size)
    return split_dataset(ds, seed=seed).apply(ds)["test"]


def fid(real: RealSet, fake: np.ndarray, opts: MetricOptions) -> float:
    return compute_metrics(["fid"], real, fake, opts)["fid"]["fid"]


def untrained_copy(model):
    """The same generator architecture with freshly initialised weights (seeded)."""
    fresh = copy.deepcopy(model)
    torch.manual_seed(0)
    for m in fresh.generator.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return fresh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/ham10000")
    ap.add_argument("--checkpoint", default=None, help="A generator to score against an untrained copy.")
    ap.add_argument("--n", type=int, default=None, help="Images per half (default: half the test split).")
    ap.add_argument("--no-distortions", action="store_true", help="Only the generator comparison.")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="benchmarks/results/extractor_sensitivity.json")
    args = ap.parse_args()

    device = pick_device(args.device)
    card, ext = shipped_extractor_card(), load_shipped_extractor()
    opts = MetricOptions(extractor=ext, device=device, seed=0)
    test = held_out(args.data, card["image_size"], card["seed"])
    half = args.n or len(test) // 2
    result = {"extractor": ext.provenance(), "n_per_half": half, "test_split_images": len(test),
              "image_size": card["image_size"]}
    if not args.no_distortions:
        a, b = disjoint_halves(len(test), half, seed=0)
        images = np.asarray(test.images)
        halves_ref, paired_ref = RealSet(images[a]), RealSet(images[b])
        rows: dict[str, dict[str, list[float]]] = {"halves": {}, "paired": {}}
        for kind, strengths in STRENGTHS.items():
            degraded = [distort(images[b], kind, s, seed=1) for s in strengths]
            for design, ref in (("halves", halves_ref), ("paired", paired_ref)):
                rows[design][kind] = [fid(ref, d, opts) for d in degraded]
                print(f"{design} {kind:>7}: " + "  ".join(f"{s:g}: {v:.3f}" for s, v in zip(strengths,
                                                                                          rows[design][kind])),
                      flush=True)
        result.update({"strengths": STRENGTHS, "fid": rows,
                       "designs": {"halves": "FID(A, distorted B), A and B disjoint halves of the test split",
                                   "paired": "FID(B, distorted B): the same images"}})
    if args.checkpoint:
        model = load_generator(args.checkpoint, device)
        size = int(model.generator.resolution)
        test_g = held_out(args.data, size, card["seed"])
        gen_images = np.asarray(test_g.images)
        a2, b2 = disjoint_halves(len(test_g), half, seed=0)
        real = RealSet(gen_images[a2])
        trained = sample_images(model, half, seed=1)[0]
        untrained = sample_images(untrained_copy(model), half, seed=1)[0]
        result["generator"] = {"checkpoint": str(args.checkpoint), "step": model.step, "size": size, "n": half,
                               "real_vs_real": fid(real, gen_images[b2], opts), "trained": fid(real, trained, opts),
                               "untrained": fid(real, untrained, opts)}
        print(f"generator at {size}px: {result['generator']}")
    record("extractor_sensitivity", device, args.json, **result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
