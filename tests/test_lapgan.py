"""LAPGAN: exact Laplacian pyramid, sampling sizes, per-level training batches on the real pyramid."""

import pytest
import torch
from torch import nn

from dermsynth.models.lapgan import (LAPGANDiscriminator, LAPGANGenerator, blur_downsample, build_lapgan,
                                     gaussian_pyramid, laplacian_bands, level_batches, reconstruct, upsample)
from dermsynth.train.losses import nonsaturating_d, nonsaturating_g


def tiny(resolution: int = 32, num_classes: int = 0) -> tuple[LAPGANGenerator, LAPGANDiscriminator]:
    torch.manual_seed(0)
    return (LAPGANGenerator(z_dim=8, resolution=resolution, num_classes=num_classes, width=8),
            LAPGANDiscriminator(resolution=resolution, num_classes=num_classes, width=8, max_width=32))


def test_pyramid_ops_preserve_constants_and_halve_size() -> None:
    x = torch.full((2, 3, 16, 16), 0.7)
    torch.testing.assert_close(blur_downsample(x), torch.full((2, 3, 8, 8), 0.7))
    torch.testing.assert_close(upsample(x), torch.full((2, 3, 32, 32), 0.7))


def test_laplacian_pyramid_reconstruction_is_exact() -> None:
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    pyramid = laplacian_bands(x, 3)
    assert [p.shape[-1] for p in pyramid] == [8, 16, 32, 64]  # coarsest first
    torch.testing.assert_close(pyramid[0], gaussian_pyramid(x, 3)[0])
    assert (reconstruct(pyramid) - x).abs().max() < 1e-5
    assert pyramid[-1].abs().mean() < x.abs().mean()  # the finest band holds only the detail
    assert torch.equal(reconstruct(laplacian_bands(x, 0)), x)  # zero levels: the image itself


class _Returns(nn.Module):
    """Stands in for G_k: ignores its inputs and returns a fixed tensor."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, *args) -> torch.Tensor:
        return self.value


def test_sampling_with_the_real_bands_rebuilds_the_image() -> None:
    G, _ = tiny()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    G.generators = nn.ModuleList([_Returns(band) for band in laplacian_bands(x, G.num_levels - 1)])
    assert (G(torch.randn(2, 8)) - x).abs().max() < 1e-5


@pytest.mark.parametrize("num_classes", [0, 3])
def test_generator_samples_full_resolution(num_classes: int) -> None:
    G, D = tiny(num_classes=num_classes)
    assert (G.z_dim, G.resolution, G.num_classes, G.num_levels) == (8, 32, num_classes, 3)
    z = torch.randn(4, 8)
    y = torch.tensor([0, 1, 2, 0]) if num_classes else None
    images = G(z, y)
    assert images.shape == (4, 3, 32, 32)
    assert D(images, y).shape == (4,)
    noise = [G.sample_noise(k, 4, generator=torch.Generator().manual_seed(k)) for k in (1, 2)]
    assert [n.shape for n in noise] == [(4, 1, 16, 16), (4, 1, 32, 32)]
    G.eval()
    torch.testing.assert_close(G(z, y, noise), G(z, y, noise))  # deterministic given z and the noise
    assert G.level_fake(0, None, z, y).shape == (4, 3, 8, 8)
    assert G.level_fake(2, torch.zeros(4, 3, 32, 32), noise[1], y).shape == (4, 3, 32, 32)
    with pytest.raises(ValueError):
        G.level_fake(1, None, noise[0], y)


def test_level_batches_use_the_real_pyramid() -> None:
    G, D = tiny(num_classes=2)
    real, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 1, 0])
    batches = level_batches(G, real, y, torch.randn(4, 8), generator=torch.Generator().manual_seed(0))
    gauss = gaussian_pyramid(real, 2)
    assert [b.level for b in batches] == [0, 1, 2] and batches[0].cond is None
    torch.testing.assert_close(batches[0].real, gauss[0])
    for b in batches[1:]:
        torch.testing.assert_close(b.cond, upsample(gauss[b.level - 1]))  # conditioned on REAL coarse images
        torch.testing.assert_close(b.cond + b.real, gauss[b.level])
        assert b.fake.shape == b.real.shape
    assert D.pyramid_logits(batches, y).shape == (12,)
    torch.testing.assert_close(D.level_logits(2, batches[2].real, batches[2].cond, y), D(real, y))


def test_one_training_step_updates_every_level() -> None:
    G, D = tiny()
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 2e-4), torch.optim.Adam(D.parameters(), 2e-4)
    batches = level_batches(G, torch.rand(4, 3, 32, 32) * 2 - 1, None, torch.randn(4, 8))
    d_loss = nonsaturating_d(D.pyramid_logits(batches), D.pyramid_logits(batches, fake=True, detach=True))
    opt_d.zero_grad()
    d_loss.backward()
    assert all(p.grad is None for p in G.parameters())  # detached fakes: D's update leaves G alone
    assert all(p.grad is not None for p in D.parameters())
    opt_d.step()
    g_loss = nonsaturating_g(D.pyramid_logits(batches, fake=True))
    opt_g.zero_grad()
    g_loss.backward()
    for gen in G.generators:  # every level's generator learns, each from its own D_k
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.parameters())
    opt_g.step()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)


def test_builder_and_validation() -> None:
    G, D = build_lapgan(resolution=16, z_dim=8, num_classes=0, width=4)
    assert G.num_levels == 2 and G(torch.randn(2, 8)).shape == (2, 3, 16, 16)
    assert D(torch.randn(2, 3, 16, 16)).shape == (2,)
    with pytest.raises(ValueError):
        LAPGANGenerator(resolution=8, base=8)  # needs at least one band above the base
    with pytest.raises(ValueError):
        LAPGANGenerator(resolution=32, base=4)  # G_0 is a DCGAN generator: base >= 8


def test_lapgan_trains_in_the_shared_trainer_and_samples_full_size(tmp_path, noise_dataset) -> None:
    from dermsynth.sample import generate, load_generator
    from dermsynth.train import TrainConfig, train

    cfg = TrainConfig(model="lapgan", out=str(tmp_path / "run"), size=16, width=8, z_dim=8,
                      batch_size=16, steps=4, log_every=2, sample_every=4, checkpoint_every=4)
    result = train(cfg, dataset=noise_dataset, progress=False)
    state = torch.load(result.checkpoint, weights_only=True)
    torch.manual_seed(0)  # the trainer's initialisation (seed 0)
    G0, _ = build_lapgan(resolution=16, z_dim=8, num_classes=0, width=8)
    for k in range(G0.num_levels):  # every level's generator (G_0 from noise, G_1 the band) learned
        prefix = f"generators.{k}."
        changed = [not torch.equal(v, state["networks"]["generator"][prefix + n])
                   for n, v in G0.generators[k].state_dict().items() if v.is_floating_point()]
        assert any(changed), f"level {k} did not train"
    rows = (tmp_path / "run" / "losses.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and all(float(v) == float(v) for v in rows[-1].split(",")[1:])  # no NaN
    model = load_generator(result.checkpoint)
    assert generate(model, torch.randn(3, 8), None).shape == (3, 16, 16, 3)
    assert (tmp_path / "run" / "samples" / "step-0000004.png").is_file()
