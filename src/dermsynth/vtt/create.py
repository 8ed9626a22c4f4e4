"""Make a study from sources: real images from anything :func:`~dermsynth.data.prepare.load_dataset` reads,
fake images from such a source too or sampled from a training checkpoint; both at one size, encoded as
plain PNGs (no metadata), so that neither file size nor format gives the key away beyond the pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.data.prepare import load_dataset
from dermsynth.errors import DermsynthError
from dermsynth.sample import load_generator, sample_images
from dermsynth.vtt.store import Study, StudyImage, StudySettings


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes, no text chunks."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def is_checkpoint(spec: str | Path) -> bool:
    """A training checkpoint: a ``.pt`` file, or a run folder with ``latest.pt``."""
    path = Path(spec).expanduser()
    return (path.is_file() and path.suffix == ".pt") or (path.is_dir() and (path / "latest.pt").is_file())


def _pick(images: np.ndarray, ids: list[str], n: int, what: str, spec: str, rng: np.random.Generator):
    if n > len(images):
        raise DermsynthError(f"--{what} {spec}: {len(images)} images, fewer than --n-{what} {n}")
    idx = np.sort(rng.choice(len(images), size=n, replace=False))
    return [(ids[i], np.asarray(images[i])) for i in idx]


def create_study(out: str | Path, real: str, fake: str, n_real: int = 50, n_fake: int = 30, *,
                 size: int | None = None, per_rater_order: bool = False, images_per_rater: int | None = None,
                 time_limit: float | None = None,
                 allow_revise: bool = False, confidence: bool = False, title: str | None = None,
                 truncation: float | None = None, seed: int = 0, device: str = "auto",
                 overwrite: bool = False) -> Study:
    """Draw ``n_real`` real and ``n_fake`` fake images (reproducibly from ``seed``) into a new study file.

    ``fake`` is a checkpoint (sampled with ``truncation``) or an image source. The size is the generator's
    resolution for a checkpoint, else ``size``, else the real source's own (a prepared cache's) or 64.
    With two phantom sources the fake set is drawn with another seed, so the sets differ.
    """
    for what, n in (("real", n_real), ("fake", n_fake)):
        if n < 1:
            raise DermsynthError(f"--n-{what} must be >= 1, got {n}")
    if images_per_rater is not None and not 2 <= images_per_rater <= n_real + n_fake:
        raise DermsynthError(f"--images-per-rater must be between 2 and the study's {n_real + n_fake} images, "
                             f"got {images_per_rater}")
    if time_limit is not None and time_limit <= 0:
        raise DermsynthError(f"--time-limit must be > 0 seconds, got {time_limit}")
    rng = np.random.default_rng(seed)
    model = load_generator(fake, device) if is_checkpoint(fake) else None
    if model is not None:
        gen_size = int(model.generator.resolution)
        if size is not None and size != gen_size:
            raise DermsynthError(f"--size {size} differs from the generator's {gen_size}px output ({fake})")
        size = gen_size
    real_ds = load_dataset(real, size=size, seed=seed, progress=False)
    real_items = _pick(real_ds.images, real_ds.ids, n_real, "real", real, rng)
    if model is not None:
        samples, _ = sample_images(model, n_fake, seed=seed, truncation=truncation)
        fake_items = [(f"sample_{i:06d}", img) for i, img in enumerate(samples)]
        fake_origin = f"{fake} (sampled, seed {seed}, truncation {truncation})"
    else:
        if truncation is not None:
            raise DermsynthError("--truncation applies only when --fake is a checkpoint")
        fake_ds = load_dataset(fake, size=real_ds.size, seed=seed + 1, progress=False)
        fake_items = _pick(fake_ds.images, fake_ds.ids, n_fake, "fake", fake, rng)
        fake_origin = str(fake)
    images = [StudyImage(encode_png(img), True, "real", str(i)) for i, img in real_items]
    images += [StudyImage(encode_png(img), False, "fake", str(i)) for i, img in fake_items]
    settings = StudySettings(per_rater_order=per_rater_order or images_per_rater is not None,
                             images_per_rater=images_per_rater, time_limit=time_limit, allow_revise=allow_revise,
                             confidence=confidence,
                             sources={"real": str(real), "fake": fake_origin, "size": real_ds.size, "seed": seed,
                                      "n_real": n_real, "n_fake": n_fake})
    if title:
        settings.title = title
    return Study.create(out, images, settings, overwrite=overwrite)
