"""``dermsynth vtt ...``: create a study, invite raters, serve it, report it."""

from __future__ import annotations

import click

from dermsynth.errors import DermsynthError


def _rows(study, raters, base_url: str | None) -> list[str]:
    """One line per rater: name, group, progress and (only when ``base_url`` is given) the private link."""
    prog = study.progress()
    link = (lambda r: "") if base_url is None else (lambda r: f" {base_url.rstrip('/')}/r/{r.token}")
    return [f"{r.name:<20} {r.group:<16} {prog.get(r.id, (0, 0))[0]:>4}/{prog.get(r.id, (0, 0))[1]:<4}{link(r)}"
            for r in raters]


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


@click.group("vtt")
def vtt_group() -> None:
    """Visual Turing test: a reader study of real vs synthetic images in the browser."""


@vtt_group.command("create")
@click.option("--real", required=True, help="Real images: folder, prepared cache, dataset root or phantom:N.")
@click.option("--fake", required=True, help="Synthetic images: such a source, or a training checkpoint to sample.")
@click.option("--n-real", default=50, show_default=True, help="Real images in the study (Baur et al. 2018: 50).")
@click.option("--n-fake", default=30, show_default=True, help="Fake images in the study (Baur et al. 2018: 30).")
@click.option("--out", type=click.Path(), required=True, help="The study file to write (.sqlite).")
@click.option("--size", type=int, default=None,
              help="Image side (default: the generator's; else the sources' native size, at most 512; 64 for "
                   "phantoms). Larger than a source's native size: warned about (enlarged images).")
@click.option("--shared-order", is_flag=True,
              help="One order for every rater (default: each rater their own random order, seeded and recorded).")
@click.option("--order-seed", type=int, default=None,
              help="Seeds every rater's order (default: drawn at random and recorded in the study).")
@click.option("--images-per-rater", type=int, default=None,
              help="Show each rater only a random K-image subset, real/fake in the study's proportion "
                   "(Furger et al. 2020: 20).")
@click.option("--time-limit", type=float, default=None,
              help="Seconds each image stays visible (Furger et al. 2020: 2-3).")
@click.option("--min-display-ms", default=500, show_default=True,
              help="An image stays this long on screen before an answer is taken (no double clicks).")
@click.option("--calibration", default=0, show_default=True,
              help="Training images (half real, half fake) before the scored ones, with feedback; never scored.")
@click.option("--instructions", default=None,
              help="Instructions on the landing page: text or @FILE (Markdown or plain text).")
@click.option("--consent", default=None,
              help="Consent text a rater must tick before starting: text or @FILE (Markdown or plain text).")
@click.option("--allow-revise", is_flag=True, help="Raters may go back and change answers (Baur et al. 2018).")
@click.option("--confidence", is_flag=True, help="Ask for a 1-5 confidence with every answer.")
@click.option("--title", default=None, help="Shown on the rating page.")
@click.option("--truncation", type=float, default=None, help="Latent truncation when --fake is a checkpoint.")
@click.option("--seed", default=0, show_default=True, help="Which images are drawn (orders and ids are always random).")
@click.option("--device", default="auto", show_default=True,
              help="For sampling a checkpoint (auto: CUDA when present).")
@click.option("--overwrite", is_flag=True, help="Replace an existing study file.")
def create_cmd(out: str, **options) -> None:
    """Draw real and fake images into one study file behind random ids."""
    from dermsynth.vtt.create import create_study

    study = create_study(out, warn=_warn, **options)
    s = study.settings
    click.echo(f"study {study.path}: {study.n_images()} images ({options['n_real']} real, {options['n_fake']} fake)"
               f" at {s.size} px{f', {s.calibration} calibration' if s.calibration else ''}"
               f", {'shared' if s.shared_order else f'per-rater (order seed {s.order_seed})'} order"
               f"{f', {s.images_per_rater} per rater' if s.images_per_rater else ''}"
               f"{f', {s.time_limit:g} s per image' if s.time_limit else ''}"
               f"{', revising allowed' if s.allow_revise else ''}{', confidence 1-5' if s.confidence else ''}")
    click.echo(f"next: dermsynth vtt invite {study.path} --group dermatologist --n 3")


@vtt_group.command("invite")
@click.argument("study", type=click.Path())
@click.option("--group", default="rater", show_default=True,
              help='Rater group, e.g. "dermatologist", "ML expert", "lay" (reported per group).')
@click.option("--n", "n", default=1, show_default=True, help="How many raters to invite.")
@click.option("--names", default=None, help="Comma-separated rater names (instead of GROUP-1, GROUP-2, ...).")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where `dermsynth vtt serve` will be reached, for the printed links.")
def invite_cmd(study: str, group: str, n: int, names: str | None, base_url: str) -> None:
    """Add raters and print one personal link each (keep them private: a link is the rater's login)."""
    from dermsynth.vtt.store import Study

    st = Study(study)
    st.require_writable("take new raters")
    added = st.add_raters(group, n, names=None if names is None else names.split(","))
    click.echo("\n".join(_rows(st, added, base_url)))


@vtt_group.command("raters")
@click.argument("study", type=click.Path())
def raters_cmd(study: str) -> None:
    """List the raters: name, group and progress (no links: `dermsynth vtt links`)."""
    from dermsynth.vtt.store import Study

    st = Study(study)
    raters = st.raters()
    click.echo("\n".join(_rows(st, raters, None)) if raters else "no raters yet: dermsynth vtt invite ...")


@vtt_group.command("links")
@click.argument("study", type=click.Path())
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where `dermsynth vtt serve` is reached.")
@click.option("--rater", "names", multiple=True, help="Only this rater (repeatable; default: all).")
def links_cmd(study: str, base_url: str, names: tuple[str, ...]) -> None:
    """Print the raters' private links again (a link is the rater's login: send it privately)."""
    from dermsynth.vtt.store import Study

    st = Study(study)
    raters = [r for r in st.raters() if not names or r.name in names]
    unknown = set(names) - {r.name for r in raters}
    if unknown:
        raise DermsynthError(f"{study}: no rater named {', '.join(sorted(unknown))}")
    click.echo("\n".join(_rows(st, raters, base_url)) if raters else "no raters yet: dermsynth vtt invite ...")


@vtt_group.command("serve")
@click.argument("study", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True)
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve_cmd(study: str, host: str, port: int, log_level: str) -> None:
    """Serve the rating pages (Ctrl-C stops; answers are saved as they are given)."""
    import uvicorn

    from dermsynth.vtt.server import create_app
    from dermsynth.vtt.store import Study

    st = Study(study)
    st.require_writable("record answers")
    if not st.raters():
        raise DermsynthError(f"{study}: no raters yet; add some with `dermsynth vtt invite {study} --group ...`")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo("note: plain HTTP; put it behind an HTTPS reverse proxy before sending links outside", err=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"serving {st.path} ({st.n_images()} images, {len(st.raters())} raters) on http://{shown}:{port}; "
               f"links: dermsynth vtt links {study} --base-url http://{shown}:{port}")
    # uvicorn's access log would write every token; the app logs each request with the token redacted
    uvicorn.run(create_app(st), host=host, port=port, log_level=log_level, access_log=False)


@vtt_group.command("report")
@click.argument("study", type=click.Path())
@click.option("--out", type=click.Path(), required=True, help="Folder for report.html, report.json and the CSVs.")
def report_cmd(study: str, out: str) -> None:
    """Per rater, per group and pooled metrics, ROC AUC, agreement (Fleiss' kappa, Krippendorff's alpha) with their
    counts, reading times, a methods paragraph, per-image table, grids, plots and the CSV export."""
    from dermsynth.vtt.report import write_report

    rep = write_report(study, out)
    for g in rep.numbers["groups"]:
        rates = "  ".join(f"{label} {'n/a' if g[key] is None else format(g[key], '.3f')}"
                          for label, key in (("accuracy", "accuracy"), ("TPR", "tpr"), ("TNR", "tnr"), ("F1", "f1")))
        click.echo(f"{g['group']:<16} raters {g['raters']:>3}  {rates}")
    for warning in rep.numbers["warnings"]:
        _warn(warning)
    click.echo(f"report: {rep.html}\nnumbers: {rep.json}")


@vtt_group.command("export")
@click.argument("study", type=click.Path())
@click.option("--out", type=click.Path(), required=True, help="Folder for the CSV files.")
def export_cmd(study: str, out: str) -> None:
    """CSV export: settings, every rater's hanging list, final answers and every answer given (timestamps,
    revisions, reading times), with the key."""
    from dermsynth.vtt.report import export_csv

    for path in export_csv(study, out):
        click.echo(str(path))
