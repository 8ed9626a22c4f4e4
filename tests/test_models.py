"""DCGAN architecture: shapes for the 64 and 32 px variants, conditioning, registry errors."""

import pytest
import torch

from dermsynth.errors import DermsynthError
from dermsynth.models import MODELS, build_gan
from dermsynth.models.layers import num_doublings


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_dcgan_shapes(resolution):
    G, D = build_gan("dcgan", resolution=resolution, z_dim=16, width=8, num_classes=0)
    z = torch.randn(3, 16)
    x = G(z)
    assert x.shape == (3, 3, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1  # tanh output
    assert D(x).shape == (3,)


def test_classic_64px_architecture_matches_radford():
    """The classic DCGAN: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3 (ngf = 64)."""
    G, D = build_gan("dcgan", resolution=64, z_dim=100, width=64, num_classes=0)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    assert convs[0].in_channels == 100
    d_convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in d_convs] == [64, 128, 256, 512, 1]
    # first D layer has no batch-norm: the module right after it is the LeakyReLU
    assert isinstance(D.features[1], torch.nn.LeakyReLU)
    # Parameter counts of the Lunagariya & Patel summary (its G uses nz=100).
    assert sum(p.numel() for p in G.parameters()) == 819_200 + 1_024 + 2_097_152 + 512 + 524_288 + 256 + 131_072 + 128 + 3_072


def test_conditional_generator_and_projection_discriminator_use_labels():
    torch.manual_seed(0)
    G, D = build_gan("dcgan", resolution=16, z_dim=8, width=8, num_classes=3)
    G.eval()
    z = torch.randn(2, 8).repeat(2, 1)
    labels = torch.tensor([0, 0, 2, 2])
    x = G(z, labels)
    assert not torch.allclose(x[0], x[2])  # same noise, other class -> other image
    logits = D(x[:1].repeat(3, 1, 1, 1), torch.tensor([0, 1, 2]))
    assert logits.unique().numel() == 3  # projection term depends on the class
    with pytest.raises(ValueError):
        G(z)


def test_registry_errors():
    assert "dcgan" in MODELS
    with pytest.raises(DermsynthError, match="unknown model"):
        build_gan("nope", resolution=64, z_dim=8, num_classes=0)
    with pytest.raises(DermsynthError, match="power of two"):
        build_gan("dcgan", resolution=48, z_dim=8, num_classes=0)
    assert num_doublings(64) == 4 and num_doublings(8) == 1


def test_dcgan_generator_and_discriminator_widths_are_separate():
    """--g-width / --d-width (Furger et al. 2020 Table 2 balances G and D by them); each defaults to --width."""
    from dermsynth.models import MODELS
    from dermsynth.train import TrainConfig
    cfg = TrainConfig(model="dcgan", size=16, width=8, g_width=16, d_width=4).resolve()
    options = MODELS["dcgan"].extra_options(cfg, None)
    G, D = build_gan("dcgan", resolution=16, z_dim=8, width=8, num_classes=0, **options)
    G8, D8 = build_gan("dcgan", resolution=16, z_dim=8, width=8, num_classes=0)
    G16, _ = build_gan("dcgan", resolution=16, z_dim=8, width=16, num_classes=0)
    _, D4 = build_gan("dcgan", resolution=16, z_dim=8, width=4, num_classes=0)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(G), count(D)) == (count(G16), count(D4)) and count(G) > count(G8) and count(D) < count(D8)
    assert MODELS["dcgan"].extra_options(TrainConfig(model="dcgan").resolve(), None) == {}
