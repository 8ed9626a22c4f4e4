"""The ``dermsynth`` command line: a thin layer over the Python API.

Every :class:`~dermsynth.errors.DermsynthError` is printed as one ``error:`` line (exit status 2, or 130
for an interrupted training run whose checkpoint was saved); no tracebacks for bad input.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from dermsynth.defaults import DEFAULT_PHANTOM_N, DEFAULT_SIZE
from dermsynth.errors import DermsynthError

# Registry names the CLI lists as choices (kept in step with dermsynth.metrics by tests/test_registry.py; not
# imported from there so that `dermsynth --help` does not load torch).
EXTRACTOR_CHOICES = ("auto", "inception", "shipped", "classifier", "none")
SWEEP_METRICS = ("swd", "fid", "kid", "colour_jsd")
COMPARE_MODELS = ("dcgan", "ddpm", "lapgan", "pgan", "stylegan2")  # dermsynth.compare.comparable_models()
MAP_ATTRIBUTES = ("pigment_network", "negative_network", "streaks", "milia_like_cyst", "globules")  # data.ATTRIBUTES


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        from dermsynth.train.trainer import TrainingInterrupted

        try:
            return super().invoke(ctx)
        except TrainingInterrupted as exc:
            click.echo(f"interrupted: {exc}", err=True)
            sys.exit(exc.exit_code)  # 130 after Ctrl-C, 143 after SIGTERM
        except DermsynthError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # last resort: the layers below name the path themselves where they can
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:  # a message says which write it stopped (dermsynth.io.atomic_open)
            click.echo(f"interrupted: {exc}" if str(exc) else "interrupted", err=True)
            sys.exit(130)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings (skipped images, missing masks ...) as one ``warning:`` line, without source location."""
    return f"warning: {message}\n"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dermsynth")
def main() -> None:
    """dermsynth: synthesize dermatology images with GANs and measure them honestly."""
    import warnings

    from dermsynth.device import apply_thread_policy

    apply_thread_policy()  # CPU threads that other busy processes leave free (dermsynth.device)
    previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    click.get_current_context().call_on_close(lambda: setattr(warnings, "formatwarning", previous))


class _ListingLayouts(click.Command):
    """A command whose help lists the registered data layouts (``dermsynth.data.readers.LAYOUTS``) where it says
    ``{layouts}``; read when the help is shown, so ``dermsynth --help`` does not import the readers."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from dermsynth.data.readers import layouts_help

        self.help = (self.help or "").replace("{layouts}", layouts_help())
        super().format_help_text(ctx, formatter)


@main.command(cls=_ListingLayouts)
@click.argument("source")
@click.option("--size", default=DEFAULT_SIZE, show_default=True, help="Side of the square images.")
@click.option("--out", type=click.Path(), default=None, help="Cache folder (default: $DERMSYNTH_CACHE or "
              "~/.cache/dermsynth/...).")
@click.option("--skip-corrupt", is_flag=True, help="Skip unreadable images with a warning instead of failing.")
@click.option("--skip-missing", is_flag=True, help="Skip label-table rows whose image file is missing (with a count).")
@click.option("--superpixels", is_flag=True, help="Also compute SLIC superpixels once (the instance maps of "
              "--model pix2pixhd), cached next to the images.")
@click.option("--superpixel-area", type=float, default=784.0, show_default=True,
              help="Pixels per superpixel: the SLIC segment count scales with the image area (about ISIC Task 2's "
              "superpixel size); meta.json records the fraction of boundary pixels.")
def prepare(source: str, size: int, out: str | None, skip_corrupt: bool, skip_missing: bool,
            superpixels: bool, superpixel_area: float) -> None:
    """Decode, center-crop and resize SOURCE once into a memory-mapped uint8 cache.

    SOURCE's layout is detected; the layouts, in the order they are tried:

    \b
    {layouts}
    """
    from dermsynth.data.prepare import prepare as prepare_source

    ds = prepare_source(source, size=size, out=out, skip_corrupt=skip_corrupt, skip_missing=skip_missing,
                        superpixels=superpixels, superpixel_area=superpixel_area)
    counts = ", ".join(f"{k} {v}" for k, v in ds.class_counts().items())
    click.echo(f"{len(ds)} images at {size}x{size} from {source}" + (f" ({counts})" if counts else ""))


_device_option = click.option("--device", default="auto", show_default=True,
                              help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
# sample, translate and edit (folder mode) refuse a used --out folder unless asked to overwrite it
_overwrite_option = click.option("--overwrite", is_flag=True,
                                 help="Write into a non-empty --out folder, removing first what an earlier run of "
                                      "this command wrote there (its PNGs and manifest; nothing else).")


def _train_config_params() -> list[click.Parameter]:
    """One click option per TrainConfig field (its help from the field), so the CLI can never drift from the
    config; options taking a registry name list the registry."""
    from dermsynth.models import MODELS
    from dermsynth.train.config import TrainConfig
    from dermsynth.metrics.registry import metric_names
    from dermsynth.train.disc_augment import AUGMENT_MODES, AUGMENT_PIPES
    from dermsynth.train.losses import LOSSES

    choices = {"model": sorted(MODELS), "loss": list(LOSSES), "augment": list(AUGMENT_MODES),
               "augment_pipe": list(AUGMENT_PIPES), "metrics": metric_names(better="lower"),
               "preset": [f"{name} ({model})" for model, spec in MODELS.items() for name in spec.presets]}
    params: list[click.Parameter] = []
    for f in dataclasses.fields(TrainConfig):
        name = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.name in choices:
            help_text += f" One of: {', '.join(choices[f.name])}."
        if f.type in ("bool", bool, "bool | None"):  # "bool | None": None = the model's default
            params.append(click.Option([f"{name}/--no-{f.name.replace('_', '-')}"], default=f.default,
                                       show_default=True, help=help_text))
        else:
            # "float | None" fields default to None = the model's default (TrainConfig.resolve)
            kind = {"int": int, "float": float}.get(str(f.type).removesuffix(" | None"), str)
            aliases = ["--data-a"] if f.name == "data" else []  # two-domain models: --data-a A --data-b B
            params.append(click.Option([name, *aliases], type=kind, default=f.default, show_default=True,
                                       help=help_text))
    return params


class _TrainCommand(click.Command):
    """``train``: its options are made from TrainConfig on first use (so that ``dermsynth --help`` does not load
    torch), and its ``--help`` lists them by model: the common options, then each model's own."""

    def __init__(self, *args, **kwargs) -> None:
        self._own: list[click.Parameter] = []
        self._all: list[click.Parameter] | None = None
        super().__init__(*args, **kwargs)

    @property
    def params(self) -> list[click.Parameter]:  # type: ignore[override]
        if self._all is None:
            self._all = _train_config_params() + self._own
        return self._all

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._own, self._all = list(value), None

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from dermsynth.train.config import option_groups

        params = {p.name: p for p in self.get_params(ctx)}
        groups = option_groups()
        common = [params.pop(f.name).get_help_record(ctx) for f in groups.pop("common")]
        model_names = {f.name for fs in groups.values() for f in fs}
        rest = [p.get_help_record(ctx) for name, p in params.items() if name not in model_names]
        with formatter.section("Options of every model"):
            formatter.write_dl([r for r in common + rest if r is not None])
        shown: dict[tuple[str, str], str] = {}  # (option, help) -> the model whose section explained it
        for model, own in groups.items():
            rows, again = [], []
            for f in own:
                flags, _ = params[f.name].get_help_record(ctx)
                _, listed, names = (params[f.name].help or "").partition(" One of: ")  # a registry's names
                default = "" if f.default is None else f"  [default: {f.default}]"
                text = f.metadata.get("help", "") + listed + names + default
                if (f.name, text) in shown:
                    again.append(f"--{f.name.replace('_', '-')}")
                else:
                    shown[(f.name, text)] = model
                    rows.append((flags, text))
            if again:
                rows.append(("and", f"{', '.join(again)} (as above)"))
            with formatter.section(f"Options of --model {model} (refused for other models)"):
                formatter.write_dl(rows)


@main.command(cls=_TrainCommand)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest.pt.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx: click.Context, resume: bool, quiet: bool, **options) -> None:
    """Train a model (default DCGAN on the built-in phantom data).

    Stops cleanly on Ctrl-C or SIGTERM (checkpoint saved; exit 130 / 143) and on divergence (NaN/inf, the
    last good checkpoint kept). On --resume, options that fix the run (model, data, size, architecture) must
    not change; length, logging cadence and learning rates may, and the change is recorded in config.json.
    """
    from dermsynth.train import TrainConfig, train as run_training

    given = {k for k in options if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    result = run_training(TrainConfig(**options), resume=resume, progress=not quiet, given=given)
    click.echo(f"step {result.step}: checkpoint {result.checkpoint}")


@main.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--n", "n", default=64, show_default=True, help="Number of images.")
@click.option("--out", type=click.Path(), required=True, help="Output folder.")
@click.option("--class", "class_name", default=None, help="Class name or index (conditional models).")
@click.option("--truncation", type=float, default=None, help="Redraw latent components beyond this |z|.")
@click.option("--psi", type=float, default=None,
              help="StyleGAN2: truncation toward the average w, in [0, 1] (1 = none).")
@click.option("--seed", default=0, show_default=True)
@click.option("--interpolate", is_flag=True, help="Write a latent-walk grid instead of single images (GANs).")
@click.option("--sampler", default=None,
              help="Diffusion models: ddpm | ddim | dpm-solver (default ddim).")
@click.option("--sampling-steps", type=int, default=None,
              help="Diffusion models: sampler steps (default ddpm 1000, ddim 50, dpm-solver 20).")
@click.option("--guidance", type=float, default=None,
              help="Diffusion models: classifier-free guidance w, eps_uncond + w (eps_cond - eps_uncond) "
                   "(default 1 = none; class-conditional models).")
@_overwrite_option
@_device_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sample(checkpoint: str, n: int, out: str, class_name: str | None, truncation: float | None, psi: float | None,
           seed: int, interpolate: bool, sampler: str | None, sampling_steps: int | None, guidance: float | None,
           overwrite: bool, device: str, quiet: bool) -> None:
    """Sample PNGs and a manifest.csv from a training CHECKPOINT (a GAN, or a diffusion model with a sampler) into
    an empty (or new) --out folder.

    Image i depends only on CHECKPOINT, --seed, the truncation / sampler options and i: the first 5 of --n 70
    are the images of --n 5."""
    from dermsynth.device import resolve_device
    from dermsynth.io import check_writable_dir, output_dir
    from dermsynth.sample import SAMPLE_FILES, latent_walk, write_samples

    device = str(resolve_device(device))
    check_writable_dir(out, "--out")  # before reading the checkpoint; emptiness is checked once it is read
    if interpolate:
        if sampler is not None or sampling_steps is not None or guidance is not None:
            raise DermsynthError("--interpolate (a GAN latent walk) takes no --sampler, --sampling-steps or --guidance")
        output_dir(out, "--out", overwrite=overwrite, ours=SAMPLE_FILES)
        path = latent_walk(checkpoint, Path(out) / "latent_walk.png", class_name=class_name,
                           truncation=truncation, seed=seed, device=device, psi=psi)
        click.echo(f"latent walk: {path}")
        return
    manifest = write_samples(checkpoint, n, out, class_name=class_name, truncation=truncation, seed=seed,
                             device=device, progress=not quiet, psi=psi, sampler=sampler,
                             sampling_steps=sampling_steps, guidance=guidance, overwrite=overwrite)
    click.echo(f"{n} images; manifest {manifest}")


@main.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--maps", type=click.Path(), default=None,
              help="A maps folder: <id>_semantic.png (bit-coded: lesion 1, pigment network 2, negative network 4, "
                   "streaks 8, milia-like cysts 16, globules 32) [+ <id>_instance.png, maps.csv].")
@click.option("--from-data", default=None, help="Translate the maps (lesion/attribute masks, superpixels) of this "
              "data source instead; the grid shows the real images beside them.")
@click.option("--out", type=click.Path(), required=True, help="Output folder.")
@click.option("--ids", default=None, help="Comma-separated map / image ids to translate (default: all).")
@click.option("--n", "n", type=int, default=None, help="At most this many maps.")
@click.option("--edit", "edits", multiple=True, help="Edit every map, in order (repeatable): flip, vflip, "
              "rotate:DEG, scale:F, remove:ATTR, add:ATTR:CX,CY,R (a disc, fractions of the side); ATTR one of: "
              f"{', '.join(MAP_ATTRIBUTES)} (needs a checkpoint trained with attribute masks).")
@click.option("--export-maps", is_flag=True, help="Also write the (edited) maps to OUT/maps, a maps folder.")
@click.option("--skip-unmasked", is_flag=True, help="--from-data: skip images without a lesion mask (with a count).")
@click.option("--seed", default=0, show_default=True)
@click.option("--sampler", default=None, help="ddpm-maps: ddpm | ddim | dpm-solver (default ddim).")
@click.option("--sampling-steps", type=int, default=None,
              help="ddpm-maps: sampler steps (default ddpm 1000, ddim 50, dpm-solver 20).")
@_overwrite_option
@_device_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def translate(checkpoint: str, maps: str | None, from_data: str | None, out: str, ids: str | None, n: int | None,
              edits: tuple[str, ...], export_maps: bool, skip_unmasked: bool, seed: int, sampler: str | None,
              sampling_steps: int | None, overwrite: bool, device: str, quiet: bool) -> None:
    """Images from semantic (+ instance) maps with a map -> image CHECKPOINT (pix2pixhd, or the mask-conditioned
    diffusion model ddpm-maps): PNGs, manifest.csv (file, source map, class) and grid.png (map | synthetic |
    real)."""
    from dermsynth.device import resolve_device
    from dermsynth.translate import translate as run_translate

    result = run_translate(checkpoint, out, maps=maps, from_data=from_data,
                           ids=[i.strip() for i in ids.split(",") if i.strip()] if ids else None, n=n, edits=edits,
                           seed=seed, device=str(resolve_device(device)), skip_unmasked=skip_unmasked,
                           export_maps=export_maps, progress=not quiet, sampler=sampler,
                           sampling_steps=sampling_steps, overwrite=overwrite)
    click.echo(f"{result.count} images; manifest {result.manifest}; grid {result.grid}")


@main.command()
@click.argument("real")
@click.argument("fake", required=False)
@click.option("--size", default=DEFAULT_SIZE, show_default=True, help="Images are resized to this side first.")
@click.option("--n", "n", type=int, default=None,
              help="Images per set, the same for the lower bound and FAKE vs REAL (default: the largest both "
                   "allow, min(len(REAL) // 2, len(FAKE))).")
@click.option("--seed", default=0, show_default=True)
@_device_option
@click.option("--json", "json_out", type=click.Path(), default=None, help="Also write the numbers here.")
def swd(real: str, fake: str | None, size: int, n: int | None, seed: int, device: str,
        json_out: str | None) -> None:
    """Sliced Wasserstein distance between REAL and FAKE image sets, with the real-vs-real lower bound.

    Each argument is an image folder, a prepared cache or a dataset root. Without FAKE, only the lower bound.
    Both numbers are taken at one set size (SWD shrinks as the sets grow), printed with them.
    """
    import numpy as np

    from dermsynth.data.prepare import load_dataset
    from dermsynth.io import check_writable_dir, write_json
    from dermsynth.metrics.swd import swd_with_lower_bound

    if n is not None and n < 1:
        raise DermsynthError(f"--n must be >= 1 (images per set), got {n}")
    if json_out:
        check_writable_dir(Path(json_out).parent, "--json")  # before the computation, not after
    real_images = np.asarray(load_dataset(real, size=size).images)
    fake_images = None if fake is None else np.asarray(load_dataset(fake, size=size).images)
    lower, score = swd_with_lower_bound(real_images, fake_images, n=n, seed=seed, device=device)
    results = {"lower_bound": lower} if score is None else {"lower_bound": lower, "fake_vs_real": score}
    click.echo(f"n = {lower.n_images} images per set" + (" for both" if score is not None else ""))
    for name, res in results.items():
        click.echo(f"{name}:\n{res.table()}")
    if json_out:
        write_json(json_out, {k: v.as_dict() for k, v in results.items()})


@main.command()
@click.option("--data", default=None, help="Real images instead of the built-in phantom data.")
@click.option("--out", type=click.Path(), default="runs/demo", show_default=True)
@click.option("--size", type=int, default=None, help="Default: 32 on CPU, 64 on GPU.")
@click.option("--steps", type=int, default=None, help="Default: 4000 on CPU, 3000 on GPU.")
@_device_option
@click.option("--quiet", is_flag=True)
def demo(data: str | None, out: str, size: int | None, steps: int | None, device: str, quiet: bool) -> None:
    """The main job: train a small DCGAN, sample, score SWD, write OUT/report.html."""
    from dermsynth.demo import run_demo

    res = run_demo(data=data, out=out, size=size, steps=steps, device=device, progress=not quiet)
    click.echo(f"SWD x1e3 (mean over levels): lower bound {res.swd_lower_bound.mean:.2f}, "
               f"untrained {res.swd_untrained.mean:.2f}, trained {res.swd_trained.mean:.2f}")
    click.echo(f"report: {res.report}")


@main.command()
@click.option("--models", default="pgan,dcgan,lapgan", show_default=True,
              help=f"Comma-separated model names, each one of: {', '.join(COMPARE_MODELS)}.")
@click.option("--data", default=None, help="Real images (default: the built-in phantom data).")
@click.option("--size", default=DEFAULT_SIZE, show_default=True)
@click.option("--kimg", type=float, default=100.0, show_default=True,
              help="Image budget per model: thousands of real images shown to D.")
@click.option("--batch-size", type=int, default=None, help="Minibatch (default: each model's own; PGAN's per resolution).")
@click.option("--width", default=64, show_default=True, help="Base channel width of every model.")
@click.option("--phantom-n", default=DEFAULT_PHANTOM_N, show_default=True,
              help="Size of the built-in set when no --data.")
@click.option("--eval-images", type=int, default=None, help="Images per SWD evaluation (default: the training set).")
@click.option("--out", type=click.Path(), default="runs/compare", show_default=True)
@_device_option
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def compare(models: str, data: str | None, size: int, kimg: float, batch_size: int | None, width: int, phantom_n: int,
            eval_images: int | None, out: str, device: str, seed: int, quiet: bool) -> None:
    """Baur et al.'s comparison: train MODELS on the same data and budget; Table 1 SWD, Fig. 1 and 3 grids."""
    from dermsynth.compare import compare as run_compare

    res = run_compare([m.strip() for m in models.split(",") if m.strip()], data=data, size=size, kimg=kimg,
                      out=out, batch_size=batch_size, eval_images=eval_images, device=device, seed=seed,
                      progress=not quiet, width=width, phantom_n=phantom_n)
    click.echo(res.table())
    click.echo(f"report: {res.report}")


@main.command()
@click.option("--real", required=True,
              help="Real (held-out) images: folder, prepared cache, dataset root or phantom:N.")
@click.option("--fake", default=None, help="Generated images (default: sampled from --checkpoint).")
@click.option("--train", "train_src", default=None, help="The generator's training images (memorisation audit).")
@click.option("--checkpoint", type=click.Path(), default=None, help="Generator checkpoint (sweep, walks, sampling).")
@click.option("--extractor", type=click.Choice(EXTRACTOR_CHOICES), default="auto", show_default=True,
              help="Features for FID/KID/PRDC. auto: inception if its weights are given, else classifier if "
              "--extractor-checkpoint is given, else shipped (derm-smallcnn-v1, in the package).")
@click.option("--inception-weights", type=click.Path(), default=None,
              help="Local pt_inception-2015-12-05-6726825d.pth (or $DERMSYNTH_INCEPTION_WEIGHTS).")
@click.option("--extractor-checkpoint", type=click.Path(), default=None, help="From `dermsynth train-extractor`.")
@click.option("--size", type=int, default=None,
              help=f"Image side (default: the generator's, else a cache's own, else {DEFAULT_SIZE}).")
@click.option("--max-images", type=int, default=None, help="Subsample every set to at most this many.")
@click.option("--n-fake", type=int, default=None, help="Images to sample from --checkpoint (default: as many as real).")
@click.option("--sweep-metric", type=click.Choice(SWEEP_METRICS), default="swd", show_default=True)
@click.option("--sweep-n", type=int, default=512, show_default=True, help="Images per truncation threshold.")
@click.option("--stats-cache", type=click.Path(), default=None,
              help="Folder caching the real set's features (keyed by a hash of the images and the extractor).")
@click.option("--out", type=click.Path(), default="runs/evaluate", show_default=True)
@click.option("--seed", default=0, show_default=True)
@_device_option
@click.option("--quiet", is_flag=True)
def evaluate(real: str, fake: str | None, train_src: str | None, checkpoint: str | None, extractor: str,
             inception_weights: str | None, extractor_checkpoint: str | None, size: int | None,
             max_images: int | None, n_fake: int | None, sweep_metric: str, sweep_n: int, stats_cache: str | None,
             out: str, seed: int, device: str, quiet: bool) -> None:
    """Every metric in one self-contained OUT/report.html and OUT/metrics.json."""
    from dermsynth.evaluate import evaluate as run_evaluate

    res = run_evaluate(real, fake, train=train_src, checkpoint=checkpoint, out=out, extractor=extractor,
                       inception_weights=inception_weights, extractor_checkpoint=extractor_checkpoint, size=size,
                       max_images=max_images, n_fake=n_fake, sweep_metric=sweep_metric, sweep_n=sweep_n,
                       stats_cache=stats_cache, seed=seed, device=device, progress=not quiet)
    for key, value in res.numbers.items():
        if isinstance(value, dict) and value.get("status") == "skipped":
            click.echo(f"{key}: skipped ({value['reason']})")
    feats = res.numbers.get("features", {})
    if feats.get("status") == "ok":
        click.echo(f"FID {feats['fid']['fid']:.4f} ({feats['extractor_warning']})")
    click.echo(f"report: {res.report}\nnumbers: {res.json}")


@main.command("train-extractor")
@click.option("--data", required=True, help="Real labelled images (dataset root, prepared cache, ...).")
@click.option("--size", default=DEFAULT_SIZE, show_default=True)
@click.option("--out", type=click.Path(), required=True, help="Checkpoint file to write.")
@click.option("--arch", type=click.Choice(["smallcnn", "resnet18"]), default="smallcnn", show_default=True)
@click.option("--epochs", default=30, show_default=True)
@click.option("--seed", default=0, show_default=True)
@_device_option
@click.option("--quiet", is_flag=True)
def train_extractor(data: str, size: int, out: str, arch: str, epochs: int, seed: int, device: str,
                    quiet: bool) -> None:
    """Train the project's own feature extractor (a dermoscopy classifier) for FID/KID without Inception weights."""
    from dermsynth.classify.extractor import train_feature_extractor
    from dermsynth.metrics.features import load_classifier_extractor

    path = train_feature_extractor(data, out, size=size, arch=arch, epochs=epochs, seed=seed, device=device,
                                   progress=not quiet)
    click.echo(f"{load_classifier_extractor(path).description}\ncheckpoint: {path}")


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise DermsynthError(f"{option} takes comma-separated numbers, got {text!r}") from None


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _seed_counts(text: str | None) -> dict[str, int]:
    """``--seeds-at 0.05:10,0.1:10`` -> {"0.05": 10, "0.1": 10}."""
    counts = {}
    for part in _names(text) or []:
        fraction, _, k = part.partition(":")
        try:
            counts[f"{float(fraction):g}"] = int(k)
        except ValueError:
            raise DermsynthError(f"--seeds-at takes FRACTION:SEEDS pairs, e.g. 0.05:10, got {part!r}") from None
    return counts


def _synthetic_sources(values: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    """``--synthetic`` values: one unnamed SPEC, or NAME=SPEC pairs (a study with several sources)."""
    named = [v.partition("=") for v in values if "=" in v and not Path(v).exists()]
    if len(values) == 1 and not named:
        return values[0], {}
    if len(named) != len(values):
        raise DermsynthError("several --synthetic sources need a name each: --synthetic NAME=SPEC")
    names = [n.strip().lower() for n, _, _ in named]
    if len(set(names)) != len(names):
        raise DermsynthError(f"--synthetic names repeat: {', '.join(names)}")
    return None, {n: spec for n, (_, _, spec) in zip(names, named)}


@main.command()
@click.argument("data")
@click.option("--size", default=28, show_default=True, help="Side of the square images.")
@click.option("--seed", default=0, show_default=True)
@click.option("--fractions", default="0.7,0.15,0.15", show_default=True, help="train,val,test fractions.")
@click.option("--classes", default=None, help="Comma-separated: split these classes only (e.g. mel,bkl,bcc as in "
              "Essipova et al. 2020); the split then applies to the whole dataset, other classes dropped.")
@click.option("--out", type=click.Path(), required=True, help="Split file (.json or .csv).")
def split(data: str, size: int, seed: int, fractions: str, classes: str | None, out: str) -> None:
    """Lesion-grouped, class-stratified train/val/test split of DATA, saved for reuse (augment --split, train
    --split [--real-fraction F]); its seed also fixes the nested real fractions of its train part."""
    from dermsynth.data.splits import split_dataset
    from dermsynth.data.prepare import load_dataset

    ds = load_dataset(data, size=size)
    result = split_dataset(ds, fractions=_floats(fractions, "--fractions"), seed=seed, classes=_names(classes))
    if result.classes is not None:
        ds = result.apply(ds)["train"]  # for the class names below
    result.save(out)
    for name, counts in result.class_counts(ds.num_classes).items():
        click.echo(f"{name}: {int(counts.sum())} images (" + ", ".join(
            f"{c} {int(k)}" for c, k in zip(ds.class_names, counts)) + ")")
    click.echo(f"split: {out}")


@main.command()
@click.option("--data", default="phantom", show_default=True, help="Real data (folder, cache, .npz, phantom[:N]).")
@click.option("--out", type=click.Path(), default="runs/augment", show_default=True)
@click.option("--size", default=28, show_default=True)
@click.option("--conditions", default=None, help="Comma-separated, e.g. real,real+classic,real+synth:1,real+balance,"
              "synth:1 (default: those with --synthetic, else real,real+classic).")
@click.option("--synthetic", multiple=True, help="GAN or diffusion checkpoint, sample folder with manifest.csv, or "
              "'phantom'; '{fraction}' in it is replaced by each real fraction (runs/gan-{fraction}: the GAN trained on "
              "that fraction). Repeat as NAME=SPEC for several named sources; conditions drawing synthetic images are "
              "crossed with them (or name one: real+synth:1@NAME).")
@click.option("--synthetic-class", default=None,
              help="An unconditional checkpoint: the class all its images are labelled with (e.g. mel for a GAN "
                   "trained on melanomas only). synth:R then adds R x the number of real training images, all of "
                   "that one class (real class proportions apply only among the classes a source generates); "
                   "recorded in results.json (synthetic_source.labels).")
@click.option("--truncation", type=float, default=None, help="Latent truncation when sampling a checkpoint.")
@click.option("--sampler", default=None, help="Diffusion checkpoints: ddpm | ddim | dpm-solver (default ddim; an "
              "under-trained denoiser may need ddpm's ancestral sampler).")
@click.option("--sampling-steps", type=int, default=None, help="Diffusion checkpoints: sampler steps (ddpm 1000, "
              "ddim 50, dpm-solver 20).")
@click.option("--guidance", type=float, default=None, help="Diffusion checkpoints: classifier-free guidance (1 = "
              "none; class-conditional models).")
@click.option("--seeds", default=10, show_default=True,
              help="Repeats per condition (paired over seeds; the exact tests' smallest two-sided p is 2/2^K, so K >= 6 "
                   "is needed for p < 0.05).")
@click.option("--seed", default=0, show_default=True, help="First seed.")
@click.option("--baseline", default="real", show_default=True,
              help="The condition every other one is compared with (paired differences by seed, bootstrap CI); "
                   "one of --conditions.")
@click.option("--test", default=None, help="External test set (another dataset), scored besides the internal "
              "test split; classes matched by name, e.g. ISIC 2017 melanoma/nevus/seborrheic_keratosis -> "
              "mel/nv/bkl (see dermsynth.classify.external).")
@click.option("--split", "split_file", default=None, help="A saved split (dermsynth split); default: made and saved.")
@click.option("--split-seed", default=0, show_default=True)
@click.option("--fractions", default="0.7,0.15,0.15", show_default=True, help="train,val,test fractions.")
@click.option("--classifier", default="smallcnn", show_default=True, help="smallcnn or resnet18.")
@click.option("--epochs", default=50, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--patience", default=10, show_default=True, help="Early-stopping patience in epochs (0: none).")
@click.option("--class-weighting", is_flag=True, help="Class-balanced cross-entropy weights.")
@click.option("--n-boot", default=2000, show_default=True, help="Bootstrap resamples of the test set.")
@click.option("--real-fraction", "real_fractions", default="1", show_default=True,
              help="Comma-separated fractions of the training split (nested, lesion-grouped, class-stratified, "
              "seeded by the split's seed), each crossed with the conditions and seeds, e.g. 0.05,0.1,0.25,0.5,1.")
@click.option("--synthetic-ratio", "synthetic_ratios", default=None,
              help="Synthetic:real ratio sweep, e.g. 0.5,1,2,5,10: real+synth:R at --sweep-fraction.")
@click.option("--seeds-at", default=None, help="Other seed counts at some real fractions, e.g. 0.05:10,0.1:10 "
              "(the scarce fractions, where the seed-to-seed spread is largest).")
@click.option("--sweep-fraction", type=float, default=None, help="Real fraction of the ratio sweep (default: the "
              "smallest).")
@click.option("--classes", default=None, help="Comma-separated: these classes only (Essipova et al. 2020: mel,bkl,bcc).")
@click.option("--layout", default="default", show_default=True, help="default, or essipova2020: also Essipova et al.'s "
              "table (accuracy and per-class recall per real fraction) in table_essipova2020.md.")
@click.option("--workers", default=1, show_default=True, help="Runs at once (a local process pool; threads per "
              "run = CPUs / workers). With --executor local: submitit jobs at once; slurm: array parallelism.")
@click.option("--executor", default="pool", show_default=True,
              help="pool: local processes; local / debug: submitit's local / in-process executors; slurm: one "
              "SLURM job array through submitit (returns at once; run the same command again to collect).")
@click.option("--slurm-partition", default=None, help="--executor slurm: the partition.")
@click.option("--slurm-minutes", default=60, show_default=True, help="--executor slurm: time limit of one run.")
@_device_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
def augment(conditions: str | None, split_file: str | None, fractions: str, patience: int, quiet: bool,
            synthetic: tuple[str, ...], real_fractions: str, synthetic_ratios: str | None, classes: str | None,
            seeds_at: str | None, **options) -> None:
    """Does synthetic data help a classifier? Train each condition over K seeds (at each real fraction);
    tables, plots, report."""
    from dermsynth.classify.experiment import run_augment_experiment
    from dermsynth.classify.experiment_config import AugmentExperimentConfig

    unnamed, sources = _synthetic_sources(synthetic) if synthetic else (None, {})
    if conditions is None:
        conditions = ("real,real+classic,real+synth:1,real+balance,synth:1" if synthetic else "real,real+classic")
    cfg = AugmentExperimentConfig(conditions=[c for c in conditions.split(",") if c.strip()], split=split_file,
                                  fractions=_floats(fractions, "--fractions"), patience=patience or None,
                                  synthetic=unnamed, sources=sources, classes=_names(classes),
                                  seeds_at=_seed_counts(seeds_at),
                                  real_fractions=list(_floats(real_fractions, "--real-fraction")),
                                  synthetic_ratios=list(_floats(synthetic_ratios, "--synthetic-ratio"))
                                  if synthetic_ratios else [], **options)
    result = run_augment_experiment(cfg, progress=not quiet)
    if not result.results:
        click.echo(f"submitted; results will be in {result.out} after the next augment call")
        return
    click.echo(result.table)
    click.echo(f"trained {len(result.trained)} run(s), reused {len(result.skipped)}; report: {result.report}")




@main.command("truncation-sweep")
@click.argument("checkpoint", type=click.Path())
@click.option("--real", required=True, help="Real images to score against (read at the generator's size).")
@click.option("--metric", type=click.Choice(SWEEP_METRICS), default="swd", show_default=True)
@click.option("--extractor", type=click.Choice(EXTRACTOR_CHOICES), default="auto", show_default=True,
              help="Features for fid/kid (auto: inception if its weights are given, else classifier if "
              "--extractor-checkpoint is given, else the shipped derm-smallcnn-v1).")
@click.option("--inception-weights", type=click.Path(), default=None)
@click.option("--extractor-checkpoint", type=click.Path(), default=None)
@click.option("--n", "n", type=int, default=512, show_default=True, help="Images per threshold.")
@click.option("--out", type=click.Path(), default="runs/truncation", show_default=True)
@click.option("--seed", default=0, show_default=True)
@_device_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def truncation_sweep_cmd(checkpoint: str, real: str, metric: str, extractor: str, inception_weights: str | None,
                         extractor_checkpoint: str | None, n: int, out: str, seed: int, device: str,
                         quiet: bool) -> None:
    """Furger et al.'s Table 3: SWD (or FID/KID) of CHECKPOINT at truncation 0.01 ... 1 and none (StyleGAN2: psi 0 ... 1;
    PGAN has none); table, plot, JSON."""
    import numpy as np

    from dermsynth.data.prepare import load_dataset
    from dermsynth.device import resolve_device
    from dermsynth.io import check_writable_dir, write_json
    from dermsynth.metrics.features import resolve_extractor
    from dermsynth.metrics.registry import get_metric
    from dermsynth.truncation import truncation_sweep
    from dermsynth.sample import load_generator

    check_writable_dir(out, "--out")
    device = resolve_device(device)
    model = load_generator(checkpoint, device)  # generated and scored on one device
    images = np.asarray(load_dataset(real, size=int(model.generator.resolution)).images)
    ext = (resolve_extractor(extractor, inception_weights=inception_weights, extractor_checkpoint=extractor_checkpoint)
           if get_metric(metric).needs_features else None)
    sweep = truncation_sweep(model, images, metric=metric, n=min(n, len(images)), extractor=ext, seed=seed,
                             device=device, progress=not quiet)
    click.echo(sweep.table())
    write_json(Path(out) / "truncation.json", sweep.as_dict())
    click.echo(f"plot: {sweep.plot(Path(out) / 'truncation.png')}")


@main.command()
@click.argument("source")
@click.option("--out", type=click.Path(), required=True, help="Output folder: OUT/healthy and OUT/lesion caches.")
@click.option("--size", default=128, show_default=True, help="Patch side in pixels (Furger et al. 2020: 128).")
@click.option("--lesion-fraction", default="0.1:0.8", show_default=True,
              help="LO:HI fraction of lesion pixels of a lesion patch (Furger et al. 2020: 10-80 %).")
@click.option("--margin", default=8, show_default=True,
              help="Healthy patches have no lesion pixel within this many pixels around them.")
@click.option("--stride", type=int, default=None, help="Grid step in pixels (default: --size, no overlap).")
@click.option("--max-dark", default=0.05, show_default=True,
              help="Drop patches with more than this fraction of background (black) pixels: skin only.")
@click.option("--read-size", type=int, default=None,
              help="Prepare the source at this square size first (default: each image's native size; "
                   "phantom: 128).")
@click.option("--max-per-image", type=int, default=None, help="At most this many patches of each kind per image.")
@click.option("--seed", default=0, show_default=True, help="Seed of the --max-per-image choice.")
@click.option("--skip-corrupt", is_flag=True, help="Skip unreadable images or masks with a warning.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def patches(source: str, out: str, size: int, lesion_fraction: str, margin: int, stride: int | None,
            max_dark: float, read_size: int | None, max_per_image: int | None, seed: int, skip_corrupt: bool,
            quiet: bool) -> None:
    """Cut healthy-skin and lesion patches (Furger et al. 2020) from SOURCE's images and lesion masks."""
    from dermsynth.data.patches import PatchRule, cut_patches, parse_fraction_range

    rule = PatchRule(size=size, lesion_fraction=parse_fraction_range(lesion_fraction), margin=margin,
                     stride=stride, max_dark=max_dark)
    summary = cut_patches(source, out, rule, read_size=read_size, max_per_image=max_per_image, seed=seed,
                          skip_corrupt=skip_corrupt, progress=not quiet)
    click.echo(summary.describe())


@main.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--image", type=click.Path(), default=None, help="One photo to edit.")
@click.option("--mask", type=click.Path(), default=None,
              help="Its lesion mask (same size; the U-Net editor and ddpm-inpaint need it).")
@click.option("--images", type=click.Path(), default=None, help="A folder of photos to edit.")
@click.option("--masks", type=click.Path(), default=None,
              help="Their masks: MASKS/<id>.png (or <id>_segmentation / _mask / _lesion).")
@click.option("--out", type=click.Path(), required=True, help="OUT.png for --image, a folder for --images.")
@click.option("--direction", type=click.Choice(["ab", "ba", "add", "remove"]), default=None,
              help="cyclegan: ab (A -> B, default) or ba; unet-translator, ddpm-inpaint: the trained direction "
                   "(add/remove).")
@click.option("--sampler", default=None, help="ddpm-inpaint: ddpm | ddim | dpm-solver (default ddim).")
@click.option("--sampling-steps", type=int, default=None,
              help="ddpm-inpaint: sampler steps (default ddpm 1000, ddim 50, dpm-solver 20).")
@click.option("--seed", type=int, default=None, help="ddpm-inpaint: seed of the sampling noise (default 0; photo i "
                                                     "of a folder: a function of the seed and i).")
@_overwrite_option
@_device_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def edit(checkpoint: str, image: str | None, mask: str | None, images: str | None, masks: str | None, out: str,
         direction: str | None, sampler: str | None, sampling_steps: int | None, seed: int | None, overwrite: bool,
         device: str, quiet: bool) -> None:
    """Add or remove a lesion with a unet-translator, cyclegan or ddpm-inpaint CHECKPOINT; reports the change
    inside vs outside the mask and writes an input | mask | output (CycleGAN: input | translation |
    reconstruction) grid. ddpm-inpaint keeps every pixel outside the mask exactly."""
    from dermsynth.edit import edit_folder, edit_image

    if (image is None) == (images is None):
        raise DermsynthError("give either --image IMG [--mask MASK] --out OUT.png or --images DIR [--masks DIR] "
                             "--out DIR")
    sampling = {"sampler": sampler, "sampling_steps": sampling_steps, "seed": seed}
    if image is not None:
        if masks is not None:
            raise DermsynthError("--masks goes with --images; for one --image give --mask")
        if overwrite:
            raise DermsynthError("--overwrite goes with --images (an output folder); --out OUT.png is replaced "
                                 "atomically anyway")
        report = edit_image(checkpoint, image, mask, out, direction=direction, device=device, **sampling)
    else:
        if mask is not None:
            raise DermsynthError("--mask goes with --image; for --images give a --masks folder")
        report = edit_folder(checkpoint, images, masks, out, direction=direction, device=device,
                             progress=not quiet, overwrite=overwrite, **sampling)
    click.echo(report.describe())
    click.echo(f"grid: {report.grid}")


from dermsynth.vtt.cli import vtt_group  # noqa: E402  (the visual Turing test app: its own module)

main.add_command(vtt_group)


if __name__ == "__main__":
    main()
