"""Experiment-level queue operations: status (counts, rate, ETA), retry, cancel."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from reelbench.db.budget import BUDGET_WAIT, budget_state
from reelbench.db.models import Experiment, Run, RunStatus
from reelbench.spec import RetryPolicy

__all__ = [
    "ExperimentStatus",
    "cancel_experiment",
    "experiment_status",
    "find_experiment",
    "retry_experiment",
]

#: The rate is measured over runs finished in this trailing window.
RATE_WINDOW = timedelta(minutes=5)

_STATES = [s.value for s in RunStatus]


def find_experiment(session: Session, name: str) -> Experiment:
    """The experiment called ``name``; ``LookupError`` naming the known ones if absent."""
    found = session.execute(select(Experiment).where(Experiment.name == name)).scalar_one_or_none()
    if found is None:
        known = session.execute(select(Experiment.name).order_by(Experiment.name)).scalars().all()
        hint = f"known experiments: {', '.join(known)}" if known else "no experiment submitted yet"
        raise LookupError(f"no experiment named {name!r} in this database ({hint})")
    return found


@dataclass(frozen=True)
class ExperimentStatus:
    """Where the runs of one experiment stand."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    #: Runs finished per second over the last few minutes (None: too few to tell).
    rate_per_second: float | None = None
    #: Seconds until queued + running runs are done at that rate.
    eta_seconds: float | None = None
    #: Queued runs waiting on the fleet (provider slot, rate, budget), by reason.
    waiting: dict[str, int] = field(default_factory=dict)
    #: Charged provider cost, cost of calls in flight (or uncertain), budget.
    spent_usd: float = 0.0
    open_usd: float = 0.0
    max_usd: float | None = None

    @property
    def total(self) -> int:
        """All runs of the experiment."""
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        """Runs not finished yet (queued or running)."""
        return self.counts.get("queued", 0) + self.counts.get("running", 0)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for ``reelbench status --json``."""
        out = asdict(self)
        out["total"] = self.total
        return out


def experiment_status(
    sessions: sessionmaker[Session], name: str | None = None
) -> list[ExperimentStatus]:
    """Counts per state, rate and ETA for experiment ``name`` (or every experiment)."""
    now = datetime.now(UTC)
    since = now - RATE_WINDOW
    with sessions() as session:
        query = select(Experiment.id, Experiment.name).order_by(Experiment.id)
        if name is not None:
            query = query.where(Experiment.id == find_experiment(session, name).id)
        experiments = session.execute(query).all()
        ids = [e.id for e in experiments]
        counts: dict[int, dict[str, int]] = {i: dict.fromkeys(_STATES, 0) for i in ids}
        for exp_id, status, n in session.execute(
            select(Run.experiment_id, Run.status, func.count())
            .where(Run.experiment_id.in_(ids))
            .group_by(Run.experiment_id, Run.status)
        ).all():
            counts[exp_id][status] = int(n)
        waiting: dict[int, dict[str, int]] = {i: {} for i in ids}
        for exp_id, reason, n in session.execute(
            select(Run.experiment_id, Run.wait_reason, func.count())
            .where(
                Run.experiment_id.in_(ids),
                Run.status == RunStatus.QUEUED.value,
                Run.wait_reason.is_not(None),
            )
            .group_by(Run.experiment_id, Run.wait_reason)
        ).all():
            short = short_reason(str(reason))
            waiting[exp_id][short] = waiting[exp_id].get(short, 0) + int(n)
        money = {i: budget_state(session, i) for i in ids}
        recent = {
            row[0]: (int(row[1]), row[2])
            for row in session.execute(
                select(Run.experiment_id, func.count(), func.min(Run.finished_at))
                .where(
                    Run.experiment_id.in_(ids),
                    Run.finished_at >= since,
                    Run.status.in_([RunStatus.SUCCEEDED.value, RunStatus.FAILED.value]),
                )
                .group_by(Run.experiment_id)
            ).all()
        }
    out = []
    for exp_id, exp_name in experiments:
        rate = eta = None
        finished, first = recent.get(exp_id, (0, None))
        if finished >= 2 and first is not None:
            if first.tzinfo is None:
                first = first.replace(tzinfo=UTC)
            rate = finished / max((now - first).total_seconds(), 1.0)
            remaining = counts[exp_id]["queued"] + counts[exp_id]["running"]
            eta = remaining / rate if remaining else 0.0
        out.append(
            ExperimentStatus(
                exp_name,
                counts[exp_id],
                rate,
                eta,
                waiting=waiting[exp_id],
                spent_usd=money[exp_id].charged_usd,
                open_usd=money[exp_id].open_usd,
                max_usd=money[exp_id].max_usd,
            )
        )
    return out


def short_reason(reason: str) -> str:
    """A wait reason without its numbers: ``budget reached``, ``waiting for a openai slot``."""
    if reason.startswith(BUDGET_WAIT):
        return BUDGET_WAIT
    cuts = [i for i in (reason.find(" ("), reason.find(": ")) if i > 0]
    return reason[: min(cuts)] if cuts else reason


def retry_experiment(sessions: sessionmaker[Session], name: str) -> int:
    """Put the failed runs of ``name`` back in the queue with a fresh retry budget."""
    with sessions() as session, session.begin():
        experiment = find_experiment(session, name)
        policy = RetryPolicy.model_validate(experiment.spec.get("retry", {}))
        result = session.execute(
            update(Run)
            .where(Run.experiment_id == experiment.id, Run.status == RunStatus.FAILED.value)
            .values(
                status=RunStatus.QUEUED.value,
                # the attempt counter is the fencing token and only grows
                max_attempts=Run.attempt + policy.max_attempts,
                not_before=None,
                worker_id=None,
                lease_expires_at=None,
                finished_at=None,
                error_class=None,
                error_message=None,
                error_traceback=None,
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def cancel_experiment(sessions: sessionmaker[Session], name: str) -> int:
    """Cancel the queued and running runs of ``name`` (remeasures end, runs stay succeeded).

    A running run's worker notices at its next heartbeat (the fence no longer
    holds), stops, and records nothing.
    """
    with sessions() as session, session.begin():
        experiment = find_experiment(session, name)
        # A run being remeasured was finished: it goes back to succeeded, with
        # its earlier metrics (a running remeasure's result is refused by the fence).
        session.execute(
            update(Run)
            .where(
                Run.experiment_id == experiment.id,
                Run.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]),
                Run.task == "remeasure",
            )
            .values(
                status=RunStatus.SUCCEEDED.value,
                task=None,
                remeasure=None,
                lease_expires_at=None,
                not_before=None,
                worker_id=None,
            )
            .execution_options(synchronize_session=False)
        )
        result = session.execute(
            update(Run)
            .where(
                Run.experiment_id == experiment.id,
                Run.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]),
            )
            .values(
                status=RunStatus.CANCELLED.value,
                finished_at=datetime.now(UTC),
                lease_expires_at=None,
                not_before=None,
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
