"""Image -> image networks for lesion editing: Furger et al.'s U-Net editor and CycleGAN (Zhu et al. 2017).

(The paper calls the U-Net editor a "U-Net translator"; its registry name stays ``unet-translator``. In
dermsynth, "translate" otherwise means pix2pixHD's map -> image, :mod:`dermsynth.translate`.)

* :class:`UNetEditor` (Furger et al. 2020, section 3.2.2): photo + lesion mask in, a *residual* out that is added
  to the photo. Encoder: a 7x7 stem and 2 strided convolutions; 4 residual blocks at a quarter of the input
  size (32x32 for 128 px patches, as in the paper); decoder: 2 transposed convolutions, each followed by
  concatenation with the encoder features of the same size (skip connections as in Isola et al.). Instance
  normalisation (the paper does not name one; it is the usual choice for image -> image networks).
* :class:`Furger2020Discriminator` (Furger et al. 2020, section 3.2.3): two discriminators, on the image and on a 2x
  downscaled copy, each strided 3x3 convolutions with batch norm and LeakyReLU, doubling the features, four
  of them for patches, then a dense layer to one logit; the two logits are averaged.
* :class:`ResnetGenerator` / :class:`PatchDiscriminator`: CycleGAN's networks (Johnson et al.'s ResNet
  generator c7s1-64, d128, d256, 6 residual blocks for 128 px and below, 9 above, u128, u64, c7s1-3 with
  reflection padding, instance norm and tanh; the 70x70 PatchGAN C64-C128-C256-C512), channels scaled by
  ``width`` (64 in the paper). The generator's body is pix2pixHD's
  :class:`~dermsynth.models.pix2pixhd.GlobalGenerator` with two downsamplings (the same network), and the
  residual blocks here and in the U-Net are its :class:`~dermsynth.models.pix2pixhd.ResnetBlock`.
  :class:`CycleGANGenerator` holds both generators (one Adam for both, as the CycleGAN code) and
  :class:`CycleGANDiscriminator` both discriminators. ``residual=True`` (not in the paper) makes each generator
  output input + residual, as Furger et al.'s U-Net editor does.
* Furger et al.'s CycleGAN variant (4.3): both generators :class:`UNetTranslator` (the editor's U-Net without a
  mask) and both discriminators :class:`Furger2020Discriminator` (``kind`` "unet" / "two-scale").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.models.layers import normal_init
from dermsynth.models.pix2pixhd import GlobalGenerator, ResnetBlock

#: the edit directions of each model: the U-Net's is fixed at training, CycleGAN's chosen per call
UNET_DIRECTIONS = ("add", "remove")
CYCLE_DIRECTIONS = ("ab", "ba")


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


def _conv_block(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """conv, instance norm, ReLU; reflection padding at stride 1, zero padding when downsampling (CycleGAN)."""
    if stride == 1:
        conv = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel)]
    else:
        conv = [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2)]
    return nn.Sequential(*conv, _norm(c_out), nn.ReLU(inplace=True))


def _up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), _norm(c_out),
                         nn.ReLU(inplace=True))


def _check_side(x: torch.Tensor, multiple: int, what: str) -> None:
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"{what} takes images whose sides are multiples of {multiple}, got {w}x{h}")


GREY = 127.5  # [-1, 1] units -> 8-bit grey levels


def mask_change(photo: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean absolute change (8-bit grey levels, over pixels and channels) inside and outside the mask.

    Images in [-1, 1], (B, 3, H, W); mask (B, 1, H, W) in {0, 1}. A region with no pixel gives 0."""
    m = mask.float().expand_as(photo)
    diff = (edited.float().clamp(-1, 1) - photo.float()).abs() * GREY
    inside = (diff * m).sum() / m.sum().clamp(min=1)
    outside = (diff * (1 - m)).sum() / (1 - m).sum().clamp(min=1)
    return inside, outside


class UNetTranslator(nn.Module):
    """Furger et al.'s U-Net translator (3.2.2) without a mask: ``G(x) = x + residual(x)`` ("image modification");
    the generators of their CycleGAN variant (4.3). ``in_channels``: the input's channels (3, or 4 with a mask)."""

    #: how size errors name the network
    what = "the U-Net translator"

    def __init__(self, resolution: int, width: int = 64, blocks: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        self.resolution = resolution
        w = width
        self.stem = _conv_block(in_channels, w, 7)
        self.down1 = _conv_block(w, 2 * w, 3, stride=2)
        self.down2 = _conv_block(2 * w, 4 * w, 3, stride=2)
        self.blocks = nn.Sequential(*[ResnetBlock(4 * w) for _ in range(blocks)])
        self.up1 = _up_block(4 * w, 2 * w)
        self.up2 = _up_block(4 * w, w)  # input: up1 output concatenated with down1's features
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(2 * w, 3, 7))

    def unet(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net's 3-channel output (the residual) for the network input ``x``."""
        _check_side(x, 4, self.what)
        e0 = self.stem(x)
        e1 = self.down1(e0)
        u1 = self.up1(self.blocks(self.down2(e1)))
        u2 = self.up2(torch.cat([u1, e1], dim=1))
        return self.head(torch.cat([u2, e0], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.unet(x)


class UNetEditor(UNetTranslator):
    """Furger et al.'s image-modification generator: ``G(photo, mask) = photo + residual(photo, mask)``.

    ``photo`` (B, 3, H, W) in [-1, 1], ``mask`` (B, 1, H, W) in {0, 1}; H and W multiples of 4. The output is
    not clamped (the residual may push it a little outside [-1, 1]; images are clamped when saved).
    ``direction`` ("add" or "remove") records what the model was trained to do.
    """

    what = "the U-Net editor"

    def __init__(self, resolution: int, width: int = 64, blocks: int = 4, direction: str = "add") -> None:
        if direction not in UNET_DIRECTIONS:
            raise ValueError(f"--direction must be one of {', '.join(UNET_DIRECTIONS)}, got {direction!r}")
        super().__init__(resolution, width, blocks, in_channels=4)
        self.direction = direction

    def residual(self, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([photo, mask.to(photo.dtype)], dim=1))

    def forward(self, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return photo + self.residual(photo, mask)


class ScaleDiscriminator(nn.Module):
    """One scale of Furger et al.'s discriminator: ``layers`` strided 3x3 convolutions doubling the features (batch
    norm from the second on, LeakyReLU 0.2), then a dense layer to one logit per image."""

    def __init__(self, resolution: int, width: int, layers: int = 4) -> None:
        super().__init__()
        convs, c_in = [], 3
        for i in range(layers):
            c_out = width * 2 ** i
            convs += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)]
            if i > 0:  # DCGAN: no batch norm on the first layer
                convs += [nn.BatchNorm2d(c_out)]
            convs += [nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*convs)
        side = resolution
        for _ in range(layers):
            side = (side + 1) // 2
        self.dense = nn.Linear(c_in * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x).flatten(1)).squeeze(1)


class Furger2020Discriminator(nn.Module):
    """Furger et al.'s discriminator (3.2.3): the mean logit of a :class:`ScaleDiscriminator` on the image and one
    on the image reduced 2x (2x2 average pooling)."""

    def __init__(self, resolution: int, width: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.resolution = resolution
        self.full = ScaleDiscriminator(resolution, width, layers)
        self.coarse = ScaleDiscriminator(resolution // 2, width, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.full(x) + self.coarse(F.avg_pool2d(x, 2)))


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: c7s1-w, d2w, d4w, ``blocks`` x R4w, u2w, uw, c7s1-3, tanh (Zhu et al. appx. 7.2).

    ``residual``: no tanh, the output is added to the input (Furger et al.'s image modification). The instance
    norm after the first layer removes each feature map's mean, so a plain generator cannot see the overall
    colour of a nearly uniform skin patch and must guess it; the residual form keeps it by construction.
    """

    def __init__(self, width: int = 64, blocks: int = 6, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        # pix2pixHD's global generator with two downsamplings is this network layer for layer (Wang et al. took
        # it from Johnson et al. as CycleGAN did); its body, then the c7s1-3 head with or without the tanh
        self.body = GlobalGenerator(3, 3, width, n_downsample=2, n_blocks=blocks, head=False)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), *([] if residual else [nn.Tanh()]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_side(x, 4, "the CycleGAN generator")
        out = self.head(self.body(x))
        return x + out if self.residual else out


class PatchDiscriminator(nn.Module):
    """The 70x70 PatchGAN: C64-C128-C256-C512 (4x4 convs, the last stride 1), then a 1-channel 4x4 conv:
    one logit per 70x70 receptive field (Isola et al.; instance norm as in CycleGAN)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out, stride in ((w, 2 * w, 2), (2 * w, 4 * w, 2), (4 * w, 8 * w, 1)):
            layers += [nn.Conv2d(c_in, c_out, 4, stride, 1), _norm(c_out), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Conv2d(8 * w, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def cyclegan_blocks(resolution: int) -> int:
    """Residual blocks of CycleGAN's generator: 6 for 128x128 training images and below, 9 above (the paper)."""
    return 6 if resolution <= 128 else 9


#: CycleGAN's generator and discriminator kinds: Zhu et al.'s, and Furger et al.'s variant (4.3)
CYCLE_GENERATORS = ("resnet", "unet")
CYCLE_DISCRIMINATORS = ("patch", "two-scale")


class CycleGANGenerator(nn.Module):
    """Both CycleGAN generators: ``g_ab`` (A -> B) and ``g_ba`` (B -> A); ``forward(images, direction)``.

    ``kind``: "resnet" (Zhu et al.'s :class:`ResnetGenerator`, ``blocks`` residual blocks, ``residual`` output)
    or "unet" (Furger et al.'s :class:`UNetTranslator`, 4 blocks, always input + residual)."""

    def __init__(self, resolution: int, width: int = 64, blocks: int | None = None, residual: bool = False,
                 kind: str = "resnet") -> None:
        super().__init__()
        if kind not in CYCLE_GENERATORS:
            raise ValueError(f"--cycle-generator must be one of {', '.join(CYCLE_GENERATORS)}, got {kind!r}")
        self.resolution = resolution
        if kind == "unet":
            self.g_ab, self.g_ba = (UNetTranslator(resolution, width, 4 if blocks is None else blocks)
                                    for _ in range(2))
        else:
            blocks = cyclegan_blocks(resolution) if blocks is None else blocks
            self.g_ab, self.g_ba = ResnetGenerator(width, blocks, residual), ResnetGenerator(width, blocks, residual)

    def generator(self, direction: str) -> nn.Module:
        if direction not in CYCLE_DIRECTIONS:
            raise ValueError(f"CycleGAN direction must be one of {', '.join(CYCLE_DIRECTIONS)}, got {direction!r}")
        return self.g_ab if direction == "ab" else self.g_ba

    def forward(self, images: torch.Tensor, direction: str = "ab") -> torch.Tensor:
        return self.generator(direction)(images)


class CycleGANDiscriminator(nn.Module):
    """Both CycleGAN discriminators: ``d_a`` judges domain A images, ``d_b`` domain B; ``kind`` "patch" (the
    70x70 PatchGAN) or "two-scale" (:class:`Furger2020Discriminator` at ``resolution``)."""

    def __init__(self, width: int = 64, kind: str = "patch", resolution: int | None = None) -> None:
        super().__init__()
        if kind not in CYCLE_DISCRIMINATORS:
            raise ValueError(f"--cycle-discriminator must be one of {', '.join(CYCLE_DISCRIMINATORS)}, got {kind!r}")
        if kind == "two-scale":
            self.d_a, self.d_b = Furger2020Discriminator(resolution, width), Furger2020Discriminator(resolution, width)
        else:
            self.d_a, self.d_b = PatchDiscriminator(width), PatchDiscriminator(width)


def build_unet_editor(resolution: int, z_dim: int = 0, num_classes: int = 0, width: int = 64,
                      direction: str = "add", g_width: int | None = None, d_width: int | None = None,
                      **_: object) -> tuple[nn.Module, nn.Module]:
    """(U-Net editor, multi-scale discriminator) for the registry (``z_dim``/``num_classes`` unused);
    ``g_width``/``d_width`` (default ``width``): the generator's and the discriminator's initial features."""
    if resolution < 32:
        raise ValueError(f"the U-Net editor's discriminators need --size >= 32, got {resolution}")
    return (UNetEditor(resolution, g_width or width, direction=direction),
            Furger2020Discriminator(resolution, d_width or width))


def build_cyclegan(resolution: int, z_dim: int = 0, num_classes: int = 0, width: int = 64, residual: bool = False,
                   generator: str = "resnet", discriminator: str = "patch", g_width: int | None = None,
                   d_width: int | None = None, **_: object) -> tuple[nn.Module, nn.Module]:
    """(both generators, both discriminators) for the registry (``z_dim``/``num_classes`` unused); the kinds
    as :class:`CycleGANGenerator` and :class:`CycleGANDiscriminator`, widths as :func:`build_unet_editor`."""
    if resolution < 32:
        raise ValueError(f"the {'two-scale' if discriminator == 'two-scale' else '70x70 PatchGAN'} discriminator "
                         f"needs --size >= 32, got {resolution}")
    G = CycleGANGenerator(resolution, g_width or width, residual=residual, kind=generator)
    D = CycleGANDiscriminator(d_width or width, discriminator, resolution)
    for net in (G, D):  # the CycleGAN code's init_weights(init_type="normal", init_gain=0.02)
        normal_init(net)
    return G, D
