"""Make a study from sources: real images from anything :func:`~dermsynth.data.prepare.load_dataset` reads,
fake images from such a source too or sampled from a training checkpoint; all at one size, the sources'
native one by default (never enlarged unless asked, with a warning), encoded as uncompressed PNGs without
metadata, so that every image of a study has the same byte size: neither file size nor format tells real
from fake."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.prepare import load_dataset
from dermsynth.data.readers import read_source
from dermsynth.defaults import DEFAULT_SIZE
from dermsynth.errors import DermsynthError
from dermsynth.sample import load_generator, sample_images
from dermsynth.vtt.store import DEFAULT_MIN_DISPLAY_MS, Study, StudyImage, StudySettings

# The largest default side: what fits a 768 px-high laptop screen beside the page's controls. Larger sources
# are reduced to it by default (never enlarged); the rating page's 1:1 view shows the stored pixels.
MAX_DEFAULT_SIZE = 512


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> uncompressed PNG bytes, no text chunks: the byte size depends on H and W only."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def is_checkpoint(spec: str | Path) -> bool:
    """A training checkpoint: a ``.pt`` file, or a run folder with ``latest.pt``."""
    path = Path(spec).expanduser()
    return (path.is_file() and path.suffix == ".pt") or (path.is_dir() and (path / "latest.pt").is_file())


def native_size(spec: str) -> int | None:
    """The largest square side a source gives without enlarging any of its images (the smallest image side;
    a prepared cache's own size); None for phantom sources, which are drawn at any size."""
    if spec.strip().lower().split(":")[0] == "phantom" and not Path(spec).exists():
        return None
    path = Path(spec).expanduser()
    if path.is_dir() and LesionDataset.is_cache(path):
        return int(LesionDataset.load(path).size)
    sides = []
    for rec in read_source(path).records:
        if isinstance(rec.image, np.ndarray):
            sides.append(min(rec.image.shape[:2]))
        else:
            try:
                with Image.open(rec.image) as im:  # the header only: no decoding
                    sides.append(min(im.size))
            except OSError:
                continue  # an unreadable file: load_dataset reports it
    return min(sides) if sides else None


def _pick(images: np.ndarray, ids: list[str], n: int, what: str, spec: str, rng: np.random.Generator):
    if n > len(images):
        raise DermsynthError(f"--{what} {spec}: {len(images)} images, fewer than --n-{what} {n} (calibration "
                             f"images included)")
    idx = np.sort(rng.choice(len(images), size=n, replace=False))
    return [(ids[i], np.asarray(images[i])) for i in idx]


def _read_text(value: str | None, option: str) -> str | None:
    """Instructions / consent: the text itself, or ``@FILE`` (Markdown or plain text)."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DermsynthError(f"{option} {path}: cannot read it ({exc.__class__.__name__})") from None


def create_study(out: str | Path, real: str, fake: str, n_real: int = 50, n_fake: int = 30, *,
                 size: int | None = None, shared_order: bool = False, order_seed: int | None = None,
                 images_per_rater: int | None = None, time_limit: float | None = None,
                 min_display_ms: int = DEFAULT_MIN_DISPLAY_MS, calibration: int = 0,
                 instructions: str | None = None, consent: str | None = None,
                 allow_revise: bool = False, confidence: bool = False, title: str | None = None,
                 truncation: float | None = None, seed: int = 0, device: str = "auto",
                 overwrite: bool = False, warn=None) -> Study:
    """Draw ``n_real`` real and ``n_fake`` fake images (reproducibly from ``seed``) into a new study file,
    plus ``calibration`` training images (half real, half fake, disjoint from the scored ones).

    ``fake`` is a checkpoint (sampled with ``truncation``) or an image source. The size is the generator's
    resolution for a checkpoint, else ``size``, else the sources' native size (:func:`native_size`, at most
    :data:`MAX_DEFAULT_SIZE`; 64 for two phantom sources). ``warn(message)`` is told when images will be
    enlarged. Every rater gets their own order seeded from ``order_seed`` (drawn and recorded when None),
    or the one shared order with ``shared_order``. ``instructions`` / ``consent``: text or ``@FILE``.
    """
    for what, n in (("real", n_real), ("fake", n_fake)):
        if n < 1:
            raise DermsynthError(f"--n-{what} must be >= 1, got {n}")
    if images_per_rater is not None and not 2 <= images_per_rater <= n_real + n_fake:
        raise DermsynthError(f"--images-per-rater must be between 2 and the study's {n_real + n_fake} images, "
                             f"got {images_per_rater}")
    if images_per_rater is not None and shared_order:
        raise DermsynthError("--shared-order and --images-per-rater exclude each other (each rater's subset is "
                             "drawn at random)")
    if time_limit is not None and time_limit <= 0:
        raise DermsynthError(f"--time-limit must be > 0 seconds, got {time_limit}")
    if not 0 <= min_display_ms <= 60000:
        raise DermsynthError(f"--min-display-ms must be between 0 and 60000, got {min_display_ms}")
    if calibration < 0:
        raise DermsynthError(f"--calibration must be >= 0, got {calibration}")
    if size is not None and size < 1:
        raise DermsynthError(f"--size must be >= 1 pixel, got {size}")
    instructions, consent = _read_text(instructions, "--instructions"), _read_text(consent, "--consent")
    warn = warn or (lambda message: None)
    cal_real, cal_fake = (calibration + 1) // 2, calibration // 2
    rng = np.random.default_rng(seed)
    model = load_generator(fake, device) if is_checkpoint(fake) else None
    natives = {"real": native_size(real), "fake": None if model else native_size(fake)}
    if model is not None:
        gen_size = int(model.generator.resolution)
        if size is not None and size != gen_size:
            raise DermsynthError(f"--size {size} differs from the generator's {gen_size}px output ({fake})")
        natives["fake"] = size = gen_size
    if size is None:
        known = [n for n in natives.values() if n]
        size = min(known + [MAX_DEFAULT_SIZE]) if known else DEFAULT_SIZE
    for what, native in natives.items():
        if native is not None and native < size:
            warn(f"--{what} images are {native} px at most and will be enlarged to {size} px (interpolated "
                 f"pixels a rater may notice); --size {native} keeps them native")
    real_ds = load_dataset(real, size=size, seed=seed, progress=False)
    real_items = _pick(real_ds.images, real_ds.ids, n_real + cal_real, "real", real, rng)
    if model is not None:
        samples, _ = sample_images(model, n_fake + cal_fake, seed=seed, truncation=truncation)
        fake_items = [(f"sample_{i:06d}", img) for i, img in enumerate(samples)]
        fake_origin = f"{fake} (sampled, seed {seed}, truncation {truncation})"
    else:
        if truncation is not None:
            raise DermsynthError("--truncation applies only when --fake is a checkpoint")
        fake_ds = load_dataset(fake, size=real_ds.size, seed=seed + 1, progress=False)
        fake_items = _pick(fake_ds.images, fake_ds.ids, n_fake + cal_fake, "fake", fake, rng)
        fake_origin = str(fake)
    # calibration images: drawn with the scored ones, then set apart (disjoint by construction)
    cal_idx = {"real": set(rng.choice(len(real_items), cal_real, replace=False).tolist()),
               "fake": set(rng.choice(len(fake_items), cal_fake, replace=False).tolist())}
    images = [StudyImage(encode_png(img), True, "real", str(i), k in cal_idx["real"])
              for k, (i, img) in enumerate(real_items)]
    images += [StudyImage(encode_png(img), False, "fake", str(i), k in cal_idx["fake"])
               for k, (i, img) in enumerate(fake_items)]
    if len({len(im.png) for im in images}) != 1:  # cannot happen at one size; a leak if it ever did
        raise DermsynthError("internal: the study's images differ in byte size")
    settings = StudySettings(
        shared_order=shared_order,
        order_seed=random.SystemRandom().randrange(2**31) if order_seed is None else int(order_seed),
        images_per_rater=images_per_rater, time_limit=time_limit, min_display_ms=int(min_display_ms),
        allow_revise=allow_revise, confidence=confidence, calibration=calibration, size=int(real_ds.size),
        consent=(consent or "").strip(),
        sources={"real": str(real), "fake": fake_origin, "size": real_ds.size, "seed": seed, "n_real": n_real,
                 "n_fake": n_fake, "native_size": natives, "calibration_real": cal_real,
                 "calibration_fake": cal_fake})
    if title:
        settings.title = title
    if instructions:
        settings.instructions = instructions.strip()
    return Study.create(out, images, settings, overwrite=overwrite)
