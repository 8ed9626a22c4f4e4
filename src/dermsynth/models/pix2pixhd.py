"""pix2pixHD (Wang et al. 2018), as Bissoto et al. 2018 uses it: semantic (+ instance-boundary) maps -> dermoscopy
images.

Follows NVIDIA/pix2pixHD ``models/networks.py``:

* :class:`GlobalGenerator`: 7x7 conv, ``n_downsample`` stride-2 3x3 convs (channels doubling), ``n_blocks``
  residual blocks, as many stride-2 transposed convs back, 7x7 conv + tanh; reflection padding, instance
  norm (no affine parameters), ReLU.
* :class:`Pix2PixHDGenerator`: the global generator alone, or with ``local_enhancers`` local enhancer networks
  (each doubles the resolution: the global generator, at ``2 * ngf`` channels per enhancer, runs on the input
  average-pooled by 2, and the enhancer adds its down-sampled full-resolution features to the global
  generator's last features before its own residual blocks and up-sampling).
* :class:`PatchDiscriminator`: pix2pixHD's ``NLayerDiscriminator`` (4x4 convs, padding 2, LeakyReLU 0.2,
  instance norm, ``n_layers`` stride-2 layers then one stride-1 and a 1-channel patch output); it returns the
  output of every layer (for the feature-matching loss), the last being the patch logits.
* :class:`MultiScaleDiscriminator`: the same discriminator at several scales of its input (3x3 average
  pooling with stride 2 between scales, ``count_include_pad=False``). It is generic: Furger et al.'s DCGAN setup
  wraps two DCGAN discriminators in it and averages their logits (``average=True``).

The generator's input is the semantic channels, plus the instance-boundary map when ``instance``; the
discriminator sees that input concatenated with the (real or generated) image. Not implemented: pix2pixHD's
instance-wise feature encoder (its ``--instance_feat`` / ``--label_feat`` options), off by default there too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.models.layers import normal_init


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)  # pix2pixHD's get_norm_layer('instance')


class ResnetBlock(nn.Module):
    """x + (reflect-pad, 3x3 conv, norm, ReLU, reflect-pad, 3x3 conv, norm)(x)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
                                   nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                                   _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), _norm(c_out), nn.ReLU(True)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), _norm(c_out), nn.ReLU(True)]


def _head(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(c_in, c_out, 7), nn.Tanh()]


class GlobalGenerator(nn.Module):
    """pix2pixHD's global generator; ``head=False`` drops the final 7x7 conv + tanh (inside a local enhancer)."""

    def __init__(self, input_nc: int, output_nc: int = 3, ngf: int = 64, n_downsample: int = 4, n_blocks: int = 9,
                 head: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for i in range(n_downsample):
            layers += _down(ngf * 2 ** i, ngf * 2 ** (i + 1))
        layers += [ResnetBlock(ngf * 2 ** n_downsample) for _ in range(n_blocks)]
        for i in range(n_downsample, 0, -1):
            layers += _up(ngf * 2 ** i, ngf * 2 ** (i - 1))
        if head:
            layers += _head(ngf, output_nc)
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """pix2pixHD's 2x reduction between scales: 3x3 average pooling, stride 2, padding 1, pads not counted."""
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class LocalEnhancer(nn.Module):
    """One local enhancer: full-resolution features (7x7 conv + one stride-2 conv) added to the coarser
    network's last features, then ``n_blocks`` residual blocks and one 2x up-sampling."""

    def __init__(self, input_nc: int, ngf: int, n_blocks: int = 3) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), _norm(ngf), nn.ReLU(True),
                                  *_down(ngf, ngf * 2))
        self.up = nn.Sequential(*[ResnetBlock(ngf * 2) for _ in range(n_blocks)], *_up(ngf * 2, ngf))

    def forward(self, x: torch.Tensor, coarse_features: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x) + coarse_features)


class Pix2PixHDGenerator(nn.Module):
    """Maps -> image. ``forward(semantic, instance=None)``: semantic channels (B, >= semantic_nc, H, W) (the
    first ``semantic_nc`` are used) and, when ``instance``, the instance-boundary map (B, 1, H, W)."""

    def __init__(self, resolution: int, semantic_nc: int, instance: bool = True, ngf: int = 64,
                 n_downsample: int = 4, n_blocks: int = 9, local_enhancers: int = 0, n_blocks_local: int = 3) -> None:
        super().__init__()
        if resolution % 2 ** (n_downsample + local_enhancers):
            raise ValueError(f"{resolution} px is not divisible by 2^{n_downsample + local_enhancers} "
                             f"(n_downsample {n_downsample} + local_enhancers {local_enhancers})")
        self.resolution, self.semantic_nc, self.instance = resolution, semantic_nc, instance
        self.local_enhancers = local_enhancers
        input_nc = semantic_nc + int(instance)
        self.input_nc = input_nc
        ngf_global = ngf * 2 ** local_enhancers
        self.global_net = GlobalGenerator(input_nc, 3, ngf_global, n_downsample, n_blocks, head=local_enhancers == 0)
        # enhancers from the coarsest to the finest; only the finest has the output head
        self.enhancers = nn.ModuleList(LocalEnhancer(input_nc, ngf * 2 ** (local_enhancers - k), n_blocks_local)
                                       for k in range(1, local_enhancers + 1))
        self.head = nn.Sequential(*_head(ngf, 3)) if local_enhancers else nn.Identity()
        # the global generator's own output layer while it trains alone (coarse-to-fine training); the
        # reference's separately trained global model has it, and drops it when the enhancers are added
        self.global_head = nn.Sequential(*_head(ngf_global, 3)) if local_enhancers else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # checkpoints from before coarse-to-fine training have no global_head: keep this one's (the global
        # generator's output layer is used only while it trains alone)
        if self.global_head is not None:
            for key, value in self.global_head.state_dict().items():
                state_dict.setdefault(f"{prefix}global_head.{key}", value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def condition(self, semantic: torch.Tensor, instance: torch.Tensor | None = None) -> torch.Tensor:
        """The network input (also what the discriminator is conditioned on): semantic channels (+ boundaries)."""
        x = semantic[:, :self.semantic_nc]
        if self.instance:
            if instance is None:
                raise ValueError("this generator was trained with instance maps; give the instance-boundary map")
            x = torch.cat([x, instance.to(x.dtype)], dim=1)
        return x

    def _pyramid(self, semantic: torch.Tensor, instance: torch.Tensor | None) -> list[torch.Tensor]:
        pyramid = [self.condition(semantic, instance)]
        for _ in range(self.local_enhancers):
            pyramid.append(downsample(pyramid[-1]))
        return pyramid

    def forward_global(self, semantic: torch.Tensor, instance: torch.Tensor | None = None) -> torch.Tensor:
        """The global generator alone with its own output layer: an image at resolution / 2^local_enhancers
        from the input reduced as many times (the first stage of coarse-to-fine training)."""
        if self.global_head is None:
            return self(semantic, instance)
        return self.global_head(self.global_net(self._pyramid(semantic, instance)[-1]))

    def forward(self, semantic: torch.Tensor, instance: torch.Tensor | None = None) -> torch.Tensor:
        pyramid = self._pyramid(semantic, instance)
        out = self.global_net(pyramid[-1])
        for k, enhancer in enumerate(self.enhancers, start=1):
            out = enhancer(pyramid[-1 - k], out)
        return self.head(out)


class PatchDiscriminator(nn.Module):
    """pix2pixHD's NLayerDiscriminator with intermediate features: ``forward`` returns every layer's output,
    the last one the (B, 1, h, w) patch logits (no sigmoid: LSGAN)."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, max_channels: int = 512) -> None:
        super().__init__()
        kw, pad = 4, 2
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(input_nc, ndf, kw, 2, pad), nn.LeakyReLU(0.2, True))]
        nf = ndf
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, max_channels)
            stride = 2 if n < n_layers else 1
            layers.append(nn.Sequential(nn.Conv2d(prev, nf, kw, stride, pad), _norm(nf), nn.LeakyReLU(0.2, True)))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, kw, 1, pad)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """Discriminators of one architecture at several scales of the input (Wang et al. 2018).

    ``nets[k]`` sees the input reduced ``k`` times by :func:`downsample`; extra arguments (e.g. class labels)
    go to every scale. ``forward`` returns the list of per-scale outputs, or with ``average`` their mean
    (Furger et al. 2020: "their outputs are averaged"; per-image logits then keep the shape of one discriminator's).
    """

    def __init__(self, nets: Sequence[nn.Module], average: bool = False) -> None:
        super().__init__()
        if not nets:
            raise ValueError("a multi-scale discriminator needs at least one scale")
        self.nets = nn.ModuleList(nets)
        self.average = average

    @classmethod
    def build(cls, make: Callable[[int], nn.Module], scales: int, average: bool = False) -> "MultiScaleDiscriminator":
        """``scales`` discriminators ``make(k)`` for k = 0 (full size), 1 (half), ..."""
        if scales < 1:
            raise ValueError(f"the number of discriminator scales must be >= 1, got {scales}")
        return cls([make(k) for k in range(scales)], average)

    @property
    def num_scales(self) -> int:
        return len(self.nets)

    def forward(self, x: torch.Tensor, *args, first_scale: int = 0):
        """``first_scale`` k: ``x`` is already reduced k times; the scales from k (at most the coarsest) judge it."""
        outputs = []
        for k, net in enumerate(self.nets[min(first_scale, self.num_scales - 1):]):
            if k:
                x = downsample(x)
            outputs.append(net(x, *args))
        return torch.stack(outputs).mean(0) if self.average else outputs


class Pix2PixHDDiscriminator(MultiScaleDiscriminator):
    """``num_D`` patch discriminators on (condition, image) pairs: ``forward(condition, images)`` returns, per
    scale, the list of layer outputs (the last: patch logits)."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 3) -> None:
        super().__init__([PatchDiscriminator(input_nc, ndf, n_layers) for _ in range(num_D)])
        self.n_layers = n_layers

    def forward(self, condition: torch.Tensor,  # type: ignore[override]
                images: torch.Tensor, first_scale: int = 0) -> list[list[torch.Tensor]]:
        """``first_scale`` k > 0: the pair is already reduced k times (coarse-to-fine training's global stage),
        so only the discriminators of scales k, k + 1, ... judge it, each at the scale it was built for."""
        return super().forward(torch.cat([condition, images.to(condition.dtype)], dim=1), first_scale=first_scale)


def build_pix2pixhd(resolution: int, z_dim: int = 0, num_classes: int = 0, width: int = 64, *, semantic_nc: int = 6,
                    instance: bool = True, n_downsample: int = 4, n_blocks: int = 9, local_enhancers: int = 0,
                    d_layers: int = 3, d_scales: int = 3, **_: object) -> tuple[nn.Module, nn.Module]:
    """(generator, multi-scale discriminator); ``width`` is ngf = ndf (pix2pixHD: 64 both). The latent size
    and classes are unused (pix2pixHD is conditioned on the maps alone)."""
    if d_scales >= 1 and resolution >> (d_scales - 1) < 2:  # instance norm needs more than one pixel
        raise ValueError(f"{d_scales} discriminator scales (--d-scales) halve {resolution} px to "
                         f"{resolution >> (d_scales - 1)} px; at most {resolution.bit_length() - 1} at {resolution} px")
    G = Pix2PixHDGenerator(resolution, semantic_nc, instance, width, n_downsample, n_blocks, local_enhancers)
    D = Pix2PixHDDiscriminator(G.input_nc + 3, width, d_layers, d_scales)
    for net in (G, D):  # pix2pixHD's define_G / define_D: netG.apply(weights_init)
        normal_init(net, zero_bias=False)
    return G, D
