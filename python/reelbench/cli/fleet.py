"""``reelbench limits`` and ``reelbench budget``: the fleet's provider limits and spend caps."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from reelbench.cli.options import BadInput, console, db_option, json_option, open_db

__all__ = ["budget_command", "limits_group"]


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}"


@click.group("limits", invoke_without_command=True)
@db_option
@json_option
@click.pass_context
def limits_group(ctx: click.Context, db_url: str, as_json: bool) -> None:
    """Fleet-wide provider limits: calls in flight and submits per minute.

    \b
    Limits hold across every worker process and host sharing the database.
    A scope is a provider (openai) or a provider and model (openai:sora-2);
    a call obeys both when both are set. Without a subcommand: list the
    limits with what is in use now.
    \b
      reelbench limits set openai --concurrency 5 --per-minute 30
      reelbench limits clear openai
    """
    if ctx.invoked_subcommand is not None:
        return
    from reelbench.db.limits import limit_states

    db = open_db(db_url)
    try:
        with db.sessions() as session:
            states = limit_states(session)
    finally:
        db.dispose()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "limits": [
                        {
                            "scope": s.scope,
                            "concurrency": s.concurrency,
                            "per_minute": s.per_minute,
                            "source": s.source,
                            "in_flight": s.in_flight,
                            "submits_last_minute": s.submits_last_minute,
                            "paused_until": s.paused_until.isoformat() if s.paused_until else None,
                        }
                        for s in states
                    ]
                }
            )
        )
        return
    if not states:
        click.echo("no provider limits set (every worker's --concurrency is the only cap)")
        return
    table = Table(title_justify="left")
    for header in ("scope", "concurrency", "in flight", "per minute", "last minute", "set by"):
        table.add_column(header, justify="left" if header in ("scope", "set by") else "right")
    for s in states:
        source = {"cli": "reelbench limits set", "spec": "a spec's [limits]"}.get(
            s.source, "provider 429"
        )
        if s.paused_until is not None:
            source += f" (paused until {s.paused_until:%H:%M:%S} UTC)"
        table.add_row(
            s.scope,
            "-" if s.concurrency is None else str(s.concurrency),
            str(s.in_flight),
            "-" if s.per_minute is None else str(s.per_minute),
            str(s.submits_last_minute),
            source,
        )
    console().print(table)


@limits_group.command("set")
@click.argument("scope", metavar="PROVIDER[:MODEL]")
@click.option("--concurrency", type=click.IntRange(1), default=None,
              help="Provider calls in flight at once across the fleet.")  # fmt: skip
@click.option("--per-minute", type=click.IntRange(1), default=None,
              help="Submits in any 60-second window across the fleet.")  # fmt: skip
@db_option
def limits_set_command(
    scope: str, concurrency: int | None, per_minute: int | None, db_url: str
) -> None:
    """Set the limits of PROVIDER[:MODEL]; running workers obey them at their next submit.

    A value set here wins over any spec's [limits] for the same scope.
    """
    from reelbench.db.limits import set_limit
    from reelbench.spec import parse_scope

    if concurrency is None and per_minute is None:
        raise BadInput("give --concurrency, --per-minute or both (or use `reelbench limits clear`)")
    try:
        scope = parse_scope(scope)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    db = open_db(db_url)
    try:
        with db.sessions() as session:
            set_limit(session, scope, concurrency=concurrency, per_minute=per_minute)
    finally:
        db.dispose()
    parts = []
    if concurrency is not None:
        parts.append(f"{concurrency} in flight")
    if per_minute is not None:
        parts.append(f"{per_minute} submits per minute")
    click.echo(f"limits of {scope}: {', '.join(parts)}")


@limits_group.command("clear")
@click.argument("scope", metavar="PROVIDER[:MODEL]")
@db_option
def limits_clear_command(scope: str, db_url: str) -> None:
    """Remove the limits of PROVIDER[:MODEL]."""
    from reelbench.db.limits import clear_limit
    from reelbench.spec import parse_scope

    try:
        scope = parse_scope(scope)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    db = open_db(db_url)
    try:
        with db.sessions() as session:
            found = clear_limit(session, scope)
    finally:
        db.dispose()
    click.echo(f"limits of {scope} removed" if found else f"no limits were set for {scope}")


@click.command("budget")
@click.argument("experiment")
@click.option("--max-usd", type=click.FloatRange(0), default=None,
              help="Set the budget in USD (runs it held back go on at once).")  # fmt: skip
@click.option("--no-limit", is_flag=True, help="Remove the budget.")
@db_option
@json_option
def budget_command(
    experiment: str, max_usd: float | None, no_limit: bool, db_url: str, as_json: bool
) -> None:
    """Show or change the spend budget of EXPERIMENT: spent, committed, per variant.

    Before every paid provider call a worker reserves its estimated cost; no
    call starts if spent plus reserved would pass the budget, and the runs
    left over wait in the queue ("budget reached") until it is raised here.
    """
    from reelbench.db.budget import budget_state, set_budget, spend_by_variant
    from reelbench.db.claim import pending_runs
    from reelbench.db.experiments import find_experiment

    if no_limit and max_usd is not None:
        raise BadInput("give either --max-usd or --no-limit, not both")
    db = open_db(db_url)
    try:
        with db.sessions() as session:
            try:
                found = find_experiment(session, experiment)
            except LookupError as exc:
                raise BadInput(str(exc.args[0])) from exc
            woken = 0
            if max_usd is not None or no_limit:
                woken = set_budget(session, found.id, None if no_limit else max_usd)
            state = budget_state(session, found.id)
            per_variant = spend_by_variant(session, found.id)
            waiting = pending_runs(session, found.id)["held"]
    finally:
        db.dispose()
    doc: dict[str, Any] = {
        "experiment": found.name,
        "max_usd": state.max_usd,
        "charged_usd": state.charged_usd,
        "open_usd": state.open_usd,
        "remaining_usd": state.remaining_usd,
        "runs_waiting_for_budget": waiting,
        "spend_by_variant": dict(per_variant),
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    limit = "no budget" if state.max_usd is None else f"budget {_money(state.max_usd)}"
    click.echo(
        f"experiment {found.name!r}: {limit}; spent {_money(state.charged_usd)}, "
        f"in flight or uncertain {_money(state.open_usd)}"
        + (f", left {_money(state.remaining_usd)}" if state.remaining_usd is not None else "")
    )
    if waiting:
        click.echo(f"{waiting} run(s) wait for budget" + (f"; {woken} woken up" if woken else ""))
    if per_variant:
        table = Table(title_justify="left")
        table.add_column("variant")
        table.add_column("spent", justify="right")
        for key, usd in sorted(per_variant.items()):
            table.add_row(key, _money(usd))
        console().print(table)
