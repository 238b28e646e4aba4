"""Queue test setup: submit a grid of runs without touching the filesystem."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from reelbench.db.engine import Database
from reelbench.db.models import Run, RunAttempt
from reelbench.spec import parse_spec
from reelbench.submit import submit_spec


def queue_runs(
    db: Database,
    *,
    items: int = 1,
    repeats: int = 1,
    max_attempts: int = 3,
    backoff_seconds: float = 0.0,
    name: str = "exp",
) -> list[int]:
    """Submit ``items`` x ``repeats`` runs of a synthetic variant; returns the run ids."""
    spec = parse_spec(
        {
            "experiment": {"name": name},
            "retry": {"max_attempts": max_attempts, "backoff_seconds": backoff_seconds},
            "items": [{"id": f"i{n}", "prompt": f"prompt {n}"} for n in range(items)],
            "variants": [{"key": "v", "provider": "synthetic", "repeats": repeats}],
        }
    )
    submit_spec(db.sessions, spec)
    with db.sessions() as session:
        return list(session.execute(select(Run.id).order_by(Run.id)).scalars())


def run_row(db: Database, run_id: int) -> Run:
    """The run's row as stored now."""
    with db.sessions() as session:
        return session.execute(select(Run).where(Run.id == run_id)).scalar_one()


def attempt_rows(db: Database, run_id: int) -> list[dict[str, Any]]:
    """The run's attempt history, oldest first, as dicts."""
    with db.sessions() as session:
        rows = session.execute(
            select(RunAttempt).where(RunAttempt.run_id == run_id).order_by(RunAttempt.attempt)
        ).scalars()
        return [
            {
                "attempt": r.attempt,
                "worker_id": r.worker_id,
                "outcome": r.outcome,
                "error_class": r.error_class,
                "error_message": r.error_message,
                "error_traceback": r.error_traceback,
                "finished": r.finished_at is not None,
                "finished_at": r.finished_at,
            }
            for r in rows
        ]
