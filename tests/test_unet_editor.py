"""Furger et al.'s U-Net editor: relevancy loss, architecture, learning to add a lesion, exact resume, `edit`."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from _edit_data import SIZE, phantom_patches, write_pairs
from _runs import assert_same_training_state, resumed_and_uninterrupted
from dermsynth.data.dataset import LesionDataset
from dermsynth.edit import edit_folder, edit_image
from dermsynth.errors import DataError, DermsynthError
from dermsynth.models.pix2pixhd import ResnetBlock
from dermsynth.models.editing import Furger2020Discriminator, UNetEditor, mask_change
from dermsynth.sample import load_generator
from dermsynth.train import TrainConfig, train
from dermsynth.data.batch import batch_from_dataset
from dermsynth.train.steps_edit import relevancy_loss

TINY = dict(model="unet-translator", size=SIZE, width=4, batch_size=4, log_every=2, sample_every=6,
            checkpoint_every=6)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return phantom_patches(tmp_path_factory.mktemp("patches"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, patches):
    healthy, lesion = patches
    out = tmp_path_factory.mktemp("run") / "add"
    train(TrainConfig(out=str(out), steps=2, **TINY), dataset=healthy, dataset_b=lesion, progress=False)
    return out / "latest.pt"


def test_relevancy_loss_matches_a_hand_computed_value():
    x = torch.zeros(1, 3, 2, 2)
    y = torch.full((1, 3, 2, 2), 0.5)
    y[..., 0, 0] = 7.0  # inside the mask: free to change
    m = torch.zeros(1, 1, 2, 2)
    m[..., 0, 0] = 1
    # 3 channels x 3 unmasked pixels of (0.5 - 0)^2, averaged over all 12 elements of the masked images
    assert relevancy_loss(x, y, m).item() == pytest.approx(3 * 3 * 0.25 / 12)
    y.requires_grad_(True)
    relevancy_loss(x, y, m).backward()
    assert torch.all(y.grad[..., 0, 0] == 0) and torch.all(y.grad[..., 1, 1] != 0)


def test_change_inside_and_outside_the_mask_in_grey_levels():
    x = torch.zeros(1, 3, 2, 2)
    y = torch.zeros(1, 3, 2, 2)
    y[..., 0, 0] = -0.4  # inside: 0.4 * 127.5 = 51 grey levels darker
    y[:, 0, 1, 1] = 0.2  # outside: one channel of one of three pixels, 25.5 grey levels
    m = torch.zeros(1, 1, 2, 2)
    m[..., 0, 0] = 1
    inside, outside = mask_change(x, y, m)
    assert inside.item() == pytest.approx(51.0) and outside.item() == pytest.approx(25.5 / 9)


def test_the_generator_is_furger2020s_residual_unet():
    g = UNetEditor(32, width=4)
    strided = [m for m in g.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 2
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules()) == 2
    assert sum(isinstance(m, ResnetBlock) for m in g.modules()) == 4
    seen = {}

    def record(name, shape):
        seen[name] = shape  # (a hook returning a value would replace the module's output)

    g.blocks.register_forward_hook(lambda mod, inp, out: record("bottleneck", out.shape))
    g.up2.register_forward_hook(lambda mod, inp, out: record("up2_in", inp[0].shape))
    x, m = torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32)
    out = g(x, m)
    assert seen["bottleneck"][-2:] == (8, 8)  # the residual blocks work at a quarter of the input size
    assert seen["up2_in"][1] == 2 * 4 + 2 * 4  # decoder features concatenated with the encoder's (skip)
    assert torch.allclose(out - x, g.residual(x, m), atol=1e-6)  # the output is input + residual
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.zeros(1, 3, 30, 30), torch.zeros(1, 1, 30, 30))
    d = Furger2020Discriminator(32, width=4)  # Furger et al. 2020, 3.2.3: two scales, averaged, one logit per image
    assert d(x).shape == (2,)
    assert torch.allclose(d(x), 0.5 * (d.full(x) + d.coarse(torch.nn.functional.avg_pool2d(x, 2))))


def test_unet_editor_learns_to_add_a_dark_lesion_inside_the_mask(tmp_path, patches):
    healthy, lesion = patches
    out = tmp_path / "add"
    cfg = TrainConfig(model="unet-translator", size=SIZE, width=8, batch_size=8, steps=150, lr_g=2e-4, lr_d=2e-4,
                      log_every=25, sample_every=150, checkpoint_every=150, out=str(out), direction="add")
    train(cfg, dataset=healthy, dataset_b=lesion, progress=False)
    rows = list(csv.DictReader(open(out / "losses.csv")))
    first, last = float(rows[0]["change_outside"]), float(rows[-1]["change_outside"])
    assert last < 0.7 * first, (first, last)  # the relevancy loss pulls the outside back to the input
    g = load_generator(out / "latest.pt").generator
    n = min(32, len(healthy))
    photo = batch_from_dataset(healthy, np.arange(n), ["images"]).images
    mask = batch_from_dataset(lesion, np.arange(n), ["images", "masks"]).masks
    with torch.no_grad():
        edited = g(photo, mask).clamp(-1, 1)
    darker = (((edited - photo) * mask).sum() / (3 * mask.sum())).item() * 127.5
    inside, outside = (v.item() for v in mask_change(photo, edited, mask))
    assert darker < -20, darker  # a dark (pigmented) lesion painted inside the mask
    assert inside > 3 * outside, (inside, outside)
    assert (out / "samples" / "step-0000150.png").is_file()


@pytest.mark.parametrize("direction", ["add", "remove"])
def test_resume_reproduces_uninterrupted_run_bit_exactly(tmp_path, patches, direction):
    healthy, lesion = patches
    a, b = (healthy, lesion) if direction == "add" else (lesion, healthy)
    x, y = resumed_and_uninterrupted(tmp_path, 12, 5, direction=direction, dataset=a, dataset_b=b, **TINY)
    assert_same_training_state(x, y)
    masks = x["step_state"]["preview_masks"]
    assert (masks is None) == (direction == "remove")
    if masks is not None:
        assert torch.equal(masks, y["step_state"]["preview_masks"])
    assert x["model_options"]["direction"] == direction


def test_bad_unet_editor_options(tmp_path, patches):
    healthy, lesion = patches
    with pytest.raises(DermsynthError, match="direction must be one of add, remove, got 'sideways'"):
        train(TrainConfig(out=str(tmp_path / "a"), steps=1, direction="sideways", **TINY), dataset=healthy,
              dataset_b=lesion, progress=False)
    with pytest.raises(DermsynthError, match="--cycle-weight does not apply"):
        train(TrainConfig(out=str(tmp_path / "b"), steps=1, cycle_weight=3.0, **TINY), dataset=healthy,
              dataset_b=lesion, progress=False)
    unmasked = LesionDataset(images=np.asarray(lesion.images), labels=lesion.labels, class_names=lesion.class_names,
                             ids=lesion.ids)
    with pytest.raises(DermsynthError, match="has no lesion masks"):  # `add` borrows the masks of --data-b
        train(TrainConfig(out=str(tmp_path / "c"), steps=1, **TINY), dataset=healthy, dataset_b=unmasked,
              progress=False)


# --- dermsynth edit -------------------------------------------------------------------------------------------


def test_edit_one_image_applies_the_generator_and_reports_relevance(tmp_path, patches, checkpoint):
    images, masks = write_pairs(tmp_path, patches, n=1)
    report = edit_image(checkpoint, images / "p0.png", masks / "p0_segmentation.png", tmp_path / "out.png")
    photo = np.asarray(Image.open(images / "p0.png"))
    mask = (np.asarray(Image.open(masks / "p0_segmentation.png")) > 127).astype(np.float32)
    g = load_generator(checkpoint).generator
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        expected = ((g(x, torch.from_numpy(mask)[None, None]).clamp(-1, 1) + 1) * 127.5).round()
    expected = expected[0].permute(1, 2, 0).numpy().astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)
    diff = np.abs(expected.astype(float) - photo.astype(float))
    assert report.inside == pytest.approx(diff[mask > 0].mean(), abs=1e-3)
    assert report.outside == pytest.approx(diff[mask == 0].mean(), abs=1e-3)
    grid = np.asarray(Image.open(tmp_path / "out_grid.png"))
    assert grid.shape[1] > 3 * SIZE  # input | mask | output


def test_edit_folder_writes_outputs_manifest_grid_and_relevance(tmp_path, patches, checkpoint):
    images, masks = write_pairs(tmp_path, patches)
    report = edit_folder(checkpoint, images, masks, tmp_path / "out", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert [r["file"] for r in rows] == ["p0.png", "p1.png", "p2.png"]
    assert all(r["direction"] == "add" and r["mask"].endswith("_segmentation.png") for r in rows)
    rel = json.loads((tmp_path / "out" / "relevance.json").read_text())
    assert rel["images"] == 3 == report.images
    assert rel["change_outside"] == pytest.approx(np.mean([float(r["change_outside"]) for r in rows]), abs=1e-3)
    assert (tmp_path / "out" / "grid.png").is_file()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dermsynth.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


BAD_EDITS = {
    "size": "mask is 16x16 but its image p0.png is 32x32",
    "empty": "the mask is empty",
    "full": "covers the whole image",
    "no masks": "none of the 3 images",
}


def _break(masks, case):
    target = masks / "p0_segmentation.png"
    if case == "size":
        Image.fromarray(np.full((16, 16), 255, np.uint8)).save(target)
    elif case in ("empty", "full"):
        Image.fromarray(np.full((SIZE, SIZE), 0 if case == "empty" else 255, np.uint8)).save(target)
    else:
        for p in masks.iterdir():
            p.unlink()


@pytest.mark.parametrize("case", list(BAD_EDITS))
def test_bad_edit_input_is_one_clear_error_and_writes_nothing(tmp_path, patches, checkpoint, case):
    images, masks = write_pairs(tmp_path, patches)
    _break(masks, case)
    with pytest.raises(DataError) as info:
        edit_folder(checkpoint, images, masks, tmp_path / "out", progress=False)
    assert BAD_EDITS[case] in str(info.value) and len(str(info.value).splitlines()) == 1
    assert not (tmp_path / "out").exists()  # every pair is checked before anything is written


def test_cli_edit_errors_are_one_line(tmp_path, patches, checkpoint):
    images, masks = write_pairs(tmp_path, patches)
    _break(masks, "size")
    proc = _cli("edit", checkpoint, "--image", images / "p0.png", "--mask", masks / "p0_segmentation.png",
                "--out", tmp_path / "one.png")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and BAD_EDITS["size"] in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "one.png").exists()


def test_truncate_healthy_edits_a_random_healthy_subset_as_large_as_the_lesion_set(tmp_path, patches):
    healthy, lesion = patches
    fewer = lesion.subset(np.arange(len(healthy) // 2))
    out = tmp_path / "t"
    train(TrainConfig(out=str(out), steps=1, truncate_healthy=True, **TINY), dataset=healthy, dataset_b=fewer,
          progress=False)
    assert json.loads((out / "data.json").read_text())["count"] == len(fewer) < len(healthy)
    assert json.loads((out / "config.json").read_text())["truncate_healthy"] is True
    kept = healthy.random_subset(len(fewer), seed=0)
    assert kept.ids == sorted(kept.ids, key=healthy.ids.index) and len(set(kept.ids)) == len(fewer)
    assert healthy.random_subset(len(healthy) + 1, seed=0) is healthy
    with pytest.raises(DermsynthError, match="--truncate-healthy applies to --model unet-translator --direction add"):
        train(TrainConfig(out=str(tmp_path / "r"), steps=1, truncate_healthy=True, direction="remove", **TINY),
              dataset=fewer, dataset_b=healthy, progress=False)


def test_truncate_healthy_is_on_by_default_in_add_mode_only():
    assert TrainConfig(**TINY).resolve().truncate_healthy is True
    assert TrainConfig(truncate_healthy=False, **TINY).resolve().truncate_healthy is False
    assert TrainConfig(direction="remove", **TINY).resolve().truncate_healthy is False
    from click.testing import CliRunner
    from dermsynth.cli import main as cli
    out = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "--truncate-healthy / --no-truncate-healthy" in out and "--g-width" in out and "--d-width" in out


def test_generator_and_discriminator_widths_are_separate(tmp_path, patches):
    """Furger et al. 2020 Table 2 balances G and D by their initial features (e.g. G 1024 / D 256)."""
    healthy, lesion = patches
    out = tmp_path / "w"
    train(TrainConfig(out=str(out), steps=1, g_width=8, d_width=2, **TINY), dataset=healthy, dataset_b=lesion,
          progress=False)
    state = torch.load(out / "latest.pt", weights_only=False)
    assert (state["model_options"]["g_width"], state["model_options"]["d_width"]) == (8, 2)
    G = load_generator(out / "latest.pt").generator
    assert G.stem[1].out_channels == 8 and G.down2[0].out_channels == 32              # w, 4w
    d = state["networks"]["discriminator"]
    assert d["full.features.0.weight"].shape[0] == 2 and d["coarse.features.0.weight"].shape[0] == 2
    with pytest.raises(DermsynthError, match="--d-width must be >= 1"):
        TrainConfig(d_width=0, **TINY).resolve()
