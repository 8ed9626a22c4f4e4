"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN") as configured by
StyleGAN2-ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").

Architecture after ``training/networks.py`` of NVlabs/stylegan2-ada-pytorch (read, re-written here):

* **Mapping network**: z (normalised to unit second moment) [+ a class embedding, a dense layer on the one-hot
  label, also normalised] -> ``map_layers`` dense layers (LeakyReLU 0.2) -> w, with the learning-rate
  multiplier 0.01; G tracks the average w (``w_avg``, moving average with beta 0.995 during training) for
  the truncation trick in w space: ``w' = w_avg + psi * (w - w_avg)``.
* **Synthesis network** ("skip" generator): a learned 4x4 constant, then per resolution one modulated 3x3
  conv with x2 upsampling and one without (the 4x4 block has one), each with per-pixel noise scaled by a
  learned strength, bias and LeakyReLU; a 1x1 modulated toRGB (no demodulation) per resolution whose outputs
  are upsampled and summed. Weights are *modulated* per sample by a style (an affine map of w, bias 1) and
  *demodulated* to unit output norm; executed as a grouped convolution (one group per sample) when
  ``fused``, or as x * style -> shared conv -> x * demod (the same maths, faster to train) otherwise, as
  the reference does. Upsampling is a transposed conv followed by the [1, 3, 3, 1] binomial filter.
* **Discriminator** ("resnet"): fromRGB at full resolution, then per resolution two 3x3 convs (the second
  blurs and downsamples by 2) plus a 1x1 downsampled skip, summed with gain sqrt(1/2) ("orig", the reference's
  ``cifar`` preset: the two convs alone, no skip, gain 1); epilogue at 4x4:
  minibatch standard deviation (group ``mbstd_group``), 3x3 conv, dense, dense output. Class-conditional:
  projection onto a class embedding from a mapping network of the label ("cmap"), scaled 1/sqrt(dim).
* Every layer has an **equalised learning rate** (weights N(0, 1) scaled at run time by 1/sqrt(fan_in)).
* Channels at resolution r: ``min(channel_base / r, channel_max)``, ``channel_base = fmaps * 32768``,
  ``channel_max = 512``; here both (and z/w, 512) are scaled by ``width / 64``, so ``--width 64`` is the
  paper's size and ``--width 4`` a tiny test network.

Plain PyTorch, no custom CUDA ops. The reference's fused ops would add: ``upfirdn2d`` (upsample, FIR filter
and downsample in one kernel, instead of zero-insertion + depthwise conv here) and ``bias_act`` (bias,
activation, gain and clamp in one kernel, with a hand-written second derivative for R1 / path length); both
save memory traffic, not maths. Mixed precision: the reference runs the 4 highest resolutions in fp16 with
activations clamped to +-256 and keeps the mapping networks in fp32; here bf16 autocast (float32's exponent
range, so no clamp) covers every synthesis and discriminator layer, and the mapping networks run in float32
unless their ``autocast`` attribute is set (``--bf16-everywhere``).

Training configurations (:data:`CONFIGS`, from ``train.py``'s ``cfg_specs`` of stylegan2-ada-pytorch and
the ADA paper's Appendix; e.g. ``paper256``: 8 reference GPUs, minibatch 64, mbstd group 8, fmaps 0.5,
lr 0.0025, R1 gamma 1, G EMA 20 kimg, no EMA ramp-up, 8 mapping layers) are chosen by resolution in
:func:`config_for`: <= 32 px "cifar", 64/128 px "auto" (its formulas for one GPU), 256/512/1024 "paperN".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.models.layers import MinibatchStdDev, num_doublings

SQRT2 = math.sqrt(2.0)


# --- training configurations (stylegan2-ada-pytorch train.py cfg_specs) ------------------------------------

#: name -> (minibatch, mbstd group, fmaps, lr, R1 gamma, ema kimg, ema ramp-up (0 = none), mapping layers,
#: path-length weight, style-mixing probability, D architecture); "cifar" also switches path length and mixing
#: off and uses the plain ("orig") D, as train.py does for it.
CONFIGS: dict[str, dict[str, Any]] = {
    "cifar": dict(mb=64, mbstd=32, fmaps=1.0, lrate=0.0025, gamma=0.01, ema=500.0, ramp=0.05, map=2,
                  pl_weight=0.0, style_mixing=0.0, d_arch="orig"),
    "paper256": dict(mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1.0, ema=20.0, ramp=0.0, map=8,
                     pl_weight=2.0, style_mixing=0.9, d_arch="resnet"),
    "paper512": dict(mb=64, mbstd=8, fmaps=1.0, lrate=0.0025, gamma=0.5, ema=20.0, ramp=0.0, map=8,
                     pl_weight=2.0, style_mixing=0.9, d_arch="resnet"),
    "paper1024": dict(mb=32, mbstd=4, fmaps=1.0, lrate=0.002, gamma=2.0, ema=10.0, ramp=0.0, map=8,
                      pl_weight=2.0, style_mixing=0.9, d_arch="resnet"),
}

#: discriminator architectures: the reference's "resnet" (its default) and "orig" (its cifar preset)
D_ARCHITECTURES: tuple[str, ...] = ("resnet", "orig")


def _auto_config(resolution: int, gpus: int = 1) -> dict[str, Any]:
    """train.py's "auto" spec: minibatch, mbstd, fmaps, lr, gamma = 0.0002 r^2 / mb, ema = mb * 10 / 32."""
    mb = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return dict(mb=mb, mbstd=min(mb // gpus, 4), fmaps=1.0 if resolution >= 512 else 0.5,
                lrate=0.002 if resolution >= 1024 else 0.0025, gamma=0.0002 * resolution ** 2 / mb,
                ema=mb * 10 / 32, ramp=0.05, map=2, pl_weight=2.0, style_mixing=0.9, d_arch="resnet")


def config_for(resolution: int) -> tuple[str, dict[str, Any]]:
    """(name, settings) of the reference configuration used at ``resolution``."""
    if resolution <= 32:
        return "cifar", CONFIGS["cifar"]
    name = f"paper{resolution}"
    if name in CONFIGS:
        return name, CONFIGS[name]
    return "auto", _auto_config(resolution)


# --- resampling (plain-torch upfirdn2d) ----------------------------------------------------------------------

def _binomial_filter(device: torch.device | None = None) -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0,
              flip_filter: bool = False) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), convolve per channel with the FIR ``f``
    (a 2D filter, or 1D taps applied separably along x then y) times ``gain``, keep every ``down``-th pixel --
    the reference ``upfirdn2d`` (its ``_upfirdn2d_ref``) in plain torch. Like the reference, ``f`` is flipped
    (a true convolution) unless ``flip_filter``."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(pad))
    f = f if flip_filter else f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        weight = (f * gain).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
        return F.conv2d(x, weight, stride=down, groups=c)
    taps = (f * gain ** 0.5).to(x.dtype)
    x = F.conv2d(x, taps[None, None, None, :].repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, taps[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def _lrelu(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * (SQRT2 * gain)


# --- layers -------------------------------------------------------------------------------------------------

class FullyConnected(nn.Module):
    """Dense layer with an equalised learning rate and a learning-rate multiplier (reference
    ``FullyConnectedLayer``): weights N(0, 1) / lr_mul, used as weight * lr_mul / sqrt(in), bias * lr_mul."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False, lr_mul: float = 1.0,
                 bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain, self.bias_gain = lr_mul / math.sqrt(in_features), lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return _lrelu(x) if self.activation else x


class Conv2d(nn.Module):
    """Discriminator conv (reference ``Conv2dLayer``): equalised LR, optional blur + x2 downsampling, bias,
    LeakyReLU with gain sqrt(2) (times ``gain`` given at call, sqrt(1/2) in the residual blocks)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, activation: bool = True,
                 down: bool = False, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.kernel, self.activation, self.down = kernel, activation, down
        self.register_buffer("filter", _binomial_filter(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        if self.down and self.kernel == 1:    # blur and downsample, then the 1x1 conv
            x = F.conv2d(upfirdn2d(x, self.filter, down=2, pad=(1, 1, 1, 1)), w)
        elif self.down:                       # blur, then a strided conv
            x = F.conv2d(upfirdn2d(x, self.filter, pad=(2, 2, 2, 2)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.kernel // 2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype)[None, :, None, None]
        return _lrelu(x, gain) if self.activation else x * gain


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, fused: bool = True, filt: torch.Tensor | None = None) -> torch.Tensor:
    """Conv of ``x`` (N, I, H, W) with ``weight`` (O, I, k, k) modulated by ``styles`` (N, I) per sample and
    (``demodulate``) rescaled to unit expected output norm; ``up``: transposed conv x2 + binomial blur.

    ``fused``: one grouped convolution with per-sample weights (groups = N); else x * style, one shared conv,
    x * demodulation coefficient -- identical maths (the reference uses the latter during training)."""
    n, in_ch = styles.shape
    out_ch, _, k, _ = weight.shape
    w = weight[None] * styles[:, None, :, None, None]                                  # (N, O, I, k, k)
    dcoefs = (w.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt() if demodulate else None    # (N, O)
    pad = k // 2
    if fused:
        if dcoefs is not None:
            w = w * dcoefs[:, :, None, None, None]
        x = x.reshape(1, n * in_ch, *x.shape[2:])
        if up:
            w = w.transpose(1, 2).reshape(n * in_ch, out_ch, k, k)
            x = F.conv_transpose2d(x, w.to(x.dtype), stride=2, groups=n)
        else:
            x = F.conv2d(x, w.reshape(n * out_ch, in_ch, k, k).to(x.dtype), padding=pad, groups=n)
        x = x.reshape(n, out_ch, *x.shape[2:])
    else:
        x = x * styles.to(x.dtype)[:, :, None, None]
        if up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=pad)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype)[:, :, None, None]
    if up:  # (2H + 1) after the k=3 transposed conv: the blur (gain 4 for the zero-inserted pixels) trims it
        x = upfirdn2d(x, filt if filt is not None else _binomial_filter(x.device), pad=(1, 1, 1, 1), gain=4.0)
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ x2 upsampling), noise input with a learned strength, bias, LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("filter", _binomial_filter(), persistent=False)
        self.resolution, self.up = resolution, up

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused: bool = True) -> torch.Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, fused=fused, filt=self.filter)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        return _lrelu(x + self.bias.to(x.dtype)[None, :, None, None])


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation (style scaled by 1/sqrt(fan_in)) and a bias."""

    def __init__(self, in_channels: int, w_dim: int, out_channels: int = 3) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return x + self.bias.to(x.dtype)[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | upsampling conv0), conv1, toRGB."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGB(out_channels, w_dim)
        self.num_conv = 1 if in_channels == 0 else 2
        self.register_buffer("filter", _binomial_filter(), persistent=False)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str,
                fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.in_channels == 0:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
            x = self.conv1(x, ws[:, 0], noise_mode, fused)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, fused)
            x = self.conv1(x, ws[:, 1], noise_mode, fused)
        y = self.torgb(x, ws[:, self.num_conv], fused)
        if img is not None:
            img = upfirdn2d(img, self.filter, up=2, pad=(2, 1, 2, 1), gain=4.0)
            y = img + y
        return x, y


def stylegan2_channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at ``resolution``: min(channel_base // resolution, channel_max)."""
    return max(1, min(channel_base // resolution, channel_max))


class MappingNetwork(nn.Module):
    """z [+ class embedding] -> w (see the module docstring); ``num_ws`` copies of w for the synthesis."""

    def __init__(self, z_dim: int, num_classes: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 lr_mul: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        self.z_dim, self.num_classes, self.w_dim, self.num_ws = z_dim, num_classes, w_dim, num_ws
        embed = w_dim if num_classes > 0 else 0
        self.embed = FullyConnected(num_classes, embed) if num_classes > 0 else None
        dims = [z_dim + embed] + [w_dim] * num_layers
        self.layers = nn.ModuleList(FullyConnected(dims[i], dims[i + 1], activation=True, lr_mul=lr_mul)
                                    for i in range(num_layers))
        self.w_avg_beta = w_avg_beta
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    #: run under an enclosing bf16 autocast; False (the default): float32 always, as the reference keeps its
    #: mapping networks out of mixed precision (the 0.01 learning-rate multiplier makes small updates that bf16's
    #: 8-bit mantissa would round away)
    autocast: bool = False

    def forward(self, z: torch.Tensor | None, labels: torch.Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = True) -> torch.Tensor:
        if self.autocast:
            return self._forward(z, labels, truncation_psi, truncation_cutoff, update_w_avg)
        with torch.autocast(next(self.parameters()).device.type, enabled=False):
            return self._forward(z, labels, truncation_psi, truncation_cutoff, update_w_avg)

    def _forward(self, z: torch.Tensor | None, labels: torch.Tensor | None, truncation_psi: float,
                 truncation_cutoff: int | None, update_w_avg: bool) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            parts.append(_normalize_2nd_moment(z.float()))
        if self.embed is not None:
            if labels is None:
                raise ValueError("a class-conditional StyleGAN2 needs labels")
            onehot = F.one_hot(labels.long(), self.num_classes).float()
            parts.append(_normalize_2nd_moment(self.embed(onehot)))
        x = torch.cat(parts, dim=1)
        for layer in self.layers:
            x = layer(x)
        if self.w_avg_beta is not None and self.num_ws is not None and self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            w_avg = self.w_avg.to(x.dtype)
            x = torch.cat([w_avg + truncation_psi * (x[:, :cutoff] - w_avg), x[:, cutoff:]], dim=1)
        return x


def _normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class StyleGAN2Generator(nn.Module):
    """Mapping + skip synthesis network; ``forward(z, labels, truncation_psi=1.0)`` -> images in ~[-1, 1].

    ``fused`` (default: when not training): modulated convs as grouped convolutions (see
    :func:`modulated_conv2d`). ``noise_mode``: "random" (training and default sampling, from torch's RNG),
    "const" (the stored noise) or "none".
    """

    def __init__(self, z_dim: int = 512, w_dim: int = 512, resolution: int = 256, num_classes: int = 0,
                 channel_base: int = 16384, channel_max: int = 512, map_layers: int = 8,
                 w_avg_beta: float = 0.995) -> None:
        super().__init__()
        num_doublings(resolution)  # validates the resolution
        self.z_dim, self.w_dim, self.resolution, self.num_classes = z_dim, w_dim, resolution, num_classes
        self.block_resolutions = [2 ** i for i in range(2, resolution.bit_length())]
        blocks = {}
        for res in self.block_resolutions:
            in_ch = stylegan2_channels(res // 2, channel_base, channel_max) if res > 4 else 0
            blocks[f"b{res}"] = SynthesisBlock(in_ch, stylegan2_channels(res, channel_base, channel_max), w_dim, res)
        self.synthesis = nn.ModuleDict(blocks)
        self.num_ws = sum(b.num_conv for b in blocks.values()) + 1
        self.mapping = MappingNetwork(z_dim, num_classes, w_dim, self.num_ws, map_layers, w_avg_beta=w_avg_beta)

    def synthesize(self, ws: torch.Tensor, noise_mode: str = "random", fused: bool | None = None) -> torch.Tensor:
        """Images from per-layer styles ``ws`` (N, num_ws, w_dim)."""
        fused = (not self.training) if fused is None else fused
        x = img = None
        w_idx = 0
        for block in self.synthesis.values():
            x, img = block(x, img, ws[:, w_idx:w_idx + block.num_conv + 1], noise_mode, fused)
            w_idx += block.num_conv
        return img

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "random") -> torch.Tensor:
        ws = self.mapping(z, labels, truncation_psi, truncation_cutoff)
        return self.synthesize(ws, noise_mode)


class DiscriminatorBlock(nn.Module):
    """[fromRGB,] conv0 3x3, conv1 3x3 down; "resnet" adds a 1x1 down skip, each path with gain sqrt(1/2)
    ("orig": no skip, gain 1)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, architecture: str = "resnet") -> None:
        super().__init__()
        if architecture not in D_ARCHITECTURES:
            raise ValueError(f"unknown discriminator architecture {architecture!r} ({' | '.join(D_ARCHITECTURES)})")
        self.fromrgb = Conv2d(3, tmp_channels, 1) if in_channels == 0 else None
        self.conv0 = Conv2d(tmp_channels, tmp_channels, 3)
        self.conv1 = Conv2d(tmp_channels, out_channels, 3, down=True)
        self.skip = (Conv2d(tmp_channels, out_channels, 1, activation=False, down=True, bias=False)
                     if architecture == "resnet" else None)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(img)
        if self.skip is None:
            return self.conv1(self.conv0(x))
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class StyleGAN2Discriminator(nn.Module):
    """Residual ("resnet") or plain ("orig") discriminator with minibatch-stddev and (class-conditional) a
    projection on a label map."""

    def __init__(self, resolution: int = 256, num_classes: int = 0, channel_base: int = 16384,
                 channel_max: int = 512, mbstd_group: int = 4, cmap_dim: int | None = None,
                 cmap_layers: int = 8, architecture: str = "resnet") -> None:
        super().__init__()
        num_doublings(resolution)
        self.resolution, self.num_classes = resolution, num_classes
        resolutions = [2 ** i for i in range(2, resolution.bit_length())]
        ch = {r: stylegan2_channels(r, channel_base, channel_max) for r in resolutions}
        blocks = {}
        for res in [2 ** i for i in range(resolution.bit_length() - 1, 2, -1)]:
            blocks[f"b{res}"] = DiscriminatorBlock(ch[res] if res < resolution else 0, ch[res], ch[res // 2],
                                                  architecture)
        self.blocks = nn.ModuleDict(blocks)
        c4 = ch[4]
        self.cmap_dim = (cmap_dim or c4) if num_classes > 0 else 0
        # the label mapping of the reference: MappingNetwork(z_dim=0, c_dim, w_dim=cmap_dim), default 8 layers
        self.mapping = (MappingNetwork(0, num_classes, self.cmap_dim, None, cmap_layers, w_avg_beta=None)
                        if num_classes > 0 else None)
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv = Conv2d(c4 + 1, c4, 3)
        self.fc = FullyConnected(c4 * 16, c4, activation=True)
        self.out = FullyConnected(c4, self.cmap_dim or 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = None
        for block in self.blocks.values():
            x = block(x, images)
        x = self.conv(self.mbstd(x))
        x = self.out(self.fc(x.flatten(1)))
        if self.mapping is not None:
            if labels is None:
                raise ValueError("a class-conditional discriminator needs labels")
            cmap = self.mapping(None, labels).to(x.dtype)
            x = (x * cmap).sum(dim=1, keepdim=True) / np.sqrt(self.cmap_dim)
        return x.flatten().float()


def build_stylegan2(resolution: int, z_dim: int, num_classes: int, width: int = 64, fmaps: float | None = None,
                    map_layers: int | None = None, mbstd_group: int | None = None, d_architecture: str | None = None,
                    **_: object):
    """(G, D) at ``resolution`` with the reference configuration's fmaps/mapping depth/mbstd group/D
    architecture (see :func:`config_for`) unless given, all widths scaled by ``width / 64`` (64 = the paper's
    size)."""
    _, spec = config_for(resolution)
    d_architecture = spec["d_arch"] if d_architecture is None else d_architecture
    fmaps = spec["fmaps"] if fmaps is None else fmaps
    map_layers = spec["map"] if map_layers is None else map_layers
    mbstd_group = spec["mbstd"] if mbstd_group is None else mbstd_group
    scale = width / 64
    channel_base, channel_max = int(fmaps * 32768 * scale), max(1, int(512 * scale))
    w_dim = max(1, int(512 * scale))
    G = StyleGAN2Generator(z_dim, w_dim, resolution, num_classes, channel_base, channel_max, map_layers)
    D = StyleGAN2Discriminator(resolution, num_classes, channel_base, channel_max, mbstd_group,
                               architecture=d_architecture)
    return G, D


def _spec(cfg: Any) -> dict[str, Any]:
    return config_for(cfg.size)[1]


#: the registry defaults (TrainConfig fields): the reference configuration at the run's resolution
#: (:func:`config_for`); Adam betas (0, 0.99), lazy R1 every 16 and path length every 4 steps (train.py);
#: ``ema_beta`` is the steady-state EMA decay 0.5 ** (batch / (ema_kimg * 1000)) (0 switches the EMA off);
#: the step ramps it up (``ema_rampup``). Length: the configs' 25000 kimg (cifar 100000).
STYLEGAN2_DEFAULTS: dict[str, Any] = {
    "beta1": 0.0, "beta2": 0.99,
    "r1_interval": 16, "pl_interval": 4,
    "augment": "ada",  # the reference's --aug default (p adjusted to keep r_t at 0.6, pipe bgc)
    "batch_size": lambda cfg: _spec(cfg)["mb"],
    "lr_g": lambda cfg: _spec(cfg)["lrate"],
    "lr_d": lambda cfg: _spec(cfg)["lrate"],
    "r1_gamma": lambda cfg: _spec(cfg)["gamma"],
    "pl_weight": lambda cfg: _spec(cfg)["pl_weight"],
    "style_mixing": lambda cfg: _spec(cfg)["style_mixing"],
    "map_layers": lambda cfg: _spec(cfg)["map"],
    "mbstd_group": lambda cfg: _spec(cfg)["mbstd"],
    "fmaps": lambda cfg: _spec(cfg)["fmaps"],
    "d_architecture": lambda cfg: _spec(cfg)["d_arch"],
    "ema_kimg": lambda cfg: _spec(cfg)["ema"],
    "ema_rampup": lambda cfg: _spec(cfg)["ramp"],
    "ema_beta": lambda cfg: 0.5 ** (cfg.batch_size / (cfg.ema_kimg * 1000)),
    "kimg": lambda cfg: 100000.0 if config_for(cfg.size)[0] == "cifar" else 25000.0,
}


def stylegan2_latent_dim(width: int) -> int:
    """z and w dimensions at ``width``: 512 at the full width 64."""
    return max(1, int(512 * width / 64))


def stylegan2_options(cfg: Any, data: Any) -> dict[str, Any]:
    """Builder options from a resolved config (stored in checkpoints): z = w = 8 * width, fmaps, depth, mbstd,
    D architecture."""
    z_dim = stylegan2_latent_dim(cfg.width)
    if cfg.z_dim not in (128, z_dim):  # 128: TrainConfig's default, i.e. not given
        raise DermsynthError(f"--z-dim does not apply to --model stylegan2: z and w have 8 x --width dimensions "
                             f"({z_dim} at --width {cfg.width}; 512 at 64)")
    return {"z_dim": z_dim, "fmaps": cfg.fmaps, "map_layers": cfg.map_layers, "mbstd_group": cfg.mbstd_group,
            "d_architecture": cfg.d_architecture}
