"""Issue 18, the commands: output folders used before, per-index sampling, lesion-only pix2pixHD, accepted nonsense
and tracebacks turned into one `error:` line, atomic writes that name their file, honest messages and --help."""

import csv
import errno
import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dermsynth import cli
from dermsynth import io as dio
from dermsynth.cli import main
from dermsynth.data.dataset import ATTRIBUTES, LesionDataset
from dermsynth.data.maps import check_masked, read_maps, superpixels
from dermsynth.data.phantom import generate_phantom
from dermsynth.errors import DermsynthError
from dermsynth.progress import tqdm
from dermsynth.report.figures import plot_curves, save_png
from dermsynth.report.html import HTMLReport
from dermsynth.sample import generate, load_generator, sample_images, write_samples
from dermsynth.train import TrainConfig, train
from dermsynth.translate import translate

from conftest import labelled_noise


def _cli(*args):
    """The CLI in-process: (exit code, stderr, stdout)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    return SimpleNamespace(code=result.exit_code, stderr=result.stderr, stdout=result.stdout)


def _one_line_error(r, *fragments):
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.code == 2 and lines and lines[-1].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and sum(line.startswith("error: ") for line in lines) == 1, r.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


NOISE_MODELS = {
    "dcgan": dict(model="dcgan", width=8, z_dim=16, batch_size=16),
    "conditional-dcgan": dict(model="dcgan", width=8, z_dim=16, batch_size=16, conditional=True),
    "stylegan2": dict(model="stylegan2", width=4, batch_size=8),
    "lapgan": dict(model="lapgan", width=8, z_dim=16, batch_size=16),
}


@pytest.fixture(scope="module")
def noise_checkpoints(tmp_path_factory):
    root, data = tmp_path_factory.mktemp("gans"), labelled_noise()
    return {name: train(TrainConfig(out=str(root / name), size=16, steps=1, **opts), dataset=data,
                        progress=False).checkpoint
            for name, opts in NOISE_MODELS.items()}


# --- sample / translate / edit into a folder used before ------------------------------------------------------


def test_sample_refuses_a_used_folder_and_overwrite_clears_only_its_own_files(tmp_path, noise_checkpoints):
    ckpt, out = noise_checkpoints["dcgan"], tmp_path / "s"
    write_samples(ckpt, 6, out, progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DermsynthError, match=r"--out .* is not empty .*--overwrite"):
        write_samples(ckpt, 3, out, progress=False)
    assert len(list(out.glob("sample_*.png"))) == 6  # nothing touched
    r = _cli("sample", ckpt, "--n", 2, "--out", out, "--quiet", "--device", "cpu")
    _one_line_error(r, "--out", "not empty", "--overwrite")
    r = _cli("sample", ckpt, "--n", 3, "--out", out, "--overwrite", "--quiet", "--device", "cpu")
    assert r.code == 0, r.stderr
    assert sorted(p.name for p in out.glob("sample_*.png")) == [f"sample_0_{i:06d}.png" for i in range(3)]
    assert len(list(csv.DictReader(open(out / "manifest.csv")))) == 3
    assert (out / "notes.txt").read_text() == "mine"  # not ours: kept


def test_overwrite_removes_files_an_earlier_manifest_lists_but_never_outside_the_folder(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (tmp_path / "outside.png").write_bytes(b"x")
    (out / "edited_photo.png").write_bytes(b"x")
    (out / "manifest.csv").write_text("file,image\nedited_photo.png,a\n../outside.png,b\n")
    dio.output_dir(out, "--out", overwrite=True, ours=("manifest.csv",))
    assert list(out.iterdir()) == [] and (tmp_path / "outside.png").exists()


# --- sampling: image i depends on the seed and i, not on --n -------------------------------------------------


@pytest.mark.parametrize("name", list(NOISE_MODELS))
def test_image_i_is_the_same_for_every_n(noise_checkpoints, name):
    model = load_generator(noise_checkpoints[name], "cpu")
    for p in model.generator.parameters():  # StyleGAN2's noise strengths start at 0: make the noise visible
        if p.ndim == 0:
            p.data.fill_(1.0)
    truncated = {"truncation": 0.7} if model.truncation == "latent" else {"psi": 0.7}  # StyleGAN2: in w
    for kw in ({}, truncated, {"batch_size": 4}):
        few, few_labels = sample_images(model, 5, seed=3, **kw)
        many, many_labels = sample_images(model, 70, seed=3, **kw)
        np.testing.assert_array_equal(few, many[:5])
        assert (few_labels is None) == (many_labels is None)
        if few_labels is not None:
            assert torch.equal(few_labels, many_labels[:5])
    if name in ("stylegan2", "lapgan"):  # the models that draw noise inside: it matters and is seeded
        z = torch.randn(4, model.z_dim)
        assert not np.array_equal(generate(model, z, None, seed=1), generate(model, z, None, seed=2))
        np.testing.assert_array_equal(generate(model, z, None, seed=1), generate(model, z, None, seed=1))


def test_sample_command_first_images_of_a_longer_run_are_the_short_run(tmp_path, noise_checkpoints):
    ckpt = noise_checkpoints["stylegan2"]
    state = torch.load(ckpt, weights_only=True)

    def show_noise(tree: dict) -> int:  # StyleGAN2's noise strengths start at 0: set them to 1, wherever stored
        hits = 0
        for key, value in tree.items():
            if isinstance(value, dict):
                hits += show_noise(value)
            elif key.endswith("noise_strength"):
                tree[key], hits = torch.tensor(1.0), hits + 1
        return hits

    assert show_noise(state) > 0
    torch.save(state, tmp_path / "noisy.pt")
    for n in (5, 70):
        write_samples(tmp_path / "noisy.pt", n, tmp_path / f"n{n}", seed=4, batch_size=8, progress=False)
    for i in range(5):
        name = f"sample_4_{i:06d}.png"
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "n5" / name)),
                                      np.asarray(Image.open(tmp_path / "n70" / name)))


# --- pix2pixHD trained on lesion masks only ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lesion_only(tmp_path_factory):
    data = generate_phantom(n=16, size=32, seed=1)
    data.instance_maps = superpixels(data.images)
    lesions = LesionDataset(images=data.images, labels=data.labels, class_names=data.class_names, ids=data.ids,
                            lesion_masks=data.lesion_masks, instance_maps=data.instance_maps)
    root = tmp_path_factory.mktemp("p2p")
    cfg = TrainConfig(out=str(root / "run"), model="pix2pixhd", size=32, width=4, g_downsample=2, g_blocks=1,
                      d_layers=2, d_scales=2, batch_size=4, steps=1)
    ckpt = train(cfg, dataset=lesions, progress=False).checkpoint
    return ckpt, data.save(root / "with_attributes")


def test_lesion_only_pix2pixhd_refuses_attribute_edits_and_attribute_maps(tmp_path, lesion_only):
    ckpt, cache = lesion_only
    assert load_generator(ckpt).generator.semantic_nc == 1
    with pytest.raises(DermsynthError, match="--edit add:globules:0.5,0.5,0.2: .*lesion masks only"):
        translate(ckpt, tmp_path / "a", from_data=str(cache), n=2, edits=["add:globules:0.5,0.5,0.2"],
                  progress=False)
    r = _cli("translate", ckpt, "--from-data", cache, "--n", 2, "--edit", "remove:streaks", "--out", tmp_path / "b",
             "--quiet", "--device", "cpu")
    _one_line_error(r, "--edit remove:streaks", "lesion masks only")
    # its own data's attribute masks are cut to the lesion (the model never saw them), not shown as used
    res = translate(ckpt, tmp_path / "c", from_data=str(cache), n=4, export_maps=True, progress=False)
    assert res.count == 4 and all(m.codes.max() <= 1 for m in read_maps(tmp_path / "c" / "maps", 32))
    maps = tmp_path / "maps"
    maps.mkdir()
    codes = np.zeros((32, 32), np.uint8)
    codes[8:24, 8:24] = 1
    codes[12:16, 12:16] |= 1 << (1 + ATTRIBUTES.index("globules"))
    Image.fromarray(codes).save(maps / "m1_semantic.png")
    Image.fromarray(superpixels(np.zeros((1, 32, 32, 3), np.uint8))[0].astype(np.uint16)).save(maps / "m1_instance.png")
    with pytest.raises(DermsynthError, match=r"m1_semantic.png has attribute regions .*lesion masks only"):
        translate(ckpt, tmp_path / "d", maps=maps, progress=False)


def test_translate_refuses_a_used_folder(tmp_path, lesion_only):
    ckpt, cache = lesion_only
    first = translate(ckpt, tmp_path / "t", from_data=str(cache), n=4, export_maps=True, progress=False)
    with pytest.raises(DermsynthError, match="not empty"):
        translate(ckpt, tmp_path / "t", from_data=str(cache), n=2, progress=False)
    again = translate(ckpt, tmp_path / "t", from_data=str(cache), n=2, progress=False, overwrite=True)
    assert again.count == 2 and sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "grid.png", "manifest.csv", "translated_000000.png", "translated_000001.png"]  # old maps/ gone too
    assert first.manifest == again.manifest


def test_edit_folder_refuses_a_used_folder_and_overwrite_replaces_its_outputs(tmp_path):
    from _edit_data import phantom_patches

    from dermsynth.edit import edit_folder

    healthy, lesion = phantom_patches(tmp_path / "patches", n=24)
    cfg = TrainConfig(out=str(tmp_path / "run"), model="unet-translator", size=32, width=4, batch_size=2, steps=1)
    ckpt = train(cfg, dataset=healthy, dataset_b=lesion, progress=False).checkpoint
    for folder in ("img", "msk"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        Image.fromarray(np.asarray(healthy.images[i])).save(tmp_path / "img" / f"p{i}.png")
        Image.fromarray(np.asarray(lesion.lesion_masks[i]) * 255).save(tmp_path / "msk" / f"p{i}_segmentation.png")
    out = tmp_path / "out"
    edit_folder(ckpt, tmp_path / "img", tmp_path / "msk", out, progress=False)
    (tmp_path / "img" / "p2.png").unlink()
    (tmp_path / "msk" / "p2_segmentation.png").unlink()
    with pytest.raises(DermsynthError, match="not empty"):
        edit_folder(ckpt, tmp_path / "img", tmp_path / "msk", out, progress=False)
    r = _cli("edit", ckpt, "--image", tmp_path / "img" / "p0.png", "--out", tmp_path / "one.png", "--overwrite")
    _one_line_error(r, "--overwrite goes with --images")
    edit_folder(ckpt, tmp_path / "img", tmp_path / "msk", out, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "manifest.csv", "p0.png", "p1.png",
                                                     "relevance.json"]  # the stale p2.png is gone


# --- --synthetic-class of an unconditional GAN ---------------------------------------------------------------


def test_synthetic_class_labels_every_image_with_that_class_and_says_so(noise_checkpoints):
    from dermsynth.classify.experiment_config import Condition, synthetic_counts
    from dermsynth.classify.synthetic import GeneratorSource

    source = GeneratorSource(noise_checkpoints["dcgan"], class_name="MEL", device="cpu")
    counts = synthetic_counts(Condition.parse("real+synth:1"), [10, 30, 20], ["MEL", "NV", "BCC"], source)
    assert counts.tolist() == [60, 0, 0]  # all synthetic images are melanoma: what --help and results say
    assert "every image labelled MEL" in source.describe()["labels"]
    assert "all of that one class" in " ".join(_cli("augment", "--help").stdout.split())


# --- accepted nonsense and tracebacks: one error line naming the option --------------------------------------


@pytest.mark.parametrize("args, fragments", [
    (["demo", "--steps", 0], ["--steps must be >= 1"]),
    (["demo", "--size", -32], ["--size must be >= 1"]),
    (["train", "--model", "stylegan2", "--fmaps", 0], ["--fmaps", "> 0"]),
    (["train", "--model", "pix2pixhd", "--size", 128, "--lambda-feat", -10], ["--lambda-feat", ">= 0"]),
    (["train", "--model", "dcgan", "--direction", "remove"], ["--direction does not apply to --model dcgan"]),
    (["train", "--model", "dcgan", "--no-instance"], ["--instance does not apply to --model dcgan"]),
    (["train", "--lr-d", "inf"], ["--lr-d", "finite"]),
    (["train", "--model", "stylegan2", "--r1-interval", 0], ["--r1-interval must be >= 1"]),
    (["train", "--model", "stylegan2", "--pl-interval", 0], ["--pl-interval must be >= 1"]),
    (["train", "--model", "stylegan2", "--style-mixing", 2], ["--style-mixing must be in [0, 1]"]),
    (["train", "--model", "pix2pixhd", "--size", 16], ["--g-downsample", "--size 128 or more"]),
    (["train", "--model", "pix2pixhd", "--size", 32, "--g-downsample", 1, "--d-scales", 6], ["--d-scales",
                                                                                             "at most 5"]),
    (["compare", "--models", "dcgan,pix2pixhd"], ["--models: pix2pixhd", "dcgan, ddpm, lapgan, pgan, stylegan2"]),
    (["evaluate", "--real", "phantom:8", "--fake", "phantom:8", "--max-images", -5], ["--max-images must be >= 1"]),
    (["patches", "phantom:4", "--read-size", 0], ["--read-size must be >= 1"]),
])
def test_nonsense_options_are_one_error_line(tmp_path, args, fragments):
    _one_line_error(_cli(*args, "--out", tmp_path / "out", *(["--quiet"] if args[0] != "compare" else [])),
                    *fragments)


def test_train_extractor_out_naming_a_folder_is_refused_before_training(tmp_path):
    (tmp_path / "dir").mkdir()
    for out in (f"{tmp_path}/new/", tmp_path / "dir"):
        _one_line_error(_cli("train-extractor", "--data", "phantom:8", "--out", out, "--quiet"), "--out",
                        "names a folder")
    assert not (tmp_path / "new").exists() or (tmp_path / "new").is_dir()


def test_one_pixel_training_images_are_refused_naming_the_file(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((1, 1, 3), 40 * i, np.uint8)).save(folder / f"im{i}.png")
    _one_line_error(_cli("prepare", folder, "--size", 16, "--out", tmp_path / "cache"), "im0.png", "1x1 px",
                    "at least 4 px", "too small")


# --- writes: atomic, and every failure names its file --------------------------------------------------------


def _full_disk_after(monkeypatch, chunks: int = 0):
    """Make every atomic write fail with ENOSPC after ``chunks`` writes of its file."""
    real = dio._InterruptNoticingFile.write
    count = {"n": 0}

    def write(self, data):
        count["n"] += 1
        if count["n"] > chunks:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(dio._InterruptNoticingFile, "write", write)


def _write_losses_png(path):
    csv_path = path.with_suffix(".csv")
    csv_path.write_text("step,g_loss,d_loss\n1,1.0,2.0\n2,0.5,1.5\n")
    return plot_curves(csv_path, path)


WRITERS = {
    "sample png": lambda path: save_png(np.zeros((8, 8, 3), np.uint8), path),
    "grid png": lambda path: save_png(np.zeros((8, 8, 3), np.uint8), path, min_side=64),
    "losses.png": _write_losses_png,
    "report.html": lambda path: HTMLReport("t").paragraph("x").write(path),
    "manifest.csv": lambda path: dio.write_csv(path, ["file"], [["a.png"]]),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_failed_write_keeps_the_previous_file_and_names_it(tmp_path, monkeypatch, name):
    path = tmp_path / ("out.png" if name.endswith("png") else name)
    path.write_bytes(b"previous")
    _full_disk_after(monkeypatch)
    with pytest.raises(DermsynthError, match=rf"{path}: cannot write \(no space left on device\)"):
        WRITERS[name](path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    monkeypatch.undo()
    WRITERS[name](path)
    assert path.read_bytes() != b"previous"


def test_translate_maps_export_failure_names_the_map_file(tmp_path, monkeypatch, lesion_only):
    from dermsynth.data.maps import maps_of, write_maps

    data = LesionDataset.load(lesion_only[1])
    _full_disk_after(monkeypatch)
    with pytest.raises(DermsynthError, match=rf"{tmp_path / 'maps' / data.ids[0]}_semantic.png: cannot write"):
        write_maps(maps_of(data, np.arange(2)), tmp_path / "maps")


def test_sample_write_failure_names_the_png(tmp_path, monkeypatch, noise_checkpoints):
    _full_disk_after(monkeypatch)
    r = _cli("sample", noise_checkpoints["dcgan"], "--n", 2, "--out", tmp_path / "s", "--quiet", "--device", "cpu")
    _one_line_error(r, str(tmp_path / "s" / "sample_0_000000.png"), "no space left")


def test_a_second_ctrl_c_during_a_checkpoint_write_says_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    dio.save_torch({"w": torch.zeros(3)}, path)
    before = path.read_bytes()
    real = dio._InterruptNoticingFile.write

    def write(self, data):  # what the trainer's signal handler does on a second Ctrl-C, mid torch.save
        raise KeyboardInterrupt

    monkeypatch.setattr(dio._InterruptNoticingFile, "write", write)
    with pytest.raises(KeyboardInterrupt, match="latest.pt: the write was interrupted; the previous file is kept"):
        dio.save_torch({"w": torch.ones(100_000)}, path)
    assert path.read_bytes() == before
    monkeypatch.setattr(dio._InterruptNoticingFile, "write", real)
    monkeypatch.setattr("dermsynth.sample.write_samples",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt(f"{path}: the write was interrupted")))
    r = _cli("sample", path, "--out", tmp_path / "s", "--quiet", "--device", "cpu")
    assert r.code == 130 and r.stderr.strip() == f"interrupted: {path}: the write was interrupted"
    assert "disk full" not in r.stderr


# --- messages that point the right way -----------------------------------------------------------------------


def test_no_lesion_mask_at_all_does_not_recommend_skip_unmasked():
    data = generate_phantom(n=4, size=16)
    data.lesion_masks[:] = 0
    with pytest.raises(DermsynthError, match="none of the 4 images has a lesion mask") as exc:
        check_masked(data)
    assert "--skip-unmasked" not in str(exc.value)


def test_unwritable_default_cache_names_dermsynth_cache_not_out(tmp_path, monkeypatch):
    from dermsynth.data import prepare as prepare_module

    def read_only(path, option=None):
        raise DermsynthError(f"{path}: cannot write there (Read-only file system)" +
                             (f"; choose another {option}" if option else ""))

    monkeypatch.setenv("DERMSYNTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(prepare_module, "check_writable_dir", read_only)
    generate_phantom(n=4, size=16).save(tmp_path / "src")
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 50 * i, np.uint8)).save(images / f"i{i}.png")
    with pytest.raises(DermsynthError, match=r"Read-only file system\): the cache folder .*cache is not writable; "
                                             r"set DERMSYNTH_CACHE") as exc:
        prepare_module.prepare(images, 16, progress=False)
    assert "--out" not in str(exc.value)
    with pytest.raises(DermsynthError, match="choose another --out"):
        prepare_module.prepare(images, 16, out=tmp_path / "mine", progress=False)


# --- --help lists what the options take ----------------------------------------------------------------------


def test_help_lists_registry_names_and_explains_baseline():
    from dermsynth.compare import comparable_models

    assert list(cli.COMPARE_MODELS) == comparable_models()
    assert cli.MAP_ATTRIBUTES == ATTRIBUTES
    flat = lambda command: " ".join(_cli(command, "--help").stdout.split())  # noqa: E731
    assert f"one of: {', '.join(comparable_models())}" in flat("compare")
    assert f"ATTR one of: {', '.join(ATTRIBUTES)}" in flat("translate")
    assert "--baseline TEXT The condition every other one is compared with" in flat("augment")


# --- progress in a log: one line per interval, whatever the trainer refreshes --------------------------------


def test_progress_in_a_log_is_not_one_line_per_postfix():
    log = io.StringIO()
    bar = tqdm(total=300, file=log, desc="train")
    for i in range(300):
        bar.update(1)
        bar.set_postfix({"loss": f"{i:.3f}"})
    bar.close()
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 3, lines  # the first, at most one timed one, the last
    assert "300/300" in lines[-1] and "loss=299.000" in lines[-1]


def test_train_with_log_every_1_prints_few_progress_lines(tmp_path, capsys):
    cfg = TrainConfig(out=str(tmp_path / "run"), size=16, width=4, z_dim=8, batch_size=8, steps=60, log_every=1,
                      sample_every=100, checkpoint_every=100)
    train(cfg, dataset=labelled_noise(n=16), progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if "step" in line]
    assert 1 <= len(lines) <= 4, lines
    assert sum(1 for _ in open(tmp_path / "run" / "losses.csv")) == 61  # every step logged to the CSV still
