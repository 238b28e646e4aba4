"""``reelbench report``: an experiment's variants compared, in any format.

Reading a report never writes to the database, so it works while runs are
still going and never creates a database by accident.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click
from rich.console import Console
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from reelbench.cli.options import BadInput, artifacts_option, db_option, json_option, short_db_error
from reelbench.cli.options import console as _console
from reelbench.judging.storage import load_votes
from reelbench.report import (
    ReportError,
    build_report,
    default_report_dir,
    render_table,
    write_csv,
    write_html,
    write_json,
)
from reelbench.results import DatabaseNotFound, ExperimentNotFound, _open_engine, query_results
from reelbench.settings import display_url

__all__ = ["report_command"]


@click.command("report")
@click.argument("experiment", metavar="EXPERIMENT")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["table", "csv", "json", "html"]),
    default="table", show_default=True,
    help="table: summary in the terminal; csv: one row per run with every metric "
    "statistic; json: the whole report; html: static page with the videos.",
)  # fmt: skip
@click.option(
    "--output", "-o", "output", metavar="PATH", type=click.Path(path_type=Path), default=None,
    help="Write here instead of stdout. For html: the page (PATH.html) or a folder for "
    "index.html; default .reelbench/reports/<experiment>/index.html. Videos go in "
    "videos/ beside the page.",
)  # fmt: skip
@click.option(
    "--baseline", metavar="VARIANT", default=None,
    help="Show each variant's difference and ratio to this variant, metric by metric.",
)  # fmt: skip
@click.option(
    "--cells", is_flag=True,
    help="table: also show the item x variant grid (runs per cell and the --cell-metric mean).",
)  # fmt: skip
@click.option(
    "--cell-metric", metavar="METRIC", default=None,
    help="The metric the --cells grid shows (default: the first metric of the report).",
)  # fmt: skip
@click.option(
    "--csv-raw", is_flag=True,
    help="csv: write text cells exactly as stored. By default a cell starting with = + - @ "
    "(a prompt, an error message) gets a leading ' so a spreadsheet shows it instead of "
    "running it as a formula.",
)  # fmt: skip
@db_option
@artifacts_option
@json_option
def report_command(
    experiment: str,
    fmt: str,
    output: Path | None,
    baseline: str | None,
    cells: bool,
    cell_metric: str | None,
    csv_raw: bool,
    db_url: str,
    artifacts_dir: str,
    as_json: bool,
) -> None:
    """Compare the variants of EXPERIMENT (its name or id).

    Per variant: metric means and spread over items and repeats, runs by
    status, failures by error class, provider cost and latency, and a seed
    check (did the same request give the same bytes?). Per item x variant:
    the runs with their canonical video (html). Reading a report never
    changes the database; it works while runs are still going.
    """
    if as_json:
        fmt = "json"
    try:
        engine = _open_engine(db_url)
    except DatabaseNotFound as exc:
        raise BadInput(str(exc)) from exc
    try:
        with Session(engine) as session:
            info, records = query_results(session, experiment)
            votes = load_votes(session, info.id)
        report = build_report(info, records, baseline=baseline, votes=votes)
    except (ExperimentNotFound, ReportError) as exc:
        raise BadInput(str(exc)) from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise click.ClickException(
            f"cannot read the database {display_url(db_url)}: {short_db_error(exc, db_url)}"
        ) from exc
    finally:
        engine.dispose()

    from reelbench.settings import artifact_root_of

    artifact_root = artifact_root_of(artifacts_dir)
    if fmt == "html":
        target = output or default_report_dir(report.experiment.name)
        if target.suffix.lower() not in (".html", ".htm"):
            target = target / "index.html"
        path = write_html(report, target, artifact_root=artifact_root)
        click.echo(f"report: {path}  (open {path.resolve().as_uri()})")
        return
    if fmt == "table":
        if cell_metric is not None and cell_metric not in report.metric_names:
            known = ", ".join(report.metric_names) or "none yet"
            raise BadInput(f"--cell-metric {cell_metric!r}: not a metric of this report ({known})")
        if output is None:
            render_table(report, _console(), cells=cells, cell_metric=cell_metric)
        else:
            with output.open("w", encoding="utf-8") as fh:
                plain = Console(file=fh, width=160, color_system=None)
                render_table(report, plain, cells=cells, cell_metric=cell_metric)
        return

    def write(out: IO[str]) -> None:
        if fmt == "csv":
            write_csv(report, out, raw=csv_raw)
        else:
            write_json(report, out)

    if output is None:
        write(sys.stdout)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8", newline="") as fh:
            write(fh)
