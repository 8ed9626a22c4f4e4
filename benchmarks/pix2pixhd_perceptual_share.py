"""The loss weight of pix2pixHD's default perceptual network (derm-smallcnn-v1): the value that gives the term the
share of G's loss that the VGG term has in the reference.

Reference share: NVIDIA/pix2pixHD issue #332 quotes a training log at epoch 1 (G_GAN 1.442, G_GAN_Feat 9.491,
G_VGG 7.601, the last two already x lambda 10): VGG's share s = 7.601 / (1.442 + 9.491 + 7.601) = 0.410. (No
ImageNet VGG19 can be downloaded here, so VGG's own magnitude cannot be measured; that log is the one reference
point.) Ours: a tiny pix2pixHD run (phantom maps at 32 px, 200 steps, seed 0) with the shipped network at lambda 1
records the mean G_GAN, G_GAN_Feat (x 10) and perceptual values P; then lambda = s / (1 - s) * (G_GAN + Feat) / P.

    PYTHONPATH=src python benchmarks/pix2pixhd_perceptual_share.py OUT_DIR
"""

import csv
import sys

import numpy as np

from dermsynth.data.maps import superpixels
from dermsynth.data.phantom import generate_phantom
from dermsynth.train import TrainConfig, train

REFERENCE_SHARE = 7.601 / (1.442 + 9.491 + 7.601)


def main(out: str) -> None:
    data = generate_phantom(n=64, size=32, seed=1)
    data.instance_maps = superpixels(data.images)
    train(TrainConfig(model="pix2pixhd", out=out, size=32, width=16, g_downsample=2, g_blocks=3, d_layers=2,
                      d_scales=3, batch_size=4, steps=200, log_every=10, sample_every=1000, checkpoint_every=1000,
                      perceptual="derm-smallcnn-v1", lambda_perceptual=1.0, seed=0), dataset=data, progress=False)
    rows = list(csv.DictReader(open(f"{out}/losses.csv")))
    gan, feat, perc = (np.array([float(r[k]) for r in rows]) for k in ("g_gan", "g_feat", "g_perceptual"))
    ratio = (gan + feat).mean() / perc.mean()
    print(f"mean G_GAN {gan.mean():.4f}, feature matching {feat.mean():.4f}, perceptual at lambda 1 {perc.mean():.4f}")
    print(f"reference share {REFERENCE_SHARE:.4f}; lambda = {REFERENCE_SHARE / (1 - REFERENCE_SHARE) * ratio:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
