"""Sampling from a trained generator (any model in the registry): PNGs with a manifest, truncation, latent walks,
and :func:`translate_images` for map -> image (and image -> image) generators.

A checkpoint names the network that is sampled (``sampled``, the generator of a GAN) and records what it
takes (``sampled_inputs``: batch field names in call order):
noise -> image generators take ``("z", "labels")`` and are *sampled*; the others take maps or images from a
dataset (``dermsynth.data.batch``) and are *translated*.

Images always come out at the model's full resolution (a PGAN checkpoint taken while it was still growing is
enlarged nearest-neighbour, as Karras' generator shows it). Generators that draw noise inside (LAPGAN's
band noise) draw it from a stream seeded by the sampling seed, so samples are reproducible by seed.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.maps import LesionMap, maps_dataset
from dermsynth.device import resolve_device
from dermsynth.errors import CheckpointError, DermsynthError
from dermsynth.io import output_dir, write_csv
from dermsynth.progress import tqdm
from dermsynth.models import MODELS, NOISE_INPUTS, build_networks
from dermsynth.models.diffusion import Denoiser, class_labels, maps_condition
from dermsynth.models.layers import upsample_to
from dermsynth.report.figures import image_grid, save_png, to_uint8
from dermsynth.data.batch import batch_from_dataset
from dermsynth.checkpoint import assert_finite_weights, load_checkpoint


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint, in eval mode, with what is needed to sample it."""

    generator: nn.Module
    class_names: list[str]
    z_dim: int
    conditional: bool
    checkpoint: Path
    step: int
    inputs: tuple[str, ...] = NOISE_INPUTS
    model: str = ""
    #: the run's resolved training options (its config.json)
    config: dict = field(default_factory=dict)

    @property
    def samples_noise(self) -> bool:
        """True for noise -> image generators (sampled from latents), False for map -> image and image -> image
        generators."""
        return "z" in self.inputs

    @property
    def diffusion(self) -> bool:
        """True for a diffusion model (its network is a denoiser, sampled by a diffusion sampler)."""
        return isinstance(self.generator, Denoiser)

    @property
    def takes_instance(self) -> bool:
        """True for a map -> image generator trained with superpixel instance maps (pix2pixHD without
        ``--no-instance``)."""
        return bool(getattr(self.generator, "instance", "instance" in self.inputs))  # a denoiser: by its inputs

    def require_noise(self) -> None:
        if not self.samples_noise:
            command = "dermsynth edit" if "images" in self.inputs else "dermsynth translate"
            raise DermsynthError(f"{self.checkpoint} is a {self.model or 'translation'} model that takes "
                                 f"{', '.join(self.inputs)}, not latents; use `{command}`")

    @property
    def semantic_channels(self) -> int:
        """The semantic-map channels a map -> image model takes (pix2pixHD's ``semantic_nc``; a map-conditioned
        denoiser's conditioning channels less the instance map's)."""
        if self.diffusion:
            return self.generator.condition_channels - int(self.takes_instance)
        return int(self.generator.semantic_nc)

    def require_maps(self) -> None:
        """A one-line error unless this generator translates semantic (lesion) maps (pix2pixHD)."""
        if self.samples_noise:
            raise DermsynthError(f"{self.checkpoint} samples from latents; use `dermsynth sample`")
        if "semantic" not in self.inputs:
            raise DermsynthError(f"{self.checkpoint}: a {self.model} model takes {', '.join(self.inputs)}, not "
                                 f"lesion maps; use `dermsynth edit`")

    @property
    def truncation(self) -> str | None:
        """How this model's samples are truncated: "latent", "w" (``psi``) or None (``ModelSpec.truncation``)."""
        spec = MODELS.get(self.model)
        return spec.truncation if spec is not None else "latent"

    def latents(self, n: int, truncation: float | None, generator: torch.Generator) -> torch.Tensor:
        """``n`` latents, components beyond ``truncation`` resampled (:func:`truncated_normal`); refused for a
        generator that renormalises z, where the resampling would change nothing."""
        if truncation is not None and self.truncation != "latent":
            hint = ("truncate toward the average w with --psi instead" if self.truncation == "w"
                    else "this model has no truncation")
            raise DermsynthError(f"--truncation: a {self.model} generator normalises its latent z, so resampling "
                                 f"z's components would change nothing; {hint}")
        return truncated_normal(n, self.z_dim, truncation, generator)

    def class_index(self, name_or_index: str | int | None) -> int | None:
        if name_or_index is None:
            return None
        if not self.conditional:
            raise DermsynthError(f"{self.checkpoint} is an unconditional model; --class needs a "
                                 f"model trained with --conditional")
        lowered = [c.lower() for c in self.class_names]
        key = str(name_or_index)
        if key.lower() in lowered:
            return lowered.index(key.lower())
        if key.isdigit() and int(key) < len(self.class_names):
            return int(key)
        raise DermsynthError(f"unknown class {key!r}; this model knows {', '.join(self.class_names)}")


def load_generator(checkpoint: str | Path, device: str | torch.device = "auto", ema: bool = True) -> LoadedGenerator:
    """Rebuild the sampled network of a training checkpoint (the EMA copy when it has one and ``ema``)."""
    state = load_checkpoint(checkpoint)
    assert_finite_weights(state, checkpoint)
    options, sampled = state["model_options"], state["sampled"]
    try:
        G = build_networks(state["model"], **options)[sampled]
        G.load_state_dict(state["ema"][sampled] if ema and sampled in state.get("ema", {})
                          else state["networks"][sampled])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint}: {sampled} weights do not match {state['model']} "
                              f"({str(exc).splitlines()[0]})") from None
    G.to(resolve_device(device)).eval().requires_grad_(False)
    inputs = tuple(state.get("sampled_inputs") or NOISE_INPUTS)  # checkpoints before the step protocol
    return LoadedGenerator(G, list(state["class_names"]), int(options.get("z_dim", 0)),
                           options.get("num_classes", 0) > 0, Path(checkpoint), int(state["step"]), inputs,
                           str(state["model"]), dict(state.get("config") or {}))


# Rejection redraws take ~1 / P(|z| <= t) rounds; below this acceptance (t < ~0.0063) the components still
# outside are drawn from the truncated normal's inverse CDF instead: the same distribution, no loop.
_MIN_ACCEPTANCE = 0.005


def truncated_normal(n: int, dim: int, threshold: float | None, generator: torch.Generator) -> torch.Tensor:
    """Standard-normal latents; with ``threshold``, every component with |z| > threshold is redrawn
    until it falls inside (the resampling truncation trick of Furger et al. 2020, not clamping).

    Components inside are kept as drawn, and the redraws are those of earlier versions (same latents for
    thresholds >= 0.01). For tiny thresholds, where redrawing would take ~1/P(|z| <= threshold) rounds, the
    components outside are drawn from the truncated normal directly (inverse CDF).
    """
    z = torch.randn(n, dim, generator=generator)
    if threshold is None:
        return z
    if not threshold > 0:  # also NaN
        raise DermsynthError(f"--truncation must be > 0, got {threshold}")
    flat = z.view(-1)
    outside = torch.nonzero(flat.abs() > threshold).squeeze(1)  # ascending: the order earlier versions redrew in
    if math.erf(threshold / math.sqrt(2)) >= _MIN_ACCEPTANCE:
        while outside.numel():
            flat[outside] = torch.randn(outside.numel(), generator=generator)
            outside = outside[flat[outside].abs() > threshold]
    if outside.numel():
        low = torch.special.ndtr(torch.tensor(-float(threshold), dtype=torch.float64))
        u = torch.rand(outside.numel(), generator=generator, dtype=torch.float64)
        flat[outside] = torch.special.ndtri(low + u * (1 - 2 * low)).clamp_(-threshold, threshold).to(flat.dtype)
    return z


def _psi_options(model: LoadedGenerator, psi: float | None) -> dict:
    """``truncation_psi`` for generators that truncate in their own latent space (StyleGAN2's w)."""
    if psi is None:
        return {}
    if "truncation_psi" not in inspect.signature(model.generator.forward).parameters:
        raise DermsynthError(f"--psi (truncation in w space) needs a StyleGAN-class model; {model.checkpoint} is "
                             f"{model.model or 'another model'}: use --truncation (latent resampling)")
    if not 0.0 <= psi <= 1.0:
        raise DermsynthError(f"--psi must be in [0, 1], got {psi}")
    return {"truncation_psi": float(psi)}


#: images a generator runs at once when sampling; the last chunk is padded to it, so that image i always goes
#: through the generator in a chunk of the same shape at the same position (see :func:`generate`)
SAMPLE_BATCH = 64


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of the noise a generator draws itself (StyleGAN2's noise inputs, LAPGAN's band noise) for chunk
    ``chunk`` of a sampling run with ``seed``: one well-mixed stream per (seed, chunk)."""
    return int(np.random.SeedSequence([int(seed) % 2**63, int(chunk)]).generate_state(1, np.uint64)[0])


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return x if len(x) == rows else torch.cat([x, x.new_zeros((rows - len(x), *x.shape[1:]))])


@torch.no_grad()
def generate(model: LoadedGenerator, z: torch.Tensor, labels: torch.Tensor | None, batch_size: int = SAMPLE_BATCH,
             seed: int | None = None, psi: float | None = None, first_chunk: int = 0) -> np.ndarray:
    """Run the generator over latents (and labels) in chunks of ``batch_size``; uint8 (N, H, W, 3) at full
    resolution.

    Image i depends only on its latent, its label, ``seed`` and its index: every chunk has the same shape
    (the last one is padded with zero latents, whose images are dropped), and with ``seed`` the noise the generator
    draws itself comes from a stream seeded per chunk (:func:`chunk_seed`; chunk k of this call is chunk
    ``first_chunk + k`` of the run) inside a forked RNG, leaving the caller's global RNG untouched. So a 5-image run
    gives the first 5 images of a 70-image run, bit for bit, whatever the noise model. Without ``seed``, noise
    comes from the global RNG. ``psi``: StyleGAN2's truncation toward the average w (1 = none).
    """
    if model.diffusion:
        raise DermsynthError(f"{model.checkpoint} is a diffusion model: it is sampled from its own noise by a "
                             f"diffusion sampler, not from latents (use sample_images / `dermsynth sample`)")
    options = _psi_options(model, psi)
    device = next(model.generator.parameters()).device
    resolution = int(model.generator.resolution)
    fork = (torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
            if seed is not None else contextlib.nullcontext())
    out = []
    with fork:
        for k, i in enumerate(range(0, len(z), batch_size)):
            if seed is not None:
                torch.manual_seed(chunk_seed(seed, first_chunk + k))
            rows = len(z[i:i + batch_size])
            zb = _pad_rows(z[i:i + batch_size], batch_size).to(device)
            yb = None if labels is None else _pad_rows(labels[i:i + batch_size], batch_size).to(device)
            out.append(to_uint8(upsample_to(model.generator(zb, yb, **options), resolution))[:rows])
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def sample_latents(model: LoadedGenerator, n: int, seed: int, truncation: float | None = None,
                   class_name: str | int | None = None,
                   batch_size: int = SAMPLE_BATCH) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` latents (and labels, None when unconditional) from one generator seeded with ``seed``, drawn a
    chunk of ``batch_size`` at a time (latents, truncation redraws, then labels): latent i depends on the seed
    and i, never on ``n``."""
    gen = torch.Generator().manual_seed(seed)
    chunks = [(model.latents(batch_size, truncation, gen),
               sample_labels(model, batch_size, class_name, gen)) for _ in range(max(1, math.ceil(n / batch_size)))]
    z = torch.cat([zc for zc, _ in chunks])[:n]
    labels = None if chunks[0][1] is None else torch.cat([yc for _, yc in chunks])[:n]
    return z, labels


def sample_images(model: LoadedGenerator, n: int, seed: int, truncation: float | None = None,
                  class_name: str | int | None = None, batch_size: int = SAMPLE_BATCH,
                  psi: float | None = None) -> tuple[np.ndarray, torch.Tensor | None]:
    """``n`` uint8 images and their labels (None when unconditional), reproducible from ``seed``: image i is the
    same for every ``n`` (GANs: :func:`sample_latents`, :func:`generate`; diffusion models: noise and label drawn by
    seed and index, with the default sampler)."""
    model.require_noise()
    if model.diffusion:
        check_sampling_options(model, truncation=truncation, psi=psi)
        labels = diffusion_labels(model, range(n), class_name, seed)
        return diffuse(model, n, seed, labels, diffusion_sampling(model), batch_size=batch_size), labels
    z, labels = sample_latents(model, n, seed, truncation, class_name, batch_size)
    return generate(model, z, labels, batch_size, seed=seed, psi=psi), labels


@dataclass(frozen=True)
class DiffusionSampling:
    """How a diffusion model is sampled: ``sampler`` (ddpm | ddim | dpm-solver), its ``steps`` (None: the
    sampler's default) and the classifier-free ``guidance`` (1 = none)."""

    sampler: str = "ddim"
    steps: int | None = None
    guidance: float = 1.0


#: sampling options of GANs (latent truncation) and of diffusion models, by the command-line flag
_GAN_ONLY, _DIFFUSION_ONLY = ("--truncation", "--psi", "--interpolate"), ("--sampler", "--sampling-steps", "--guidance")


def check_sampling_options(model: LoadedGenerator, **given: object) -> None:
    """A one-line error for a sampling option the model cannot take: latent truncation for a diffusion model,
    a diffusion sampler for a GAN. ``given``: option name (as the keyword, e.g. ``sampling_steps``) -> value,
    None / False when not given."""
    for name, value in given.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if model.diffusion and flag in _GAN_ONLY:
            raise DermsynthError(f"{flag} applies to GANs (their latents); {model.checkpoint} is a {model.model} "
                                 f"diffusion model: use {', '.join(_DIFFUSION_ONLY)}")
        if not model.diffusion and flag in _DIFFUSION_ONLY:
            raise DermsynthError(f"{flag} applies to diffusion models (ddpm); {model.checkpoint} is a "
                                 f"{model.model or 'GAN'} model")


def diffusion_sampling(model: LoadedGenerator, sampler: str | None = None, steps: int | None = None,
                       guidance: float | None = None) -> DiffusionSampling:
    """The sampling of a diffusion model, None = the default (ddim, its 50 steps, no guidance), checked before any
    work: a known sampler, steps within the training timesteps, guidance only on a class-conditional model."""
    default = DiffusionSampling()
    sampler = sampler or default.sampler
    guidance = default.guidance if guidance is None else guidance
    if guidance != 1.0 and not model.conditional:
        raise DermsynthError(f"--guidance needs a class-conditional model; {model.checkpoint} is unconditional")
    return DiffusionSampling(sampler, model.generator.process.sampling_steps(sampler, steps), guidance)


def diffusion_labels(model: LoadedGenerator, indices: range, class_name: str | int | None,
                     seed: int) -> torch.Tensor | None:
    """Labels of images ``indices`` of a diffusion run: the requested class, or (class-conditional models) uniform
    labels, label i a function of the seed and i (so a sample does not depend on the batch it is drawn in)."""
    return _class_or_drawn(model, len(indices), class_name, lambda: class_labels(len(model.class_names), seed, indices))


def _class_or_drawn(model: LoadedGenerator, n: int, class_name: str | int | None,
                    draw) -> torch.Tensor | None:
    """``n`` labels of the requested class; None for an unconditional model (which refuses a class); else
    ``draw()``."""
    if not model.conditional:
        if class_name is not None:
            model.class_index(class_name)  # raises the explanatory error
        return None
    idx = model.class_index(class_name)
    return torch.full((n,), idx, dtype=torch.long) if idx is not None else draw()


def diffuse(model: LoadedGenerator, n: int, seed: int, labels: torch.Tensor | None, sampling: DiffusionSampling,
            first_index: int = 0, batch_size: int = 256, condition: torch.Tensor | None = None) -> np.ndarray:
    """Images ``first_index .. first_index + n - 1`` of a diffusion model's run seeded ``seed`` (uint8
    (N, H, W, 3)), given their ``labels`` and conditioning maps (``condition``, n rows) when the model takes them;
    bf16 on CUDA."""
    denoiser = model.generator
    device = next(denoiser.parameters()).device
    out = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        images = denoiser.process.sample(
            denoiser, stop - start, labels=None if labels is None else labels[start:stop],
            condition=None if condition is None else condition[start:stop], sampler=sampling.sampler,
            steps=sampling.steps, guidance=sampling.guidance, seed=seed, first_index=first_index + start,
            bf16=device.type == "cuda")
        out.append(to_uint8(images))
    return np.concatenate(out) if out else np.zeros((0, denoiser.resolution, denoiser.resolution, 3), np.uint8)


@torch.no_grad()
def translate_images(model: LoadedGenerator, data: LesionDataset, index: np.ndarray | None = None,
                     batch_size: int = 64, seed: int = 0, **generator_options: object) -> np.ndarray:
    """Run a map -> image (or image -> image) generator over rows of ``data``: uint8 (N, H, W, 3).

    The generator's recorded inputs (e.g. semantic and instance maps, or an image and its mask) are cut from
    the dataset as during training; ``generator_options`` are passed through (e.g. CycleGAN's direction; a
    map-conditioned diffusion model: ``sampler``, ``steps``, ``guidance`` of :func:`diffusion_sampling`).
    Noise the generator draws itself comes from a forked RNG seeded with ``seed``.
    """
    if model.samples_noise:
        raise DermsynthError(f"{model.checkpoint} samples from latents; use `dermsynth sample`")
    index = np.arange(len(data)) if index is None else np.asarray(index, dtype=np.int64)
    device = next(model.generator.parameters()).device
    sampling = diffusion_sampling(model, **generator_options) if model.diffusion else None
    out = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(index), batch_size):
            batch = batch_from_dataset(data, index[start:start + batch_size], model.inputs, device)
            maps = [batch.get(name) for name in model.inputs]
            if sampling is not None:  # image i of the call: a function of the seed, i and its maps
                out.append(diffuse(model, len(batch), seed, None, sampling, first_index=start, batch_size=len(batch),
                                   condition=maps_condition(*maps)))
            else:
                out.append(to_uint8(model.generator(*maps, **generator_options)))
    return np.concatenate(out) if out else np.zeros((0, data.size, data.size, 3), np.uint8)


def translate_maps(model: LoadedGenerator, maps: list[LesionMap], class_names: list[str] | None = None,
                   batch_size: int = 64, seed: int = 0, **generator_options: object) -> np.ndarray:
    """Translate editable maps (:class:`~dermsynth.data.maps.LesionMap`) with a map -> image generator:
    uint8 (N, S, S, 3). A generator trained without instance maps gets one superpixel per map (its input
    ignores them; SLIC is never run on the blank images of a maps dataset). ``generator_options``: as
    :func:`translate_images` (a diffusion model's sampling)."""
    model.require_maps()
    if not model.takes_instance:
        maps = [replace(m, instance=np.zeros_like(m.codes, dtype=np.int32)) for m in maps]
    elif any(m.instance is None for m in maps):
        first = next(m for m in maps if m.instance is None)
        raise DermsynthError(f"{model.checkpoint} was trained with instance maps, but map {first.map_id or '?'} "
                             f"has no superpixels")
    return translate_images(model, maps_dataset(maps, class_names), batch_size=batch_size, seed=seed,
                            **generator_options)


def sample_labels(model: LoadedGenerator, n: int, class_name: str | int | None, generator: torch.Generator) -> torch.Tensor | None:
    """Labels for a batch: the requested class, or (conditional models) uniform over classes."""
    return _class_or_drawn(model, n, class_name,
                           lambda: torch.randint(len(model.class_names), (n,), generator=generator))


SAMPLE_MANIFEST_HEADER = ["file", "class", "seed", "truncation", "psi", "checkpoint"]
#: what `dermsynth sample` writes into its folder (removed by --overwrite)
SAMPLE_FILES = ("sample_*.png", "manifest.csv", "latent_walk.png")


def write_samples(checkpoint: str | Path, n: int, out: str | Path, class_name: str | int | None = None,
                  truncation: float | None = None, seed: int = 0, device: str = "auto",
                  batch_size: int = SAMPLE_BATCH, progress: bool = True, psi: float | None = None,
                  sampler: str | None = None, sampling_steps: int | None = None,
                  guidance: float | None = None, overwrite: bool = False) -> Path:
    """Write ``n`` PNGs and ``manifest.csv`` (file, class, seed, truncation, psi, checkpoint; diffusion models also
    sampler, sampling_steps, guidance) to ``out``. ``sampler``/``sampling_steps``/``guidance``: diffusion models
    only (default ddim at its 50 steps, no guidance); ``truncation``/``psi``: GANs only.

    ``out`` must be empty (or new): an earlier run's PNGs beside a shorter manifest would be read as samples of
    this one. With ``overwrite``, what an earlier ``write_samples`` wrote there is removed first (the files its
    manifest lists, ``sample_*.png``, the manifest), nothing else."""
    if n < 1:
        raise DermsynthError(f"--n must be >= 1, got {n}")
    model = load_generator(checkpoint, device)
    model.require_noise()
    check_sampling_options(model, truncation=truncation, psi=psi, sampler=sampler, sampling_steps=sampling_steps,
                           guidance=guidance)
    if model.diffusion:
        sampling = diffusion_sampling(model, sampler, sampling_steps, guidance)
    else:
        _psi_options(model, psi)  # a clear error before any work
    out = output_dir(out, "--out", overwrite=overwrite, ours=SAMPLE_FILES)
    if not model.diffusion:
        z, labels = sample_latents(model, n, seed, truncation, class_name, batch_size)
    rows = []
    starts = range(0, n, batch_size)
    for chunk, start in enumerate(tqdm(starts, desc="sampling", unit="batch", disable=not progress)):
        stop = min(start + batch_size, n)
        if model.diffusion:
            labels_now = diffusion_labels(model, range(start, stop), class_name, seed)
            images = diffuse(model, stop - start, seed, labels_now, sampling, first_index=start, batch_size=batch_size)
        else:
            labels_now = None if labels is None else labels[start:stop]
            images = generate(model, z[start:stop], labels_now, batch_size, seed=seed, psi=psi, first_chunk=chunk)
        for i, img in zip(range(start, stop), images):
            name = f"sample_{seed}_{i:06d}.png"
            save_png(img, out / name)
            cls = "" if labels_now is None else model.class_names[int(labels_now[i - start])]
            row = [name, cls, seed, "" if truncation is None else truncation, "" if psi is None else psi,
                   str(model.checkpoint)]
            rows.append(row + [sampling.sampler, sampling.steps, sampling.guidance] if model.diffusion else row)
    header = SAMPLE_MANIFEST_HEADER + (["sampler", "sampling_steps", "guidance"] if model.diffusion else [])
    return write_csv(out / "manifest.csv", header, rows)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latent rows ``a`` and ``b`` at fractions ``t`` (T,) -> (T, dim)."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return a + t[:, None] * (b - a)
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega)[:, None] * a + torch.sin(t * omega)[:, None] * b) / so


def latent_walk(checkpoint: str | Path, out: str | Path, rows: int = 4, steps: int = 8,
                class_name: str | int | None = None, truncation: float | None = None, seed: int = 0,
                device: str = "auto", psi: float | None = None) -> Path:
    """A grid of latent walks (Baur et al. 2018, Fig. 4): each row interpolates (slerp) between two random latents
    (z; StyleGAN2 maps every point to w, truncated toward the average w by ``psi``)."""
    model = load_generator(checkpoint, device)
    model.require_noise()
    check_sampling_options(model, interpolate=True)
    gen = torch.Generator().manual_seed(seed)
    ends = model.latents(2 * rows, truncation, gen)
    t = torch.linspace(0, 1, steps)
    z = torch.cat([slerp(ends[2 * r], ends[2 * r + 1], t) for r in range(rows)])
    labels = sample_labels(model, rows, class_name, gen)
    if labels is not None:
        labels = labels.repeat_interleave(steps)  # one class per row
    images = generate(model, z, labels, seed=seed, psi=psi)
    return save_png(image_grid(images, nrow=steps), Path(out), min_side=256)
