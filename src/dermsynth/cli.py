"""The ``dermsynth`` command line: a thin layer over the Python API.

Every :class:`~dermsynth.errors.DermsynthError` is printed as one ``error:`` line (exit status 2, or 130
for an interrupted training run whose checkpoint was saved); no tracebacks for bad input.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from dermsynth.errors import DermsynthError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        from dermsynth.train.trainer import TrainingInterrupted

        try:
            return super().invoke(ctx)
        except TrainingInterrupted as exc:
            click.echo(f"interrupted: {exc}", err=True)
            sys.exit(130)
        except DermsynthError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dermsynth")
def main() -> None:
    """dermsynth: synthesize dermatology images with GANs and measure them honestly."""


@main.command()
@click.argument("source")
@click.option("--size", default=64, show_default=True, help="Side of the square images.")
@click.option("--out", type=click.Path(), default=None, help="Cache folder (default: ~/.cache/dermsynth/...).")
@click.option("--skip-corrupt", is_flag=True, help="Skip unreadable images with a warning instead of failing.")
def prepare(source: str, size: int, out: str | None, skip_corrupt: bool) -> None:
    """Decode, center-crop and resize SOURCE once into a memory-mapped uint8 cache."""
    from dermsynth.data.prepare import prepare as prepare_source

    ds = prepare_source(source, size=size, out=out, skip_corrupt=skip_corrupt)
    counts = ", ".join(f"{k} {v}" for k, v in ds.class_counts().items())
    click.echo(f"{len(ds)} images at {size}x{size} from {source}" + (f" ({counts})" if counts else ""))


def _train_options(func):
    """One click option per TrainConfig field, so the CLI can never drift from the config."""
    from dermsynth.train.config import TrainConfig

    for f in reversed(dataclasses.fields(TrainConfig)):
        name = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            func = click.option(f"{name}/--no-{f.name.replace('_', '-')}", default=f.default, show_default=True)(func)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            func = click.option(name, type=kind, default=f.default, show_default=True)(func)
    return func


@main.command()
@_train_options
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest.pt.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(resume: bool, quiet: bool, **options) -> None:
    """Train a GAN (default DCGAN on the built-in phantom data)."""
    from dermsynth.train import TrainConfig, train as run_training

    result = run_training(TrainConfig(**options), resume=resume, progress=not quiet)
    click.echo(f"step {result.step}: checkpoint {result.checkpoint}")


@main.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--n", "n", default=64, show_default=True, help="Number of images.")
@click.option("--out", type=click.Path(), required=True, help="Output folder.")
@click.option("--class", "class_name", default=None, help="Class name or index (conditional models).")
@click.option("--truncation", type=float, default=None, help="Redraw latent components beyond this |z|.")
@click.option("--seed", default=0, show_default=True)
@click.option("--interpolate", is_flag=True, help="Write a latent-walk grid instead of single images.")
@click.option("--device", default="cpu", show_default=True)
def sample(checkpoint: str, n: int, out: str, class_name: str | None, truncation: float | None, seed: int,
           interpolate: bool, device: str) -> None:
    """Sample PNGs and a manifest.csv from a training CHECKPOINT."""
    from dermsynth.sample import latent_walk, write_samples

    if interpolate:
        path = latent_walk(checkpoint, Path(out) / "latent_walk.png", class_name=class_name,
                           truncation=truncation, seed=seed, device=device)
        click.echo(f"latent walk: {path}")
        return
    manifest = write_samples(checkpoint, n, out, class_name=class_name, truncation=truncation, seed=seed,
                             device=device)
    click.echo(f"{n} images; manifest {manifest}")


@main.command()
@click.argument("real")
@click.argument("fake", required=False)
@click.option("--size", default=64, show_default=True, help="Images are resized to this side first.")
@click.option("--n", "n", type=int, default=None, help="Images per set (default: the smaller set).")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Also write the numbers here.")
def swd(real: str, fake: str | None, size: int, n: int | None, seed: int, device: str | None,
        json_out: str | None) -> None:
    """Sliced Wasserstein distance between REAL and FAKE image sets, with the real-vs-real lower bound.

    Each argument is an image folder, a prepared cache or a dataset root. Without FAKE, only the lower bound.
    """
    import numpy as np

    from dermsynth.data.prepare import load_dataset
    from dermsynth.metrics.swd import swd as swd_fn, swd_lower_bound

    real_ds = load_dataset(real, size=size)
    results = {"lower_bound": swd_lower_bound(np.asarray(real_ds.images), seed=seed, device=device, n=n)}
    if fake is not None:
        fake_ds = load_dataset(fake, size=size)
        count = n or min(len(real_ds), len(fake_ds))
        results["fake_vs_real"] = swd_fn(np.asarray(real_ds.images), np.asarray(fake_ds.images), n=count,
                                         seed=seed, device=device)
    for name, res in results.items():
        click.echo(f"{name}:\n{res.table()}")
    if json_out:
        Path(json_out).write_text(json.dumps({k: v.as_dict() for k, v in results.items()}, indent=2) + "\n")


@main.command()
@click.option("--data", default=None, help="Real images instead of the built-in phantom data.")
@click.option("--out", type=click.Path(), default="runs/demo", show_default=True)
@click.option("--size", type=int, default=None, help="Default: 32 on CPU, 64 on GPU.")
@click.option("--steps", type=int, default=None, help="Default: 4000 on CPU, 3000 on GPU.")
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", is_flag=True)
def demo(data: str | None, out: str, size: int | None, steps: int | None, device: str, quiet: bool) -> None:
    """The main job: train a small DCGAN, sample, score SWD, write OUT/report.html."""
    from dermsynth.demo import run_demo

    res = run_demo(data=data, out=out, size=size, steps=steps, device=device, progress=not quiet)
    click.echo(f"SWD x1e3 (mean over levels): lower bound {res.swd_lower_bound.mean:.2f}, "
               f"untrained {res.swd_untrained.mean:.2f}, trained {res.swd_trained.mean:.2f}")
    click.echo(f"report: {res.report}")


@main.command()
@click.option("--models", default="pgan,dcgan,lapgan", show_default=True, help="Comma-separated model names.")
@click.option("--data", default=None, help="Real images (default: the built-in phantom data).")
@click.option("--size", default=64, show_default=True)
@click.option("--kimg", type=float, default=100.0, show_default=True,
              help="Image budget per model: thousands of real images shown to D.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--width", default=64, show_default=True, help="Base channel width of every model.")
@click.option("--phantom-n", default=2048, show_default=True, help="Size of the built-in set when no --data.")
@click.option("--eval-images", type=int, default=None, help="Images per SWD evaluation (default: the training set).")
@click.option("--out", type=click.Path(), default="runs/compare", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def compare(models: str, data: str | None, size: int, kimg: float, batch_size: int, width: int, phantom_n: int,
            eval_images: int | None, out: str, device: str, seed: int, quiet: bool) -> None:
    """Seed 001's comparison: train MODELS on the same data and budget; Table 1 SWD, Fig. 1 and 3 grids."""
    from dermsynth.compare import compare as run_compare

    res = run_compare([m.strip() for m in models.split(",") if m.strip()], data=data, size=size, kimg=kimg,
                      out=out, batch_size=batch_size, eval_images=eval_images, device=device, seed=seed,
                      progress=not quiet, width=width, phantom_n=phantom_n)
    click.echo(res.table())
    click.echo(f"report: {res.report}")


if __name__ == "__main__":
    main()
