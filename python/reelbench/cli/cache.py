"""``reelbench cache``: list, show and forget provider calls (the cache that never pays twice)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from reelbench.cli.options import BadInput, console, db_option, json_option, open_db

__all__ = ["cache_group"]


@click.group("cache")
def cache_group() -> None:
    """The provider-call cache: list, show and forget cached calls.

    Every provider call is recorded under the SHA-256 of its request; an
    identical request later reuses its video instead of paying again.
    """


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


@cache_group.command("list")
@click.option("--experiment", "-e", metavar="NAME", default=None,
              help="Only calls the runs of this experiment used.")  # fmt: skip
@click.option("--variant", "-v", metavar="KEY", default=None,
              help="With --experiment: only this variant's calls.")  # fmt: skip
@click.option(
    "--status", type=click.Choice(["pending", "submitted", "succeeded", "failed", "forgotten"]),
    default=None, help="Only calls in this state.",
)  # fmt: skip
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True,
              help="Newest first, at most this many.")  # fmt: skip
@db_option
@json_option
def cache_list_command(
    experiment: str | None,
    variant: str | None,
    status: str | None,
    limit: int,
    db_url: str,
    as_json: bool,
) -> None:
    """List provider calls, newest first, with the runs that use each."""
    from reelbench.db.calls import list_calls

    db = open_db(db_url)
    try:
        with db.sessions() as session:
            calls = list_calls(
                session, experiment=experiment, variant=variant, status=status, limit=limit
            )
    except LookupError as exc:
        raise BadInput(str(exc.args[0])) from exc
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"calls": [c.to_json() for c in calls]}))
        return
    if not calls:
        click.echo("no provider calls recorded" + (" for that selection" if experiment else ""))
        return
    table = Table(title_justify="left")
    for header in ("id", "request hash", "provider / model", "status", "runs", "cost", "created"):
        table.add_column(header, justify="right" if header in ("id", "runs", "cost") else "left")
    for c in calls:
        table.add_row(
            str(c.id),
            c.request_hash[:12],
            Text(c.provider + (f" / {c.model}" if c.model else "")),
            Text(c.status, style="red" if c.status == "failed" else ""),
            str(c.runs),
            _money(c.cost),
            c.created_at.strftime("%Y-%m-%d %H:%M") if c.created_at else "-",
        )
    console().print(table)


def _call_document(session: Any, call: Any) -> dict[str, Any]:
    from reelbench.db.calls import call_runs

    fields = (
        "id", "request_hash", "provider", "model", "request", "status", "job_id",
        "raw_artifact_uri", "raw_sha256", "raw_bytes", "cost", "latency_seconds",
        "error_class", "error_message",
    )  # fmt: skip
    doc: dict[str, Any] = {name: getattr(call, name) for name in fields}
    for name in ("created_at", "submitted_at", "finished_at"):
        value = getattr(call, name)
        doc[name] = value.isoformat() if value else None
    doc["runs"] = [
        {"run_id": run_id, "experiment_id": int(exp), "status": status}
        for run_id, exp, status in call_runs(session, call.id)
    ]
    return doc


@cache_group.command("show")
@click.argument("calls", metavar="CALL...", nargs=-1, required=True)
@db_option
@json_option
def cache_show_command(calls: tuple[str, ...], db_url: str, as_json: bool) -> None:
    """Everything recorded about CALL: an id or 6+ hex digits of its request hash."""
    from reelbench.db.calls import find_calls

    db = open_db(db_url)
    try:
        with db.sessions() as session:
            docs = [_call_document(session, c) for c in find_calls(session, calls)]
    except LookupError as exc:
        raise BadInput(str(exc.args[0])) from exc
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"calls": docs}))
        return
    out = console()
    for doc in docs:
        out.print(Text(f"provider call {doc['id']}", style="bold"))
        for key, value in doc.items():
            if key in ("id", "runs"):
                continue
            shown = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
            out.print(Text(f"  {key:>17}: {'-' if shown is None else shown}"))
        runs = ", ".join(f"{r['run_id']} ({r['status']})" for r in doc["runs"]) or "none"
        out.print(Text(f"  {'runs':>17}: {runs}"))


@cache_group.command("forget")
@click.argument("calls", metavar="[CALL...]", nargs=-1)
@click.option("--experiment", "-e", metavar="NAME", default=None,
              help="Forget every call the runs of this experiment used.")  # fmt: skip
@click.option("--variant", "-v", metavar="KEY", default=None,
              help="With --experiment: only this variant's calls.")  # fmt: skip
@click.option("--failed", is_flag=True, help="Only calls that failed.")
@db_option
@json_option
def cache_forget_command(
    calls: tuple[str, ...],
    experiment: str | None,
    variant: str | None,
    failed: bool,
    db_url: str,
    as_json: bool,
) -> None:
    """Forget cached calls: the next identical request calls the provider again.

    Give calls by id or request-hash prefix, or select them with --experiment
    (and --variant). Runs that used a call keep their results and files; its
    raw video is deleted only when no run's artifact points at it. Calls in
    flight are left alone.
    """
    from reelbench.db.calls import find_calls, forget_calls, list_calls, remove_files
    from reelbench.db.models import ProviderCall

    if not calls and experiment is None:
        raise BadInput("name the calls to forget (ids or request-hash prefixes) or --experiment")
    db = open_db(db_url)
    try:
        with db.sessions() as session, session.begin():
            chosen = list(find_calls(session, calls)) if calls else []
            if experiment is not None:
                summaries = list_calls(session, experiment=experiment, variant=variant)
                for summary in summaries:
                    call = session.get(ProviderCall, summary.id)
                    if call is not None:
                        chosen.append(call)
            chosen = [c for c in chosen if not failed or c.status == "failed"]
            result = forget_calls(session, chosen)
        removed = remove_files(result.unreferenced_files)
    except LookupError as exc:
        raise BadInput(str(exc.args[0])) from exc
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({
            "forgotten": result.forgotten, "in_flight": result.in_flight,
            "deleted_files": removed, "kept_files": result.kept_files,
        }))  # fmt: skip
        return
    click.echo(f"forgot {len(result.forgotten)} provider call(s)")
    if result.in_flight:
        ids = ", ".join(map(str, result.in_flight))
        click.echo(f"left {len(result.in_flight)} call(s) being made now alone: {ids}")
    if removed or result.kept_files:
        click.echo(
            f"deleted {len(removed)} raw video(s) no run uses; kept {len(result.kept_files)} "
            "that runs' artifacts point at"
        )
