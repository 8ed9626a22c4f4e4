"""Diffusion inpainting for lesion editing (issue 19 §4, ``--model ddpm-inpaint``): the inpainting loss and
sampler against hand computations, a tiny denoiser that learns to paint a colour the context decides inside its
mask, training on the patch sets (both directions) and its bit-exact resume, `dermsynth edit` (outside pixels
kept exactly, the change table) and the refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from _edit_data import SIZE, phantom_patches, write_pairs
from _runs import assert_same_training_state, resumed_and_uninterrupted
from dermsynth.cli import main
from dermsynth.edit import edit_folder, edit_image
from dermsynth.errors import DataError, DermsynthError
from dermsynth.models.diffusion import Denoiser, DenoiserPreset, Diffusion, inpaint_condition
from dermsynth.sample import load_generator
from dermsynth.train import TrainConfig, train
from dermsynth.checkpoint import load_checkpoint

# two levels, one block each: a few thousand parameters (16 px for the behaviour test, 32 px patches in runs)
SMALL = DenoiserPreset((16, 32), (False, True), 1, 0.0, None, 8, "tests")
TINY = dict(model="ddpm-inpaint", size=SIZE, preset="tiny", width=16, batch_size=4, timesteps=50,
            sampling_steps=3, log_every=2, sample_every=6, checkpoint_every=6)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return phantom_patches(tmp_path_factory.mktemp("patches"), n=24)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, patches):
    healthy, lesion = patches
    out = tmp_path_factory.mktemp("run") / "add"
    train(TrainConfig(out=str(out), steps=2, **TINY), dataset=lesion, progress=False)
    return out / "latest.pt"


class _Recorder(torch.nn.Module):
    """A stand-in denoiser: records its input and predicts zeros."""

    num_classes = 0

    def forward(self, noisy, t, labels=None, condition=None):
        self.seen = noisy.clone()
        return torch.zeros_like(noisy)


def test_inpainting_loss_noises_only_the_region_and_averages_over_it():
    process = Diffusion("linear", 100)
    clean = torch.rand(2, 3, 4, 4) * 2 - 1
    region = torch.zeros(2, 1, 4, 4)
    region[0, :, :2] = 1  # 8 pixels of image 0, 3 of image 1
    region[1, :, 3, :3] = 1
    rec = _Recorder()
    loss = process.loss(rec, clean, region=region, generator=torch.Generator().manual_seed(3))
    # the same draws by hand: t uniform, then the noise
    g = torch.Generator().manual_seed(3)
    t = (torch.rand(2, generator=g) * 100).long()
    noise = torch.randn(2, 3, 4, 4, generator=g)
    a = process.alphas_cumprod[t][:, None, None, None]
    noisy = a.sqrt() * clean + (1 - a).sqrt() * noise
    inside = region.bool().expand_as(clean)
    assert torch.allclose(rec.seen[inside], noisy[inside], atol=1e-6)
    assert torch.equal(rec.seen[~inside], clean[~inside])  # outside: the clean image, as the sampler holds it
    # a zero prediction: the mean squared noise over the 3 x 11 region elements only
    assert loss.item() == pytest.approx((noise[inside] ** 2).sum().item() / 33, rel=1e-5)


def test_the_condition_is_the_image_with_the_region_zeroed_and_the_mask():
    image, mask = torch.rand(1, 3, 4, 4) * 2 - 1, torch.zeros(1, 1, 4, 4)
    mask[..., 1:3, 1:3] = 1
    cond = inpaint_condition(image, mask)
    assert cond.shape == (1, 4, 4, 4) and torch.equal(cond[:, 3:], mask)
    assert torch.equal(cond[:, :3], torch.where(mask.bool(), 0.0, image))


def _scenes(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, disc masks, expected inside colour): a blue or a green background, and inside the disc red on
    blue, yellow on green, so the colour to paint is decided by the context outside the mask."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centre, radius = torch.rand(n, 2, generator=g) * 6 + 5, torch.rand(n, generator=g) * 2 + 3
    masks = (((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2)
             <= radius[:, None, None] ** 2).float()[:, None]
    green = torch.rand(n, generator=g) < 0.5
    background = torch.where(green[:, None], torch.tensor([-0.6, 0.6, -0.6]), torch.tensor([-0.6, -0.6, 0.7]))
    inside = torch.where(green[:, None], torch.tensor([0.8, 0.8, -0.7]), torch.tensor([0.8, -0.6, -0.6]))
    images = masks * inside[:, :, None, None] + (1 - masks) * background[:, :, None, None]
    return images, masks, inside


def test_a_tiny_inpainting_denoiser_paints_the_colour_its_context_asks_for():
    """Behaviour: trained on the inpainting loss for 150 steps, the denoiser repaints a disc red on a
    blue background and yellow on a green one (the same mask, only the context differs); untrained, not."""
    torch.manual_seed(0)
    d, process = Denoiser(16, 0, SMALL, condition_channels=4), Diffusion("cosine", 1000, "v")
    test_images, test_masks, want = _scenes(8, torch.Generator().manual_seed(5))

    def colour_error(sampler: str) -> float:
        out = process.sample(d.eval(), 8, condition=inpaint_condition(test_images, test_masks),
                             known=(test_images, test_masks), sampler=sampler, steps=20, seed=1)
        assert torch.equal(out * (1 - test_masks), test_images * (1 - test_masks))  # outside: kept exactly
        painted = (out * test_masks).sum((2, 3)) / test_masks.sum((2, 3))
        return (painted - want).abs().max().item()

    before = colour_error("ddim")
    opt = torch.optim.Adam(d.train().parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        images, masks, _ = _scenes(16, g)
        loss = process.loss(d, images, condition=inpaint_condition(images, masks), region=masks, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before > 0.5
    for sampler in ("ddim", "dpm-solver"):
        assert colour_error(sampler) < 0.25, sampler


def test_both_directions_train_on_their_patch_sets(tmp_path, patches):
    healthy, lesion = patches
    train(TrainConfig(out=str(tmp_path / "remove"), steps=2, direction="remove", **TINY), dataset=healthy,
          dataset_b=lesion, progress=False)
    state = load_checkpoint(tmp_path / "remove" / "latest.pt")
    assert state["model_options"]["direction"] == "remove" and state["sampled_inputs"] == ["images", "masks"]
    kept = state["step_state"]["preview_masks"]  # the first masks of --data-b, for previews and metrics
    lesion_masks = torch.from_numpy(np.array(lesion.lesion_masks)).float()[:, None]
    assert len(kept) == TINY["batch_size"]
    assert all(any(torch.equal(m, l) for l in lesion_masks) for m in kept)
    g = load_generator(tmp_path / "remove" / "latest.pt").generator
    assert g.condition_channels == 4 and g.direction == "remove"
    assert (tmp_path / "remove" / "samples" / "step-0000002.png").is_file()


@pytest.mark.parametrize("direction", ["add", "remove"])
def test_resume_reproduces_uninterrupted_run_bit_exactly(tmp_path, patches, direction):
    healthy, lesion = patches
    data = dict(dataset=lesion) if direction == "add" else dict(dataset=healthy, dataset_b=lesion)
    x, y = resumed_and_uninterrupted(tmp_path, 6, 3, direction=direction, **data, **TINY)
    assert_same_training_state(x, y)
    if direction == "remove":
        assert torch.equal(x["step_state"]["preview_masks"], y["step_state"]["preview_masks"])


def test_bad_inpainting_options(tmp_path, patches):
    healthy, lesion = patches
    cases = {"--direction must be one of add, remove": dict(direction="sideways"),
             "conditioned on the image around the mask": dict(conditional=True),
             "--relevancy-weight does not apply": dict(relevancy_weight=3.0),
             "--sampling-steps must be in": dict(sampling_steps=51)}
    for i, (message, option) in enumerate(cases.items()):
        with pytest.raises(DermsynthError, match=message):
            train(TrainConfig(out=str(tmp_path / str(i)), steps=1, **{**TINY, **option}), dataset=lesion,
                  progress=False)
    with pytest.raises(DermsynthError, match="--data-b does not apply to --model ddpm-inpaint"):
        train(TrainConfig(out=str(tmp_path / "b"), steps=1, **TINY), dataset=lesion, dataset_b=healthy,
              progress=False)
    with pytest.raises(DermsynthError, match="two domains: give --data-b"):
        train(TrainConfig(out=str(tmp_path / "c"), steps=1, direction="remove", **TINY), dataset=healthy,
              progress=False)


# --- dermsynth edit -------------------------------------------------------------------------------------------


def _read(path):
    return np.asarray(Image.open(path)).astype(float)


def test_edit_keeps_every_pixel_outside_the_mask_and_reports_the_change(tmp_path, patches, checkpoint):
    images, masks = write_pairs(tmp_path, patches, n=1, mask_suffix="_mask")
    report = edit_image(checkpoint, images / "p0.png", masks / "p0_mask.png", tmp_path / "out.png",
                        sampling_steps=3, seed=4)
    photo, edited = _read(images / "p0.png"), _read(tmp_path / "out.png")
    inside = _read(masks / "p0_mask.png") > 127
    assert np.array_equal(edited[~inside], photo[~inside])  # pasted back, bit for bit
    diff = np.abs(edited - photo)
    assert diff[inside].mean() > 5  # an untrained denoiser paints noise there
    assert report.inside == pytest.approx(diff[inside].mean(), abs=1e-3) and report.outside == 0.0
    again = edit_image(checkpoint, images / "p0.png", masks / "p0_mask.png", tmp_path / "again.png",
                       sampling_steps=3, seed=4)
    other = edit_image(checkpoint, images / "p0.png", masks / "p0_mask.png", tmp_path / "other.png",
                       sampling_steps=3, seed=5)
    assert np.array_equal(_read(tmp_path / "again.png"), edited) and again.inside == report.inside
    assert not np.array_equal(_read(tmp_path / "other.png"), edited) and other.outside == 0.0


def test_edit_folder_writes_the_change_table_with_the_sampling(tmp_path, patches, checkpoint):
    images, masks = write_pairs(tmp_path, patches, mask_suffix="_mask")
    report = edit_folder(checkpoint, images, masks, tmp_path / "out", progress=False, sampler="ddpm",
                         sampling_steps=4, seed=2)
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert list(rows[0]) == ["file", "image", "mask", "model", "direction", "checkpoint_step", "change_inside",
                             "change_outside", "sampler", "sampling_steps", "seed"]
    assert all(r["model"] == "ddpm-inpaint" and r["direction"] == "add" and r["sampler"] == "ddpm"
               and r["sampling_steps"] == "4" and r["seed"] == "2" and float(r["change_outside"]) == 0 for r in rows)
    for r in rows:
        inside = _read(masks / r["file"].replace(".png", "_mask.png")) > 127
        diff = np.abs(_read(tmp_path / "out" / r["file"]) - _read(images / r["file"]))
        assert float(r["change_inside"]) == pytest.approx(diff[inside].mean(), abs=1e-3)
    rel = json.loads((tmp_path / "out" / "relevance.json").read_text())
    assert rel["sampler"] == "ddpm" and rel["sampling_steps"] == 4 and rel["seed"] == 2
    assert rel["change_inside"] == pytest.approx(report.inside) and rel["change_outside"] == 0.0


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_edit_command_and_its_refusals(tmp_path, patches, checkpoint):
    images, masks = write_pairs(tmp_path, patches, n=1, mask_suffix="_mask")
    one = ["edit", checkpoint, "--image", images / "p0.png", "--mask", masks / "p0_mask.png"]
    done = _cli(*one, "--out", tmp_path / "o.png", "--sampler", "ddim", "--sampling-steps", "2", "--quiet")
    assert done.exit_code == 0 and "outside 0.00 grey levels" in done.output, done.output
    for extra, message in [(["--direction", "remove"], "trained to add lesions"),
                           (["--sampling-steps", "51"], "--sampling-steps must be in [1, 50]"),
                           (["--sampler", "euler"], "--sampler must be one of")]:
        bad = _cli(*one, "--out", tmp_path / "x.png", *extra)
        assert bad.exit_code == 2 and bad.output.startswith("error:") and message in bad.output, (extra, bad.output)
        assert bad.output.strip().count("\n") == 0
    Image.fromarray(np.asarray(patches[0].images[0])[:30, :30]).save(tmp_path / "small.png")
    Image.fromarray(np.asarray(patches[1].lesion_masks[0])[:30, :30] * 255).save(tmp_path / "small_mask.png")
    with pytest.raises(DataError, match="multiples of 4"):  # the tiny preset halves twice
        edit_image(checkpoint, tmp_path / "small.png", tmp_path / "small_mask.png", tmp_path / "s.png")


def test_gan_editors_refuse_the_sampling_options(tmp_path, patches):
    healthy, lesion = patches
    out = tmp_path / "cyc"
    train(TrainConfig(model="cyclegan", size=SIZE, width=4, batch_size=1, steps=1, log_every=1, out=str(out)),
          dataset=healthy, dataset_b=lesion, progress=False)
    images, masks = write_pairs(tmp_path, patches, n=1, mask_suffix="_mask")
    for option, message in [(dict(sampler="ddim"), "--sampler applies to diffusion models"),
                            (dict(sampling_steps=3), "--sampling-steps applies to diffusion models"),
                            (dict(seed=1), "--seed applies to diffusion editors")]:
        with pytest.raises(DermsynthError, match=message):
            edit_image(out / "latest.pt", images / "p0.png", None, tmp_path / "o.png", **option)
