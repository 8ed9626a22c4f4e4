"""Discriminator augmentation: the ADA pipeline's transforms against their specification (Karras et al. 2020,
stylegan2-ada-pytorch ``training/augment.py`` defaults), DiffAugment, and the ADA controller."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from _runs import assert_same_training_state, resumed_and_uninterrupted
from dermsynth.errors import DermsynthError
from dermsynth.models.dcgan import DCGANDiscriminator
from dermsynth.train.disc_augment import (Augmentation, AugmentSpec, augment_images, cutout_mask, diff_augment,
                                          torch_draw)
from dermsynth.data.batch import Batch
from dermsynth.train.steps import GANStep


def _draw(seed=0):
    return torch_draw("cpu", torch.Generator().manual_seed(seed))


def _random_images(n=8, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_pipeline_is_differentiable_with_every_transform():
    x = _random_images().requires_grad_(True)
    spec = AugmentSpec(cutout=1.0)
    y = augment_images(x, 1.0, _draw(), spec)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    x.grad = None
    (diff_augment(x, _draw()) ** 2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_identity_at_p_zero():
    x = _random_images()
    assert augment_images(x, 0.0, _draw(), AugmentSpec(cutout=1.0)) is x
    # a p tensor at 0 (ADA's start) runs the whole pipeline: every matrix is the identity
    y = augment_images(x, torch.tensor(0.0), _draw(), AugmentSpec(cutout=1.0))
    assert torch.allclose(y, x, atol=1e-5)


def test_bf16_input_gives_bf16_output():
    x = _random_images().bfloat16()
    y = augment_images(x, 1.0, _draw())
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_brightness_adds_normal_shift_with_std_0_2():
    x = torch.zeros(4000, 3, 2, 2)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("brightness"))
    shift = y.mean(dim=(1, 2, 3))
    assert torch.allclose(y, shift[:, None, None, None].expand_as(y), atol=1e-6)  # the same shift everywhere
    assert abs(shift.mean()) < 0.01 and abs(shift.std() - 0.2) < 0.01
    # at p = 0.5 half the images are shifted
    y = augment_images(x, 0.5, _draw(1), AugmentSpec.only("brightness"))
    assert abs((y.abs().amax(dim=(1, 2, 3)) > 0).float().mean() - 0.5) < 0.03


def _smooth_images(n=8, size=16, seed=0):
    """Images without pixel-scale detail: the reference's resampling (sym6, not linear-phase) moves a flipped or
    turned image by about 0.1 pixel, which is invisible on these."""
    coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)


def test_xflip_flips_half_the_images():
    x = _smooth_images(1000)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("xflip"))
    same = (y - x).abs().amax(dim=(1, 2, 3))
    flipped = (y - x.flip(3))[..., 2:-2, 2:-2].abs().amax(dim=(1, 2, 3))
    assert (same < 1e-5).logical_or(flipped < 0.1).all()
    assert abs((same > 1e-5).float().mean() - 0.5) < 0.05


def test_rotate90_picks_each_quarter_turn_equally():
    x = _smooth_images(1000)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("rotate90"))
    error = torch.stack([(y - torch.rot90(x, k, dims=(2, 3)))[..., 2:-2, 2:-2].abs().amax(dim=(1, 2, 3))
                         for k in range(4)])
    turns = error < 0.1
    assert (turns.sum(0) == 1).all()                     # each output is one of the four rotations
    assert (turns.float().mean(1) - 0.25).abs().max() < 0.05


def test_pipes_are_the_references_and_filter_noise_behave():
    assert AugmentSpec.pipe("bgc") == AugmentSpec()  # the reference's default pipe is ours
    assert AugmentSpec.pipe("bgcfnc").imgfilter == AugmentSpec.pipe("bgcfnc").noise == 1.0
    with pytest.raises(DermsynthError, match="augment-pipe"):
        AugmentSpec.pipe("bgx")
    # additive noise: per-image sigma = |N(0, 0.1)|, so the residual's std has mean 0.1 * sqrt(2 / pi)
    x = torch.zeros(2000, 3, 8, 8)
    sigma = augment_images(x, 1.0, _draw(), AugmentSpec.only("noise")).std(dim=(1, 2, 3))
    assert abs(sigma.mean() - 0.1 * math.sqrt(2 / math.pi)) < 0.004
    # image-space filtering keeps a constant image (every band but the low-pass has zero DC gain) ...
    flat = torch.full((64, 3, 32, 32), 0.3)
    filtered = augment_images(flat, 1.0, _draw(), AugmentSpec.only("imgfilter"))
    gains = filtered.mean(dim=(1, 2, 3)) / 0.3
    assert (gains > 0).all() and gains.std() > 0.05  # the low band's gain varies from image to image
    assert (filtered - filtered.mean(dim=(2, 3), keepdim=True))[..., 4:-4, 4:-4].abs().max() < 1e-4
    # ... and refuses images too small for its 43-tap filter bank with a clear error
    with pytest.raises(DermsynthError, match="imgfilter"):
        augment_images(torch.zeros(2, 3, 16, 16), 1.0, _draw(), AugmentSpec.only("imgfilter"))


def test_fractional_translation_is_normal_with_std_0_125_of_the_side():
    x = _disc(400)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("xfrac"))
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    weight = (y[:, 0] + 1).clamp(min=0)
    shift_x = ((weight * xs).sum(dim=(1, 2)) / weight.sum(dim=(1, 2)) - 32) / 64
    assert abs(shift_x.mean()) < 0.02 and abs(shift_x.std() - 0.125) < 0.02


def test_integer_translation_lands_on_pixel_centres():
    size = 32
    x = _random_images(64, size)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("xint"))
    # every output pixel is an input pixel (no interpolation); shifts are at most 0.125 of the side
    for img_in, img_out in zip(x, y):
        found = None
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                a = img_out[:, 8:24, 8:24]
                b = img_in[:, 8 - dy:24 - dy, 8 - dx:24 - dx]
                if torch.allclose(a, b, atol=1e-5):
                    found = (dy, dx)
        assert found is not None


def _disc(n, size=64, radius=12.0):
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5 - size / 2, torch.arange(size) + 0.5 - size / 2, indexing="ij")
    disc = ((xs ** 2 + ys ** 2) <= radius ** 2).float()
    return (disc * 2 - 1).expand(n, 3, size, size).contiguous()


def test_isotropic_scaling_is_log2_normal_with_std_0_2():
    x = _disc(400)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("scale"))
    area = (y[:, 0] > 0).float().sum(dim=(1, 2)) / (x[:, 0] > 0).float().sum(dim=(1, 2))
    log2_s = torch.log2(area.sqrt())
    assert abs(log2_s.mean()) < 0.03 and abs(log2_s.std() - 0.2) < 0.03


def test_anisotropic_scaling_keeps_the_area():
    x = _disc(200)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("aniso"))
    area = (y[:, 0] > 0).float().sum(dim=(1, 2)) / (x[:, 0] > 0).float().sum(dim=(1, 2))
    assert (area - 1).abs().max() < 0.08                  # s * (1 / s) = 1, up to pixel rounding
    assert (y - x).abs().amax(dim=(1, 2, 3)).gt(0.5).float().mean() > 0.5  # ... while the shape changes


def test_rotation_happens_with_probability_p():
    """Two rotations, each with probability 1 - sqrt(1 - p): rotated at all with probability p."""
    x = _random_images(2000, 8)
    y = augment_images(x, 0.5, _draw(), AugmentSpec.only("rotate"))
    changed = (y - x).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert abs(changed.float().mean() - 0.5) < 0.04


def _luma(x):
    return x.mean(dim=1)


def test_contrast_scale_is_log2_normal_with_std_0_5():
    x = _random_images(2000, 4)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("contrast"))
    k = (y / x).flatten(1)
    assert (k.std(dim=1) < 1e-4).all()                     # one factor per image
    log2_k = torch.log2(k[:, 0])
    assert abs(log2_k.mean()) < 0.03 and abs(log2_k.std() - 0.5) < 0.03


def test_lumaflip_negates_luma_for_half_and_keeps_chroma():
    x = _random_images(2000, 4)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("lumaflip"))
    neg = (_luma(y) + _luma(x)).abs().amax(dim=(1, 2)) < 1e-5
    same = (y - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert (neg | same).all() and abs(neg.float().mean() - 0.5) < 0.04
    chroma = lambda t: t - _luma(t)[:, None]  # noqa: E731
    assert torch.allclose(chroma(y), chroma(x), atol=1e-5)


def test_hue_rotation_keeps_luma_and_saturation_and_is_uniform():
    x = _random_images(2000, 1)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("hue"))
    assert torch.allclose(_luma(y), _luma(x), atol=1e-5)
    cx, cy = (x - _luma(x)[:, None]).flatten(1), (y - _luma(y)[:, None]).flatten(1)
    assert torch.allclose(cx.norm(dim=1), cy.norm(dim=1), atol=1e-4)
    cos = (cx * cy).sum(1) / (cx.norm(dim=1) * cy.norm(dim=1))
    angle = torch.acos(cos.clamp(-1, 1))                  # |theta| for theta ~ U(-pi, pi): uniform on [0, pi]
    assert abs(angle.mean() - math.pi / 2) < 0.08


def test_saturation_scales_chroma_log2_normally_with_std_1():
    x = _random_images(2000, 1)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("saturation"))
    assert torch.allclose(_luma(y), _luma(x), atol=1e-4)
    cx, cy = (x - _luma(x)[:, None]).flatten(1), (y - _luma(y)[:, None]).flatten(1)
    log2_s = torch.log2(cy.norm(dim=1) / cx.norm(dim=1))
    assert abs(log2_s.mean()) < 0.06 and abs(log2_s.std() - 1.0) < 0.05
    grey = torch.zeros(5, 3, 2, 2) + 0.3
    assert torch.allclose(augment_images(grey, 1.0, _draw(), AugmentSpec.only("saturation")), grey, atol=1e-6)


def test_cutout_removes_the_specified_area():
    # centred: exactly (0.5 * side)^2
    mask = cutout_mask(1, 64, 64, torch.tensor([0.5]), torch.tensor([[0.5, 0.5]]))
    assert (mask == 0).float().mean() == 0.25
    # uniform centres: each side covers E|[c - 1/4, c + 1/4] & [0, 1]| = 0.4375, so the area is 0.4375^2
    x = torch.ones(4000, 3, 32, 32)
    y = augment_images(x, 1.0, _draw(), AugmentSpec.only("cutout"))
    assert abs((y[:, 0] == 0).float().mean() - 0.4375 ** 2) < 0.005


def test_diffaugment_translation_cutout_and_brightness():
    x = torch.full((2, 3, 16, 16), 0.5)
    # draws at 0.5: no colour change, no shift, the cutout square centred
    y = diff_augment(x, lambda kind, *shape: torch.full(shape, 0.5))
    assert (y[:, :, 4:12, 4:12] == 0).all() and (y == 0).float().mean() == 0.25
    assert torch.allclose(y[:, :, :4], x[:, :, :4])
    # brightness alone: a uniform shift in [-0.5, 0.5] (std 1 / sqrt 12)
    z = torch.zeros(4000, 3, 4, 4)
    shift = diff_augment(z, _draw(), translation=0.0, cutout=0.0).mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 and abs(shift.std() - 1 / math.sqrt(12)) < 0.01
    # translation: shifted by whole pixels with zero fill
    img = _random_images(1, 16)
    t = diff_augment(img, lambda kind, *shape: torch.full(shape, 0.5 if len(shape) > 1 else 0.99), cutout=0.0)
    # translation draws 0.99 -> +2 px on both axes; brightness/saturation/contrast draws 0.5 -> unchanged
    assert torch.allclose(t[:, :, :14, :14], img[:, :, 2:, 2:], atol=1e-6) and (t[:, :, 14:] == 0).all()


def test_ada_controller_speed_and_direction():
    """p moves by sign(r_t - target) * batch * interval / (ada_kimg * 1000) every interval steps."""
    ada = Augmentation("ada", kimg=0.32)  # 0 -> 1 in 320 images: 10 adjustments of 4 x 8 images
    for step in range(1, 41):
        ada.observe(torch.ones(8), 8)                      # D(real) > 0 everywhere: r_t = 1 > 0.6
        if step % 4 == 0:
            assert torch.isclose(ada.p, torch.tensor(min(step * 8 / 320, 1.0)))
    assert ada.p == 1.0
    for _ in range(8):
        ada.observe(-torch.ones(8), 8)                     # r_t = -1 < 0.6: down again
    assert torch.isclose(ada.p, torch.tensor(1 - 2 * 32 / 320))
    fixed = Augmentation("fixed", p=0.3)
    fixed.observe(torch.ones(8), 8)
    assert float(fixed.p) == pytest.approx(0.3)


def test_controller_state_round_trips():
    ada = Augmentation("ada", kimg=1.0)
    for _ in range(6):
        ada.observe(torch.ones(4), 4)
    other = Augmentation("ada", kimg=1.0)
    other.load_state_dict(ada.state_dict())
    for a in (ada, other):
        a.observe(torch.ones(4), 4)
        a.observe(torch.ones(4), 4)
    assert torch.equal(ada.p, other.p) and float(ada.p) > 0


@pytest.mark.parametrize("kwargs,message", [(dict(mode="always"), "--augment"),
                                            (dict(mode="fixed", p=2.0), "--augment-p"),
                                            (dict(mode="ada", target=1.5), "--ada-target")])
def test_bad_augment_options(kwargs, message):
    with pytest.raises(DermsynthError, match=message):
        Augmentation(**kwargs)


# --- ADA in training: p rises when D over-fits a tiny set and stays near 0 on a large one -------------------

def _quantised(u):
    return torch.round(u * 255) / 127.5 - 1


class _PerfectGenerator(nn.Module):
    """Flat images of a uniformly random colour: the training data's own distribution (so D can only tell
    reals from fakes by memorising the training images)."""

    z_dim, resolution, num_classes = 3, 16, 0

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z, labels=None):
        colour = _quantised(torch.special.ndtr(z[:, :3]))
        return colour[:, :, None, None].expand(-1, 3, 16, 16) + self.dummy * 0


def _ada_p_trajectory(n_images, steps=300):
    torch.manual_seed(0)
    colours = _quantised(torch.rand(n_images, 3, generator=torch.Generator().manual_seed(1)))
    reals = colours[:, :, None, None].expand(-1, 3, 16, 16).contiguous()
    G, D = _PerfectGenerator(), DCGANDiscriminator(resolution=16, width=8)
    opt_g = torch.optim.Adam(G.parameters(), 1e-3)
    opt_d = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.5, 0.999))
    step = GANStep(G, D, opt_g, opt_d, batch_size=16, noise=torch.Generator().manual_seed(2),
                   augment=Augmentation("ada", kimg=2.0))
    assert step.stat_names[-1] == "aug_p"
    rng = np.random.default_rng(0)
    ps = []
    for _ in range(steps):
        stats = step(Batch(images=reals[torch.as_tensor(rng.integers(0, n_images, 16))]))
        ps.append(float(stats[-1]))
    return np.array(ps)


def test_ada_p_rises_on_a_tiny_set_and_stays_near_zero_on_a_large_one():
    tiny = _ada_p_trajectory(16)
    large = _ada_p_trajectory(100_000)
    assert tiny.max() > 0.2 and tiny[-100:].mean() > 0.1, tiny[::20]
    assert large[-150:].max() < 0.07 and large[-1] <= 0.05, large[::20]


# --- through the trainer, for the other GANs ----------------------------------------------------------------

TINY_DCGAN = dict(size=16, batch_size=16, width=8, z_dim=16, log_every=5, sample_every=10, checkpoint_every=10,
                  conditional=True, ema_beta=0.9, augment="ada", ada_kimg=0.2)


def test_dcgan_with_ada_resumes_bit_exactly_including_p(tmp_path, noise_dataset):
    a, b = resumed_and_uninterrupted(tmp_path, 24, 11, dataset=noise_dataset, **TINY_DCGAN)
    assert_same_training_state(a, b)
    assert torch.equal(a["step_state"]["augment"]["p"], b["step_state"]["augment"]["p"])
    assert float(a["step_state"]["augment"]["p"]) > 0
    header = (tmp_path / "full" / "losses.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["aug_p", "img_per_s"]


def test_pgan_trains_with_fixed_augmentation(tmp_path, noise_dataset):
    from dermsynth.train import TrainConfig, train
    out = tmp_path / "pgan"
    train(TrainConfig(model="pgan", out=str(out), size=16, width=4, z_dim=16, batch_size=8, steps=4, log_every=2,
                      sample_every=4, checkpoint_every=4, augment="fixed", augment_p=0.5, stable_kimg=0.016,
                      fade_kimg=0.016), dataset=noise_dataset, progress=False)
    rows = (out / "losses.csv").read_text().strip().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert float(last["aug_p"]) == 0.5


def test_ada_is_stylegan2s_default_and_none_elsewhere():
    from dermsynth.train import TrainConfig

    assert TrainConfig(model="stylegan2", size=32).resolve().augment == "ada"  # the reference's --aug=ada
    assert TrainConfig(model="stylegan2", size=32, augment="none").resolve().augment == "none"
    assert TrainConfig(model="dcgan", size=32).resolve().augment == "none"
    with pytest.raises(DermsynthError, match="augment-pipe"):
        from dermsynth.train.disc_augment import augmentation_from_config
        augmentation_from_config(TrainConfig(model="dcgan", size=32, augment_pipe="bgcfnc").resolve())
