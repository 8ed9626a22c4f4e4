"""CycleGAN (Zhu et al. 2017; Furger et al. 2020, 4.3): networks, LSGAN and the image pool, cycle loss falls, exact
resume, `edit` in both directions."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from _edit_data import SIZE, phantom_patches
from _runs import assert_same_training_state, resumed_and_uninterrupted
from dermsynth.edit import edit_image
from dermsynth.errors import DermsynthError
from dermsynth.models.pix2pixhd import ResnetBlock
from dermsynth.models.editing import CycleGANGenerator, PatchDiscriminator, ResnetGenerator
from dermsynth.sample import load_generator
from dermsynth.train import TrainConfig, train
from dermsynth.train.losses import lsgan_d, lsgan_g
from dermsynth.train.steps_edit import ImagePool

TINY = dict(model="cyclegan", size=SIZE, width=4, batch_size=4, log_every=2, sample_every=6, checkpoint_every=6)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return phantom_patches(tmp_path_factory.mktemp("patches"), n=40)


def test_patchgan_sees_70x70_pixels_and_generator_blocks_follow_the_paper():
    d = PatchDiscriminator(width=2).double()
    for i, layer in enumerate(d.net):  # instance norm couples every pixel; the conv geometry is what counts
        if isinstance(layer, torch.nn.InstanceNorm2d):
            d.net[i] = torch.nn.Identity()
    x = torch.zeros(1, 3, 128, 128, dtype=torch.double, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3))).flatten()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2))).flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70  # the receptive field
    blocks = lambda g: sum(isinstance(m, ResnetBlock) for m in g.g_ab.modules())  # noqa: E731
    assert blocks(CycleGANGenerator(128, 4)) == 6 and blocks(CycleGANGenerator(256, 4)) == 9
    g = CycleGANGenerator(32, 4)
    y = g(torch.zeros(2, 3, 32, 32), "ba")
    assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1  # tanh output
    with pytest.raises(ValueError, match="ab, ba"):
        g(torch.zeros(1, 3, 32, 32), "up")


def test_instance_norm_hides_a_flat_patch_colour_unless_the_generator_is_residual():
    texture = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.1
    a, b = texture + 0.2, texture - 0.5  # one skin texture in two colours
    plain, residual = ResnetGenerator(4, 6), ResnetGenerator(4, 6, residual=True)
    with torch.no_grad():
        # the first instance norm removes the colour offset: both come out the same
        assert torch.allclose(plain(a), plain(b), atol=1e-4)
        assert torch.allclose(residual(a) - a, residual(b) - b, atol=1e-4)  # the residual keeps it
        assert (residual(a) - residual(b)).mean().item() == pytest.approx(0.7, abs=1e-3)


def test_lsgan_losses_match_hand_computed_values():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.5, -1.0])
    assert lsgan_d(real, fake).item() == pytest.approx(0.5 * ((0 + 1) / 2 + (0.25 + 1) / 2))
    assert lsgan_g(fake).item() == pytest.approx((0.25 + 4) / 2)


def test_image_pool_returns_history_as_the_reference_does():
    pool = ImagePool(2)
    a, b, c, d = (torch.full((3, 1, 1), float(v)) for v in range(4))
    half = torch.tensor([0.9, 0.9])
    # filling: the new images come back and are stored
    assert torch.equal(pool.query(torch.stack([a, b]), half, torch.zeros(2)), torch.stack([a, b]))
    # full: coin > 0.5 swaps a stored image out (index pick * size), coin <= 0.5 passes the new one through
    out = pool.query(torch.stack([c, d]), torch.tensor([0.9, 0.1]), torch.tensor([0.6, 0.0]))
    assert torch.equal(out, torch.stack([b, d]))
    assert torch.equal(pool.images, torch.stack([a, c]))
    restored = ImagePool(2)
    restored.load_state_dict(pool.state_dict(), "cpu")
    assert torch.equal(restored.images, pool.images)
    assert torch.equal(ImagePool(0).query(torch.stack([a]), half, half), torch.stack([a]))  # pool off


def test_cycle_loss_falls(tmp_path, patches):
    healthy, lesion = patches
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=60, lr_g=5e-4, lr_d=5e-4, **{**TINY, "width": 8, "log_every": 10,
                                                                       "sample_every": 60, "checkpoint_every": 60}),
          dataset=healthy, dataset_b=lesion, progress=False)
    rows = list(csv.DictReader(open(out / "losses.csv")))
    cycle = [float(r["cycle_loss"]) for r in rows]
    # 0.75 -> 0.45 over 60 steps with the libraries of 2026-12-06 (a third of the way is what is asserted;
    # the learning rate decays to 0 over the second half, as CycleGAN's schedule does)
    assert cycle[-1] < 0.65 * cycle[0] and max(cycle[-2:]) < min(cycle[:2]), cycle
    assert float(rows[-1]["identity_loss"]) > 0  # on by default (0.5 lambda)
    assert (out / "samples" / "step-0000060.png").is_file()


def test_resume_reproduces_uninterrupted_run_bit_exactly(tmp_path, patches):
    healthy, lesion = patches
    cfg = dict(TINY, pool_size=6)  # small enough to fill and start swapping within the run
    x, y = resumed_and_uninterrupted(tmp_path, 8, 3, dataset=healthy, dataset_b=lesion, **cfg)
    assert_same_training_state(x, y)
    for k in ("a", "b"):
        pool_x, pool_y = x["step_state"]["pools"][k]["images"], y["step_state"]["pools"][k]["images"]
        assert len(pool_x) == 6 and torch.equal(pool_x, pool_y)
    assert x["sampled_inputs"] == ["images"]


def test_bad_cyclegan_options(tmp_path, patches):
    healthy, lesion = patches
    with pytest.raises(DermsynthError, match="--relevancy-weight does not apply"):
        train(TrainConfig(out=str(tmp_path / "a"), steps=1, relevancy_weight=1.0, **TINY), dataset=healthy,
              dataset_b=lesion, progress=False)
    with pytest.raises(DermsynthError, match="--pool-size must be >= 0"):
        train(TrainConfig(out=str(tmp_path / "b"), steps=1, pool_size=-1, **TINY), dataset=healthy,
              dataset_b=lesion, progress=False)
    with pytest.raises(DermsynthError, match="--data-b"):
        train(TrainConfig(out=str(tmp_path / "c"), steps=1, **TINY), dataset=healthy, progress=False)


def test_edit_translates_either_direction_and_reconstructs(tmp_path, patches):
    healthy, lesion = patches
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=2, **TINY), dataset=healthy, dataset_b=lesion, progress=False)
    Image.fromarray(np.asarray(lesion.images[0])).save(tmp_path / "in.png")
    g = load_generator(out / "latest.pt").generator
    x = torch.from_numpy(np.asarray(lesion.images[0]).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    for direction in ("ab", "ba"):
        report = edit_image(out / "latest.pt", tmp_path / "in.png", None, tmp_path / f"{direction}.png",
                            direction=direction)
        with torch.no_grad():
            y = g(x, direction)
        to8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).numpy().astype(np.uint8)  # noqa
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{direction}.png")), to8(y))
        grid = np.asarray(Image.open(tmp_path / f"{direction}_grid.png"))
        assert grid.shape[1] > grid.shape[0] * 2  # one row: input | translation | reconstruction
        assert report.images == 1 and np.isnan(report.outside)
    with pytest.raises(DermsynthError, match="one of ab, ba"):
        edit_image(out / "latest.pt", tmp_path / "in.png", None, tmp_path / "x.png", direction="add")


def test_learning_rates_are_constant_for_half_the_run_then_fall_linearly(tmp_path, patches):
    from dermsynth.train.trainer import lr_factor

    assert [lr_factor(t, 8, 0.5) for t in range(8)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert lr_factor(7, 8, 1.0) == 1 and lr_factor(7, 8, 0.0) == 1 / 8
    healthy, lesion = patches
    for name, start, factor in (("decay", None, 0.25), ("constant", 1.0, 1.0)):
        res = train(TrainConfig(out=str(tmp_path / name), steps=8, lr_decay_start=start, **TINY), dataset=healthy,
                    dataset_b=lesion, progress=False)
        state = torch.load(res.checkpoint, weights_only=False)
        assert [g["lr"] for g in state["optimizers"]["generator"]["param_groups"]] == [pytest.approx(2e-4 * factor)]
        assert [g["lr"] for g in state["optimizers"]["discriminator"]["param_groups"]] == [pytest.approx(2e-4 * factor)]
    with pytest.raises(DermsynthError, match="--lr-decay-start must be in"):
        TrainConfig(model="cyclegan", lr_decay_start=1.5).resolve()


def test_furger2020_preset_is_the_theses_cyclegan_and_explicit_options_override_it():
    zhu = TrainConfig(**TINY).resolve()
    assert (zhu.preset, zhu.cycle_generator, zhu.cycle_discriminator, zhu.loss, zhu.cycle_loss, zhu.lr_g,
            zhu.beta1, zhu.identity_weight) == ("zhu2017", "resnet", "patch", "lsgan", "l1", 2e-4, 0.5, 0.5)
    furger = TrainConfig(**{**TINY, "batch_size": None}, preset="furger2020").resolve()
    assert (furger.cycle_generator, furger.cycle_discriminator, furger.loss, furger.cycle_loss, furger.lr_g,
            furger.lr_d, furger.beta1, furger.identity_weight, furger.cycle_weight) == \
        ("unet", "two-scale", "nonsaturating", "mse", 5e-5, 5e-5, 0.9, 0.0, 10.0)
    assert TrainConfig(**TINY, preset="furger2020", lr_g=1e-3).resolve().lr_g == 1e-3
    with pytest.raises(DermsynthError, match="unknown --preset 'pix2pix'.*zhu2017, furger2020"):
        TrainConfig(**TINY, preset="pix2pix").resolve()
    with pytest.raises(DermsynthError, match="--preset does not apply to --model dcgan"):
        TrainConfig(model="dcgan", preset="furger2020").resolve()
    with pytest.raises(DermsynthError, match="--cycle-residual applies to --cycle-generator resnet"):
        TrainConfig(**TINY, preset="furger2020", cycle_residual=True).resolve()


def test_furger2020_trains_unet_translators_with_the_two_scale_d_and_the_mse_cycle_loss(tmp_path, patches):
    from dermsynth.models import build_networks
    from dermsynth.models.editing import Furger2020Discriminator, UNetTranslator
    from dermsynth.data.batch import Batch
    from dermsynth.train.steps_edit import CycleGANStep
    healthy, lesion = patches
    out = tmp_path / "f"
    train(TrainConfig(out=str(out), steps=2, preset="furger2020", **TINY), dataset=healthy, dataset_b=lesion,
          progress=False)
    config = json.loads((out / "config.json").read_text())
    assert (config["preset"], config["cycle_loss"], config["identity_weight"]) == ("furger2020", "mse", 0.0)
    G = load_generator(out / "latest.pt").generator
    assert isinstance(G.g_ab, UNetTranslator) and isinstance(G.g_ba, UNetTranslator)
    # one step's cycle statistic is Eq. 3 (MSE of the reconstructions) summed over both directions
    cfg = TrainConfig(preset="furger2020", **TINY).resolve()
    torch.manual_seed(0)
    networks = build_networks("cyclegan", resolution=SIZE, width=4, generator="unet", discriminator="two-scale")
    assert isinstance(networks["discriminator"].d_a, Furger2020Discriminator)
    step = CycleGANStep.from_config(cfg, networks, bf16=False, noise=torch.Generator().manual_seed(0))
    a, b = torch.rand(4, 3, SIZE, SIZE) * 2 - 1, torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    Gn = networks["generator"]
    with torch.no_grad():
        expected = (((Gn.g_ba(Gn.g_ab(a)) - a) ** 2).mean() + ((Gn.g_ab(Gn.g_ba(b)) - b) ** 2).mean()).item()
    stats = dict(zip(step.stat_names, step(Batch(images=a, domain_b=Batch(images=b))).tolist()))
    assert stats["cycle_loss"] == pytest.approx(expected, rel=1e-5) and stats["identity_loss"] == 0.0


def test_a_run_from_before_flips_resumes_without_them():
    """Runs made before the random flip existed have no 'flip' in their config: resuming them must not start
    flipping (it would change how they train); a new run flips by default."""
    from dermsynth.train import trainer as trainer_module

    config = TrainConfig(model="cyclegan", size=16).resolve().to_dict()
    assert config["flip"] is True
    old = {k: v for k, v in config.items() if k != "flip"}
    saved, changes = trainer_module._resume_config(TrainConfig(model="cyclegan", size=16), {"config": old}, set())
    assert saved.flip is False and changes == []
    saved, _ = trainer_module._resume_config(TrainConfig(model="cyclegan", size=16), {"config": config}, set())
    assert saved.flip is True
