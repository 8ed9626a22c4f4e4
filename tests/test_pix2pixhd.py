"""pix2pixHD (Bissoto et al. 2018): networks, losses, the multi-scale discriminator (also for DCGAN, Furger et al.
2020), the step through the shared trainer, fitting phantom maps, bit-exact resume, translate and its errors,
perceptual networks."""

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from _runs import assert_same_training_state, resumed_and_uninterrupted
from dermsynth.cli import main
from dermsynth.models.classifiers import EXTRACTOR_KIND, build_classifier
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.maps import read_maps, superpixels
from dermsynth.data.phantom import generate_phantom
from dermsynth.errors import DermsynthError
from dermsynth.models import build_gan
from dermsynth.models.dcgan import DCGANDiscriminator
from dermsynth.models.perceptual import DEFAULT_LAMBDA, VGG19Features, default_lambda, load_perceptual, vgg19_features
from dermsynth.models.pix2pixhd import (GlobalGenerator, MultiScaleDiscriminator, PatchDiscriminator,
                                        Pix2PixHDGenerator, ResnetBlock, downsample)
from dermsynth.sample import load_generator, translate_images
from dermsynth.train import TrainConfig, train
from dermsynth.train.steps_translate import feature_matching
from dermsynth.translate import translate

TINY = dict(model="pix2pixhd", size=32, width=8, g_downsample=2, g_blocks=1, d_layers=2, d_scales=2, batch_size=4,
            log_every=5, sample_every=10, checkpoint_every=10)


@pytest.fixture(scope="module")
def phantom():
    data = generate_phantom(n=32, size=32, seed=1)
    data.instance_maps = superpixels(data.images)
    return data


# --- networks ---------------------------------------------------------------------------------------------


def test_global_generator_has_pix2pixhds_layout():
    g = GlobalGenerator(7, 3, ngf=8, n_downsample=3, n_blocks=4)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    strided = [c for c in convs if c.stride == (2, 2)]
    assert [c.out_channels for c in strided] == [16, 32, 64]
    assert sum(isinstance(m, ResnetBlock) for m in g.modules()) == 4
    ups = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [u.out_channels for u in ups] == [32, 16, 8]
    assert convs[0].kernel_size == (7, 7) and convs[-1].kernel_size == (7, 7) and convs[-1].out_channels == 3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and not any(n.affine for n in norms)  # pix2pixHD's instance norm has no affine parameters
    out = g(torch.randn(2, 7, 32, 32))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1


def test_local_enhancer_runs_the_global_generator_at_half_resolution():
    g = Pix2PixHDGenerator(32, semantic_nc=6, instance=True, ngf=4, n_downsample=2, n_blocks=1, local_enhancers=1)
    seen = {}
    g.global_net.register_forward_hook(lambda m, i, o: seen.update(shape=i[0].shape))
    out = g(torch.rand(2, 6, 32, 32), torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 3, 32, 32) and seen["shape"] == (2, 7, 16, 16)
    assert g.global_net.model[1].out_channels == 8  # ngf * 2 for one enhancer
    with pytest.raises(ValueError, match="instance maps"):
        g(torch.rand(2, 6, 32, 32))


def test_patch_discriminator_layers_and_sizes_follow_the_reference():
    d = PatchDiscriminator(10, ndf=8, n_layers=3)
    feats = d(torch.randn(1, 10, 64, 64))
    assert len(feats) == 3 + 2 and feats[-1].shape[1] == 1
    size, sizes = 64, []  # 4x4 convs with padding 2: strides 2, 2, 2, then 1, 1
    for stride in (2, 2, 2, 1, 1):
        size = (size + 4 - 4) // stride + 1
        sizes.append(size)
    assert [f.shape[-1] for f in feats] == sizes
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64, 1]


def test_multiscale_discriminator_is_each_scale_on_the_avg_pooled_input():
    nets = [DCGANDiscriminator(resolution=32 >> k, width=4) for k in range(3)]
    msd = MultiScaleDiscriminator(nets, average=True).eval()
    x = torch.randn(3, 3, 32, 32)
    ref, y = [], x
    for k, net in enumerate(nets):
        if k:
            y = F.avg_pool2d(y, 3, 2, 1, count_include_pad=False)
        ref.append(net(y))
    torch.testing.assert_close(msd(x), torch.stack(ref).mean(0))
    assert msd(x).shape == (3,)
    listing = MultiScaleDiscriminator(nets).eval()(x)
    assert len(listing) == 3 and torch.allclose(listing[2], ref[2])
    torch.testing.assert_close(downsample(torch.ones(1, 1, 5, 5)), torch.ones(1, 1, 3, 3))  # pads not counted


def test_feature_matching_matches_the_formula():
    torch.manual_seed(0)
    fake = [[torch.randn(2, 3, 4, 4) for _ in range(4)] for _ in range(2)]
    real = [[torch.randn(2, 3, 4, 4) for _ in range(4)] for _ in range(2)]
    n_layers = 2  # 4 outputs per scale: 3 features + the logits
    ref = sum((4 / 3) * (1 / 2) * (fake[i][j] - real[i][j]).abs().mean() for i in range(2) for j in range(3))
    torch.testing.assert_close(feature_matching(fake, real, n_layers), ref)


# --- the step through the trainer -------------------------------------------------------------------------


def test_trainer_runs_pix2pixhd_through_the_protocol(tmp_path, phantom):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=10, **TINY), dataset=phantom, progress=False)
    rows = list(csv.reader(open(out / "losses.csv")))
    assert rows[0] == ["step", "d_loss", "g_loss", "d_real", "d_fake", "g_gan", "g_feat", "g_perceptual", "img_per_s"]
    values = np.array(rows[1:], dtype=float)
    assert np.isfinite(values).all() and (values[:, 6] > 0).all() and (values[:, 7] > 0).all()  # perceptual on
    config = json.loads((out / "config.json").read_text())
    assert config["perceptual"] == "derm-smallcnn-v1" and config["lambda_feat"] == 10.0 and config["d_scales"] == 2
    assert config["lambda_perceptual"] == default_lambda("derm-smallcnn-v1") and config["flip"] is True
    state = torch.load(out / "latest.pt", weights_only=True)
    assert state["sampled_inputs"] == ["semantic", "instance"]
    assert state["model_options"]["semantic_nc"] == 6 and state["model_options"]["instance"] is True
    grid = np.asarray(Image.open(out / "samples" / "step-0000010.png"))
    assert grid.shape == (8 * 34 + 2, 6 * 34 + 2, 3)  # 16 triplets of map | synthetic | real, two per row


def test_paper_defaults_resolve():
    cfg = TrainConfig(model="pix2pixhd", size=256).resolve()
    assert (cfg.lr_g, cfg.beta1, cfg.beta2, cfg.width, cfg.g_downsample, cfg.g_blocks) == (2e-4, 0.5, 0.999, 64, 4, 9)
    assert (cfg.d_scales, cfg.d_layers, cfg.lambda_feat) == (3, 3, 10.0)
    assert (cfg.perceptual, cfg.lambda_perceptual) == ("derm-smallcnn-v1", DEFAULT_LAMBDA["derm-smallcnn-v1"])
    vgg = TrainConfig(model="pix2pixhd", size=256, perceptual="vgg19:/x.pth").resolve()
    assert vgg.lambda_perceptual == 10.0  # the paper's weight for its VGG
    assert TrainConfig(model="pix2pixhd", size=256, perceptual="off").resolve().lambda_perceptual == 0.0
    assert TrainConfig(model="dcgan").resolve().d_scales == 1
    with pytest.raises(DermsynthError, match="--d-scales does not apply to --model pgan"):
        TrainConfig(model="pgan", d_scales=2).resolve()


def _weights(path):
    state = torch.load(path, weights_only=True)
    return {k: state[k] for k in ("networks", "optimizers")}


def test_resume_is_bit_exact(tmp_path, phantom):
    a, b = resumed_and_uninterrupted(tmp_path, 12, 5, dataset=phantom, **TINY)
    assert_same_training_state(a, b)


def _contrast(images: np.ndarray, data: LesionDataset) -> np.ndarray:
    """Per image: mean grey level of skin (inside the dermoscope's field, outside the lesion) minus lesion."""
    s = data.size
    yy, xx = np.mgrid[0:s, 0:s]
    field = (xx - (s - 1) / 2) ** 2 + (yy - (s - 1) / 2) ** 2 < (0.75 * s / 2) ** 2
    grey = np.asarray(images).astype(float).mean(-1)
    lesion = data.lesion_masks.astype(bool)
    return np.array([grey[i][field & ~lesion[i]].mean() - grey[i][lesion[i]].mean() for i in range(len(data))])


def test_pix2pixhd_fits_phantom_maps_lesions_come_out_darker_than_skin(tmp_path):
    # pigmented phantom classes: their lesions are darker than the skin around them (the bcc stand-ins need not be)
    data = generate_phantom(n=300, size=32, hairs=0.0, classes=("nevus", "melanoma", "keratosis"))
    held, data = data.subset(np.arange(256, 300)), data.subset(np.arange(256))
    real = _contrast(held.images, held)
    assert real.mean() > 40 and (real > 0).all()
    cfg = dict(model="pix2pixhd", size=32, width=16, g_downsample=2, g_blocks=2, d_scales=2, d_layers=2,
               instance=False, log_every=50, sample_every=1000, checkpoint_every=1000)
    scores = {}
    for steps in (1, 150):  # one step is the untrained reference: the measurement can fail
        out = tmp_path / f"s{steps}"
        train(TrainConfig(out=str(out), steps=steps, **cfg), dataset=data, progress=False)
        fake = translate_images(load_generator(out / "latest.pt"), held)
        scores[steps] = (_contrast(fake, held), np.abs(fake.astype(float) - np.asarray(held.images)).mean())
    untrained, trained = scores[1], scores[150]
    assert untrained[0].mean() < 0.5 * real.mean()
    assert trained[0].mean() > 0.5 * real.mean(), (trained[0].mean(), real.mean())
    assert (trained[0] > 0).mean() >= 0.9  # lesion darker than skin in (almost) every held-out map
    assert trained[1] < 0.75 * untrained[1]  # and the images as a whole moved towards the real ones


# --- translate --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, phantom):
    out = tmp_path_factory.mktemp("p2p") / "run"
    train(TrainConfig(out=str(out), steps=2, **TINY), dataset=phantom, progress=False)
    cache = phantom.save(out.parent / "data")
    return out / "latest.pt", cache


def test_translate_writes_images_manifest_grid_and_maps(tmp_path, checkpoint, phantom):
    ckpt, cache = checkpoint
    res = translate(ckpt, tmp_path / "t", from_data=str(cache), n=5, edits=["flip", "add:globules:0.5,0.5,0.2"],
                    export_maps=True, progress=False)
    rows = list(csv.DictReader(open(res.manifest)))
    assert res.count == 5 and [r["source_map"] for r in rows] == phantom.ids[:5]
    assert [r["class"] for r in rows] == [phantom.class_names[phantom.labels[i]] for i in range(5)]
    assert rows[0]["edits"] == "flip;add:globules:0.5,0.5,0.2"
    for r in rows:
        assert np.asarray(Image.open(tmp_path / "t" / r["file"])).shape == (32, 32, 3)
    grid = Image.open(res.grid)
    assert grid.size[0] / grid.size[1] == pytest.approx((3 * 34 + 2) / (5 * 34 + 2))  # map | synthetic | real rows
    maps = read_maps(tmp_path / "t" / "maps", 32)
    np.testing.assert_array_equal(maps[0].instance, phantom.instance_maps[0][:, ::-1])
    # the exported maps translate to the same images
    again = translate(ckpt, tmp_path / "u", maps=tmp_path / "t" / "maps", progress=False)
    for r, r2 in zip(rows, csv.DictReader(open(again.manifest))):
        assert r2["class"] == r["class"]
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "t" / r["file"])),
                                      np.asarray(Image.open(tmp_path / "u" / r2["file"])))


def _cli(*args):
    """The CLI in-process (a subprocess would spend most of the test importing torch): (exit code, stderr)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    return SimpleNamespace(returncode=result.exit_code, stderr=result.stderr)


def test_bad_maps_are_one_clear_cli_error(tmp_path, checkpoint):
    ckpt, _ = checkpoint
    folder = tmp_path / "maps"
    folder.mkdir()
    Image.fromarray(np.ones((24, 32), np.uint8)).save(folder / "a_semantic.png")
    cases = {"another aspect": "map is 32x24 but the model makes 32x32"}
    for name, message in cases.items():
        r = _cli("translate", ckpt, "--maps", folder, "--out", tmp_path / "o", "--device", "cpu")
        assert r.returncode == 2 and r.stderr.strip().startswith("error:") and message in r.stderr, (name, r.stderr)
        assert "Traceback" not in r.stderr
    Image.fromarray(np.full((32, 32), 3 + 64, np.uint8)).save(folder / "a_semantic.png")
    r = _cli("translate", ckpt, "--maps", folder, "--out", tmp_path / "o", "--device", "cpu")
    assert r.returncode == 2 and "label value 67 out of range" in r.stderr
    Image.fromarray(np.ones((32, 32), np.uint8)).save(folder / "a_semantic.png")
    r = _cli("translate", ckpt, "--maps", folder, "--out", tmp_path / "o", "--device", "cpu")
    assert r.returncode == 2 and "trained with instance maps" in r.stderr and "a_instance.png" in r.stderr
    (folder / "a_semantic.png").rename(folder / "b_semantic.png")
    Image.fromarray(np.zeros((32, 32), np.uint16)).save(folder / "a_instance.png")
    r = _cli("translate", ckpt, "--maps", folder, "--out", tmp_path / "o", "--device", "cpu")
    assert r.returncode == 2 and "an instance map without a semantic map" in r.stderr


def test_masks_for_only_some_images_fail_clearly_or_are_skipped_with_a_count(tmp_path):
    data = generate_phantom(n=12, size=16)
    data.lesion_masks[[2, 7]] = 0
    data.instance_maps = superpixels(data.images)
    cache = data.save(tmp_path / "partial")
    args = ["train", "--model", "pix2pixhd", "--data", cache, "--size", 16, "--width", 4, "--g-downsample", 1,
            "--g-blocks", 1, "--d-layers", 1, "--d-scales", 1, "--batch-size", 2, "--steps", 2, "--device", "cpu",
            "--quiet"]
    r = _cli(*args, "--out", tmp_path / "a")
    assert r.returncode == 2 and "2 of 12 images have no lesion mask" in r.stderr and "--skip-unmasked" in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.warns(UserWarning, match="skipped 2 of 12 images without a lesion mask"):
        r = _cli(*args, "--out", tmp_path / "b", "--skip-unmasked")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "b" / "data.json").read_text())["count"] == 10


# --- dcgan with a multi-scale discriminator (Furger et al. 2020) ----------------------------------------------------


def test_dcgan_trains_with_three_discriminator_scales(tmp_path, noise_dataset):
    out = tmp_path / "dcgan"
    cfg = TrainConfig(model="dcgan", size=32, width=8, z_dim=16, batch_size=16, steps=6, d_scales=3, log_every=3,
                      sample_every=6, checkpoint_every=6, out=str(out))
    data = generate_phantom(n=32, size=32)
    train(cfg, dataset=data, progress=False)
    state = torch.load(out / "latest.pt", weights_only=True)
    assert {k.split(".")[1] for k in state["networks"]["discriminator"]} == {"0", "1", "2"}
    assert state["model_options"]["d_scales"] == 3
    _, D = build_gan("dcgan", **state["model_options"])
    D.load_state_dict(state["networks"]["discriminator"])
    assert isinstance(D, MultiScaleDiscriminator) and D(torch.zeros(2, 3, 32, 32)).shape == (2,)
    with pytest.raises(DermsynthError, match="below 8 px"):
        train(TrainConfig(model="dcgan", size=16, d_scales=3, steps=1, out=str(tmp_path / "x")), dataset=noise_dataset,
              progress=False)


# --- perceptual networks ----------------------------------------------------------------------------------


def test_vgg19_is_torchvisions_layout_and_loads_a_local_state_dict(tmp_path):
    features = vgg19_features()
    convs = [k for k in features.state_dict() if k.endswith(".weight")]
    assert len(convs) == 16 and convs[0] == "0.weight" and convs[-1] == "34.weight"
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's head: ignored
    torch.save(state, tmp_path / "vgg19.pth")
    net = load_perceptual(f"vgg19:{tmp_path / 'vgg19.pth'}")
    assert isinstance(net, VGG19Features) and net.description.startswith("vgg19:")
    torch.testing.assert_close(net.features_net[34].weight, state["features.34.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert net.loss(x, x).item() == 0 and net.loss(x, -x).item() > 0
    assert [f.shape[1] for f in net.features(x)] == [64, 128, 256, 512, 512]
    # as pix2pixHD's VGGLoss: the [-1, 1] image goes into VGG unchanged (no ImageNet mean/std)
    torch.testing.assert_close(net.features(x)[-1], net.features_net[:30](x), rtol=1e-5, atol=1e-6)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(DermsynthError, match="not torchvision VGG19 weights"):
        load_perceptual(f"vgg19:{tmp_path / 'bad.pth'}")
    with pytest.raises(DermsynthError, match="weights file not found"):
        load_perceptual(f"vgg19:{tmp_path / 'missing.pth'}")
    with pytest.raises(DermsynthError, match="unknown network 'alexnet'"):
        load_perceptual("alexnet:x")


def test_perceptual_loss_from_the_projects_classifier_trains_and_is_recorded(tmp_path, phantom):
    model = build_classifier("smallcnn", 4, 32, seed=0)
    torch.save({"kind": EXTRACTOR_KIND, "arch": "smallcnn", "num_classes": 4, "image_size": 32,
                "state_dict": model.state_dict()}, tmp_path / "clf.pt")
    spec = f"classifier:{tmp_path / 'clf.pt'}"
    net = load_perceptual(spec)
    assert len(net.stages) == 3 and net.weights == (0.25, 0.5, 1.0)
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=2, perceptual=spec, **{**TINY, "log_every": 1}),
          dataset=phantom, progress=False)
    assert json.loads((out / "config.json").read_text())["perceptual"] == spec
    rows = list(csv.DictReader(open(out / "losses.csv")))
    assert all(float(r["g_perceptual"]) > 0 for r in rows)


# --- issue 20 §1: the reference's recipe around the networks ----------------------------------------------


def _conv_weights(net):
    return [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


def test_networks_start_from_the_references_normal_init():
    # pix2pixHD's weights_init: conv weights N(0, 0.02), conv biases left at PyTorch's default
    G, D = build_gan("pix2pixhd", resolution=32, width=8, semantic_nc=6, n_downsample=2, n_blocks=1, d_layers=2,
                     d_scales=2)
    for net in (G, D):
        w = torch.cat([m.weight.flatten() for m in _conv_weights(net)])
        assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
        assert any(m.bias is not None and m.bias.abs().max() > 0 for m in _conv_weights(net))
    # CycleGAN's init_weights("normal", 0.02): conv weights N(0, 0.02), biases 0
    G, D = build_gan("cyclegan", resolution=32, width=8)
    for net in (G, D):
        w = torch.cat([m.weight.flatten() for m in _conv_weights(net)])
        assert abs(w.std().item() - 0.02) < 0.002
        assert all(m.bias is None or not m.bias.any() for m in _conv_weights(net))


def test_a_size_the_global_generator_cannot_handle_is_a_one_line_error_naming_the_option():
    with pytest.raises(DermsynthError, match=r"--size 32 with --g-downsample 4 leaves the global generator a 2 px "
                                             r"bottleneck .*use --g-downsample 2 or less, or --size 128 or more"):
        TrainConfig(model="pix2pixhd", size=32).resolve()
    with pytest.raises(DermsynthError, match="--local-enhancers 1 .* 4 px bottleneck .*--g-downsample 2 or less, "
                                             "or fewer --local-enhancers"):
        TrainConfig(model="pix2pixhd", size=64, g_downsample=3, local_enhancers=1).resolve()
    assert TrainConfig(model="pix2pixhd", size=128).resolve().g_downsample == 4  # 8 px: fine
    res = CliRunner().invoke(main, ["train", "--model", "pix2pixhd", "--size", "32", "--out", "x"])
    assert res.exit_code != 0 and "--g-downsample" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_missing_perceptual_network_is_a_one_line_error(tmp_path, phantom, monkeypatch):
    from dermsynth.models import classifiers as networks

    monkeypatch.setattr(networks, "shipped_weights_path", lambda *a: tmp_path / "gone.pt")
    with pytest.raises(DermsynthError, match="--perceptual derm-smallcnn-v1: .*gone.pt is missing"):
        train(TrainConfig(out=str(tmp_path / "r"), steps=1, **TINY), dataset=phantom, progress=False)
    with pytest.raises(DermsynthError, match="weights file not found"):
        train(TrainConfig(out=str(tmp_path / "r"), steps=1, perceptual=f"vgg19:{tmp_path / 'no.pth'}", **TINY),
              dataset=phantom, progress=False)


def test_the_shipped_perceptual_network_is_the_shipped_classifier_fed_as_trained():
    net = load_perceptual("derm-smallcnn-v1")
    assert net.description == "derm-smallcnn-v1" and net.weights == (0.25, 0.5, 1.0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(net.features(x)[0], net.stages[0](((x + 1) / 2 - mean) / std))
    assert not any(p.requires_grad for p in net.parameters())


def test_translate_manifest_names_the_perceptual_network(tmp_path, checkpoint):
    ckpt, cache = checkpoint
    res = translate(ckpt, tmp_path / "t", from_data=str(cache), n=2, progress=False)
    assert {r["perceptual"] for r in csv.DictReader(open(res.manifest))} == {"derm-smallcnn-v1"}


def test_flips_are_per_example_identical_across_fields_and_resume_exactly(phantom):
    from dermsynth.train.minibatches import Minibatches

    needs = ("images", "semantic", "instance", "masks")
    plain = Minibatches(phantom, 8, 3, torch.device("cpu"), needs=needs)
    flipping = Minibatches(phantom, 8, 3, torch.device("cpu"), needs=needs, flip=True)
    flipped = 0
    for _ in range(8):  # two epochs
        a, b = plain.next(), flipping.next()
        for i in range(8):
            same = torch.equal(b.images[i], a.images[i])
            mirrored = torch.equal(b.images[i], a.images[i].flip(-1))
            assert same or mirrored
            for name in ("semantic", "instance", "masks"):  # the same decision for every field of the example
                expect = a.get(name)[i].flip(-1) if not same else a.get(name)[i]
                assert torch.equal(b.get(name)[i], expect), name
            flipped += not same
    assert 16 < flipped < 48  # about half of 64 examples
    state = flipping.state_dict()
    resumed = Minibatches(phantom, 8, 3, torch.device("cpu"), needs=needs, flip=True)
    resumed.load_state_dict(state)
    for _ in range(5):
        torch.testing.assert_close(resumed.next().images, flipping.next().images, rtol=0, atol=0)


C2F = dict(TINY, g_downsample=1, local_enhancers=1, width=4)


def test_coarse_to_fine_stages_update_global_then_finest_enhancer_then_all(phantom):
    from dermsynth.models import build_networks
    from dermsynth.data.batch import batch_from_dataset
    from dermsynth.train.steps_translate import Pix2PixHDStep, coarse_to_fine_stage
    from dermsynth.train.trainer import model_options

    cfg = TrainConfig(out="unused", steps=40, perceptual="off", **C2F).resolve()
    assert [coarse_to_fine_stage(s, 40, 1) for s in (0, 19, 20, 21, 22, 39)] == \
        ["global", "global", "enhancer", "enhancer", "joint", "joint"]
    assert coarse_to_fine_stage(0, 40, 0) == "joint"  # no enhancer: one stage
    networks = build_networks("pix2pixhd", **model_options(cfg, phantom))
    step = Pix2PixHDStep.from_config(cfg, networks, bf16=False, noise=torch.Generator().manual_seed(0))
    G = step.G_module
    groups = {"global": {id(p) for p in [*G.global_net.parameters(), *G.global_head.parameters()]},
              "enhancer": {id(p) for p in [*G.enhancers[0].parameters(), *G.head.parameters()]}}
    batch = batch_from_dataset(phantom, np.arange(4), step.needs)
    every = {id(p) for p in G.parameters()}
    expected = {"global": groups["global"], "enhancer": groups["enhancer"],
                "joint": every - {id(p) for p in G.global_head.parameters()}}
    for stage, images_seen in (("global", 0), ("enhancer", 20 * 4), ("joint", 22 * 4)):
        step.begin(images_seen)
        assert step.stage == stage
        step(batch)
        with_grad = {id(p) for p in G.parameters() if p.grad is not None}
        assert with_grad == expected[stage], stage
        # a fresh Adam per stage: state only for this stage's parameters
        assert {id(p) for p in step.opt_g.state} <= expected[stage]
    # the global stage's D sees the half-size pair with its scales 1.. only
    assert len(step.D(torch.zeros(1, 7, 16, 16), torch.zeros(1, 3, 16, 16), 1)) == 1


def test_coarse_to_fine_resume_across_stage_changes_is_bit_exact(tmp_path, phantom):
    a, b = resumed_and_uninterrupted(tmp_path, 12, 5, dataset=phantom, **C2F)  # stages change at steps 6 and 7
    assert_same_training_state(a, b)
    assert a["step_state"]["stage"] == "joint"


def test_local_enhancer_weights_saved_before_coarse_to_fine_still_load():
    g = Pix2PixHDGenerator(32, semantic_nc=1, instance=False, ngf=4, n_downsample=1, n_blocks=1, local_enhancers=1)
    old = {k: v for k, v in g.state_dict().items() if not k.startswith("global_head.")}
    fresh = Pix2PixHDGenerator(32, semantic_nc=1, instance=False, ngf=4, n_downsample=1, n_blocks=1, local_enhancers=1)
    fresh.load_state_dict(old)  # strict: no missing-key error
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(fresh(x), g(x))


def test_flip_is_an_option_of_the_translation_models_only():
    assert all(TrainConfig(model=m).flip for m in ("pix2pixhd", "cyclegan", "unet-translator"))
    with pytest.raises(DermsynthError, match="--flip does not apply to --model dcgan"):
        TrainConfig(model="dcgan", flip=False).resolve()
