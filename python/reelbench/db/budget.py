"""Spend of an experiment, and the budget that caps it, enforced in the database.

Every paid provider submit is preceded by a row of ``spend`` holding its
estimated cost (state ``open``), written in the same transaction that
checks the budget: ``charged + open + estimate <= max_usd``. That
transaction starts by updating the experiment's row, which serializes every
worker reserving for the same experiment (a row lock on PostgreSQL, the
database write lock on SQLite), so many workers racing for the last dollars
never pass the budget together.

An ``open`` row counts until its call ends: ``charged`` with the provider's
reported cost (or the price table's, see ``providers/pricing.py``) or
``released`` when the provider refused the submit or the job failed. A
worker that dies after reserving leaves its row open: a job may exist at the
provider and be billed, so it keeps counting (see ``on_uncertain_submit``).
A cache hit costs nothing and reserves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, case, func, select, update
from sqlalchemy.orm import Session

from reelbench.db.models import Experiment, Run, RunStatus, Spend, Variant

__all__ = [
    "BUDGET_WAIT",
    "BudgetState",
    "budget_state",
    "charge",
    "open_spend_of_call",
    "release_call",
    "reserve",
    "set_budget",
    "spend_by_variant",
]

#: The ``runs.wait_reason`` prefix of runs held back by the budget.
BUDGET_WAIT = "budget reached"

_spend = cast(Table, Spend.__table__)
_experiments = cast(Table, Experiment.__table__)
_runs = cast(Table, Run.__table__)
_EPSILON = 1e-9


@dataclass(frozen=True)
class BudgetState:
    """An experiment's budget and what is spent or committed against it."""

    max_usd: float | None
    charged_usd: float
    open_usd: float

    @property
    def committed_usd(self) -> float:
        """Charged plus still open (in flight, or uncertain after a crash)."""
        return self.charged_usd + self.open_usd

    @property
    def remaining_usd(self) -> float | None:
        """What the budget still allows (None: no budget)."""
        if self.max_usd is None:
            return None
        return max(0.0, self.max_usd - self.committed_usd)


def _totals(session: Session, experiment_id: int) -> tuple[float, float]:
    charged, open_ = session.execute(
        select(
            func.coalesce(
                func.sum(case((_spend.c.state == "charged", _spend.c.cost_usd), else_=0.0)), 0.0
            ),
            func.coalesce(
                func.sum(case((_spend.c.state == "open", _spend.c.estimate_usd), else_=0.0)), 0.0
            ),
        ).where(_spend.c.experiment_id == experiment_id)
    ).one()
    return float(charged), float(open_)


def budget_state(session: Session, experiment_id: int) -> BudgetState:
    """The budget and spend of one experiment now."""
    max_usd = session.scalar(
        select(_experiments.c.max_usd).where(_experiments.c.id == experiment_id)
    )
    charged, open_ = _totals(session, experiment_id)
    return BudgetState(max_usd=max_usd, charged_usd=charged, open_usd=open_)


def reserve(
    session: Session,
    *,
    experiment_id: int,
    run_id: int,
    attempt: int,
    call_id: int,
    provider: str,
    model: str | None,
    estimate_usd: float,
    with_statement: Any = None,
) -> int | BudgetState | None:
    """Reserve ``estimate_usd`` for a submit; the spend row's id, or the state that refused it.

    ``with_statement`` (the call's submit intent) is executed in the same
    transaction and must hit one row, else nothing is written and None is
    returned (the call changed hands). Commits (or rolls back) its own
    transaction.
    """
    now = datetime.now(UTC)
    try:
        # First statement of the transaction: lock the experiment's row (and,
        # on SQLite, take the write lock) so concurrent reservations queue up.
        session.execute(
            update(_experiments)
            .where(_experiments.c.id == experiment_id)
            .values(max_usd=_experiments.c.max_usd)
        )
        max_usd = session.scalar(
            select(_experiments.c.max_usd).where(_experiments.c.id == experiment_id)
        )
        charged, open_ = _totals(session, experiment_id)
        if max_usd is not None and charged + open_ + estimate_usd > max_usd + _EPSILON:
            session.rollback()
            return BudgetState(max_usd=max_usd, charged_usd=charged, open_usd=open_)
        row = Spend(
            experiment_id=experiment_id,
            run_id=run_id,
            holder_attempt=attempt,
            call_id=call_id,
            provider=provider,
            model=model,
            state="open",
            estimate_usd=float(estimate_usd),
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        spend_id = row.id
        if with_statement is not None:
            hit = cast(CursorResult[Any], session.execute(with_statement)).rowcount == 1
            if not hit:
                session.rollback()
                return None
        session.commit()
        return spend_id
    except BaseException:
        session.rollback()
        raise


def open_spend_of_call(session: Session, call_id: int) -> int | None:
    """The id of a call's open spend row, if a reservation for it still counts."""
    found = session.scalar(
        select(_spend.c.id).where(_spend.c.call_id == call_id, _spend.c.state == "open").limit(1)
    )
    session.commit()
    return found


def charge(session: Session, call_id: int, cost_usd: float, source: str) -> None:
    """The call ended with a result: its open spend rows become its cost. Commits."""
    session.execute(
        update(_spend)
        .where(_spend.c.call_id == call_id, _spend.c.state == "open")
        .values(
            state="charged",
            cost_usd=float(cost_usd),
            cost_source=source,
            updated_at=datetime.now(UTC),
        )
    )
    session.commit()


def release_call(session: Session, call_id: int) -> None:
    """Nothing was billed for the call (submit refused, job failed). Commits."""
    session.execute(
        update(_spend)
        .where(_spend.c.call_id == call_id, _spend.c.state == "open")
        .values(state="released", cost_usd=0.0, updated_at=datetime.now(UTC))
    )
    session.commit()


def set_budget(session: Session, experiment_id: int, max_usd: float | None) -> int:
    """Set (or with None remove) the budget; runs held back by it may go at once.

    Returns how many waiting runs were woken up. Commits.
    """
    if max_usd is not None and max_usd < 0:
        raise ValueError(f"the budget must be at least 0 USD, got {max_usd}")
    session.execute(
        update(_experiments).where(_experiments.c.id == experiment_id).values(max_usd=max_usd)
    )
    result = cast(
        CursorResult[Any],
        session.execute(
            update(_runs)
            .where(
                _runs.c.experiment_id == experiment_id,
                _runs.c.status == RunStatus.QUEUED.value,
                _runs.c.wait_reason.like(f"{BUDGET_WAIT}%"),
            )
            .values(not_before=None)
        ),
    )
    session.commit()
    return int(result.rowcount or 0)


def spend_by_variant(session: Session, experiment_id: int) -> Mapping[str, float]:
    """Charged USD per variant key (via the run that made each call)."""
    rows = session.execute(
        select(Variant.key, func.sum(_spend.c.cost_usd))
        .join(_runs, _runs.c.id == _spend.c.run_id)
        .join(Variant, Variant.id == _runs.c.variant_id)
        .where(_spend.c.experiment_id == experiment_id, _spend.c.state == "charged")
        .group_by(Variant.key)
    ).all()
    return {str(key): float(total or 0.0) for key, total in rows}
