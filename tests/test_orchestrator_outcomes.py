"""WorkerOrchestrator in-process: retries, terminal errors, fencing, cancel, shutdown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from queue_setup import attempt_rows, queue_runs, run_row
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from reelbench.context import RunContext
from reelbench.db import claim as q
from reelbench.db.engine import Database, open_database
from reelbench.db.experiments import cancel_experiment, experiment_status, retry_experiment
from reelbench.db.models import Artifact, Run
from reelbench.errors import LeaseLost, RetryableError, TerminalError
from reelbench.orchestrator import RunOutcome, WorkerOrchestrator


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.dispose()


def worker(db: Database, processor: object, tmp_path: Path, **kwargs: object) -> WorkerOrchestrator:
    options: dict[str, object] = {"artifact_root": tmp_path / "artifacts", "poll_seconds": 0.05}
    options.update(kwargs)
    return WorkerOrchestrator(db.sessions, processor, **options)  # type: ignore[arg-type]


class Scripted:
    """Raises the scripted exception for each attempt, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.seen: list[RunContext] = []

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        self.seen.append(ctx)
        if ctx.attempt <= len(self.errors):
            raise self.errors[ctx.attempt - 1]
        return f"file://{ctx.run_output_dir}/canon.mp4", "a" * 64


def test_retryable_failures_then_success(db: Database, tmp_path: Path) -> None:
    (run_id,) = queue_runs(db)
    processor = Scripted(RetryableError("HTTP 503"), ConnectionError("reset by peer"))
    stats = worker(db, processor, tmp_path).run_until_idle()
    assert (stats.succeeded, stats.retried, stats.failed) == (1, 2, 0)
    row = run_row(db, run_id)
    assert (row.status, row.attempt, row.error_class) == ("succeeded", 3, None)
    history = attempt_rows(db, run_id)
    assert [(a["outcome"], a["error_class"]) for a in history] == [
        ("retryable", "retryable"),
        ("retryable", "retryable"),
        ("succeeded", None),
    ]
    assert history[0]["error_message"] == "RetryableError: HTTP 503"
    assert history[1]["error_message"] == "ConnectionError: reset by peer"
    assert "ConnectionError" in history[1]["error_traceback"]
    assert all(a["worker_id"] and a["finished"] for a in history)


def test_terminal_failure_is_not_retried(db: Database, tmp_path: Path) -> None:
    (run_id,) = queue_runs(db, max_attempts=5)
    processor = Scripted(TerminalError("content refused"))
    stats = worker(db, processor, tmp_path, drain=True).run()
    assert (stats.failed, stats.retried, len(processor.seen)) == (1, 0, 1)
    row = run_row(db, run_id)
    assert (row.status, row.error_class, row.attempt) == ("failed", "terminal", 1)
    assert row.error_message == "TerminalError: content refused"
    assert row.error_traceback is not None and "TerminalError" in row.error_traceback
    assert row.worker_id is not None  # who failed it is kept


def test_max_attempts_exhausted_fails_with_the_last_error(db: Database, tmp_path: Path) -> None:
    (run_id,) = queue_runs(db, max_attempts=3)
    processor = Scripted(*(RuntimeError(f"boom {n}") for n in (1, 2, 3, 4)))
    stats = worker(db, processor, tmp_path).run_until_idle()
    assert (stats.retried, stats.failed) == (2, 1)
    row = run_row(db, run_id)
    assert (row.status, row.attempt, row.error_class) == ("failed", 3, "retryable")
    assert row.error_message == "RuntimeError: boom 3"
    assert [a["outcome"] for a in attempt_rows(db, run_id)] == ["retryable"] * 3


def run_until_first_retry(db: Database, processor: object, tmp_path: Path) -> None:
    """Work until the first attempt is queued for a retry, then stop (a drain would wait)."""
    holder: list[WorkerOrchestrator] = []

    def on_outcome(outcome: RunOutcome) -> None:
        if outcome.outcome == "queued":
            holder[0].stop(0)

    holder.append(worker(db, processor, tmp_path, drain=True, on_outcome=on_outcome))
    holder[0].run()


def test_retry_after_is_honoured(db: Database, tmp_path: Path) -> None:
    (run_id,) = queue_runs(db)
    processor = Scripted(RetryableError("throttled", retry_after=120))
    run_until_first_retry(db, processor, tmp_path)
    row = run_row(db, run_id)
    assert row.status == "queued" and row.not_before is not None
    assert row.not_before > datetime.now(UTC) + timedelta(seconds=100)


def test_backoff_follows_the_retry_policy(db: Database, tmp_path: Path) -> None:
    (run_id,) = queue_runs(db, backoff_seconds=10)
    run_until_first_retry(db, Scripted(RetryableError("503")), tmp_path)
    due = run_row(db, run_id).not_before
    (failed,) = attempt_rows(db, run_id)
    assert due is not None and failed["finished_at"] is not None
    # attempt 1: 10 s x 2**0, with jitter in [0.75, 1.25]
    delay = (due - failed["finished_at"]).total_seconds()
    assert 7.4 <= delay <= 12.6


class Blocking:
    """Signals when it starts, then waits for the test (or for ctx.stop)."""

    def __init__(self, *, add_artifact: bool = False, honour_stop: bool = True) -> None:
        self.started = threading.Event()
        self.proceed = threading.Event()
        self.add_artifact = add_artifact
        self.honour_stop = honour_stop
        self.ctx: RunContext | None = None

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        self.ctx = ctx
        self.started.set()
        while not self.proceed.wait(0.02):
            if self.honour_stop and ctx.stop.is_set():
                raise LeaseLost("stop requested")
        if self.add_artifact:
            session.add(
                Artifact(
                    run_id=ctx.run_id,
                    kind="canon",
                    uri="file://stale",
                    sha256="0" * 64,
                    bytes=1,
                    created_at=datetime.now(UTC),
                )
            )
        return "file://stale/canon.mp4", "0" * 64


def test_worker_whose_run_was_reclaimed_drops_its_result(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (run_id,) = queue_runs(db)
    processor = Blocking(add_artifact=True, honour_stop=False)
    old = worker(db, processor, tmp_path, lease_seconds=30, worker_id="old")
    thread = threading.Thread(target=old.run)
    thread.start()
    try:
        assert processor.started.wait(30)
        # The old worker is "paused": its lease runs out and another worker
        # takes the run, in one transaction so no heartbeat slips in between.
        with db.engine.begin() as conn:
            conn.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            (new,) = q.claim_runs(conn, "new", limit=1, lease_seconds=60)
        assert new.attempt == 2
        with caplog.at_level(logging.WARNING, logger="reelbench.worker"):
            processor.proceed.set()
            old.stop(grace_seconds=30)
            thread.join(30)
    finally:
        processor.proceed.set()
        old.stop(grace_seconds=0)
        thread.join(30)
        assert old.wait_closed(30)
    assert old.stats.dropped == 1 and old.stats.succeeded == 0
    assert any("dropped" in r.message and "lease" in r.message for r in caplog.records)
    row = run_row(db, run_id)
    assert (row.status, row.worker_id, row.attempt) == ("running", "new", 2)
    with db.sessions() as session:
        # the stale worker's artifact row was rolled back with its status update
        assert session.execute(select(func.count()).select_from(Artifact)).scalar() == 0
    assert [a["outcome"] for a in attempt_rows(db, run_id)] == ["lost", None]


def test_cancel_stops_a_running_run_at_the_next_heartbeat(db: Database, tmp_path: Path) -> None:
    ids = queue_runs(db, items=3)
    processor = Blocking()
    w = worker(db, processor, tmp_path, lease_seconds=0.6)
    thread = threading.Thread(target=w.run)
    thread.start()
    try:
        assert processor.started.wait(30)
        assert cancel_experiment(db.sessions, "exp") == 3
        # the heartbeat notices within a third of the lease and sets ctx.stop
        assert processor.ctx is not None and processor.ctx.stop.wait(30)
    finally:
        w.stop(grace_seconds=10)
        thread.join(30)
    assert not thread.is_alive() and w.wait_closed(30)
    assert {run_row(db, i).status for i in ids} == {"cancelled"}
    assert [a["outcome"] for a in attempt_rows(db, ids[0])] == ["cancelled"]
    assert w.stats.dropped == 1


def test_stop_hands_unfinished_runs_back_after_the_grace_period(
    db: Database, tmp_path: Path
) -> None:
    (run_id,) = queue_runs(db, max_attempts=1)
    processor = Blocking(honour_stop=False)
    w = worker(db, processor, tmp_path, concurrency=2)
    thread = threading.Thread(target=w.run)
    thread.start()
    try:
        assert processor.started.wait(30)
        w.stop(grace_seconds=0.2)
        thread.join(30)
        assert not thread.is_alive()
    finally:
        processor.proceed.set()
        assert w.wait_closed(30)
    row = run_row(db, run_id)
    assert (row.status, row.lease_expires_at, row.worker_id) == ("queued", None, None)
    assert [a["outcome"] for a in attempt_rows(db, run_id)] == ["released"]
    assert w.stats.released == 1


def test_retry_requeues_failed_runs_and_status_counts_them(db: Database, tmp_path: Path) -> None:
    ids = queue_runs(db, items=3, max_attempts=1)
    outcomes: list[RunOutcome] = []
    w = worker(db, Scripted(TerminalError("bad")), tmp_path, drain=True, on_outcome=outcomes.append)
    w.run()
    assert sorted(o.outcome for o in outcomes) == ["failed"] * 3
    (status,) = experiment_status(db.sessions, "exp")
    assert status.counts["failed"] == 3 and status.total == 3 and status.remaining == 0
    assert retry_experiment(db.sessions, "exp") == 3
    # attempt 2 succeeds: the scripted error was for attempt 1 only
    stats = worker(db, Scripted(TerminalError("bad")), tmp_path, drain=True).run()
    assert stats.succeeded == 3
    assert {run_row(db, i).status for i in ids} == {"succeeded"}
    (status,) = experiment_status(db.sessions, "exp")
    assert status.counts["succeeded"] == 3 and status.rate_per_second is not None


def test_unknown_experiment_filter_is_reported(db: Database, tmp_path: Path) -> None:
    queue_runs(db)
    with pytest.raises(LookupError, match=r"no experiment named 'nope'.*known experiments: exp"):
        worker(db, Scripted(), tmp_path, experiment="nope", drain=True).run()


def test_experiment_filter_claims_only_that_experiment(db: Database, tmp_path: Path) -> None:
    first = queue_runs(db, items=2, name="first")
    second = [i for i in queue_runs(db, items=3, name="second") if i not in first]
    stats = worker(db, Scripted(), tmp_path, experiment="second", drain=True).run()
    assert stats.succeeded == 3
    assert {run_row(db, i).status for i in first} == {"queued"}
    assert {run_row(db, i).status for i in second} == {"succeeded"}
