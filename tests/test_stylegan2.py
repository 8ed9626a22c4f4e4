"""StyleGAN2-ADA: architecture against the reference's parameter counts, the step's regularisers, EMA and
lazy-regularisation schedules, bit-exact resume (weights, ADA p, path-length mean), CLI end to end, sampling."""

import json
import math

import pytest
import torch
from click.testing import CliRunner

from _runs import assert_same_training_state, resumed_and_uninterrupted
from dermsynth.cli import main as cli
from dermsynth.errors import DermsynthError
from dermsynth.models import build_networks
from dermsynth.models.stylegan2 import (FullyConnected, StyleGAN2Discriminator, StyleGAN2Generator, SynthesisLayer,
                                        ToRGB, Conv2d, build_stylegan2, config_for, modulated_conv2d, upfirdn2d,
                                        _binomial_filter)
from dermsynth.sample import load_generator, sample_images
from dermsynth.train import TrainConfig, train


def _count(module):
    return sum(p.numel() for p in module.parameters())


# --- parameter counts -----------------------------------------------------------------------------------------
#
# Reference: NVlabs/stylegan2-ada-pytorch training/networks.py (Generator with the "skip" synthesis network,
# Discriminator "resnet"), whose per-layer parameter counts are printed by its training_loop's module summary.
# Published summaries (full width: w 512) list, e.g., mapping.fc 262656, synthesis.b8.conv1 2622465,
# synthesis.b8.torgb 264195, synthesis.b4 const 8192 (issues NVlabs/stylegan2-ada-pytorch#182 and
# open-mmlab/mmgeneration#394: b128.conv0 1442561 for 512 -> 256 channels, b128.conv1 721409, b128.torgb 132099)
# and D b1024.fromrgb 128, b1024.conv0 9248, b128.conv1 1180160, b128.skip 131072, b64.conv0 2359808
# (NVlabs/stylegan2-ada-pytorch#181). The totals below are written independently from the reference formulas.

def test_layers_match_the_published_per_layer_counts():
    assert _count(FullyConnected(512, 512)) == 262656
    assert _count(SynthesisLayer(512, 512, 512, 8)) == 2622465
    assert _count(ToRGB(512, 512)) == 264195
    assert _count(SynthesisLayer(512, 256, 512, 128, up=True)) == 1442561
    assert _count(SynthesisLayer(256, 256, 512, 128)) == 721409
    assert _count(ToRGB(256, 512)) == 132099
    assert _count(Conv2d(3, 32, 1)) == 128
    assert _count(Conv2d(32, 32, 3)) == 9248
    assert _count(Conv2d(256, 512, 3, down=True)) == 1180160
    assert _count(Conv2d(256, 512, 1, activation=False, down=True, bias=False)) == 131072
    assert _count(Conv2d(512, 512, 3)) == 2359808


def _reference_counts(resolution, fmaps, map_layers, num_classes=0, w=512, d_architecture="resnet"):
    """(G, D) parameters of stylegan2-ada-pytorch's networks at this config, from its layer definitions
    (DiscriminatorBlock: the 1x1 skip only when architecture == 'resnet')."""
    base = int(fmaps * 32768)
    ch = {r: min(base // r, 512) for r in [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]}
    fc = lambda i, o: i * o + o                                           # noqa: E731  FullyConnectedLayer
    layer = lambda i, o: fc(w, i) + o * i * 9 + 1 + o                     # noqa: E731  SynthesisLayer
    torgb = lambda i: fc(w, i) + 3 * i + 3                                # noqa: E731  ToRGBLayer
    embed = w if num_classes else 0
    g = (fc(num_classes, w) if num_classes else 0) + fc(512 + embed, w) + (map_layers - 1) * fc(w, w)
    g += ch[4] * 16 + layer(ch[4], ch[4]) + torgb(ch[4])
    for r in list(ch)[1:]:
        g += layer(ch[r // 2], ch[r]) + layer(ch[r], ch[r]) + torgb(ch[r])
    d = 3 * ch[resolution] + ch[resolution]                               # fromrgb
    for r in list(ch)[:0:-1]:
        tmp, out = ch[r], ch[r // 2]
        d += tmp * tmp * 9 + tmp + out * tmp * 9 + out                    # conv0, conv1
        d += out * tmp if d_architecture == "resnet" else 0               # skip (no bias)
    c4 = ch[4]
    cmap = c4 if num_classes else 0
    d += (c4 + 1) * c4 * 9 + c4 + fc(c4 * 16, c4) + fc(c4, cmap or 1)    # epilogue: conv, fc, out
    if num_classes:
        d += fc(num_classes, cmap) + 8 * fc(cmap, cmap)                    # D's label mapping (8 layers)
    return g, d


@pytest.mark.parametrize("resolution,config,num_classes", [(32, "cifar", 0), (64, "auto", 0), (256, "paper256", 0),
                                                           (64, "auto", 7)])
def test_parameter_counts_match_the_reference_at_full_width(resolution, config, num_classes):
    name, spec = config_for(resolution)
    assert name == config
    G, D = build_stylegan2(resolution, 512, num_classes, width=64)
    assert (_count(G), _count(D)) == _reference_counts(resolution, spec["fmaps"], spec["map"], num_classes,
                                                       d_architecture=spec["d_arch"])
    assert G.z_dim == G.w_dim == 512


def test_cifar_preset_uses_the_plain_discriminator():
    """train.py's cfg == 'cifar' sets D architecture 'orig': no residual skip, conv1 with gain 1."""
    assert config_for(32)[1]["d_arch"] == "orig" and config_for(64)[1]["d_arch"] == "resnet"
    assert TrainConfig(model="stylegan2", size=32).resolve().d_architecture == "orig"
    _, D = build_stylegan2(32, 512, 0, width=64)
    assert all(block.skip is None for block in D.blocks.values())
    _, D_res = build_stylegan2(32, 512, 0, width=64, d_architecture="resnet")
    assert _count(D_res) == _reference_counts(32, 1.0, 2)[1] > _count(D)
    torch.manual_seed(0)
    _, D = build_stylegan2(16, 32, 0, width=4)
    block = D.blocks["b8"]
    x = torch.randn(2, block.conv0.weight.shape[1], 8, 8)
    assert torch.equal(block(x, None), block.conv1(block.conv0(x)))           # plain: gain 1, no skip
    with pytest.raises(DermsynthError, match="--d-architecture must be one of resnet, orig"):
        TrainConfig(model="stylegan2", size=32, d_architecture="skip").resolve()


def test_paper256_config_is_the_papers():
    name, spec = config_for(256)
    assert name == "paper256"
    assert (spec["mb"], spec["mbstd"], spec["fmaps"], spec["lrate"], spec["gamma"], spec["ema"], spec["ramp"],
            spec["map"]) == (64, 8, 0.5, 0.0025, 1.0, 20.0, 0.0, 8)
    # "auto" for 64 px on one GPU: mb 32, gamma = 0.0002 * 64^2 / 32
    assert config_for(64)[1]["gamma"] == pytest.approx(0.0256) and config_for(64)[1]["mb"] == 32
    cfg = TrainConfig(model="stylegan2", size=256).resolve()
    assert (cfg.r1_gamma, cfg.batch_size, cfg.lr_g, cfg.beta1, cfg.beta2, cfg.map_layers, cfg.mbstd_group,
            cfg.pl_weight, cfg.style_mixing, cfg.r1_interval, cfg.pl_interval) == \
        (1.0, 64, 0.0025, 0.0, 0.99, 8, 8, 2.0, 0.9, 16, 4)
    assert cfg.ema_beta == pytest.approx(0.5 ** (64 / 20000))


@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_shapes_at_small_width(resolution):
    G, D = build_stylegan2(resolution, 32, 3, width=4)
    z, y = torch.randn(4, G.z_dim), torch.tensor([0, 1, 2, 0])
    images = G(z, y)
    assert images.shape == (4, 3, resolution, resolution)
    assert D(images, y).shape == (4,)
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2


# --- the layers' maths -----------------------------------------------------------------------------------------

def test_fused_and_unfused_modulated_convs_agree():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 8, 8, 8), torch.randn(5, 8, 3, 3), torch.randn(3, 8)
    for up in (False, True):
        for demod in (False, True):
            a = modulated_conv2d(x, weight, styles, demodulate=demod, up=up, fused=True)
            b = modulated_conv2d(x, weight, styles, demodulate=demod, up=up, fused=False)
            assert a.shape == (3, 5, 16 if up else 8, 16 if up else 8)
            assert torch.allclose(a, b, atol=1e-4)


def test_demodulation_gives_unit_output_scale():
    """Demodulated weights have unit L2 norm per output channel: N(0, 1) inputs give unit-variance outputs."""
    torch.manual_seed(0)
    x = torch.randn(16, 64, 16, 16)
    y = modulated_conv2d(x, torch.randn(32, 64, 3, 3), torch.randn(16, 64) * 5 + 3)
    assert abs(y[:, :, 1:-1, 1:-1].std() - 1) < 0.05


def test_upfirdn2d_keeps_constants():
    f = _binomial_filter()
    x = torch.full((1, 2, 8, 8), 3.0)
    up = upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4.0)
    assert up.shape == (1, 2, 16, 16) and torch.allclose(up[..., 2:-2, 2:-2], x[..., :1, :1].expand(1, 2, 12, 12))
    down = upfirdn2d(x, f, down=2, pad=(1, 1, 1, 1))
    assert down.shape == (1, 2, 4, 4) and torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(3.0))


def test_truncation_in_w_space_and_w_avg_tracking():
    G = StyleGAN2Generator(z_dim=16, w_dim=16, resolution=16, channel_base=256, channel_max=16, map_layers=2)
    assert torch.equal(G.mapping.w_avg, torch.zeros(16))
    G.train()
    z = torch.randn(64, 16)
    ws = G.mapping(z, None)
    assert torch.allclose(G.mapping.w_avg, (1 - 0.995) * ws[:, 0].mean(0), atol=1e-6)
    G.eval()
    a = G(torch.randn(3, 16), truncation_psi=0.0, noise_mode="const")
    assert torch.allclose(a[0], a[1], atol=1e-5) and torch.allclose(a[0], a[2], atol=1e-5)  # all at w_avg
    z = torch.randn(3, 16)
    assert torch.equal(G(z, truncation_psi=1.0, noise_mode="const"), G(z, noise_mode="const"))
    w = G.mapping(z, None)
    w_half = G.mapping(z, None, truncation_psi=0.5)
    assert torch.allclose(w_half, G.mapping.w_avg + 0.5 * (w - G.mapping.w_avg), atol=1e-6)


def test_conditional_discriminator_projects_on_the_label_map():
    D = StyleGAN2Discriminator(resolution=16, num_classes=3, channel_base=256, channel_max=16, mbstd_group=2)
    x = torch.randn(4, 3, 16, 16)
    a, b = D(x, torch.tensor([0, 0, 0, 0])), D(x, torch.tensor([1, 1, 1, 1]))
    assert a.shape == (4,) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="labels"):
        D(x)


# --- training -------------------------------------------------------------------------------------------------

TINY = dict(model="stylegan2", size=16, width=4, batch_size=8, log_every=5, sample_every=10, checkpoint_every=10,
            conditional=True, pl_weight=2.0, style_mixing=0.9, augment="ada", ada_kimg=0.05)


def test_step_schedules_lazy_regularisation_and_ema(tmp_path, noise_dataset):
    from dermsynth.train.steps_stylegan2 import StyleGAN2Step, lazy_factor
    cfg = TrainConfig(**{**TINY, "out": str(tmp_path / "r")}).resolve()
    networks = build_networks("stylegan2", resolution=16, z_dim=32, num_classes=3, width=4)
    step = StyleGAN2Step.from_config(cfg, networks, bf16=False, noise=torch.Generator().manual_seed(0))
    opt_g, opt_d = step.optimizers["generator"], step.optimizers["discriminator"]
    assert opt_g.param_groups[0]["lr"] == pytest.approx(cfg.lr_g * 4 / 5)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(cfg.lr_d * 16 / 17)
    assert opt_d.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (16 / 17)) and lazy_factor(4) == 0.8
    step.set_lr(opt_d, 1e-3)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(1e-3 * 16 / 17)
    # EMA: half-life ema_kimg (500 at <= 32 px) ramped up by 0.05 * images shown
    step.begin(1000)
    assert step.ema_decay(0, 1000) == pytest.approx(0.5 ** (8 / 50))
    assert step.ema_decay(0, 10 ** 8) == pytest.approx(0.5 ** (8 / 500_000))
    assert step.ema_decay(0, 0) == 0.0


def test_training_logs_penalties_and_p(tmp_path, noise_dataset):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=17, **TINY), dataset=noise_dataset, progress=False)
    rows = [r.split(",") for r in (out / "losses.csv").read_text().strip().splitlines()]
    header = rows[0]
    assert header[1:9] == ["d_loss", "g_loss", "d_real", "d_fake", "r1_penalty", "pl_penalty", "pl_mean", "aug_p"]
    last = dict(zip(header, map(float, rows[-1])))
    assert last["r1_penalty"] > 0 and last["pl_mean"] > 0
    state = torch.load(out / "latest.pt", weights_only=True)
    assert float(state["step_state"]["pl_mean"]) > 0
    assert "generator" in state["ema"] and "mapping.w_avg" in state["networks"]["generator"]
    assert state["model_options"]["z_dim"] == 32  # 8 x width


def test_resume_reproduces_uninterrupted_run_bit_exactly(tmp_path, noise_dataset):
    a, b = resumed_and_uninterrupted(tmp_path, 20, 9, dataset=noise_dataset, **TINY)
    assert_same_training_state(a, b)
    sa, sb = a["step_state"], b["step_state"]
    assert torch.equal(sa["pl_mean"], sb["pl_mean"]) and float(sa["pl_mean"]) > 0
    assert torch.equal(sa["augment"]["p"], sb["augment"]["p"]) and float(sa["augment"]["p"]) > 0
    assert (tmp_path / "full" / "losses.csv").read_text().splitlines()[-1].split(",")[:-1] == \
        (tmp_path / "split" / "losses.csv").read_text().splitlines()[-1].split(",")[:-1]


def test_z_dim_is_fixed_by_width(tmp_path, noise_dataset):
    with pytest.raises(DermsynthError, match="--z-dim does not apply"):
        train(TrainConfig(out=str(tmp_path / "r"), steps=1, z_dim=64, **TINY), dataset=noise_dataset, progress=False)


def test_augment_rejected_for_lapgan(tmp_path, noise_dataset):
    with pytest.raises(DermsynthError, match="--augment does not apply to --model lapgan"):
        train(TrainConfig(model="lapgan", out=str(tmp_path / "r"), size=16, width=8, batch_size=8, steps=1,
                          augment="ada"), dataset=noise_dataset, progress=False)


def test_cli_train_then_sample(tmp_path):
    out = tmp_path / "sg2"
    result = CliRunner().invoke(cli, ["train", "--model", "stylegan2", "--size", "32", "--width", "4", "--steps", "4",
                                      "--batch-size", "8", "--phantom-n", "64", "--augment", "ada", "--quiet",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "stylegan2" and config["r1_gamma"] == 0.01 and config["augment"] == "ada"
    model = load_generator(out / "latest.pt")
    images, labels = sample_images(model, 6, seed=1)
    assert images.shape == (6, 32, 32, 3) and images.dtype.name == "uint8" and labels is None
    again, _ = sample_images(model, 6, seed=1)
    assert (images == again).all()                              # reproducible by seed (noise inputs included)
    truncated, _ = sample_images(model, 6, seed=1, psi=0.5)  # StyleGAN2 truncates in w
    assert truncated.shape == images.shape and not (truncated == images).all()


def test_networks_and_regularisers_run_under_bf16_autocast():
    """What the CUDA step does under bf16 autocast, here with CPU autocast: forward, R1 and path-length grads."""
    G, D = build_stylegan2(16, 32, 0, width=4)
    z = torch.randn(4, G.z_dim)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ws = G.mapping(z, None)
        images = G.synthesize(ws)
        (grad_w,) = torch.autograd.grad((images.float() * torch.randn_like(images.float())).sum(), ws,
                                        create_graph=True)
        real = torch.randn(4, 3, 16, 16, requires_grad=True)
        (grad_x,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    assert images.dtype == torch.bfloat16 and torch.isfinite(images.float()).all()
    assert torch.isfinite(grad_w.float()).all() and torch.isfinite(grad_x).all()
    (grad_w.float().square().sum() + grad_x.square().sum()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in (*G.parameters(), *D.parameters()))


def _precision_step(seed, bf16, everywhere):
    from dermsynth.train.steps_stylegan2 import StyleGAN2Step
    cfg = TrainConfig(model="stylegan2", size=16, width=4, batch_size=8, augment="none", pl_weight=2.0,
                      style_mixing=0.0, bf16_everywhere=everywhere).resolve()
    torch.manual_seed(seed)
    networks = build_networks("stylegan2", resolution=16, z_dim=32, num_classes=0, width=4)
    return StyleGAN2Step.from_config(cfg, networks, bf16=bf16, noise=torch.Generator().manual_seed(0))


def _penalties(step, seed):
    real = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    r1 = step.r1_penalty(real, None)[0].item()
    torch.manual_seed(5)
    step.noise.manual_seed(1)
    return r1, step.path_length_penalty(torch.randn(4, 32), None)[0].item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_penalties_in_float32_under_bf16_and_bf16_penalties_agree(seed):
    """With bf16 autocast (CPU autocast here, as on CUDA) the R1 and path-length penalties run in float32 by
    default, bit-identical to a float32 step; --bf16-everywhere computes them in bf16, which must stay within
    5 % of float32 (measured on tiny random networks, 8 seeds: at most 2.6 % for R1, 1.9 % for path length)."""
    fp32 = _penalties(_precision_step(seed, bf16=False, everywhere=False), seed)
    assert _penalties(_precision_step(seed, bf16=True, everywhere=False), seed) == fp32
    bf16 = _penalties(_precision_step(seed, bf16=True, everywhere=True), seed)
    assert bf16 != fp32                                                     # bf16 did engage
    assert bf16 == pytest.approx(fp32, rel=0.05)


def test_mapping_network_stays_float32_under_autocast():
    G, _ = build_stylegan2(16, 32, 0, width=4)
    z = torch.randn(2, G.z_dim)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert G.mapping(z, None).dtype == torch.float32
        G.mapping.autocast = True                                           # --bf16-everywhere
        assert G.mapping(z, None).dtype == torch.bfloat16


def test_a_run_from_before_the_plain_d_and_fp32_penalties_resumes_as_it_trained():
    from dermsynth.train import trainer as trainer_module
    config = TrainConfig(model="stylegan2", size=32).resolve().to_dict()
    assert (config["d_architecture"], config["bf16_everywhere"]) == ("orig", False)
    old = {k: v for k, v in config.items() if k not in ("d_architecture", "bf16_everywhere")}
    saved, _ = trainer_module._resume_config(TrainConfig(model="stylegan2", size=32), {"config": old}, set())
    assert (saved.d_architecture, saved.bf16_everywhere) == ("resnet", True)
