"""``reelbench run``: submit, work in-process, report.

``run`` is the one-machine path: it queues the spec's runs in the database
exactly like ``submit``, works them with an in-process worker (threads) until
every run of the experiment is finished, then writes the HTML + JSON report.
Because all state lives in the database, stopping it (Ctrl-C) and running the
same command again finishes only what is missing; succeeded runs and paid
provider calls are never repeated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reelbench.cli.options import (
    BadInput,
    artifacts_option,
    check_artifact_root,
    check_provider_keys,
    db_option,
    json_option,
    no_cache_option,
    open_db,
)
from reelbench.cli.options import console as _console
from reelbench.db.claim import pending_runs, reclaim_dead_local_runs
from reelbench.db.engine import Database, read_transaction
from reelbench.db.models import Item, Run, Variant
from reelbench.report import (
    Report,
    ReportError,
    build_report,
    default_report_dir,
    render_table,
    write_report_files,
)
from reelbench.results import query_results
from reelbench.settings import artifact_root_of

__all__ = ["EXIT_INTERRUPTED", "run_command"]

#: Exit code of ``reelbench run`` stopped by Ctrl-C / SIGTERM (the shell convention, 128 + 2).
EXIT_INTERRUPTED = 130


@dataclass
class _Tally:
    """What the progress display shows; updated from the worker's outcome callback."""

    labels: dict[int, str] = field(default_factory=dict)
    finished_here: int = 0
    retried: int = 0
    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _run_labels(sessions: sessionmaker[Session], experiment_id: int) -> dict[int, str]:
    with sessions() as session:
        rows = session.execute(
            select(Run.id, Item.key, Variant.key, Run.repeat)
            .join(Item, Run.item_id == Item.id)
            .join(Variant, Run.variant_id == Variant.id)
            .where(Run.experiment_id == experiment_id)
        ).all()
    return {rid: f"{item} x {variant} #{repeat}" for rid, item, variant, repeat in rows}


def _nothing_to_do(db: Database, experiment_id: int) -> bool:
    """True when no run of the experiment is queued or running: a worker would stop at once."""
    with db.sessions() as session:
        read_transaction(session)
        pending = pending_runs(session, experiment_id)
    return pending["queued"] + pending["running"] + pending["held"] == 0


def _status_counts(sessions: sessionmaker[Session], experiment: str) -> dict[str, int]:
    from reelbench.db.experiments import experiment_status

    return dict(experiment_status(sessions, experiment)[0].counts)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _progress_text(counts: dict[str, int], rate: float | None, retried: int = 0) -> str:
    remaining = counts.get("queued", 0) + counts.get("running", 0)
    eta = remaining / rate if rate else None
    return (
        f"{counts.get('succeeded', 0)} ok, {counts.get('failed', 0)} failed, "
        f"{counts.get('running', 0)} running, {counts.get('queued', 0)} queued"
        + (f", {counts['cancelled']} cancelled" if counts.get("cancelled") else "")
        + (f" ({retried} retries)" if retried else "")
        + (f" · {rate * 60:.0f} runs/min · ETA {_fmt_duration(eta)}" if rate else "")
    )


@contextlib.contextmanager
def _signals_stop(stop: Any, console: Console) -> Iterator[list[int]]:
    """SIGINT/SIGTERM: the first stops gracefully, the second hands runs back at once."""
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            console.print(
                "[yellow]stopping: finishing the runs in flight "
                "(press Ctrl-C again to hand them back to the queue now)[/]"
            )
        stop()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _work(
    db: Database,
    experiment: str,
    experiment_id: int,
    *,
    workers: int,
    artifact_root: Path | str,
    use_cache: bool,
    progress_console: Console | None,
    grace_seconds: float,
) -> bool:
    """Work the experiment until every run is finished; False when interrupted."""
    from reelbench.orchestrator import RunOutcome, WorkerOrchestrator
    from reelbench.processor import RunProcessor

    tally = _Tally(labels=_run_labels(db.sessions, experiment_id))
    status_console = progress_console or Console(stderr=True, quiet=True)

    def on_outcome(outcome: RunOutcome) -> None:
        label = tally.labels.get(outcome.run_id, f"run {outcome.run_id}")
        first_line = (outcome.error or "").strip().splitlines()
        message = first_line[0] if first_line else ""
        with tally.lock:
            if outcome.outcome in ("succeeded", "failed"):
                tally.finished_here += 1
            if outcome.outcome == "queued":
                tally.retried += 1
        if outcome.outcome == "failed":
            status_console.print(
                f"[red]failed[/] {escape(label)} (attempt {outcome.attempt}): {escape(message)}",
                highlight=False,
                soft_wrap=True,
            )
        elif outcome.outcome == "queued":
            status_console.print(
                f"[yellow]retrying[/] {escape(label)} after attempt {outcome.attempt}: "
                f"{escape(message)}",
                highlight=False,
                soft_wrap=True,
            )

    orchestrator = WorkerOrchestrator(
        db.sessions,
        RunProcessor(),
        concurrency=workers,
        experiment=experiment,
        use_cache=use_cache,
        artifact_root=artifact_root,
        grace_seconds=grace_seconds,
        poll_seconds=0.25,
        on_outcome=on_outcome,
    )
    errors: list[BaseException] = []

    def target() -> None:
        try:
            orchestrator.run_until_idle()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="reelbench-run", daemon=True)
    started = time.monotonic()
    counts = _status_counts(db.sessions, experiment)
    total = sum(counts.values())
    with _signals_stop(orchestrator.stop, status_console) as received:
        thread.start()
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            # Last and elastic: on a narrow terminal the counts are cut, not the bar.
            TextColumn(
                "{task.fields[states]}",
                table_column=Column(
                    no_wrap=True,
                    overflow="ellipsis",
                    max_width=max(12, status_console.width - len(experiment) - 42),
                ),
            ),
            console=status_console,
            transient=False,
            disable=progress_console is None or not status_console.is_terminal,
        )
        task = progress.add_task(escape(experiment), total=total, states="")
        last_line = 0.0
        with progress:
            while True:
                thread.join(0.5)
                finished = not thread.is_alive()
                try:
                    counts = _status_counts(db.sessions, experiment)
                except sa_exc.OperationalError:
                    # Busy or briefly unreachable: the worker retries, the display waits.
                    if finished:
                        break
                    continue
                elapsed = time.monotonic() - started
                rate = tally.finished_here / elapsed if tally.finished_here and elapsed else None
                done = sum(n for s, n in counts.items() if s not in ("queued", "running"))
                text = _progress_text(counts, rate, tally.retried)
                progress.update(task, completed=done, total=sum(counts.values()), states=text)
                now = time.monotonic()
                if progress.disable and progress_console is not None and now - last_line > 5:
                    status_console.print(
                        f"{done}/{sum(counts.values())} finished: {text}",
                        highlight=False,
                        soft_wrap=True,
                    )
                    last_line = now
                if finished:
                    break
    if errors:
        raise errors[0]
    return not received


def _failures_summary(report: Report) -> list[dict[str, Any]]:
    return [
        {
            "run_id": r.run_id,
            "item": r.item_key,
            "variant": r.variant_key,
            "repeat": r.repeat,
            "status": r.status,
            "error_class": r.error_class,
            "error_message": r.error_message,
            "attempts": r.attempt,
        }
        for r in report.failures
    ]


def _build_report(db: Database, experiment: str, baseline: str | None = None) -> Report:
    with db.sessions() as session:
        info, records = query_results(session, experiment)
    return build_report(info, records, baseline=baseline)


@click.command("run")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--workers", "-w", default=min(4, os.cpu_count() or 1), show_default="min(4, CPUs)",
    type=click.IntRange(1, 256),
    help="Runs processed at once (threads in this process).",
)  # fmt: skip
@click.option(
    "--report", "report_target", metavar="PATH", default=None,
    type=click.Path(path_type=Path),
    help="Where to write the report: a folder (index.html, report.json, videos/) or a "
    "file ending in .html (the JSON goes beside it). Default: "
    ".reelbench/reports/<experiment>/.",
)  # fmt: skip
@no_cache_option
@click.option(
    "--baseline", metavar="VARIANT", default=None,
    help="Compare every variant with this one in the report.",
)  # fmt: skip
@click.option(
    "--grace-seconds", default=30.0, show_default=True, type=click.FloatRange(min=0),
    help="On Ctrl-C, how long runs in flight may take to finish before they are handed "
    "back to the queue.",
)  # fmt: skip
@click.option("--verbose", "-v", is_flag=True, help="Also show the worker's log.")
@db_option
@artifacts_option
@json_option
def run_command(
    spec_path: Path,
    workers: int,
    report_target: Path | None,
    no_cache: bool,
    baseline: str | None,
    grace_seconds: float,
    verbose: bool,
    db_url: str,
    artifacts_dir: str,
    as_json: bool,
) -> None:
    """Run the experiment spec SPEC end to end: queue, work, report.

    Queues the runs (like `reelbench submit`), processes them in this process
    with --workers threads while showing progress, then writes the HTML report
    (videos side by side, summary table, per-frame plots, failures) and a JSON
    document, and prints the summary and where the report is.

    Ctrl-C stops cleanly: runs in flight finish (or go back to the queue) and
    the same command again finishes only what is missing, without repeating
    succeeded runs or provider calls.

    \b
    Exit codes: 0 every run succeeded; 1 some runs failed (the summary says
    which and why); 2 bad spec or options, or a provider's API key is not set;
    130 interrupted (run it again).
    """
    from reelbench.spec import SpecError, load_spec
    from reelbench.submit import submit_spec

    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        raise BadInput(str(exc)) from exc
    check_provider_keys(spec)
    check_artifact_root(artifacts_dir)

    out = _console(stderr=as_json)  # the summary; stdout unless --json owns it
    progress_console = None if as_json else _console(stderr=True)
    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
    log = logging.getLogger("reelbench")
    previous_level = log.level
    log.addHandler(handler)
    # The worker logs every retry and failure; the progress display already
    # says so with the item and variant, so its log is opt-in.
    log.setLevel(logging.INFO if verbose else logging.ERROR)

    db = open_db(db_url, create=True)
    try:
        try:
            submitted = submit_spec(db.sessions, spec)
        except SpecError as exc:
            raise BadInput(str(exc)) from exc
        freed = reclaim_dead_local_runs(db.sessions, submitted.experiment_id)
        if progress_console is not None:
            progress_console.print(
                f"experiment [bold]{escape(submitted.experiment_name)}[/]: "
                f"{submitted.runs_total} runs ({submitted.runs_created} new"
                + (f", {freed} taken back from a stopped run" if freed else "")
                + f"), {workers} worker thread{'s' if workers != 1 else ''}",
                highlight=False,
            )
        # Nothing queued or running (a re-run of a finished experiment): no
        # worker to start, the report is all that is left to do.
        completed = _nothing_to_do(db, submitted.experiment_id) or _work(
            db,
            submitted.experiment_name,
            submitted.experiment_id,
            workers=workers,
            artifact_root=artifact_root_of(artifacts_dir),
            use_cache=not no_cache,
            progress_console=progress_console,
            grace_seconds=grace_seconds,
        )
        try:
            report = _build_report(db, submitted.experiment_name, baseline)
        except ReportError as exc:
            raise BadInput(str(exc)) from exc
        target = report_target or default_report_dir(submitted.experiment_name)
        html_path, json_path = write_report_files(
            report, target, artifact_root=artifact_root_of(artifacts_dir)
        )
    finally:
        db.dispose()
        log.removeHandler(handler)
        log.setLevel(previous_level)

    counts = report.status_counts
    pending = counts.get("queued", 0) + counts.get("running", 0)
    failed = len(report.failures)
    if as_json:
        doc = {
            "experiment": report.experiment.name,
            "status_counts": counts,
            "interrupted": not completed,
            "report": {"html": str(html_path.resolve()), "json": str(json_path.resolve())},
            "failures": _failures_summary(report),
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        render_table(report, out)
        uri = html_path.resolve().as_uri()
        out.print(
            f"report: {escape(str(html_path))}  (open {escape(uri)})",
            highlight=False,
            soft_wrap=True,
        )
        out.print(f"json:   {escape(str(json_path))}", highlight=False)
    for line in report.waiting_lines():
        Console(stderr=True).print(f"[yellow]{escape(line)}[/]")
    held = report.waiting.get("budget reached", 0)
    if completed and pending and held == pending:
        # Nothing else is left: the budget, not an interruption, stopped the run.
        sys.exit(EXIT_INTERRUPTED)
    if not completed or pending:
        Console(stderr=True).print(
            f"[yellow]interrupted: {pending} run(s) not finished; run the same command again "
            "to finish them[/]"
        )
        sys.exit(EXIT_INTERRUPTED)
    if failed:
        Console(stderr=True).print(
            f"[red]{failed} run(s) failed[/] (see Failures above); `reelbench retry "
            f"{escape(report.experiment.name)}` queues them again"
        )
        sys.exit(1)
