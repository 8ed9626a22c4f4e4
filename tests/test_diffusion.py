"""Diffusion (issue 19 §2): the denoiser presets, the forward process against its closed form, the v target,
the training loss, classifier-free guidance, per-image determinism of sampling, and a tiny model that learns a
trivial distribution (two flat colours, one per class)."""

from __future__ import annotations

import math

import pytest
import torch

from dermsynth.errors import DermsynthError
from dermsynth.models.diffusion import (
    DENOISER_PRESETS, Denoiser, DenoiserPreset, Diffusion, class_labels, guided_prediction, resolve_preset)

# two levels, one block each: a few thousand parameters, for 16 px images on the CPU
SMALL = DenoiserPreset((16, 32), (False, True), 1, 0.0, None, 8, "tests")


def _denoiser(num_classes: int = 2, condition_channels: int = 0, seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(16, num_classes, SMALL, condition_channels=condition_channels).eval()


def _parameters(preset: str, resolution: int) -> int:
    with torch.device("meta"):  # counts without allocating 114M parameters
        return sum(p.numel() for p in Denoiser(resolution, 0, preset).parameters())


def test_presets_have_the_published_parameter_counts():
    # Ho et al. 2020, appendix B: "Our CIFAR10 model has 35.7 million parameters, and our LSUN and CelebA-HQ
    # models have 114 million parameters"
    assert round(_parameters("ddpm-32", 32) / 1e6, 1) == 35.7
    assert round(_parameters("ddpm-256", 256) / 1e6) == 114
    assert resolve_preset("auto", 32) is DENOISER_PRESETS["ddpm-32"]
    assert resolve_preset("auto", 256) is DENOISER_PRESETS["ddpm-256"]
    with pytest.raises(DermsynthError, match="sized for 48 px"):
        resolve_preset("auto", 48)
    with pytest.raises(DermsynthError, match="--preset"):
        resolve_preset("huge", 32)
    # --width scales every level: half the channels, about a quarter of the (mostly conv) parameters
    with torch.device("meta"):
        half = sum(p.numel() for p in Denoiser(32, 0, "ddpm-32", width=32).parameters())
    assert 0.24 < half / _parameters("ddpm-32", 32) < 0.26
    with pytest.raises(DermsynthError, match="--width 8 does not scale"):
        Denoiser(32, 0, "ddpm-32", width=8)  # 16 channels in the first level, 32 groups


def test_denoiser_shapes_with_classes_and_condition_channels():
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([0, 10, 999])
    assert _denoiser(0)(x, t).shape == (3, 3, 16, 16)
    assert _denoiser(2)(x, t, torch.tensor([0, 1, 2])).shape == (3, 3, 16, 16)  # 2 = the null class
    masked = _denoiser(0, condition_channels=2)
    assert masked(x, t, condition=torch.zeros(3, 2, 16, 16)).shape == (3, 3, 16, 16)
    with pytest.raises(DermsynthError, match="conditioning channels"):
        masked(x, t)
    # no labels on a class-conditional denoiser = the null class
    d = _denoiser(2)
    assert torch.equal(d(x, t), d(x, t, torch.full((3,), d.null_class)))
    assert not torch.allclose(d(x, t), d(x, t, torch.zeros(3, dtype=torch.long)))


def _alpha_bar_closed_form(schedule: str, T: int) -> torch.Tensor:
    """alpha_bar_t in float64 from the papers: DDPM's betas linspace(1e-4, 0.02); improved DDPM's
    f(t) = cos^2(((t / T) + s) / (1 + s) pi / 2), s = 0.008, betas clipped at 0.999."""
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    else:
        f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(T)], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_forward_process_is_the_closed_form(schedule):
    process = Diffusion(schedule, 1000)
    ab = _alpha_bar_closed_form(schedule, 1000)
    torch.testing.assert_close(process.alphas_cumprod.double(), ab, atol=1e-6, rtol=1e-5)
    x0, noise = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 1, 500, 999])
    expected = ab[t].sqrt().view(-1, 1, 1, 1) * x0.double() + (1 - ab[t]).sqrt().view(-1, 1, 1, 1) * noise.double()
    torch.testing.assert_close(process.add_noise(x0, noise, t).double(), expected, atol=1e-5, rtol=1e-5)
    # q(x_T | x_0) is nearly the standard normal on both schedules, x_1 nearly x_0
    assert ab[-1] < 1e-4 and ab[0] > 0.9998


def test_v_target_recovers_the_image_and_the_noise():
    process = Diffusion("cosine", 1000, "v")
    x0, noise = torch.rand(5, 3, 8, 8) * 2 - 1, torch.randn(5, 3, 8, 8)
    t = torch.tensor([0, 3, 250, 700, 999])
    x_t, v = process.add_noise(x0, noise, t), process.target(x0, noise, t)
    a = process.alphas_cumprod[t].double().sqrt().view(-1, 1, 1, 1)
    s = (1 - process.alphas_cumprod[t].double()).sqrt().view(-1, 1, 1, 1)
    # Salimans & Ho 2022, section 4: x0 = alpha x_t - sigma v, eps = sigma x_t + alpha v
    torch.testing.assert_close(a * x_t.double() - s * v.double(), x0.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(s * x_t.double() + a * v.double(), noise.double(), atol=1e-5, rtol=0)
    assert torch.equal(Diffusion("linear", 1000, "epsilon").target(x0, noise, t), noise)


def test_loss_is_the_mse_to_the_noise_with_labels_dropped_at_p_uncond():
    d, process = _denoiser(2), Diffusion("linear", 100)
    x0, labels = torch.rand(6, 3, 16, 16) * 2 - 1, torch.tensor([0, 1, 0, 1, 0, 1])
    loss = process.loss(d, x0, labels, p_uncond=0.0, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws, in the loss's order
    t = (torch.rand(6, generator=g) * 100).long()
    noise = torch.randn(x0.shape, generator=g)
    expected = ((d(process.add_noise(x0, noise, t), t, labels) - noise) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    # p_uncond = 1: every label is the null class, i.e. the unconditional loss
    dropped = process.loss(d, x0, labels, p_uncond=1.0, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t, noise = (torch.rand(6, generator=g) * 100).long(), torch.randn(x0.shape, generator=g)
    unconditional = ((d(process.add_noise(x0, noise, t), t) - noise) ** 2).mean()
    torch.testing.assert_close(dropped, unconditional)
    assert not torch.allclose(dropped, loss)


def test_guidance_mixes_conditional_and_unconditional_predictions():
    d = _denoiser(3)
    x, t, labels = torch.randn(4, 3, 16, 16), torch.tensor(400), torch.tensor([0, 1, 2, 1])
    cond, uncond = d(x, t, labels), d(x, t)
    torch.testing.assert_close(guided_prediction(d, x, t, labels, 1.0), cond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided_prediction(d, x, t, labels, 0.0), uncond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided_prediction(d, x, t, labels, 3.0), uncond + 3.0 * (cond - uncond),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver"])
def test_sampling_depends_only_on_seed_and_index(sampler):
    d, process = _denoiser(2), Diffusion("linear", 50)
    labels = torch.tensor([0, 1, 1, 0, 1])
    kwargs = {"sampler": sampler, "steps": 8, "guidance": 2.0}
    whole = process.sample(d, 5, labels=labels, seed=7, **kwargs)
    assert whole.shape == (5, 3, 16, 16) and whole.abs().max() <= 1
    parts = torch.cat([process.sample(d, 2, labels=labels[:2], seed=7, **kwargs),
                       process.sample(d, 3, labels=labels[2:], seed=7, first_index=2, **kwargs)])
    torch.testing.assert_close(parts, whole, atol=1e-4, rtol=0)
    torch.testing.assert_close(process.sample(d, 1, labels=labels[3:4], seed=7, first_index=3, **kwargs),
                               whole[3:4], atol=1e-4, rtol=0)
    other = process.sample(d, 5, labels=labels, seed=8, **kwargs)
    assert (other - whole).abs().mean() > 0.05


def test_class_labels_depend_only_on_seed_and_index():
    labels = class_labels(7, 3, range(200))
    assert torch.equal(class_labels(7, 3, range(50, 80)), labels[50:80])
    assert set(labels.tolist()) == set(range(7))
    assert not torch.equal(class_labels(7, 4, range(200)), labels)


def test_bad_sampling_options_are_one_line_errors():
    process, unconditional = Diffusion("linear", 50), _denoiser(0)
    with pytest.raises(DermsynthError, match="--guidance needs a class-conditional"):
        process.sample(unconditional, 1, guidance=2.0, steps=2)
    with pytest.raises(DermsynthError, match="--sampling-steps must be in"):
        process.sample(unconditional, 1, steps=51)
    with pytest.raises(DermsynthError, match="--sampler must be one of"):
        process.sample(unconditional, 1, sampler="euler")
    with pytest.raises(DermsynthError, match="--guidance must be"):
        process.sample(_denoiser(2), 1, labels=torch.tensor([0]), guidance=float("nan"))
    with pytest.raises(DermsynthError, match="--schedule"):
        Diffusion("quadratic")
    with pytest.raises(DermsynthError, match="--prediction"):
        Diffusion(prediction="x0")


def _fit(denoiser: Denoiser, process: Diffusion, batch, steps: int) -> Denoiser:
    """``steps`` Adam steps of the diffusion loss on ``batch(generator)`` -> (images, labels, condition)."""
    opt = torch.optim.Adam(denoiser.train().parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        images, labels, condition = batch(g)
        loss = process.loss(denoiser, images, labels, condition, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return denoiser.eval()


SAMPLERS = ("ddpm", "ddim", "dpm-solver")
RED, BLUE = torch.tensor([0.8, -0.5, -0.5]), torch.tensor([-0.6, -0.2, 0.7])


def test_a_tiny_denoiser_learns_two_flat_colours_one_per_class():
    """Behaviour: trained for a few hundred steps on flat images (class 0 red, class 1 blue), v prediction on
    the cosine schedule, every sampler draws nearly flat images of the asked class's colour; untrained, not."""
    colours = torch.stack([RED, BLUE])
    d, process = _denoiser(2), Diffusion("cosine", 1000, "v")
    labels = torch.tensor([0, 1] * 4)

    def colour_error(sampler: str) -> tuple[float, float]:
        images = process.sample(d, 8, labels=labels, sampler=sampler, steps=20, seed=1)
        return ((images.mean((2, 3)) - colours[labels]).abs().max().item(), images.std((2, 3)).mean().item())

    before, _ = colour_error("ddim")

    def batch(g):
        y = torch.randint(2, (32,), generator=g)
        return colours[y][:, :, None, None].expand(-1, -1, 16, 16), y, None

    _fit(d, process, batch, 200)
    assert before > 0.5
    for sampler in SAMPLERS:
        error, spread = colour_error(sampler)
        assert error < 0.2 and spread < 0.2, (sampler, error, spread)


def _discs(n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 1, 16, 16) masks of discs of radius 3-5 px at random centres."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centre, radius = torch.rand(n, 2, generator=g) * 8 + 4, torch.rand(n, generator=g) * 2 + 3
    inside = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2 <= radius[:, None, None] ** 2
    return inside.float()[:, None]


def test_a_mask_conditioned_denoiser_paints_inside_its_mask():
    """Behaviour of the concatenated conditioning channels (the mask-conditioned model): trained on images red
    inside a disc mask and blue outside, with the mask as a conditioning channel, samples follow the mask they
    are given, not another one."""
    def painted(masks: torch.Tensor) -> torch.Tensor:
        return masks * RED[:, None, None] + (1 - masks) * BLUE[:, None, None]

    d, process = _denoiser(0, condition_channels=1), Diffusion("cosine", 1000, "v")
    _fit(d, process, lambda g: (painted(m := _discs(32, g)), None, m * 2 - 1), 150)
    masks = _discs(8, torch.Generator().manual_seed(5))
    for sampler in SAMPLERS:
        images = process.sample(d, 8, condition=masks * 2 - 1, sampler=sampler, steps=20, seed=1)
        own = (images - painted(masks)).abs().mean((1, 2, 3))
        other = (images - painted(masks.roll(1, 0))).abs().mean((1, 2, 3))
        assert own.max() < 0.15 and (other > 2 * own).all(), (sampler, own, other)
