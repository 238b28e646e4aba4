"""A run's result rows: written in bulk with its fenced status, and again after an outage.

A processor stages its artifact, metric and reusable-output rows in the
session's open transaction; the orchestrator commits them together with the
fenced status update (ADR-0002). Rows go in as one multi-row INSERT per table
(SQLAlchemy Core ``executemany``), not object by object through the ORM:
that is what keeps a run whose video is reused from the cache cheap.

Each staged statement is also kept in ``session.info`` so that a commit cut
off by a database outage can be replayed in a fresh transaction: the run's
own rows are deleted first, then every statement is executed again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

__all__ = ["STAGED", "Staged", "replay_staged", "stage_rows", "stage_statement"]

#: ``Session.info`` key: the statements staged in the open transaction.
STAGED = "reelbench.staged_result_rows"


@dataclass(frozen=True)
class Staged:
    """One statement of a run's result, with what a replay needs."""

    statement: Any
    params: Sequence[Mapping[str, Any]] | None
    #: A model whose rows belong to the run (``run_id`` column): cleared before a replay.
    run_model: Any = None


def _run(session: Session, staged: Staged) -> None:
    if staged.params is None:
        session.execute(staged.statement)
    elif staged.params:
        session.execute(staged.statement, list(staged.params))


def stage_rows(session: Session, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows`` of ``model`` (run-owned, with ``run_id``) in the open transaction.

    Through the model's table, not the ORM: plain Core ``executemany``.
    """
    staged = Staged(_insert_of(model), list(rows), run_model=model)
    _run(session, staged)
    session.info.setdefault(STAGED, []).append(staged)


_INSERTS: dict[Any, Any] = {}


def _insert_of(model: Any) -> Any:
    # Built once per table: statement construction costs more than execution.
    stmt = _INSERTS.get(model)
    if stmt is None:
        stmt = _INSERTS[model] = insert(model.__table__)
    return stmt


def stage_statement(session: Session, statement: Any) -> None:
    """Execute ``statement`` in the open transaction and keep it for a replay."""
    staged = Staged(statement, None)
    _run(session, staged)
    session.info.setdefault(STAGED, []).append(staged)


def replay_staged(session: Session, run_id: int, staged: Sequence[Staged]) -> None:
    """Execute ``staged`` again in ``session``, after clearing the run's rows they wrote."""
    for model in {s.run_model for s in staged if s.run_model is not None}:
        session.execute(delete(model.__table__).where(model.__table__.c.run_id == run_id))
    for item in staged:
        _run(session, item)
