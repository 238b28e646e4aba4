"""Queue commands: submit, worker, status, retry, cancel, db upgrade.

Database and orchestrator modules are imported inside the commands, so
``reelbench --help`` does not pay for them.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reelbench.cli.options import (
    BadInput,
    artifacts_option,
    check_artifact_root,
    check_provider_keys,
    db_option,
    json_option,
    no_cache_option,
    open_db,
    short_db_error,
)
from reelbench.settings import artifact_root_of, display_url

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from reelbench.context import Processor, RunContext

__all__ = [
    "cancel_command",
    "db_group",
    "load_processor",
    "retry_command",
    "status_command",
    "submit_command",
    "worker_command",
]


class _FunctionProcessor:
    """Adapts a plain ``f(ctx, session) -> (uri, sha256)`` function to the Processor protocol."""

    def __init__(self, fn: Callable[[RunContext, Session], tuple[str, str]]) -> None:
        self.fn = fn

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        return self.fn(ctx, session)


def load_processor(reference: str | None = None) -> Processor:
    """The processor named ``module:attribute``, or reelbench's RunProcessor by default.

    A class is instantiated without arguments; an object with a ``process``
    method is used as is; a plain function ``f(ctx, session)`` is wrapped.
    """
    if reference is None:
        module_name, attr = "reelbench.processor", "RunProcessor"
    else:
        module_name, sep, attr = reference.partition(":")
        if not sep or not module_name or not attr:
            raise BadInput(
                f"--processor {reference!r}: expected MODULE:NAME, e.g. mypkg.gen:Processor"
            )
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BadInput(f"cannot load processor {module_name}:{attr}: {exc}") from exc
    if isinstance(target, type):
        target = target()
    if hasattr(target, "process"):
        return target  # type: ignore[no-any-return]
    if callable(target):
        return _FunctionProcessor(target)
    raise BadInput(f"processor {module_name}:{attr} is neither a class, a processor nor a function")


@click.command("submit")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@json_option
@click.option(
    "--skip-key-check", is_flag=True,
    help="Queue the runs even though this machine lacks a provider's API key "
    "(the workers have it).",
)  # fmt: skip
def submit_command(spec_path: Path, db_url: str, as_json: bool, skip_key_check: bool) -> None:
    """Queue the runs of the experiment spec SPEC (a TOML file).

    Creates the experiment, its items and variants, and one queued run per
    item x variant x repeat. Submitting the same spec again creates nothing;
    a spec with more items, variants or repeats adds only the new runs. An
    invalid spec is reported with the file, key and expectation (exit 2) and
    nothing is written; so is a variant whose provider's API key variable is
    not set here (see `reelbench providers`). Workers (`reelbench worker`) then process the runs.
    """
    from reelbench.spec import SpecError, load_spec
    from reelbench.submit import submit_spec

    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        raise BadInput(str(exc)) from exc
    if not skip_key_check:
        check_provider_keys(spec)
    db = open_db(db_url, create=True)
    try:
        result = submit_spec(db.sessions, spec)
    except SpecError as exc:
        raise BadInput(str(exc)) from exc
    finally:
        db.dispose()
    if as_json:
        doc = {
            "experiment": result.experiment_name,
            "experiment_id": result.experiment_id,
            "created_experiment": result.created_experiment,
            "items_created": result.items_created,
            "variants_created": result.variants_created,
            "runs_created": result.runs_created,
            "runs_total": result.runs_total,
            "notes": list(result.notes),
        }
        click.echo(json.dumps(doc))
        return
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    verb = "created" if result.created_experiment else "extended"
    if not result.created_experiment and result.runs_created == 0:
        verb = "unchanged"
    click.echo(
        f"experiment {result.experiment_name!r} {verb}: {result.runs_created} new run(s) queued, "
        f"{result.runs_total} in total"
    )


@click.command("worker")
@click.option(
    "--concurrency", "-c", default=1, show_default=True, type=click.IntRange(1, 1024),
    help="Runs in flight at once in this process (threads).",
)  # fmt: skip
@click.option(
    "--drain", is_flag=True,
    help="Exit once the work of its scope is done instead of waiting for new runs: "
    "waits out retry backoffs, takes back runs of dead workers; runs other live "
    "workers hold do not keep it.",
)  # fmt: skip
@click.option(
    "--experiment", "-e", metavar="NAME", default=None,
    help="Only claim runs of this experiment.",
)  # fmt: skip
@click.option(
    "--lease-seconds", default=60.0, show_default=True, type=click.FloatRange(min=0.5),
    help="How long a claim lasts without a heartbeat; a crashed worker's runs are "
    "taken back by other workers after this. Renewed every third of it.",
)  # fmt: skip
@click.option(
    "--grace-seconds", default=30.0, show_default=True, type=click.FloatRange(min=0),
    help="On SIGTERM/SIGINT, how long in-flight runs may take to finish before they "
    "are handed back to the queue.",
)  # fmt: skip
@no_cache_option
@click.option(
    "--processor", "processor_ref", metavar="MODULE:NAME", default=None,
    help="Use another processor (class, object with .process, or function "
    "f(ctx, session)) instead of reelbench's provider -> normalize -> metrics pipeline.",
)  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="Log warnings and errors only.")
@db_option
@artifacts_option
def worker_command(
    concurrency: int,
    drain: bool,
    experiment: str | None,
    lease_seconds: float,
    grace_seconds: float,
    no_cache: bool,
    processor_ref: str | None,
    quiet: bool,
    db_url: str,
    artifacts_dir: str,
) -> None:
    """Claim queued runs and process them until stopped.

    Any number of workers may share one database (PostgreSQL for workers on
    several machines): each run is handed to one worker at a time. SIGTERM or
    Ctrl-C stops claiming, lets in-flight runs finish within --grace-seconds,
    hands the rest back to the queue and exits 0 (a second signal hands back
    at once). A killed worker's runs are taken back when their lease expires.
    """
    from reelbench.orchestrator import WorkerOrchestrator

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Schema checks on start-up are not worth a log line per worker.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    processor = load_processor(processor_ref)
    db = open_db(db_url)
    try:
        check_artifact_root(artifacts_dir)
    except BadInput:
        db.dispose()
        raise
    worker = WorkerOrchestrator(
        db.sessions,
        processor,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        grace_seconds=grace_seconds,
        experiment=experiment,
        drain=drain,
        use_cache=not no_cache,
        artifact_root=artifact_root_of(artifacts_dir),
    )
    worker.install_signal_handlers()
    try:
        worker.run()
    except LookupError as exc:
        raise BadInput(str(exc)) from exc
    finally:
        db.dispose()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@click.command("status")
@click.argument("experiment", required=False, metavar="[EXPERIMENT]")
@db_option
@json_option
def status_command(experiment: str | None, db_url: str, as_json: bool) -> None:
    """Runs per state, finishing rate and ETA, for one experiment or all."""
    from rich.console import Console
    from rich.table import Table

    from reelbench.db.experiments import experiment_status

    db = open_db(db_url)
    try:
        statuses = experiment_status(db.sessions, experiment)
    except LookupError as exc:
        raise BadInput(str(exc.args[0])) from exc
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"experiments": [s.to_json() for s in statuses]}))
        return
    if not statuses:
        click.echo("no experiments yet: queue one with `reelbench submit SPEC`")
        return
    states = ["queued", "running", "succeeded", "failed", "cancelled"]
    table = Table(title_justify="left")
    table.add_column("experiment")
    for state in [*states, "total"]:
        table.add_column(state, justify="right")
    table.add_column("runs/min", justify="right")
    table.add_column("ETA", justify="right")
    table.add_column("spent", justify="right")
    for s in statuses:
        rate = f"{s.rate_per_second * 60:.1f}" if s.rate_per_second else "-"
        spent = f"${s.spent_usd:.2f}" if s.spent_usd or s.open_usd or s.max_usd else "-"
        if s.max_usd is not None:
            spent += f" / ${s.max_usd:.2f}"
        table.add_row(
            s.name,
            *(str(s.counts.get(state, 0)) for state in states),
            str(s.total),
            rate,
            _duration(s.eta_seconds) if s.remaining else "done",
            spent,
        )
    # Pipes and files get a width that keeps every column readable.
    console = Console() if Console().is_terminal else Console(width=120)
    console.print(table)
    for s in statuses:
        for reason, count in sorted(s.waiting.items()):
            hint = ""
            if reason == "budget reached":
                hint = f" (raise it: reelbench budget {s.name} --max-usd N)"
            console.print(f"{s.name}: {count} queued run(s) {reason}{hint}", highlight=False)


def _experiment_command(
    action: Callable[[Any, str], int], experiment: str, db_url: str, done: str
) -> None:
    db = open_db(db_url)
    try:
        count = action(db.sessions, experiment)
    except LookupError as exc:
        raise BadInput(str(exc.args[0])) from exc
    finally:
        db.dispose()
    click.echo(f"{experiment}: {count} run(s) {done}")


@click.command("retry")
@click.argument("experiment", metavar="EXPERIMENT")
@db_option
def retry_command(experiment: str, db_url: str) -> None:
    """Put the failed runs of EXPERIMENT back in the queue, with a fresh retry budget."""
    from reelbench.db.experiments import retry_experiment

    _experiment_command(retry_experiment, experiment, db_url, "queued again")


@click.command("cancel")
@click.argument("experiment", metavar="EXPERIMENT")
@db_option
def cancel_command(experiment: str, db_url: str) -> None:
    """Cancel the queued and running runs of EXPERIMENT.

    Running ones stop at their worker's next heartbeat; their results are not
    recorded. `reelbench retry` does not bring cancelled runs back.
    """
    from reelbench.db.experiments import cancel_experiment

    _experiment_command(cancel_experiment, experiment, db_url, "cancelled")


@click.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
@db_option
def db_upgrade_command(db_url: str) -> None:
    """Create or migrate the schema to this version of reelbench.

    Every command does this on first use; run it explicitly to migrate a
    shared PostgreSQL database before starting a fleet of workers.
    """
    from sqlalchemy import exc as sa_exc

    from reelbench.db.engine import head_revision, upgrade

    shown = display_url(db_url)
    try:
        upgrade(db_url)
    except sa_exc.ArgumentError as exc:
        raise BadInput(f"invalid --db URL {shown!r}: {exc}") from exc
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise click.ClickException(
            f"cannot open the database {shown}: {short_db_error(exc, db_url)}"
        ) from exc
    click.echo(f"database {shown} at revision {head_revision()}")
