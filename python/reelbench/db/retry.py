"""Reconnect and retry: every database step of a worker survives a database restart.

A restarted PostgreSQL (or a SQLite file busy past its timeout) turns the
next statement into ``OperationalError``/``InterfaceError``, and a session
whose flush failed into ``PendingRollbackError`` until it is rolled back.
None of that says anything about the run: the step is rolled back and tried
again with backoff until the database answers, so an outage costs time, not
an attempt. Steps must be safe to repeat: reads, or conditional writes whose
second application matches zero rows or the same rows.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

__all__ = ["DB_UNAVAILABLE", "DEFAULT_RETRY_SECONDS", "retry_db", "short_error"]

log = logging.getLogger("reelbench.worker")

T = TypeVar("T")

#: Errors that mean "the database is unreachable or busy right now".
DB_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.PendingRollbackError,
)

#: How long a step keeps trying before its error is let through.
DEFAULT_RETRY_SECONDS = 300.0


class Stopping(Exception):
    """Gave up waiting for the database because the caller is stopping."""


def short_error(exc: BaseException) -> str:
    """The first line of a driver error (no statement, no parameters)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def retry_db(
    what: str,
    fn: Callable[[], T],
    *,
    session: Session | None = None,
    max_seconds: float | None = DEFAULT_RETRY_SECONDS,
    stopping: threading.Event | None = None,
) -> T:
    """Run ``fn``, retrying with backoff (0.1 s doubling to 5 s) while the database is away.

    ``session``: rolled back before each new try, so a half-done transaction
    never carries over. ``max_seconds``: after this long the last error is
    raised (None: never give up). ``stopping``: when set, waiting ends with
    :class:`Stopping` instead.
    """
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    delay = 0.1
    while True:
        try:
            return fn()
        except DB_UNAVAILABLE as exc:
            if session is not None:
                # A dead connection fails its rollback too; the session drops it.
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    session.rollback()
            if stopping is not None and stopping.is_set():
                raise Stopping from exc
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            log.warning(
                "database unavailable while %s (%s); retrying in %.1fs",
                what,
                short_error(exc),
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
