"""Speed of the evaluation metrics: SWD, FID/KID (feature extraction + distance) and the memorisation audit.

Two sets of N synthetic uint8 images (smooth random textures; speed does not depend on content) are scored:

* SWD of real vs fake (Laplacian pyramid, 128 descriptors per image and level, 512 directions);
* FID feature extraction: the FID Inception-v3 at 299x299 (random weights unless ``--inception-weights``;
  the speed is the same), measured on ``--feature-images`` images and reported as images/s plus the time
  for 2N images; then the Fréchet distance and KID (100 subsets of 1000) on (N, 2048) features;
* the memorisation audit (pixel MSE) of N generated images against N training and N held-out images.

Defaults: N = 10,000 at 256x256 on a GPU, N = 2,000 at 64x64 on a CPU; ``--quick``: N = 256 at 64x64.
Prints a table and writes JSON (default ``benchmarks/results/metrics_speed.json``).

    python benchmarks/metrics_speed.py [--quick] [--n N] [--size S] [--device cpu|cuda] [--compare-sqrtm]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import device_name, pick_device, record  # this folder is on sys.path when run
from dermsynth.metrics.features import FeatureExtractor
from dermsynth.metrics.frechet import feature_statistics, fid_from_features, kid
from dermsynth.metrics.inception import FEATURE_DIM, FIDInceptionV3, load_fid_inception
from dermsynth.metrics.memorisation import memorisation_audit
from dermsynth.metrics.swd import swd


def synthetic_images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random RGB textures: 8x8 noise upsampled to ``size`` plus fine noise, uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    rep = size // 8
    for start in range(0, n, 256):
        m = min(256, n - start)
        coarse = rng.normal(128, 40, (m, 8, 8, 3)).repeat(rep, 1).repeat(rep, 2)
        out[start:start + m] = np.clip(coarse + rng.normal(0, 12, coarse.shape), 0, 255).astype(np.uint8)
    return out


def timed(fn, device: torch.device):
    """(result, seconds) of ``fn()``, synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N=256 at 64x64")
    ap.add_argument("--n", type=int, default=None, help="images per set (default 10000 on GPU, 2000 on CPU)")
    ap.add_argument("--size", type=int, default=None, help="image side (default 256 on GPU, 64 on CPU)")
    ap.add_argument("--feature-images", type=int, default=None,
                    help="images timed through Inception (default: 2N on GPU, min(2N, 128) on CPU)")
    ap.add_argument("--inception-weights", default=None, help="local FID weights (speed is the same without)")
    ap.add_argument("--compare-sqrtm", action="store_true", help="also time scipy.linalg.sqrtm (the old FID path)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/metrics_speed.json")
    args = ap.parse_args()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    n = args.n or (256 if args.quick else 10_000 if on_gpu else 2_000)
    size = args.size or (64 if args.quick or not on_gpu else 256)
    feature_n = args.feature_images or (2 * n if on_gpu else min(2 * n, 128))
    real, fake, train = (synthetic_images(n, size, seed) for seed in (0, 1, 2))
    rows = []

    def row(name: str, seconds: float, note: str = "") -> None:
        rows.append({"step": name, "seconds": round(seconds, 3), "note": note})
        print(f"  {name}: {seconds:.2f} s {note}", flush=True)

    print(f"metrics speed: N={n} images per set at {size}x{size} on {device_name(device)}", flush=True)
    res, t = timed(lambda: swd(real, fake, device=device), device)
    row("SWD real vs fake", t, f"mean {res.mean:.2f}")

    net = load_fid_inception(args.inception_weights) if args.inception_weights else FIDInceptionV3().eval()
    extractor = FeatureExtractor("inception", FEATURE_DIM, net, "FID Inception-v3")
    probe = np.concatenate([real, fake])[:feature_n]
    extractor(probe[:8], device=device)  # warm-up (cuDNN autotuning, allocations)
    _, t = timed(lambda: extractor(probe, batch_size=200 if on_gpu else 32, device=device), device)
    rate = len(probe) / t
    row("Inception features", t, f"{len(probe)} images, {rate:.1f} img/s; 2N={2 * n} images ~ {2 * n / rate:.1f} s")

    rng = np.random.default_rng(0)  # (N, 2048) features: the distances' cost depends only on the shapes
    fr = np.abs(rng.normal(size=(n, FEATURE_DIM))).astype(np.float32)
    ff = np.abs(rng.normal(size=(n, FEATURE_DIM)) + 0.05).astype(np.float32)
    fid, t = timed(lambda: fid_from_features(fr, ff, device), device)
    path = "Cholesky" if n > FEATURE_DIM else f"{n}x{n} factor (N <= D)"
    row("FID from features (statistics + distance)", t, f"{FEATURE_DIM}-d float64, {path} path, FID {fid:.4f}")
    if args.compare_sqrtm:
        import scipy.linalg

        (mu1, s1), (mu2, s2) = feature_statistics(fr, device), feature_statistics(ff, device)
        covmean, t = timed(lambda: scipy.linalg.sqrtm(s1 @ s2), device)
        old = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))
        row("  scipy.linalg.sqrtm alone (old FID path)", t, f"FID {old:.4f}")
    res, t = timed(lambda: kid(fr, ff, subset_size=1000, device=device), device)
    row("KID (100 subsets of 1000)", t, f"{res.mean:.5f}")

    res, t = timed(lambda: memorisation_audit(fake, train, real, metric="mse", device=device), device)
    row("memorisation audit (MSE)", t, f"N generated + N held-out vs N training; {res.summary['n_flagged']} flagged")

    record("metrics_speed", device, args.json, n=n, size=size, feature_images=len(probe),
           inception_img_per_s=round(rate, 2), rows=rows)
    print(f"\n{'step':<42} {'seconds':>9}  note")
    for r in rows:
        print(f"{r['step']:<42} {r['seconds']:>9.2f}  {r['note']}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
