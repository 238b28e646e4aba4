"""What every command shares: options, the bad-input error, consoles, opening the database.

Imported by every command module, so it stays light: SQLAlchemy and Alembic
are imported only inside :func:`open_db`, by commands that use a database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reelbench.settings import (
    ARTIFACTS_ENV,
    DATABASE_ENV,
    DEFAULT_ARTIFACT_ROOT,
    DEFAULT_DATABASE_URL,
    display_url,
)

if TYPE_CHECKING:
    from rich.console import Console

    from reelbench.db.engine import Database
    from reelbench.spec import ExperimentSpec

__all__ = [
    "BadInput",
    "artifacts_option",
    "check_artifact_root",
    "check_provider_keys",
    "console",
    "db_option",
    "json_option",
    "no_cache_option",
    "open_db",
]

F = TypeVar("F", bound=Callable[..., Any])


class BadInput(click.ClickException):
    """Bad input (spec, experiment name, option, file): one line on stderr, exit code 2."""

    exit_code = 2


def db_option(func: F) -> F:
    """``--db URL``: where the runs live."""
    return click.option(
        "--db",
        "db_url",
        envvar=DATABASE_ENV,
        default=DEFAULT_DATABASE_URL,
        show_default=True,
        metavar="URL",
        help="Database URL: sqlite:///path.db or postgresql+psycopg://user@host/db "
        f"(env {DATABASE_ENV}).",
    )(func)


def _set_scratch(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # The object store reads its scratch folder from the environment, in this
    # process and in any worker process it starts.
    if value:
        os.environ["REELBENCH_SCRATCH"] = value


def artifacts_option(func: F) -> F:
    """``--artifacts DIR|s3://bucket/prefix`` (and ``--scratch DIR`` for s3 roots)."""
    func = click.option(
        "--scratch",
        metavar="DIR",
        default=None,
        expose_value=False,
        callback=_set_scratch,
        type=click.Path(file_okay=False),
        help="Local folder for s3:// artifacts on their way in and out "
        "(env REELBENCH_SCRATCH; default ~/.cache/reelbench/scratch).",
    )(func)
    return click.option(
        "--artifacts",
        "artifacts_dir",
        envvar=ARTIFACTS_ENV,
        default=str(DEFAULT_ARTIFACT_ROOT),
        show_default=True,
        metavar="DIR",
        type=click.Path(file_okay=False),
        help=f"Artifact root directory, or s3://bucket/prefix (env {ARTIFACTS_ENV}).",
    )(func)


def no_cache_option(func: F) -> F:
    """``--no-cache``: pay for every generation, even one made before."""
    return click.option(
        "--no-cache", is_flag=True, help="Call providers even when a cached result exists."
    )(func)


def json_option(func: F) -> F:
    """``--json``: machine-readable output on stdout."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document instead of a table."
    )(func)


def check_provider_keys(spec: ExperimentSpec) -> None:
    """Exit 2 naming the variable when a variant's provider has no API key here.

    Run before anything is queued: a run that can only fail on its worker
    for want of a key should not be queued at all.
    """
    from reelbench.providers.describe import missing_key_problems

    problems = missing_key_problems((v.key, v.provider) for v in spec.variants)
    if problems:
        where = str(spec.source) if spec.source else spec.name
        lines = "\n".join(f"  {p}" for p in problems)
        raise BadInput(f"missing API key for experiment spec {where}:\n{lines}")


def console(*, stderr: bool = False, width: int = 160) -> Console:
    """A rich console; pipes and files get a wide one so tables keep every column readable."""
    from rich.console import Console

    out = Console(stderr=stderr)
    return out if out.is_terminal else Console(stderr=stderr, width=width)


def open_db(db_url: str, *, create: bool = False) -> Database:
    """Open (and migrate) the database at ``db_url`` for a command.

    ``create``: only commands that submit work may create a new SQLite file;
    they say so on stderr. Others refuse a missing file with exit code 2, so
    a mistyped path never silently starts over. Messages show the URL with
    its password masked.
    """
    from sqlalchemy import exc as sa_exc

    from reelbench.db.engine import DatabaseNotFound, open_database

    shown = display_url(db_url)
    try:
        db = open_database(db_url, create=create)
    except sa_exc.ArgumentError as exc:
        raise BadInput(
            f"invalid --db URL {shown!r}: expected sqlite:///path.db or "
            "postgresql+psycopg://user@host/db"
        ) from exc
    except DatabaseNotFound as exc:
        raise BadInput(str(exc)) from exc
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise click.ClickException(
            f"cannot open the database {shown}: {short_db_error(exc, db_url)}"
        ) from exc
    if db.created:
        click.echo(f"created new database {display_url(db.url)}", err=True)
    return db


def check_artifact_root(artifacts_dir: str) -> None:
    """Stop with one line (exit 2) when the artifact root cannot be written."""
    from reelbench.storage import open_store

    try:
        open_store(artifacts_dir).check_writable()
    except OSError as exc:
        raise BadInput(exc.strerror or str(exc)) from exc


def short_db_error(exc: BaseException, db_url: str | None = None) -> str:
    """The first line of a driver error, with any password of ``db_url`` masked."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    if db_url:
        from sqlalchemy.engine import make_url

        line = line.replace(db_url, display_url(db_url))
        try:
            password = make_url(db_url).password
        except Exception:  # a malformed URL has no password to find
            password = None
        if password:
            line = line.replace(str(password), "***")
    return line
