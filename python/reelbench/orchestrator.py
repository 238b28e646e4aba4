"""WorkerOrchestrator: claim runs, keep their leases alive, record how they end.

One orchestrator is one worker: it claims runs in batches (``db/claim.py``),
keeps up to ``concurrency`` of them in flight on threads, renews their leases
from a heartbeat thread, and turns each processor outcome into a fenced
status update:

- success: the result, the processor's artifact/metric rows and the status
  are committed in one transaction, under the fence;
- :class:`RetryableError` (and any unexpected exception): queued again with
  exponential backoff and jitter (a provider's Retry-After is honoured) until
  ``max_attempts``, then failed with the last error;
- :class:`TerminalError`: failed at once;
- :class:`LeaseLost` / a failed fence: the work is dropped with a log line;
  another worker owns the run (or the user cancelled it);
- :class:`Deferred` (fleet limits or the budget said "not now", before any
  paid work): queued again for later with its reason, no attempt used.

Fleet-wide coordination state (provider slots, spend) lives in the queue
layer (``db/limits.py``, ``db/budget.py``, ``db/admission.py``); the
orchestrator only renews the slots of its runs with their leases.

Every failure keeps its class, message, traceback, attempt and worker, on
the run and in its attempt history. ``stop()`` (SIGTERM/SIGINT in the CLI)
stops claiming, lets in-flight runs finish within a grace period and hands
the rest back to the queue. Database errors (a restarted PostgreSQL, a busy
SQLite file) are retried with backoff: the worker keeps going.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import traceback as tb
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import ClassVar, TypeVar

from sqlalchemy import delete, event, inspect, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, make_transient, sessionmaker

from reelbench.context import ExperimentSettings, Processor, RunContext, build_contexts
from reelbench.db import claim as q
from reelbench.db import limits
from reelbench.db.cache_hits import HitScope
from reelbench.db.engine import read_transaction

# Experiment-level queue operations, re-exported for callers driving workers in-process.
from reelbench.db.experiments import (
    ExperimentStatus,
    cancel_experiment,
    experiment_status,
    find_experiment,
    retry_experiment,
)
from reelbench.db.models import Experiment, RunStatus
from reelbench.db.result_rows import STAGED, replay_staged
from reelbench.db.retry import DB_UNAVAILABLE, Stopping, retry_db, short_error
from reelbench.errors import Deferred, LeaseLost, RetryableError, TerminalError
from reelbench.spec import RetryPolicy
from reelbench.storage import DEFAULT_ARTIFACT_ROOT, artifact_root_of

__all__ = [
    "ExperimentStatus",
    "RunOutcome",
    "WorkerOrchestrator",
    "WorkerStats",
    "cancel_experiment",
    "default_worker_id",
    "experiment_status",
    "retry_experiment",
]

log = logging.getLogger("reelbench.worker")

T = TypeVar("T")


def default_worker_id() -> str:
    """``host:pid:random``: unique per process, readable in ``status`` and logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class RunOutcome:
    """How one attempt ended, as reported to ``on_outcome``."""

    run_id: int
    attempt: int
    #: succeeded | queued (will retry) | failed | dropped (lease lost / cancelled)
    # | released (handed back on shutdown) | deferred (waits for a slot or budget)
    outcome: str
    error: str | None = None


@dataclass
class WorkerStats:
    """Counters of one worker's life."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0
    released: int = 0
    deferred: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class WorkerOrchestrator:
    """Claims runs and drives a :class:`Processor` over them (see module docstring)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        processor: Processor,
        *,
        worker_id: str | None = None,
        concurrency: int = 1,
        lease_seconds: float = 60.0,
        experiment: str | None = None,
        drain: bool = False,
        use_cache: bool = True,
        artifact_root: Path | str = DEFAULT_ARTIFACT_ROOT,
        grace_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        db_retry_seconds: float = 300.0,
        on_outcome: Callable[[RunOutcome], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self.sessions = sessions
        _track_inserts(sessions)
        self.processor = processor
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.lease_seconds = float(lease_seconds)
        self.experiment = experiment
        self.drain = drain
        self.use_cache = use_cache
        self.artifact_root = artifact_root_of(artifact_root)
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self.db_retry_seconds = db_retry_seconds
        self.on_outcome = on_outcome
        self.stats = WorkerStats()

        self._experiment_id: int | None = None
        self._in_flight: dict[int, RunContext] = {}
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._done = threading.Event()
        self._queue: queue.SimpleQueue[RunContext | None] = queue.SimpleQueue()
        self._policies: dict[int, RetryPolicy] = {}
        self._settings: dict[int, ExperimentSettings] = {}
        self._rng = random.Random()
        self._until_idle = False
        self._threads: list[threading.Thread] = []

    # --- public control ---------------------------------------------------

    def run(self) -> WorkerStats:
        """Work until ``stop()`` (or, with ``drain``, until nothing is claimable)."""
        if isinstance(self.artifact_root, Path):
            self.artifact_root.mkdir(parents=True, exist_ok=True)
        if self.experiment is not None:

            def lookup() -> int:
                with self.sessions() as session:
                    return find_experiment(session, self.experiment or "").id

            self._experiment_id = self._db("looking up the experiment", lookup)
        log.info(
            "worker %s started (concurrency %d, lease %.0fs%s)",
            self.worker_id,
            self.concurrency,
            self.lease_seconds,
            f", experiment {self.experiment}" if self.experiment else "",
        )
        threads = [
            threading.Thread(target=self._thread_main, name=f"reelbench-run-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        self._threads = threads
        # Daemon threads: a processor stuck in a provider call must not keep
        # the process alive after its run was handed back on shutdown.
        heart = threading.Thread(
            target=self._heartbeat_main, name="reelbench-heartbeat", daemon=True
        )
        for thread in threads:
            thread.start()
        heart.start()
        try:
            self._claim_loop()
            self._finish_in_flight()
        finally:
            self._done.set()
            for _ in threads:
                self._queue.put(None)
            heart.join(timeout=5)
        if self.drain and not self._stopping.is_set():
            self._log_drained()
        log.info(
            "worker %s stopped: %d succeeded, %d retried, %d failed, %d dropped, %d released",
            self.worker_id,
            self.stats.succeeded,
            self.stats.retried,
            self.stats.failed,
            self.stats.dropped,
            self.stats.released,
        )
        return self.stats

    def _log_drained(self) -> None:
        """The closing line of --drain: what is left in scope, and why this worker left it."""
        try:
            pending = self._pending()
        except sa_exc.SQLAlchemyError:
            return
        scope = f"experiment {self.experiment}" if self.experiment else "the queue"
        left = pending["queued"] + pending["running"]
        if pending["held"]:
            log.warning(
                "worker %s: %d run(s) of %s wait for a higher budget "
                "(`reelbench budget EXPERIMENT --max-usd N`)",
                self.worker_id,
                pending["held"],
                scope,
            )
        if left == 0:
            log.info("worker %s drained %s: no run left to do", self.worker_id, scope)
        else:
            log.warning(
                "worker %s drained %s: %d run(s) remain, held by other workers "
                "(%d running; a dead worker's runs come back when their lease ends)",
                self.worker_id,
                scope,
                left,
                pending["running"],
            )

    def run_until_idle(self) -> WorkerStats:
        """Work until every run in scope is finished, waiting out retry backoffs.

        What ``reelbench run`` uses in-process: unlike ``drain`` it does not
        stop while runs are queued for a later retry or running elsewhere.
        """
        self._until_idle = True
        return self.run()

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop claiming; in-flight runs get ``grace_seconds`` to finish, then go back.

        Thread-safe; calling it again shortens the grace to zero.
        """
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        deadline = time.monotonic() + (0.0 if self._stopping.is_set() else grace)
        self._stop_deadline = min(self._stop_deadline or deadline, deadline)
        self._stopping.set()
        self._wakeup.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop gracefully; a second one stops at once."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            log.warning(
                "worker %s: %s received, %s",
                self.worker_id,
                signal.Signals(signum).name,
                "handing runs back now"
                if self._stopping.is_set()
                else f"finishing in-flight runs (up to {self.grace_seconds:.0f}s)",
            )
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait for processor threads still busy after ``run()`` returned (handed-back runs).

        Their results are refused by the fence; waiting only matters before
        disposing of the engine in-process. True when all threads ended.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return not any(t.is_alive() for t in self._threads)

    def in_flight(self) -> list[int]:
        """Ids of the runs this worker is processing now."""
        with self._lock:
            return sorted(self._in_flight)

    # --- the claim loop ---------------------------------------------------

    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            # Clear before reading the state: a completion after this point
            # sets the event again, so no wake-up is lost.
            self._wakeup.clear()
            with self._lock:
                free = self.concurrency - len(self._in_flight)
                busy = len(self._in_flight)
            if free <= 0:
                self._wait(self.poll_seconds)
                continue
            if busy and free < max(1, self.concurrency // 2):
                # Claim in batches: wait a moment for more slots to free up
                # rather than paying one claim transaction per run.
                self._wakeup.clear()
                self._wait(0.02)
                with self._lock:
                    free = self.concurrency - len(self._in_flight)
            try:
                if self._cache_hits():
                    continue
                contexts = self._claim(free)
            except _Stopping:
                return
            if contexts:
                continue
            if busy == 0 and (self.drain or self._until_idle) and self._idle():
                return
            self._wait(self.poll_seconds)

    def _wait(self, seconds: float) -> None:
        self._wakeup.wait(seconds)

    def _idle(self) -> bool:
        with self._lock:
            if self._in_flight:
                return False
        pending = self._pending()
        if self._until_idle:
            # run_until_idle: done only when nothing in scope is queued or
            # running (another worker's run may come back if that worker died).
            return pending["queued"] + pending["running"] == 0
        # drain: a queued run waiting out its retry backoff is this worker's
        # to finish, and so is a running one whose worker is gone: its lease
        # ended, or it was a process of this machine that no longer exists
        # (freed now rather than after its lease). Runs that other live
        # workers hold are theirs. Runs held by the budget ("held") are
        # nobody's until the budget is raised.
        if pending["running"] > pending["expired"] and self._db(
            "reclaiming runs of dead local workers",
            lambda: q.reclaim_dead_local_runs(self.sessions, self._experiment_id),
        ):
            return False
        return pending["queued"] == 0 and pending["expired"] == 0

    def _pending(self) -> dict[str, int]:
        def count() -> dict[str, int]:
            with self.sessions() as session:
                read_transaction(session)
                return q.pending_runs(session, self._experiment_id)

        return self._db("checking for pending runs", count)

    def _cache_hits(self) -> int:
        """Runs whose outputs all exist, completed in batches by the processor when it can."""
        resolve = getattr(self.processor, "resolve_cache_hits", None)
        if resolve is None:
            return 0
        scope = HitScope(self.worker_id, self._experiment_id, self.artifact_root,
                         self.use_cache, self.lease_seconds, self._settings)  # fmt: skip
        done = self._db(
            "resolving cache hits", lambda: resolve(self.sessions, scope), give_up=False
        )
        with self._lock:
            self.stats.claimed += len(done)
        for ctx in done:
            self._report(ctx, "succeeded")
        return len(done)

    def _claim(self, limit: int) -> list[RunContext]:
        def claim_and_build() -> list[RunContext]:
            with self.sessions() as session, session.begin():
                claimed = q.claim_runs(
                    session.connection(),
                    self.worker_id,
                    limit=limit,
                    lease_seconds=self.lease_seconds,
                    experiment_id=self._experiment_id,
                )
                return build_contexts(
                    session,
                    [(c.run_id, c.attempt) for c in claimed],
                    worker_id=self.worker_id,
                    artifact_root=self.artifact_root,
                    use_cache=self.use_cache,
                    settings_cache=self._settings,
                    lease_seconds=self.lease_seconds,
                )

        contexts = self._db("claiming runs", claim_and_build, give_up=False)
        if contexts:
            with self._lock:
                for ctx in contexts:
                    self._in_flight[ctx.run_id] = ctx
                self.stats.claimed += len(contexts)
            for ctx in contexts:
                self._queue.put(ctx)
        return contexts

    # --- shutdown ---------------------------------------------------------

    def _finish_in_flight(self) -> None:
        while True:
            self._wakeup.clear()
            with self._lock:
                left = list(self._in_flight.values())
            if not left:
                return
            deadline = self._stop_deadline
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._wait(0.05 if deadline is not None else self.poll_seconds)
        log.warning(
            "worker %s: grace period over, handing %d run(s) back to the queue",
            self.worker_id,
            len(left),
        )
        for ctx in left:
            ctx.stop.set()

            def hand_back(ctx: RunContext = ctx) -> bool:
                with self.sessions() as session, session.begin():
                    return q.release(session, ctx.run_id, ctx.attempt, "worker shut down")

            try:
                released = self._db("handing a run back", hand_back, max_seconds=10.0)
            except sa_exc.SQLAlchemyError as exc:
                log.error(
                    "run %d: could not hand it back (%s); its lease will expire", ctx.run_id, exc
                )
                continue
            with self._lock:
                self._in_flight.pop(ctx.run_id, None)
            if released:
                self._report(ctx, "released")

    # --- running one attempt ------------------------------------------------

    def _thread_main(self) -> None:
        while True:
            ctx = self._queue.get()
            if ctx is None:
                return
            try:
                self._execute(ctx)
            except Exception:  # never let a bookkeeping bug kill the thread
                log.exception("run %d attempt %d: internal error", ctx.run_id, ctx.attempt)
            finally:
                with self._lock:
                    self._in_flight.pop(ctx.run_id, None)
                self._wakeup.set()

    def _execute(self, ctx: RunContext) -> None:
        session = self.sessions()
        try:
            try:
                canon_uri, canon_sha256 = self.processor.process(ctx, session)
            except Deferred as exc:
                session.rollback()
                self._deferred(ctx, exc)
                return
            except LeaseLost as exc:
                session.rollback()
                self._dropped(ctx, str(exc) or type(exc).__name__)
                return
            except Exception as exc:
                session.rollback()
                self._failed(ctx, exc)
                return
            try:
                owned = self._store_result(ctx, session, canon_uri, canon_sha256)
            except sa_exc.SQLAlchemyError as exc:
                # The result could not be stored (a processor row that violates
                # a constraint, or the database stayed away past the retry
                # window): the attempt counts as a retryable failure; the
                # provider cache makes the redo cheap.
                session.rollback()
                self._failed(ctx, exc)
                return
            if owned:
                self._report(ctx, "succeeded")
            else:
                self._dropped(ctx, "the result was not saved: the lease was lost before completion")
        finally:
            session.close()

    def _store_result(self, ctx: RunContext, session: Session, uri: str, sha256: str) -> bool:
        """Commit the result with the processor's rows, under the fence. False: fence lost."""
        # Rows the processor added in this transaction, flushed or not (its own
        # statements autoflush): what a cut-off commit must store again.
        pending = [*session.info.get(_INSERTED, ()), *session.new]
        staged = list(session.info.get(STAGED, ()))
        call_id = session.info.get(q.LINKED_CALL)
        try:
            owned = q.complete(session, ctx.run_id, ctx.attempt, uri, sha256)
            if owned:
                session.commit()
            else:
                session.rollback()
            return owned
        except DB_UNAVAILABLE as exc:
            session.rollback()
            log.warning(
                "run %d: database unavailable while storing the result (%s); retrying",
                ctx.run_id,
                short_error(exc),
            )

        # The connection died under the commit. Store the same rows again in a
        # fresh transaction once the database is back.
        def again() -> bool:
            with self.sessions() as retry:
                # Redo what the processor did in the lost transaction: replace
                # the run's rows and point it at its provider call.
                for model in {type(obj) for obj in pending}:
                    run_id_column = getattr(model, "run_id", None)
                    if run_id_column is not None:
                        retry.execute(delete(model).where(run_id_column == ctx.run_id))
                for obj in pending:
                    _forget_identity(obj)
                    retry.add(obj)
                replay_staged(retry, ctx.run_id, staged)
                if call_id is not None:
                    q.link_provider_call(retry, ctx.run_id, ctx.attempt, call_id)
                if q.complete(retry, ctx.run_id, ctx.attempt, uri, sha256):
                    retry.commit()
                    return True
                retry.rollback()
                # The lost commit may have gone through after all.
                return q.run_status(retry, ctx.run_id) == (
                    RunStatus.SUCCEEDED.value,
                    ctx.attempt,
                )

        return self._db("storing a result", again)

    def _policy(self, experiment_id: int) -> RetryPolicy:
        policy = self._policies.get(experiment_id)
        if policy is None:
            with self.sessions() as session:
                spec = session.execute(
                    select(Experiment.spec).where(Experiment.id == experiment_id)
                ).scalar_one()
            policy = RetryPolicy.model_validate((spec or {}).get("retry", {}))
            self._policies[experiment_id] = policy
        return policy

    def _failed(self, ctx: RunContext, exc: BaseException) -> None:
        error_class = "terminal" if isinstance(exc, TerminalError) else "retryable"
        message = f"{type(exc).__name__}: {exc}"
        trace = "".join(tb.format_exception(exc))
        policy = self._db("reading the retry policy", lambda: self._policy(ctx.experiment_id))
        delay = policy.backoff(ctx.attempt, self._rng.random())
        retry_after = getattr(exc, "retry_after", None) if isinstance(exc, RetryableError) else None
        if retry_after is not None:
            delay = max(delay, float(retry_after))

        def record() -> q.FailOutcome | None:
            with self.sessions() as session, session.begin():
                return q.fail(
                    session,
                    ctx.run_id,
                    ctx.attempt,
                    error_class=error_class,
                    message=message,
                    traceback=trace,
                    retry_in_seconds=delay,
                )

        outcome = self._db("recording a failure", record)
        if outcome is None:
            self._dropped(ctx, f"failure not recorded, the lease was lost ({message})")
        elif outcome.status == RunStatus.QUEUED.value:
            log.info(
                "run %d attempt %d failed (%s), retrying in %.1fs: %s",
                ctx.run_id,
                ctx.attempt,
                error_class,
                delay,
                message,
            )
            self._report(ctx, "queued", message)
        elif outcome.status == RunStatus.SUCCEEDED.value:
            # A remeasure that gave up: the run keeps its earlier metrics.
            log.warning(
                "run %d: remeasure gave up (%s), its earlier metrics are kept: %s",
                ctx.run_id,
                error_class,
                message,
            )
            self._report(ctx, "failed", message)
        else:
            log.warning(
                "run %d attempt %d failed for good (%s): %s",
                ctx.run_id,
                ctx.attempt,
                error_class,
                message,
            )
            self._report(ctx, "failed", message)

    def _deferred(self, ctx: RunContext, exc: Deferred) -> None:
        def record() -> bool:
            with self.sessions() as session, session.begin():
                return q.defer(session, ctx.run_id, ctx.attempt, exc.reason, exc.retry_in)

        if not self._db("deferring a run", record):
            self._dropped(ctx, f"deferral not recorded, the lease was lost ({exc.reason})")
            return
        log.debug("run %d waits %.1fs: %s", ctx.run_id, exc.retry_in, exc.reason)
        self._report(ctx, "deferred", exc.reason)

    def _dropped(self, ctx: RunContext, why: str) -> None:
        def close() -> str:
            with self.sessions() as session, session.begin():
                current = q.run_status(session, ctx.run_id)
                cancelled = current is not None and current[0] == RunStatus.CANCELLED.value
                outcome = "cancelled" if cancelled else "lost"
                q.close_dropped_attempt(session, ctx.run_id, ctx.attempt, outcome, why)
                return outcome

        try:
            outcome = self._db("recording a dropped attempt", close, max_seconds=30.0)
        except sa_exc.SQLAlchemyError:
            outcome = "lost"
        log.warning(
            "run %d attempt %d dropped (%s): %s; this worker no longer owns it",
            ctx.run_id,
            ctx.attempt,
            "cancelled" if outcome == "cancelled" else "lease lost",
            why,
        )
        self._report(ctx, "dropped", why)

    _COUNTERS: ClassVar[dict[str, str]] = {
        "succeeded": "succeeded",
        "queued": "retried",
        "failed": "failed",
        "dropped": "dropped",
        "released": "released",
        "deferred": "deferred",
    }

    def _report(self, ctx: RunContext, outcome: str, error: str | None = None) -> None:
        with self._lock:
            counter = self._COUNTERS[outcome]
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        if self.on_outcome is not None:
            try:
                self.on_outcome(RunOutcome(ctx.run_id, ctx.attempt, outcome, error))
            except Exception:
                log.exception("on_outcome callback failed")

    # --- heartbeat ----------------------------------------------------------

    def _heartbeat_main(self) -> None:
        interval = max(0.05, self.lease_seconds / 3)
        while not self._done.wait(interval):
            with self._lock:
                contexts = list(self._in_flight.values())
            if not contexts:
                continue
            leases = [(c.run_id, c.attempt) for c in contexts]
            try:
                with self.sessions() as session, session.begin():
                    owned = q.heartbeat(session, leases, self.lease_seconds)
                    # Provider slots held by these runs live as long as their leases.
                    limits.renew(session, leases, self.lease_seconds)
            except DB_UNAVAILABLE as exc:
                # Keep trying at the next beat: the fence still holds until
                # another worker actually claims the run.
                log.warning("heartbeat failed, database unavailable: %s", short_error(exc))
                continue
            for ctx in contexts:
                if ctx.run_id not in owned and not ctx.stop.is_set():
                    with self._lock:
                        still_ours = self._in_flight.get(ctx.run_id) is ctx
                    if still_ours:
                        log.warning(
                            "run %d attempt %d: lease lost or run cancelled; stopping its work",
                            ctx.run_id,
                            ctx.attempt,
                        )
                        ctx.stop.set()

    # --- database retries --------------------------------------------------

    def _db(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        give_up: bool = True,
        max_seconds: float | None = None,
    ) -> T:
        """Run ``fn``, retrying with backoff while the database is unreachable or busy.

        ``give_up=False``: keep trying until the database answers or the
        worker stops (then :class:`_Stopping`).
        """
        if not give_up:
            try:
                return retry_db(what, fn, max_seconds=None, stopping=self._stopping)
            except Stopping as exc:
                raise _Stopping from exc
        limit = self.db_retry_seconds if max_seconds is None else max_seconds
        return retry_db(what, fn, max_seconds=limit)


_INSERTED = "reelbench.inserted"


def _on_insert(session: Session, obj: object) -> None:
    session.info.setdefault(_INSERTED, []).append(obj)


def _on_end(session: Session) -> None:  # committed or rolled back: nothing to replay
    session.info.pop(_INSERTED, None)
    session.info.pop(STAGED, None)
    session.info.pop(q.LINKED_CALL, None)


def _track_inserts(sessions: sessionmaker[Session]) -> None:
    """Keep, in each session's ``info``, the rows its open transaction inserted."""
    for name, handler in (
        ("pending_to_persistent", _on_insert),
        ("after_commit", _on_end),
        ("after_rollback", _on_end),
    ):
        if not event.contains(sessions, name, handler):
            event.listen(sessions, name, handler)


def _forget_identity(obj: object) -> None:
    """Make a row object from a rolled-back transaction insertable again."""
    make_transient(obj)
    for column in inspect(type(obj)).primary_key:
        setattr(obj, column.key, None)


class _Stopping(Exception):
    """The worker is stopping and gave up waiting for the database."""
