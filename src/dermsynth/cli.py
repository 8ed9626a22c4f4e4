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
            # "float | None" fields default to None = the model's default (TrainConfig.resolve)
            kind = {"int": int, "float": float}.get(str(f.type).removesuffix(" | None"), str)
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
@click.option("--batch-size", type=int, default=None, help="Minibatch (default: each model's own; PGAN's per resolution).")
@click.option("--width", default=64, show_default=True, help="Base channel width of every model.")
@click.option("--phantom-n", default=2048, show_default=True, help="Size of the built-in set when no --data.")
@click.option("--eval-images", type=int, default=None, help="Images per SWD evaluation (default: the training set).")
@click.option("--out", type=click.Path(), default="runs/compare", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def compare(models: str, data: str | None, size: int, kimg: float, batch_size: int | None, width: int, phantom_n: int,
            eval_images: int | None, out: str, device: str, seed: int, quiet: bool) -> None:
    """Seed 001's comparison: train MODELS on the same data and budget; Table 1 SWD, Fig. 1 and 3 grids."""
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
@click.option("--extractor", type=click.Choice(["auto", "inception", "classifier", "none"]), default="auto",
              show_default=True, help="Features for FID/KID/PRDC.")
@click.option("--inception-weights", type=click.Path(), default=None,
              help="Local pt_inception-2015-12-05-6726825d.pth (or $DERMSYNTH_INCEPTION_WEIGHTS).")
@click.option("--extractor-checkpoint", type=click.Path(), default=None, help="From `dermsynth train-extractor`.")
@click.option("--size", type=int, default=None,
              help="Image side (default: the generator's, else a cache's own, else 64).")
@click.option("--max-images", type=int, default=None, help="Subsample every set to at most this many.")
@click.option("--n-fake", type=int, default=None, help="Images to sample from --checkpoint (default: as many as real).")
@click.option("--sweep-metric", type=click.Choice(["swd", "fid", "kid"]), default="swd", show_default=True)
@click.option("--sweep-n", type=int, default=512, show_default=True, help="Images per truncation threshold.")
@click.option("--out", type=click.Path(), default="runs/evaluate", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--quiet", is_flag=True)
def evaluate(real: str, fake: str | None, train_src: str | None, checkpoint: str | None, extractor: str,
             inception_weights: str | None, extractor_checkpoint: str | None, size: int | None,
             max_images: int | None, n_fake: int | None, sweep_metric: str, sweep_n: int, out: str, seed: int,
             device: str | None, quiet: bool) -> None:
    """Every metric in one self-contained OUT/report.html and OUT/metrics.json."""
    from dermsynth.evaluate import evaluate as run_evaluate

    res = run_evaluate(real, fake, train=train_src, checkpoint=checkpoint, out=out, extractor=extractor,
                       inception_weights=inception_weights, extractor_checkpoint=extractor_checkpoint, size=size,
                       max_images=max_images, n_fake=n_fake, sweep_metric=sweep_metric, sweep_n=sweep_n, seed=seed,
                       device=device, progress=not quiet)
    for key, value in res.numbers.items():
        if isinstance(value, dict) and value.get("status") == "skipped":
            click.echo(f"{key}: skipped ({value['reason']})")
    click.echo(f"report: {res.report}\nnumbers: {res.json}")


@main.command("train-extractor")
@click.option("--data", required=True, help="Real labelled images (dataset root, prepared cache, ...).")
@click.option("--size", default=64, show_default=True)
@click.option("--out", type=click.Path(), required=True, help="Checkpoint file to write.")
@click.option("--arch", type=click.Choice(["smallcnn", "resnet18"]), default="smallcnn", show_default=True)
@click.option("--epochs", default=30, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--quiet", is_flag=True)
def train_extractor(data: str, size: int, out: str, arch: str, epochs: int, seed: int, device: str | None,
                    quiet: bool) -> None:
    """Train the project's own feature extractor (a dermoscopy classifier) for FID/KID without Inception weights."""
    from dermsynth.metrics.features import load_classifier_extractor, train_feature_extractor

    path = train_feature_extractor(data, out, size=size, arch=arch, epochs=epochs, seed=seed, device=device,
                                   progress=not quiet)
    click.echo(f"{load_classifier_extractor(path).description}\ncheckpoint: {path}")


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise DermsynthError(f"{option} takes comma-separated numbers, got {text!r}") from None


@main.command()
@click.argument("data")
@click.option("--size", default=28, show_default=True, help="Side of the square images.")
@click.option("--seed", default=0, show_default=True)
@click.option("--fractions", default="0.7,0.15,0.15", show_default=True, help="train,val,test fractions.")
@click.option("--out", type=click.Path(), required=True, help="Split file (.json or .csv).")
def split(data: str, size: int, seed: int, fractions: str, out: str) -> None:
    """Lesion-grouped, class-stratified train/val/test split of DATA, saved for reuse (e.g. augment --split)."""
    from dermsynth.classify.splits import split_dataset
    from dermsynth.data.prepare import load_dataset

    ds = load_dataset(data, size=size)
    result = split_dataset(ds, fractions=_floats(fractions, "--fractions"), seed=seed)
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
@click.option("--synthetic", default=None, help="GAN checkpoint, sample folder with manifest.csv, or 'phantom'.")
@click.option("--synthetic-class", default=None, help="The one class an unconditional checkpoint generates.")
@click.option("--truncation", type=float, default=None, help="Latent truncation when sampling a checkpoint.")
@click.option("--seeds", default=5, show_default=True, help="Repeats per condition.")
@click.option("--seed", default=0, show_default=True, help="First seed.")
@click.option("--baseline", default="real", show_default=True)
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
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def augment(conditions: str | None, split_file: str | None, fractions: str, patience: int, quiet: bool,
            **options) -> None:
    """Does synthetic data help a classifier? Train each condition over K seeds; tables, plots, report."""
    from dermsynth.classify.experiment import AugmentExperimentConfig, run_augment_experiment

    if conditions is None:
        conditions = ("real,real+classic,real+synth:1,real+balance,synth:1" if options["synthetic"]
                      else "real,real+classic")
    cfg = AugmentExperimentConfig(conditions=[c for c in conditions.split(",") if c.strip()], split=split_file,
                                  fractions=_floats(fractions, "--fractions"), patience=patience or None, **options)
    result = run_augment_experiment(cfg, progress=not quiet)
    click.echo(result.table)
    click.echo(f"trained {len(result.trained)} run(s), reused {len(result.skipped)}; report: {result.report}")


@main.command("truncation-sweep")
@click.argument("checkpoint", type=click.Path())
@click.option("--real", required=True, help="Real images to score against (read at the generator's size).")
@click.option("--metric", type=click.Choice(["swd", "fid", "kid"]), default="swd", show_default=True)
@click.option("--extractor", type=click.Choice(["inception", "classifier"]), default=None,
              help="Features for fid/kid (default: inception if its weights are given, else classifier).")
@click.option("--inception-weights", type=click.Path(), default=None)
@click.option("--extractor-checkpoint", type=click.Path(), default=None)
@click.option("--n", "n", type=int, default=512, show_default=True, help="Images per threshold.")
@click.option("--out", type=click.Path(), default="runs/truncation", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
def truncation_sweep_cmd(checkpoint: str, real: str, metric: str, extractor: str | None, inception_weights: str | None,
                         extractor_checkpoint: str | None, n: int, out: str, seed: int, device: str | None) -> None:
    """Seed 003's Table 3: SWD (or FID/KID) of CHECKPOINT at truncation 0.01 ... 1 and none; table, plot, JSON."""
    import numpy as np

    from dermsynth.data.prepare import load_dataset
    from dermsynth.metrics.features import build_extractor
    from dermsynth.metrics.truncation import truncation_sweep
    from dermsynth.sample import load_generator

    model = load_generator(checkpoint, device or "cpu")
    images = np.asarray(load_dataset(real, size=int(model.generator.resolution)).images)
    ext = None
    if metric != "swd":
        name = extractor or ("classifier" if extractor_checkpoint and not inception_weights else "inception")
        ext = build_extractor(name, **({"checkpoint": extractor_checkpoint} if name == "classifier"
                                       else {"weights": inception_weights}))
    sweep = truncation_sweep(model, images, metric=metric, n=min(n, len(images)), extractor=ext, seed=seed,
                             device=device, progress=True)
    click.echo(sweep.table())
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "truncation.json").write_text(json.dumps(sweep.as_dict(), indent=2) + "\n")
    click.echo(f"plot: {sweep.plot(Path(out) / 'truncation.png')}")


if __name__ == "__main__":
    main()
