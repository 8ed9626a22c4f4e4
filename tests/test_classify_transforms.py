"""Essipova et al.'s augmentation set in torch: determinism, identity, flip, brightness, reflect fill, scipy parity."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from dermsynth.classify import ESSIPOVA2020_TRANSFORMS, TransformConfig, affine_matrices, transform_batch
from dermsynth.data.phantom import generate_phantom
from dermsynth.errors import DermsynthError

IDENTITY = TransformConfig.identity()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    data = generate_phantom(12, 32, seed=3)
    return torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255.0


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_deterministic_given_the_generator(images):
    a = transform_batch(images, ESSIPOVA2020_TRANSFORMS, _gen(5))
    b = transform_batch(images, ESSIPOVA2020_TRANSFORMS, _gen(5))
    c = transform_batch(images, ESSIPOVA2020_TRANSFORMS, _gen(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == images.shape and a.min() >= 0 and a.max() <= 1
    # the generator advances: a second batch from the same generator differs
    g = _gen(5)
    transform_batch(images, ESSIPOVA2020_TRANSFORMS, g)
    assert not torch.allclose(transform_batch(images, ESSIPOVA2020_TRANSFORMS, g), a)


def test_zero_ranges_reproduce_the_input_to_one_uint8_level(images):
    out = transform_batch(images, IDENTITY, _gen(0))
    as_uint8 = lambda t: (t * 255).round().to(torch.int16)  # noqa: E731
    assert (as_uint8(out) - as_uint8(images)).abs().max() <= 1
    theta, bright = affine_matrices(4, 32, 32, IDENTITY, _gen(0))
    assert torch.allclose(theta, torch.eye(2, 3).expand(4, 2, 3)) and torch.all(bright == 1)


def test_horizontal_flip_mirrors_about_half_the_images(images):
    cfg = dataclasses.replace(IDENTITY, horizontal_flip=True)
    out = transform_batch(images, cfg, _gen(1))
    flipped = [bool(torch.allclose(o, i.flip(-1), atol=1e-5)) for o, i in zip(out, images)]
    kept = [bool(torch.allclose(o, i, atol=1e-5)) for o, i in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image exactly one of the two
    assert 0 < sum(flipped) < len(images)


def test_brightness_scales_and_clips(images):
    half = transform_batch(images, dataclasses.replace(IDENTITY, brightness=(0.5, 0.5)), _gen(0))
    assert torch.allclose(half, images * 0.5, atol=1e-5)
    double = transform_batch(images, dataclasses.replace(IDENTITY, brightness=(2.0, 2.0)), _gen(0))
    assert torch.allclose(double, (images * 2).clamp(0, 1), atol=1e-5)
    factors = affine_matrices(1000, 32, 32, ESSIPOVA2020_TRANSFORMS, _gen(0))[1]
    assert 0.7 <= factors.min() < 0.72 and 1.28 < factors.max() <= 1.3


def test_reflect_fill_leaves_no_black_corners_after_rotation():
    colour = torch.tensor([0.8, 0.5, 0.3])
    const = colour.view(1, 3, 1, 1).expand(8, 3, 24, 24).contiguous()
    cfg = dataclasses.replace(IDENTITY, rotation=45.0, zoom=(1.25, 1.25))
    theta, _ = affine_matrices(8, 24, 24, cfg, _gen(2))
    grid = torch.nn.functional.affine_grid(theta, [8, 3, 24, 24], align_corners=False)
    assert grid.abs().max() > 1.2  # corners really sample outside the image
    out = transform_batch(const, cfg, _gen(2))
    assert torch.allclose(out, const, atol=1e-5)


def test_matches_keras_backend_scipy_affine_transform_with_reflect(images):
    """Keras applies the map with ndimage.affine_transform(order=1, mode='reflect'): same numbers."""
    n, _, h, w = images.shape
    theta, bright = affine_matrices(n, h, w, ESSIPOVA2020_TRANSFORMS, _gen(9))
    out = transform_batch(images, ESSIPOVA2020_TRANSFORMS, _gen(9))
    d = np.diag([w / 2, h / 2])  # normalised -> centred pixel units, (x, y) order
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    for i in range(n):
        t = theta[i].double().numpy()
        lin_xy, shift_xy = d @ t[:, :2] @ np.linalg.inv(d), d @ t[:, 2]
        lin, shift = lin_xy[::-1, ::-1], shift_xy[::-1]  # -> (row, col)
        offset = shift + centre - lin @ centre
        ref = np.stack([ndimage.affine_transform(images[i, c].double().numpy(), lin, offset, order=1,
                                                 mode="reflect") for c in range(3)])
        ref = np.clip(ref * float(bright[i]), 0, 1)
        assert np.abs(out[i].double().numpy() - ref).max() < 1e-4


def test_parameters_follow_the_keras_ranges():
    theta, _ = affine_matrices(4000, 32, 32, ESSIPOVA2020_TRANSFORMS, _gen(0))
    lin = theta[:, :, :2].double()
    det = torch.linalg.det(lin).abs()  # = zx * zy * cos(shear)
    assert 0.81 - 1e-3 <= det.min() and det.max() <= 1.5625 + 1e-3
    shift = theta[:, :, 2].double().norm(dim=1)  # rotated shift: norm <= sqrt(2) * 0.1 side = 0.2 * sqrt(2) units
    assert 0.2 < shift.max() <= 0.2 * 2 ** 0.5 + 1e-6


def test_bad_config_and_input_are_clear_errors(images):
    with pytest.raises(DermsynthError, match="zoom"):
        transform_batch(images, dataclasses.replace(IDENTITY, zoom=(1.2, 0.9)), _gen(0))
    with pytest.raises(DermsynthError, match="float images"):
        transform_batch((images * 255).to(torch.uint8), IDENTITY, _gen(0))
