"""The queue's SQL: claiming runs and every fenced write that follows a claim.

A claim hands a run to one worker and increments ``runs.attempt``. That
number is the **fencing token**: every later write for the run (lease
renewal, result, failure, hand-back) carries ``WHERE id = :id AND attempt =
:token AND status = 'running'``. A worker that was paused past its lease and
lost the run to another worker matches zero rows and must drop its work; it
can never overwrite the new owner's result. Functions here return whether the
fence held, and never commit: the caller decides the transaction (results
are committed together with the processor's artifact and metric rows).

Time comes from the database on PostgreSQL (``now()``), so workers on hosts
with skewed clocks agree on lease expiry. SQLite is one machine: the local
clock is bound as a parameter.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    case,
    func,
    literal,
    null,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from reelbench.db.budget import BUDGET_WAIT
from reelbench.db.models import Run, RunAttempt, RunStatus, UTCDateTime

__all__ = [
    "ClaimedRun",
    "FailOutcome",
    "claim_runs",
    "close_dropped_attempt",
    "complete",
    "defer",
    "fail",
    "heartbeat",
    "link_provider_call",
    "pending_runs",
    "reclaim_dead_local_runs",
    "release",
    "run_status",
    "still_owner",
]

runs = cast(Table, Run.__table__)
attempts = cast(Table, RunAttempt.__table__)

RUNNING = RunStatus.RUNNING.value
QUEUED = RunStatus.QUEUED.value
#: ``runs.task`` of a finished run whose metrics are being computed again.
REMEASURE = "remeasure"

# --- the claim --------------------------------------------------------------
#
# PostgreSQL: one statement, one round trip. The CTEs pick the batch, take it,
# close the attempts that lost their lease and open this claim's attempts.
_PG_CLAIM = """
WITH batch AS (
    SELECT id, status AS old_status
    FROM runs
    WHERE (
        -- queued and due: never tried, or its retry backoff has passed
        (status = 'queued' AND (not_before IS NULL OR not_before <= now()))
        -- or running under an expired lease: its worker died or stalled, so the
        -- run is taken back right here (no separate reaper process needed)
        OR (status = 'running' AND lease_expires_at < now())
    )
    {experiment_filter}
    -- highest priority first, then oldest: a FIFO queue within a priority;
    -- walks the partial index ix_runs_claim
    ORDER BY priority DESC, id
    LIMIT :limit
    -- lock the chosen rows; rows another worker is claiming right now are
    -- skipped instead of waited for, so concurrent claims never block or
    -- hand out the same run twice
    FOR UPDATE SKIP LOCKED
),
taken AS (
    UPDATE runs SET
        status = 'running',
        -- the new fencing token: every later write must present it
        attempt = runs.attempt + 1,
        worker_id = :worker_id,
        lease_expires_at = now() + :lease_seconds * interval '1 second',
        started_at = now(),
        not_before = NULL,
        wait_reason = NULL
    FROM batch
    WHERE runs.id = batch.id
    -- batch.old_status is the row before this UPDATE: 'running' means the
    -- previous attempt's worker lost the run
    RETURNING runs.id, runs.attempt, batch.old_status
),
lost AS (
    -- the previous attempt of a run taken back from a dead worker ends 'lost'
    UPDATE run_attempts SET outcome = 'lost', finished_at = now(), error_message = :lost
    FROM taken
    WHERE taken.old_status = 'running'
      AND run_attempts.run_id = taken.id
      AND run_attempts.attempt = taken.attempt - 1
      AND run_attempts.outcome IS NULL
),
opened AS (
    -- the attempt history: one row per claim
    INSERT INTO run_attempts (run_id, attempt, worker_id, started_at)
    SELECT id, attempt, :worker_id, now() FROM taken
)
SELECT id, attempt, old_status FROM taken ORDER BY id
"""

LOST_MESSAGE = (
    "lease expired: the worker stopped renewing it (crashed, paused or cut off) "
    "and the run was claimed again"
)

# SQLite: one writer at a time. The transaction was opened with BEGIN
# IMMEDIATE (see db/engine.py), so nothing changes between this SELECT and
# the UPDATE below; no row locks are needed.
_SQLITE_CANDIDATES = """
SELECT id, status AS old_status
FROM runs
WHERE (
    -- queued and due: never tried, or its retry backoff has passed
    (status = 'queued' AND (not_before IS NULL OR not_before <= :now))
    -- or running under an expired lease: taken back from a dead worker
    OR (status = 'running' AND lease_expires_at < :now)
)
{experiment_filter}
-- highest priority first, then oldest (partial index ix_runs_claim)
ORDER BY priority DESC, id
LIMIT :limit
"""

_SQLITE_TAKE = """
UPDATE runs SET
    status = 'running',
    -- the new fencing token
    attempt = attempt + 1,
    worker_id = :worker_id,
    lease_expires_at = :lease_expires_at,
    started_at = :now,
    not_before = NULL,
    wait_reason = NULL
WHERE id IN ({ids})
RETURNING id, attempt
"""

_EXPERIMENT_FILTER = "AND experiment_id = :experiment_id"


@dataclass(frozen=True)
class ClaimedRun:
    """A run this worker now owns, and the token that proves it."""

    run_id: int
    attempt: int
    #: True when the run was taken back from a worker whose lease expired.
    reclaimed: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(name: str) -> Any:
    # SQLite stores timestamps as text; binding through the column type
    # writes exactly the format stored values use, so comparisons hold.
    return bindparam(name, type_=UTCDateTime())


def claim_runs(
    conn: Connection,
    worker_id: str,
    *,
    limit: int,
    lease_seconds: float,
    experiment_id: int | None = None,
) -> list[ClaimedRun]:
    """Claim up to ``limit`` runs for ``worker_id`` and open their attempt records.

    Runs inside the caller's transaction (``engine.begin()``); commit to make
    the claim visible. Previous attempts of reclaimed runs are marked ``lost``.
    """
    experiment_filter = _EXPERIMENT_FILTER if experiment_id is not None else ""
    params: dict[str, Any] = {"limit": limit, "worker_id": worker_id}
    if experiment_id is not None:
        params["experiment_id"] = experiment_id
    if conn.dialect.name == "postgresql":
        sql = text(_PG_CLAIM.format(experiment_filter=experiment_filter))
        params.update(lease_seconds=lease_seconds, lost=LOST_MESSAGE)
        rows = conn.execute(sql, params).all()
        return [ClaimedRun(r.id, r.attempt, r.old_status == RUNNING) for r in rows]

    now = _utcnow()
    sql = text(_SQLITE_CANDIDATES.format(experiment_filter=experiment_filter))
    candidates = conn.execute(sql.bindparams(_ts("now")), {**params, "now": now}).all()
    if not candidates:
        return []
    old_status = {r.id: r.old_status for r in candidates}
    ids = ", ".join(str(int(r.id)) for r in candidates)
    take = text(_SQLITE_TAKE.format(ids=ids)).bindparams(_ts("now"), _ts("lease_expires_at"))
    rows = conn.execute(
        take,
        {
            "worker_id": worker_id,
            "now": now,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
        },
    ).all()
    claimed = sorted(
        (ClaimedRun(r.id, r.attempt, old_status[r.id] == RUNNING) for r in rows),
        key=lambda c: c.run_id,
    )
    lost = [(c.run_id, c.attempt - 1) for c in claimed if c.reclaimed]
    if lost:
        conn.execute(
            update(attempts)
            .where(tuple_(attempts.c.run_id, attempts.c.attempt).in_(lost))
            .where(attempts.c.outcome.is_(None))
            .values(outcome="lost", finished_at=now, error_message=LOST_MESSAGE)
        )
    conn.execute(
        attempts.insert().values(
            [
                {
                    "run_id": c.run_id,
                    "attempt": c.attempt,
                    "worker_id": worker_id,
                    "started_at": now,
                }
                for c in claimed
            ]
        )
    )
    return claimed


# --- fenced writes ----------------------------------------------------------

Executor = Session | Connection


def _dialect(executor: Executor) -> str:
    if isinstance(executor, Session):
        return executor.get_bind().dialect.name
    return executor.dialect.name


def sql_now(executor: Executor) -> Any:
    """The current time as SQL: the database clock on PostgreSQL."""
    if _dialect(executor) == "postgresql":
        return func.now()
    return literal(_utcnow(), UTCDateTime())


def sql_later(executor: Executor, seconds: float) -> Any:
    """``now + seconds`` as SQL."""
    if _dialect(executor) == "postgresql":
        return func.now() + timedelta(seconds=seconds)
    return literal(_utcnow() + timedelta(seconds=seconds), UTCDateTime())


def _fence(run_id: int, attempt: int) -> ColumnElement[bool]:
    # The fencing clause: this attempt still owns this run.
    return (runs.c.id == run_id) & (runs.c.attempt == attempt) & (runs.c.status == RUNNING)


def _close_attempt(
    executor: Executor, run_id: int, attempt: int, outcome: str, **errors: str | None
) -> None:
    executor.execute(
        update(attempts)
        .where(attempts.c.run_id == run_id, attempts.c.attempt == attempt)
        .values(outcome=outcome, finished_at=sql_now(executor), **errors)
    )


def heartbeat(
    executor: Executor, leases: Iterable[tuple[int, int]], lease_seconds: float
) -> set[int]:
    """Extend the leases of ``(run_id, attempt)`` pairs; returns the run ids still owned.

    A run missing from the result was reclaimed by another worker or
    cancelled: its processing must stop.
    """
    leases = list(leases)
    if not leases:
        return set()
    result = executor.execute(
        update(runs)
        .where(tuple_(runs.c.id, runs.c.attempt).in_(leases), runs.c.status == RUNNING)
        .values(lease_expires_at=sql_later(executor, lease_seconds))
        .returning(runs.c.id)
    )
    return {int(row[0]) for row in result}


def still_owner(executor: Executor, run_id: int, attempt: int) -> bool:
    """True while attempt ``attempt`` owns run ``run_id`` (for processors' own checks)."""
    found = executor.execute(select(runs.c.id).where(_fence(run_id, attempt))).first()
    return found is not None


#: ``Session.info`` key: the provider call linked in the open transaction, so
#: a worker can link it again if the transaction's commit is cut off.
LINKED_CALL = "reelbench.linked_provider_call"


def link_provider_call(executor: Executor, run_id: int, attempt: int, call_id: int) -> bool:
    """Point the run at the provider call that made its video (fenced)."""
    if isinstance(executor, Session):
        executor.info[LINKED_CALL] = call_id
    result = executor.execute(
        _LINK_CALL, {"p_run_id": run_id, "p_attempt": attempt, "p_call_id": call_id}
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _fence_params() -> ColumnElement[bool]:
    return (
        (runs.c.id == bindparam("p_run_id"))
        & (runs.c.attempt == bindparam("p_attempt"))
        & (runs.c.status == RUNNING)
    )


_LINK_CALL = update(runs).where(_fence_params()).values(provider_call_id=bindparam("p_call_id"))


def _succeeded_values(now: Any) -> dict[str, Any]:
    return {
        "status": RunStatus.SUCCEEDED.value,
        "canon_uri": bindparam("p_canon_uri"),
        "canon_sha256": bindparam("p_canon_sha256"),
        "finished_at": now,
        "lease_expires_at": None,
        "error_class": None,
        "error_message": None,
        "error_traceback": None,
        "task": None,
        "remeasure": None,
    }


# Built once: completion runs once per run, and building SQLAlchemy
# statements costs more CPU than executing a cached one.
_PG_COMPLETE = (
    # One round trip: the attempt row is closed only if the fence held.
    update(attempts)
    .where(
        attempts.c.run_id
        == select(
            update(runs)
            .where(_fence_params())
            .values(_succeeded_values(func.now()))
            .returning(runs.c.id)
            .cte("done")
            .c.id
        ).scalar_subquery(),
        attempts.c.attempt == bindparam("p_attempt"),
    )
    .values(outcome="succeeded", finished_at=func.now())
    .returning(attempts.c.run_id)
)
_SQLITE_COMPLETE = update(runs).where(_fence_params()).values(_succeeded_values(_ts("p_now")))
_SQLITE_CLOSE_SUCCEEDED = (
    update(attempts)
    .where(attempts.c.run_id == bindparam("p_run_id"), attempts.c.attempt == bindparam("p_attempt"))
    .values(outcome="succeeded", finished_at=_ts("p_now"))
)


def complete(
    executor: Executor, run_id: int, attempt: int, canon_uri: str, canon_sha256: str
) -> bool:
    """Mark the run succeeded (fenced). False: the lease was lost, write nothing else."""
    params: dict[str, Any] = {
        "p_run_id": run_id,
        "p_attempt": attempt,
        "p_canon_uri": canon_uri,
        "p_canon_sha256": canon_sha256,
    }
    if _dialect(executor) == "postgresql":
        if executor.execute(_PG_COMPLETE, params).first() is not None:
            return True
        # No attempt row to close (a run claimed by an older version) while
        # the fence held: the run is done all the same.
        return still_succeeded(executor, run_id, attempt)
    params["p_now"] = _utcnow()
    if not executor.execute(_SQLITE_COMPLETE, params).rowcount:  # type: ignore[attr-defined]
        return False
    executor.execute(_SQLITE_CLOSE_SUCCEEDED, params)
    return True


def still_succeeded(executor: Executor, run_id: int, attempt: int) -> bool:
    """True when attempt ``attempt`` is the one that completed run ``run_id``."""
    return run_status(executor, run_id) == (RunStatus.SUCCEEDED.value, attempt)


@dataclass(frozen=True)
class FailOutcome:
    """Where a failed attempt left its run."""

    status: str  # "queued" (will be retried) or "failed" (given up)


def fail(
    executor: Executor,
    run_id: int,
    attempt: int,
    *,
    error_class: str,
    message: str,
    traceback: str | None,
    retry_in_seconds: float,
) -> FailOutcome | None:
    """Record a failed attempt (fenced): requeue with backoff, or fail for good.

    The run fails for good when ``error_class`` is ``terminal`` or this was
    its last allowed attempt (``attempt >= max_attempts``); otherwise it is
    queued again, due in ``retry_in_seconds``. None: the lease was lost.
    """
    terminal = error_class == "terminal"
    give_up = literal(terminal) | (runs.c.attempt >= runs.c.max_attempts)
    # A remeasure that gives up leaves the run as it was: succeeded, with its
    # earlier metrics, and the error saying why they were not recomputed.
    restore = give_up & (runs.c.task == REMEASURE)
    result = executor.execute(
        update(runs)
        .where(_fence(run_id, attempt))
        .values(
            status=case(
                (restore, RunStatus.SUCCEEDED.value),
                (give_up, RunStatus.FAILED.value),
                else_=QUEUED,
            ),
            not_before=case((give_up, None), else_=sql_later(executor, retry_in_seconds)),
            finished_at=case((give_up, sql_now(executor)), else_=None),
            worker_id=case((give_up, runs.c.worker_id), else_=None),
            lease_expires_at=None,
            error_class=error_class,
            error_message=case(
                (restore, literal("remeasure failed, earlier metrics kept: ") + literal(message)),
                else_=literal(message),
            ),
            error_traceback=traceback,
            task=case((restore, null()), else_=runs.c.task),
            remeasure=case((restore, null()), else_=runs.c.remeasure),
        )
        .returning(runs.c.status)
    ).first()
    if result is None:
        return None
    _close_attempt(
        executor,
        run_id,
        attempt,
        error_class,
        error_class=error_class,
        error_message=message,
        error_traceback=traceback,
    )
    return FailOutcome(status=str(result[0]))


def _give_back(
    executor: Executor, run_id: int, attempt: int, outcome: str, reason: str, **values: Any
) -> bool:
    """Requeue a claimed run unprocessed (fenced), returning the attempt the claim counted."""
    result = executor.execute(
        update(runs)
        .where(_fence(run_id, attempt))
        .values(
            status=QUEUED,
            worker_id=None,
            lease_expires_at=None,
            max_attempts=runs.c.max_attempts + 1,
            **values,
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    _close_attempt(executor, run_id, attempt, outcome, error_message=reason)
    return True


def release(executor: Executor, run_id: int, attempt: int, reason: str) -> bool:
    """Hand a run back to the queue unprocessed (fenced), e.g. on shutdown.

    The claim counted an attempt; ``max_attempts`` grows by one so a hand-back
    does not eat into the run's retry budget.
    """
    return _give_back(executor, run_id, attempt, "released", reason, not_before=None)


def defer(
    executor: Executor, run_id: int, attempt: int, reason: str, retry_in_seconds: float
) -> bool:
    """Put a run back in the queue for later (fenced), without using an attempt.

    What a run does when the fleet's limits or its experiment's budget say
    "not now" before any paid work: queued, due in ``retry_in_seconds``, with
    ``reason`` shown by ``status`` and reports. Like a hand-back,
    ``max_attempts`` grows by one so the claim's count is given back.
    """
    return _give_back(
        executor,
        run_id,
        attempt,
        "deferred",
        reason,
        not_before=sql_later(executor, retry_in_seconds),
        wait_reason=reason[:200],
    )


def run_status(executor: Executor, run_id: int) -> tuple[str, int] | None:
    """The run's current ``(status, attempt)``, e.g. to tell a cancel from a lost lease."""
    row = executor.execute(select(runs.c.status, runs.c.attempt).where(runs.c.id == run_id)).first()
    return (str(row[0]), int(row[1])) if row else None


def close_dropped_attempt(
    executor: Executor, run_id: int, attempt: int, outcome: str, why: str
) -> None:
    """Record why an attempt that lost its fence ended (``cancelled`` or ``lost``).

    Only touches the attempt row if it is still open, never the run.
    """
    executor.execute(
        update(attempts)
        .where(
            attempts.c.run_id == run_id,
            attempts.c.attempt == attempt,
            attempts.c.outcome.is_(None),
        )
        .values(outcome=outcome, finished_at=sql_now(executor), error_message=why)
    )


def pending_runs(executor: Executor, experiment_id: int | None = None) -> dict[str, int]:
    """Runs not finished yet, by state (``queued``, ``running``), in one experiment or all.

    Queued runs include those waiting out a retry backoff or a fleet limit:
    a draining worker waits for them; running ones belong to a worker (maybe
    another) until their lease ends. Queued runs held back by their
    experiment's budget are counted apart (``held``): no worker can finish
    them until someone raises the budget. ``expired``: the running ones whose
    lease has ended (their worker is presumed dead; any worker may claim them).
    """
    held_case = case(
        (
            (runs.c.status == QUEUED) & runs.c.wait_reason.like(f"{BUDGET_WAIT}%"),
            literal("held"),
        ),
        else_=runs.c.status,
    )
    query = (
        select(held_case, func.count())
        .where(runs.c.status.in_([QUEUED, RUNNING]))
        .group_by(held_case)
    )
    if experiment_id is not None:
        query = query.where(runs.c.experiment_id == experiment_id)
    counts = {QUEUED: 0, RUNNING: 0, "held": 0, "expired": 0}
    for status, n in executor.execute(query).all():
        counts[str(status)] = int(n)
    if counts[RUNNING]:
        expired = select(func.count()).where(
            runs.c.status == RUNNING, runs.c.lease_expires_at < sql_now(executor)
        )
        if experiment_id is not None:
            expired = expired.where(runs.c.experiment_id == experiment_id)
        counts["expired"] = int(executor.execute(expired).scalar_one())
    return counts


# --- maintenance --------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def reclaim_dead_local_runs(sessions: sessionmaker[Session], experiment_id: int | None) -> int:
    """Expire the leases of runs held by dead worker processes of this machine.

    A ``reelbench run`` killed with SIGKILL (or a crash) leaves its runs
    ``running`` until their lease expires. Worker ids are ``host:pid:random``:
    when the host is this one and no process has that pid, nobody can still be
    working the run, so its lease is expired now and the claim takes it back
    at once instead of after the lease. The claim's fencing token keeps this
    safe even if the guess were wrong. ``experiment_id`` None: every
    experiment. Returns the number of runs freed.
    """
    host = socket.gethostname()
    freed = 0
    with sessions() as session, session.begin():
        query = select(runs.c.id, runs.c.attempt, runs.c.worker_id).where(
            runs.c.status == RUNNING, runs.c.worker_id.like(f"{host}:%")
        )
        if experiment_id is not None:
            query = query.where(runs.c.experiment_id == experiment_id)
        rows = session.execute(query).all()
        for run_id, attempt, worker_id in rows:
            parts = (worker_id or "").split(":")
            if len(parts) < 3 or not parts[-2].isdigit() or ":".join(parts[:-2]) != host:
                continue
            pid = int(parts[-2])
            if pid == os.getpid() or _pid_alive(pid):
                continue
            result = session.execute(
                update(runs)
                .where(_fence(run_id, attempt))
                .values(lease_expires_at=sql_now(session))
            )
            freed += int(getattr(result, "rowcount", 0) or 0)
    return freed
