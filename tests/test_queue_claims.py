"""Claiming and fencing on SQLite and PostgreSQL: the queue's SQL under contention."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from queue_setup import attempt_rows, queue_runs, run_row
from sqlalchemy import update

from reelbench.db import claim as q
from reelbench.db.engine import Database, open_database
from reelbench.db.models import Run


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.dispose()


def claim(db: Database, worker: str, limit: int = 1, lease: float = 60.0) -> list[q.ClaimedRun]:
    with db.engine.begin() as conn:
        return q.claim_runs(conn, worker, limit=limit, lease_seconds=lease)


def expire_lease(db: Database, run_id: int) -> None:
    with db.sessions() as session, session.begin():
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )


def test_claim_takes_a_batch_in_priority_then_id_order(db: Database) -> None:
    ids = queue_runs(db, items=5)
    with db.sessions() as session, session.begin():
        session.execute(update(Run).where(Run.id == ids[3]).values(priority=5))
    claimed = claim(db, "w1", limit=3)
    assert [c.run_id for c in sorted(claimed, key=lambda c: (c.run_id != ids[3], c.run_id))] == [
        ids[3],
        ids[0],
        ids[1],
    ]
    assert all(c.attempt == 1 and not c.reclaimed for c in claimed)
    row = run_row(db, ids[0])
    assert (row.status, row.worker_id, row.attempt) == ("running", "w1", 1)
    assert row.lease_expires_at is not None and row.lease_expires_at > datetime.now(UTC)
    assert [a["outcome"] for a in attempt_rows(db, ids[0])] == [None]


def test_concurrent_claimers_never_share_a_run(db: Database) -> None:
    ids = queue_runs(db, items=40, repeats=5)
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        mine: list[int] = []
        try:
            while batch := claim(db, name, limit=3):
                mine.extend(c.run_id for c in batch)
        except BaseException as exc:
            errors.append(exc)
        got[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    everything = [run_id for runs in got.values() for run_id in runs]
    assert sorted(everything) == ids  # each run claimed exactly once


def test_runs_with_future_not_before_are_not_claimable(db: Database) -> None:
    ids = queue_runs(db, items=2)
    with db.sessions() as session, session.begin():
        later = datetime.now(UTC) + timedelta(hours=1)
        session.execute(update(Run).where(Run.id == ids[0]).values(not_before=later))
    assert [c.run_id for c in claim(db, "w", limit=5)] == [ids[1]]


def test_expired_lease_is_taken_back_and_previous_attempt_marked_lost(db: Database) -> None:
    (run_id,) = queue_runs(db)
    claim(db, "dead-worker")
    assert claim(db, "w2") == []  # live lease: not claimable
    expire_lease(db, run_id)
    (again,) = claim(db, "w2")
    assert (again.run_id, again.attempt, again.reclaimed) == (run_id, 2, True)
    history = attempt_rows(db, run_id)
    assert [(a["worker_id"], a["outcome"]) for a in history] == [
        ("dead-worker", "lost"),
        ("w2", None),
    ]
    assert "lease expired" in history[0]["error_message"]


def test_reclaimed_run_cannot_be_touched_by_old_worker(db: Database) -> None:
    (run_id,) = queue_runs(db)
    (old,) = claim(db, "old")
    expire_lease(db, run_id)
    (new,) = claim(db, "new")
    with db.sessions() as session, session.begin():
        assert q.heartbeat(session, [(run_id, old.attempt)], 60) == set()
        assert not q.still_owner(session, run_id, old.attempt)
        assert not q.complete(session, run_id, old.attempt, "file://stale", "0" * 64)
        stale_failure = q.fail(
            session,
            run_id,
            old.attempt,
            error_class="terminal",
            message="stale",
            traceback=None,
            retry_in_seconds=0,
        )
        assert stale_failure is None
        assert not q.release(session, run_id, old.attempt, "stale")
    with db.sessions() as session, session.begin():
        assert q.heartbeat(session, [(run_id, new.attempt)], 60) == {run_id}
        assert q.complete(session, run_id, new.attempt, "file://fresh", "1" * 64)
    row = run_row(db, run_id)
    assert (row.status, row.worker_id, row.canon_uri, row.attempt) == (
        "succeeded",
        "new",
        "file://fresh",
        2,
    )
    assert [a["outcome"] for a in attempt_rows(db, run_id)] == ["lost", "succeeded"]


def test_failure_requeues_until_max_attempts_then_fails(db: Database) -> None:
    (run_id,) = queue_runs(db, max_attempts=2)
    for expected in ("queued", "failed"):
        (c,) = claim(db, "w")
        with db.sessions() as session, session.begin():
            outcome = q.fail(
                session,
                run_id,
                c.attempt,
                error_class="retryable",
                message=f"boom {c.attempt}",
                traceback="tb",
                retry_in_seconds=0,
            )
        assert outcome is not None and outcome.status == expected
    row = run_row(db, run_id)
    assert (row.status, row.error_message, row.attempt) == ("failed", "boom 2", 2)


def test_release_returns_the_run_without_spending_an_attempt(db: Database) -> None:
    (run_id,) = queue_runs(db, max_attempts=1)
    (c,) = claim(db, "w")
    with db.sessions() as session, session.begin():
        assert q.release(session, run_id, c.attempt, "shutting down")
    row = run_row(db, run_id)
    assert (row.status, row.worker_id, row.lease_expires_at, row.max_attempts) == (
        "queued",
        None,
        None,
        2,
    )
    (again,) = claim(db, "w2")
    assert again.attempt == 2 and not again.reclaimed
    assert [a["outcome"] for a in attempt_rows(db, run_id)] == ["released", None]


def test_heartbeat_extends_the_lease(db: Database) -> None:
    (run_id,) = queue_runs(db)
    (c,) = claim(db, "w", lease=1)
    before = run_row(db, run_id).lease_expires_at
    time.sleep(0.05)
    with db.sessions() as session, session.begin():
        assert q.heartbeat(session, [(run_id, c.attempt)], 120) == {run_id}
    after = run_row(db, run_id).lease_expires_at
    assert before is not None and after is not None and after > before + timedelta(seconds=60)
