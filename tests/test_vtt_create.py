"""Making studies: from two image sources or a generator checkpoint; one size; plain PNGs; clear errors."""

import io

import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner
from starlette.testclient import TestClient

from dermsynth.cli import main
from dermsynth.errors import DermsynthError
from dermsynth.sample import load_generator, sample_images
from dermsynth.train import TrainConfig, train
from dermsynth.vtt.create import create_study, is_checkpoint
from dermsynth.vtt.server import create_app

from _vtt_study import make_study
from conftest import SHARED_DATA, labelled_noise, needs_shared


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = TrainConfig(out=str(tmp_path_factory.mktemp("gan")), size=16, width=8, z_dim=16, batch_size=16, steps=2)
    return train(cfg, dataset=labelled_noise(), progress=False).checkpoint


def _pixels(study) -> dict[str, np.ndarray]:
    return {i: np.asarray(Image.open(io.BytesIO(study.png(i)))) for i in study.images_frame().image_id}


def test_study_from_two_sources(tmp_path):
    study = make_study(tmp_path / "s.sqlite", n_real=5, n_fake=3)
    images = study.images_frame()
    assert (images.is_real == 1).sum() == 5 and (images.is_real == 0).sum() == 3
    assert images.origin_id.is_unique  # two phantom sets drawn with different seeds
    pixels = _pixels(study)
    assert {p.shape for p in pixels.values()} == {(16, 16, 3)}
    assert len({p.tobytes() for p in pixels.values()}) == 8
    assert study.settings.sources["size"] == 16 and study.settings.sources["n_real"] == 5


def test_study_from_a_checkpoint_samples_the_generator(tmp_path, checkpoint):
    assert is_checkpoint(checkpoint) and is_checkpoint(checkpoint.parent) and not is_checkpoint(tmp_path)
    study = create_study(tmp_path / "g.sqlite", real="phantom:10", fake=str(checkpoint.parent), n_real=4, n_fake=3,
                         seed=5)
    images = study.images_frame()
    fakes = images[images.is_real == 0].sort_values("origin_id")
    assert fakes.origin_id.tolist() == ["sample_000000", "sample_000001", "sample_000002"]
    expected, _ = sample_images(load_generator(checkpoint), 3, seed=5)
    got = _pixels(study)
    for row, img in zip(fakes.itertuples(), expected, strict=True):
        assert np.array_equal(got[row.image_id], img)  # exactly the generator's samples, losslessly stored
    assert {p.shape for p in got.values()} == {(16, 16, 3)}  # real images read at the generator's size


def test_creation_errors(tmp_path, checkpoint):
    with pytest.raises(DermsynthError, match="differs from the generator"):
        create_study(tmp_path / "a.sqlite", real="phantom:10", fake=str(checkpoint), n_real=2, n_fake=2, size=32)
    with pytest.raises(DermsynthError, match="--truncation applies only"):
        create_study(tmp_path / "b.sqlite", real="phantom:10", fake="phantom:10", n_real=2, n_fake=2, truncation=0.5)
    with pytest.raises(DermsynthError, match="--n-fake must be >= 1"):
        create_study(tmp_path / "c.sqlite", real="phantom:10", fake="phantom:10", n_real=2, n_fake=0)
    with pytest.raises(DermsynthError, match="nowhere: no such file"):
        create_study(tmp_path / "d.sqlite", real=str(tmp_path / "nowhere"), fake="phantom:10", n_real=2, n_fake=2)
    assert not any(tmp_path.glob("*.sqlite"))  # nothing half-written


@needs_shared
def test_study_from_real_images_keeps_their_ids_out_of_the_browser(tmp_path):
    study = create_study(tmp_path / "ph2.sqlite", real=str(SHARED_DATA / "ph2"), fake="phantom:6", n_real=5,
                         n_fake=3, size=32, min_display_ms=0)
    images = study.images_frame()
    real_ids = images[images.is_real == 1].origin_id.tolist()
    assert len(real_ids) == 5 and all(i.startswith("IMD") for i in real_ids)
    assert {p.shape for p in _pixels(study).values()} == {(32, 32, 3)}
    (rater,) = study.add_raters("dermatologist", 1)
    client = TestClient(create_app(study))
    seen = client.get(f"/r/{rater.token}").text + client.post(f"/api/{rater.token}/start", json={}).text
    for _ in range(8):
        state = client.get(f"/api/{rater.token}/state").json()
        image_id = state["items"][state["current"]]["id"]
        seen += client.get(f"/api/{rater.token}/image/{image_id}").headers.get("content-type", "")
        seen += client.post(f"/api/{rater.token}/answer", json={"image": image_id, "answer": "real"}).text
    assert not any(i in seen for i in real_ids) and "ph2" not in seen


def _folder(root, name: str, shape: tuple[int, int], n: int = 6):
    root.mkdir()
    rng = np.random.default_rng(len(name))
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(root / f"{name}_{i}.png")
    return str(root)


def test_native_size_by_default_and_a_warning_on_enlargement(tmp_path):
    real = _folder(tmp_path / "real", "r", (30, 40))   # 40x30 photographs: 30 px squares without enlarging
    fake = _folder(tmp_path / "fake", "f", (48, 48))
    warnings = []
    study = create_study(tmp_path / "a.sqlite", real=real, fake=fake, n_real=3, n_fake=3, warn=warnings.append)
    assert study.settings.size == 30 and not warnings
    assert {p.shape for p in _pixels(study).values()} == {(30, 30, 3)}
    study = create_study(tmp_path / "b.sqlite", real=real, fake=fake, n_real=3, n_fake=3, size=40,
                         warn=warnings.append)
    assert len(warnings) == 1 and "--real images are 30 px at most and will be enlarged to 40 px" in warnings[0]
    assert create_study(tmp_path / "c.sqlite", real="phantom:8", fake="phantom:8", n_real=2, n_fake=2,
                        warn=warnings.append).settings.size == 64 and len(warnings) == 1
    r = CliRunner().invoke(main, ["vtt", "create", "--real", real, "--fake", fake, "--n-real", "2", "--n-fake", "2",
                                  "--size", "48", "--out", str(tmp_path / "d.sqlite")])
    assert r.exit_code == 0 and "warning: --real images are 30 px" in r.output and "at 48 px" in r.output


def test_generator_larger_than_the_real_images_warns(tmp_path, checkpoint):
    real = _folder(tmp_path / "small", "s", (12, 12))
    warnings = []
    study = create_study(tmp_path / "g.sqlite", real=real, fake=str(checkpoint), n_real=2, n_fake=2,
                         warn=warnings.append)
    assert study.settings.size == 16 and "enlarged to 16 px" in warnings[0]


def test_option_errors(tmp_path):
    for kwargs, message in ((dict(shared_order=True, images_per_rater=4), "exclude each other"),
                            (dict(min_display_ms=-1), "--min-display-ms"),
                            (dict(calibration=-1), "--calibration must be >= 0"),
                            (dict(calibration=20), "fewer than --n-real"),
                            (dict(consent="@" + str(tmp_path / "none.md")), "--consent")):
        with pytest.raises(DermsynthError, match=message):
            create_study(tmp_path / "e.sqlite", real="phantom:10", fake="phantom:10", n_real=4, n_fake=4, **kwargs)
    assert not list(tmp_path.iterdir())  # nothing half-written
    (tmp_path / "consent.md").write_text("# Consent\n\nI agree to **take part**.\n")
    study = create_study(tmp_path / "ok.sqlite", real="phantom:10", fake="phantom:10", n_real=4, n_fake=4,
                         consent="@" + str(tmp_path / "consent.md"), instructions="Look closely.")
    assert study.settings.consent.startswith("# Consent") and study.settings.instructions == "Look closely."
    assert study.settings.public()["consent"] == study.settings.consent


def test_a_study_on_read_only_media_reports_and_refuses_to_serve(tmp_path, monkeypatch):
    """A finished study copied to read-only media (or without write permission) is still a study: it reports
    and lists its raters, and serving or inviting, which must write, is one error line."""
    import os

    from click.testing import CliRunner

    from _vtt_study import give, make_study, order
    from dermsynth.cli import main
    from dermsynth.vtt import store as store_module
    from dermsynth.vtt.report import write_report

    study = make_study(tmp_path / "s.sqlite")
    rater = study.add_raters("derm", 1)[0]
    for image_id in order(study, rater)[:3]:
        give(study, rater, image_id, "real")
    study.close()
    real_access = os.access
    monkeypatch.setattr(store_module.os, "access",
                        lambda path, mode: False if mode == os.W_OK else real_access(path, mode))
    reopened = store_module.Study(tmp_path / "s.sqlite")
    assert reopened.read_only and len(reopened.raters()) == 1
    write_report(reopened, tmp_path / "report")
    assert (tmp_path / "report" / "report.json").is_file()
    assert not (tmp_path / "s.sqlite-wal").exists()  # opened immutable: nothing written beside it
    for args, what in ((["serve", str(tmp_path / "s.sqlite")], "record answers"),
                       (["invite", str(tmp_path / "s.sqlite"), "--group", "x"], "take new raters")):
        result = CliRunner().invoke(main, ["vtt", *args])
        assert result.exit_code == 2 and f"read-only, so it cannot {what}" in result.stderr


def test_create_on_a_full_disk_is_one_error_line_and_leaves_nothing(tmp_path):
    import os
    import shutil
    import subprocess

    from dermsynth.errors import DermsynthError

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        from _vtt_study import make_study

        with pytest.raises(DermsynthError, match=r"s\.sqlite: cannot write the study \(database or disk is full\)"):
            make_study(mnt / "s.sqlite", n_real=20, n_fake=20)
        assert list(mnt.iterdir()) == []  # no half-made study blocks the next try
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
