"""Provider calls that are never paid twice: cache, single flight, resume.

Every provider request has an identity, ``request_hash`` = SHA-256 of the
canonical JSON of what the provider is asked (provider, model, params,
prompt, seed, item id, the input image's SHA-256; never secrets, never the
attempt). The ``provider_calls`` row with that hash is the request's single
source of truth:

* ``succeeded`` with its raw file present and matching its SHA-256: a cache
  hit; the stored ``raw_artifact_uri`` is reused, no provider call.
* ``pending``/``submitted`` owned by a live run attempt (``owner_run_id``,
  ``owner_attempt``, ``lease_expires_at`` renewed while it polls): other
  runs wait and read the row again (single flight). A lapsed lease, or an
  owner that is an earlier attempt of the same run, is taken over by a
  compare-and-set UPDATE, so exactly one taker wins.
* the job id is stored right after ``submit`` returns; whoever takes the row
  over polls that job instead of submitting again (resume after a crash).
* ``failed``: not a cache entry; the next taker submits afresh.
* ``submitting``: the submit intent, committed (with a client-generated
  idempotency key and the budget reservation, see ``db/admission.py``)
  before the provider is called. A call found ``submitting`` with no job id
  was cut off between the provider's answer and the record of its job id,
  or its submit got no answer (``RetryableError.maybe_delivered``): a job
  may exist and be billed. A provider that takes idempotency keys is
  sent the same submit with the same key (it starts no second job);
  otherwise ``on_uncertain_submit`` decides: ``fail`` (default: the run
  fails terminal, saying so) or ``resubmit``. A call whose price is zero
  (a local program: ``synthetic``, ``command``) is simply made again.

Before a submit, fleet-wide limits and the experiment's budget are checked
(``db/admission.py``): "not now" raises :class:`reelbench.errors.Deferred`
and the call row is left for the next taker, no attempt used.

A run whose variant opts out of the cache (``cache = false``) still records
its call, under a key salted with its run id: it never shares a call with
another run, but its own retries still resume its job.

Every state change is its own short transaction; nothing is held open while
the provider works. Each of them is retried through a database outage
(:func:`reelbench.db.retry.retry_db`): they are reads or conditional writes
that are safe to repeat, so a restarted database costs time, not an attempt.

Clocks: lease times are read from and written by the database's clock
(PostgreSQL ``now()``; on SQLite, the one host's clock), as run leases are,
so workers' clocks need not agree.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reelbench.db import admission as adm
from reelbench.db import limits
from reelbench.db.budget import release_call
from reelbench.db.claim import sql_later, sql_now
from reelbench.db.engine import read_transaction
from reelbench.db.models import ProviderCall
from reelbench.db.retry import retry_db
from reelbench.errors import Deferred, LeaseLost, RetryableError, RunError, TerminalError
from reelbench.identity import spec_hash
from reelbench.providers.base import GenerationRequest, Provider
from reelbench.providers.pricing import estimate_usd
from reelbench.storage import ArtifactStore

__all__ = [
    "CallPolicy",
    "CallTakenOver",
    "ProviderCallCache",
    "RawOutput",
    "forget_unusable_output",
    "request_hash",
    "request_record",
]


@dataclass(frozen=True)
class CallPolicy:
    """Timings of the call protocol (tests shrink them)."""

    #: First delay between polls of a provider job; grows by ``poll_factor`` up to ``poll_max``.
    poll_initial: float = 1.0
    poll_factor: float = 1.5
    poll_max: float = 15.0
    #: How long an owner's claim on an in-flight call lasts without renewal.
    lease_seconds: float = 120.0
    #: Delay between reads of a call another run is making (grows to ``wait_max``).
    wait_initial: float = 0.2
    wait_max: float = 2.0


@dataclass(frozen=True)
class RawOutput:
    """The provider's raw video for a run."""

    uri: str
    sha256: str
    bytes: int
    call_id: int
    #: True when an earlier call's stored result was reused (no provider work now).
    cached: bool


def request_record(request: GenerationRequest, image_sha256: str | None) -> dict[str, Any]:
    """What identifies a request: stored in ``provider_calls.request`` and hashed."""
    return {
        "provider": request.provider,
        "model": request.model,
        "params": dict(request.params),
        "prompt": request.prompt,
        "seed": request.seed,
        "item_id": request.item_id,
        "image_sha256": image_sha256,
    }


def request_hash(record: dict[str, Any]) -> str:
    """The cache key of a request record."""
    return spec_hash(record)


log = logging.getLogger("reelbench.calls")

_IN_FLIGHT = ("pending", "submitting", "submitted")

_CALLS = ProviderCall.__table__
# Built once (this read runs once per run): plain columns, read fresh each time.
_READ_CALL = select(*_CALLS.c).where(_CALLS.c.request_hash == bindparam("key"))
_READ_CALL_PG = select(*_CALLS.c, func.now().label("now")).where(
    _CALLS.c.request_hash == bindparam("key")
)


class CallTakenOver(LeaseLost):
    """Another run owns the provider call now (this run's lease on it lapsed).

    Not the run's loss: the run goes back to waiting for that call's result,
    as any run does whose request someone else is already making.
    """


def _same(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def forget_unusable_output(session: Session, call_id: int, raw_sha256: str, reason: str) -> bool:
    """Stop serving a call's output from the cache: it is not a usable video.

    A provider that returned garbage did not deliver what was paid for; like
    any failed call, it must not answer later identical requests. Only the
    exact output that was found unusable is forgotten (a newer result with
    another hash stays). Returns True when the row changed.
    """
    stmt = (
        update(ProviderCall)
        .where(
            ProviderCall.id == call_id,
            ProviderCall.status == "succeeded",
            ProviderCall.raw_sha256 == raw_sha256,
        )
        .values(status="failed", error_class="terminal", error_message=reason[:4000])
        .execution_options(synchronize_session=False)
    )

    def write() -> bool:
        changed = cast(CursorResult[Any], session.execute(stmt)).rowcount == 1
        session.commit()
        return changed

    return retry_db("forgetting an unusable provider output", write, session=session)


class ProviderCallCache:
    """Obtains a run's raw video through the ``provider_calls`` protocol."""

    def __init__(self, store: ArtifactStore, policy: CallPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or CallPolicy()

    def obtain(
        self,
        session: Session,
        provider: Provider,
        request: GenerationRequest,
        *,
        run_id: int,
        attempt: int,
        raw_path: Path,
        image_sha256: str | None = None,
        use_cache: bool = True,
        stop: threading.Event | None = None,
        fence: Callable[[], None] | None = None,
        paid: adm.PaidCallPolicy | None = None,
    ) -> RawOutput:
        """Return the raw video for ``request``: cached, awaited, resumed or fetched now.

        ``raw_path`` is where a fresh result is written (atomically, after
        ``fence()``, which raises :class:`LeaseLost` when the run changed
        hands). Provider errors are re-raised after the row is updated.
        ``paid``: the experiment's limits/budget context; without it no
        limit or budget applies and the cost is what the provider reports.
        """
        record = request_record(request, image_sha256)
        if not use_cache:
            record = {**record, "uncached_run_id": run_id}
        key = request_hash(record)
        stop = stop or threading.Event()
        wait = self.policy.wait_initial
        while True:
            if stop.is_set():
                raise LeaseLost(f"run {run_id} stopped while obtaining its provider output")
            # The database's clock comes with the row: leases are compared with
            # it, as run leases are, so workers' clocks need not agree.
            found = retry_db(
                "reading a provider call", lambda: self._read(session, key), session=session
            )
            if found is None:

                def insert() -> int:
                    # A fresh object per try: a rolled-back one keeps stale state.
                    call = ProviderCall(
                        request_hash=key,
                        provider=request.provider,
                        model=request.model,
                        request=record,
                        status="pending",
                        owner_run_id=run_id,
                        owner_attempt=attempt,
                        made_by_run_id=run_id,
                        lease_expires_at=sql_later(session, self.policy.lease_seconds),
                        created_at=sql_now(session),
                    )
                    session.add(call)
                    session.commit()
                    return call.id

                try:
                    call_id = retry_db("recording a provider call", insert, session=session)
                except IntegrityError:
                    # Another run inserted it first (or an outage hid that our
                    # own insert went through): read it again.
                    session.rollback()
                    continue
                try:
                    return self._make_call(session, provider, request, call_id, None, run_id,
                                           attempt, raw_path, stop, fence,
                                           _Call(paid=paid))  # fmt: skip
                except CallTakenOver:
                    continue
            call, now = found
            if (
                call.status == "succeeded"
                and call.raw_artifact_uri
                and self.store.verify(call.raw_artifact_uri, call.raw_sha256)
            ):
                return RawOutput(
                    uri=call.raw_artifact_uri,
                    sha256=call.raw_sha256 or "",
                    bytes=call.raw_bytes or 0,
                    call_id=call.id,
                    cached=True,
                )
            in_flight = call.status in _IN_FLIGHT
            lease = call.lease_expires_at
            mine = call.owner_run_id == run_id and (call.owner_attempt or 0) <= attempt
            if in_flight and not mine and lease is not None and lease > now:
                self._sleep(stop, wait)
                wait = min(wait * 2, self.policy.wait_max)
                continue
            # Take the row over: resume its job when one is in flight; a failed
            # call or a vanished cached file starts afresh.
            job_id = call.job_id if in_flight else None
            uncertain = call.status == "submitting" and job_id is None
            if self._take_over(session, call, run_id, attempt, job_id, uncertain):
                how = _Call(
                    paid=paid,
                    uncertain=uncertain,
                    idempotency_key=call.idempotency_key if uncertain else None,
                )
                try:
                    return self._make_call(session, provider, request, call.id, job_id, run_id,
                                           attempt, raw_path, stop, fence, how)  # fmt: skip
                except CallTakenOver:
                    continue

    @staticmethod
    def _read(session: Session, key: str) -> tuple[Any, datetime] | None:
        """The call's row as it is now (a plain row, no ORM identity) and the database's time."""
        postgres = session.get_bind().dialect.name == "postgresql"
        stmt = _READ_CALL_PG if postgres else _READ_CALL
        read_transaction(session)
        row = session.execute(stmt, {"key": key}).first()
        session.commit()  # never keep a transaction (a SQLite write lock) while deciding
        if row is None:
            return None
        return row, (row.now if postgres else datetime.now(UTC))

    def _take_over(
        self,
        session: Session,
        call: Any,
        run_id: int,
        attempt: int,
        job_id: str | None,
        uncertain: bool = False,
    ) -> bool:
        # Compare-and-set on what we read: of several takers, one changes the row.
        stmt = (
            update(ProviderCall)
            .where(
                ProviderCall.id == call.id,
                ProviderCall.status == call.status,
                _same(ProviderCall.owner_run_id, call.owner_run_id),
                _same(ProviderCall.owner_attempt, call.owner_attempt),
                _same(ProviderCall.lease_expires_at, call.lease_expires_at),
            )
            .values(
                # An uncertain submit stays marked: its resolution is the taker's.
                status="submitted" if job_id else ("submitting" if uncertain else "pending"),
                job_id=job_id,
                owner_run_id=run_id,
                owner_attempt=attempt,
                made_by_run_id=run_id,
                lease_expires_at=sql_later(session, self.policy.lease_seconds),
                error_class=None,
                error_message=None,
                finished_at=None,
            )
        )
        return self._write(session, stmt)

    def _owned(self, call_id: int, run_id: int, attempt: int) -> Any:
        return update(ProviderCall).where(
            ProviderCall.id == call_id,
            ProviderCall.owner_run_id == run_id,
            ProviderCall.owner_attempt == attempt,
        )

    def _write(self, session: Session, stmt: Any) -> bool:
        """Run a conditional UPDATE in its own transaction; True when it hit the row.

        Retried through an outage. Every such UPDATE is conditioned on the row's
        owner, so repeating one whose commit did go through either hits the
        same row again or (when it released the row) hits nothing, which its
        callers treat the same way.
        """
        stmt = stmt.execution_options(synchronize_session=False)

        def write() -> bool:
            result = session.execute(stmt)
            won = cast(CursorResult[Any], result).rowcount == 1
            session.commit()
            return won

        return retry_db("updating a provider call", write, session=session)

    def _renew(self, session: Session, call_id: int, run_id: int, attempt: int) -> None:
        lease = sql_later(session, self.policy.lease_seconds)
        stmt = self._owned(call_id, run_id, attempt).values(lease_expires_at=lease)
        if not self._write(session, stmt):
            raise CallTakenOver(f"provider call {call_id} was taken over by another run")

    def _fail(
        self, session: Session, call_id: int, run_id: int, attempt: int, error: BaseException
    ) -> None:
        error_class = getattr(error, "error_class", "retryable")
        stmt = self._owned(call_id, run_id, attempt).values(
            status="failed",
            error_class=error_class,
            error_message=str(error)[:4000],
            finished_at=sql_now(session),
            owner_run_id=None,
            owner_attempt=None,
            lease_expires_at=None,
        )
        self._write(session, stmt)

    def _release(self, session: Session, call_id: int, run_id: int, attempt: int) -> None:
        # The job may still be running at the provider: keep it (and its id) so
        # the next taker polls it; only let the lease lapse now.
        stmt = self._owned(call_id, run_id, attempt).values(lease_expires_at=sql_now(session))
        self._write(session, stmt)

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        if stop.wait(max(0.0, seconds)):
            raise LeaseLost("run stopped while waiting for a provider")

    def _make_call(
        self,
        session: Session,
        provider: Provider,
        request: GenerationRequest,
        call_id: int,
        job_id: str | None,
        run_id: int,
        attempt: int,
        raw_path: Path,
        stop: threading.Event,
        fence: Callable[[], None] | None,
        how: _Call,
    ) -> RawOutput:
        # A submit, a local program or a download can outlast the lease: keep
        # renewing it from a thread (own session) so waiters never take over a
        # call that is still being made.
        done = threading.Event()
        keeper = threading.Thread(
            target=self._keep_lease,
            args=(session.get_bind(), call_id, run_id, attempt, done),
            name=f"provider-call-{call_id}-lease",
            daemon=True,
        )
        keeper.start()
        try:
            return self._make_owned_call(session, provider, request, call_id, job_id, run_id,
                                         attempt, raw_path, stop, fence, how)  # fmt: skip
        finally:
            done.set()
            keeper.join()

    def _keep_lease(
        self, bind: Any, call_id: int, run_id: int, attempt: int, done: threading.Event
    ) -> None:
        interval = max(0.05, self.policy.lease_seconds / 4)
        while not done.wait(interval):
            try:
                with Session(bind) as session:
                    lease = sql_later(session, self.policy.lease_seconds)
                    stmt = self._owned(call_id, run_id, attempt).values(lease_expires_at=lease)
                    if not self._write(session, stmt):
                        return  # finished, failed or taken over: nothing left to keep
            except Exception:
                # A database hiccup: the next round tries again; the poll loop's
                # own renewals notice a real loss of the call.
                continue

    def _make_owned_call(
        self,
        session: Session,
        provider: Provider,
        request: GenerationRequest,
        call_id: int,
        job_id: str | None,
        run_id: int,
        attempt: int,
        raw_path: Path,
        stop: threading.Event,
        fence: Callable[[], None] | None,
        how: _Call,
    ) -> RawOutput:
        started = time.monotonic()
        admission: adm.Admission | None = None
        if job_id is None:
            admission, request = self._submit(
                session, provider, request, call_id, run_id, attempt, how
            )
            job_id = how.job_id or ""
        else:
            admission = self._admit_resume(session, request, call_id, run_id, attempt, how)
        try:
            self._await_job(session, provider, request, call_id, job_id, run_id, attempt, stop)
            raw_path = self._free_raw_path(session, raw_path, call_id, self.store.uri_of)
            temp = self.store.temp_path(raw_path)
            try:
                result = provider.fetch(job_id, request, temp)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            stored = self.store.commit(temp, raw_path, sha256=result.sha256, before_rename=fence)
        except TerminalError as exc:
            self._fail(session, call_id, run_id, attempt, exc)
            self._nothing_billed(session, call_id, admission)
            raise
        except BaseException as exc:
            self._release(session, call_id, run_id, attempt)
            self._slow_down(session, request, exc)
            if admission is not None:
                adm.give_back(session, admission)
            raise
        cost = adm.finish(session, admission, call_id, result.cost)

        def times() -> Any:
            read_transaction(session)
            row = session.execute(
                select(ProviderCall.submitted_at, sql_now(session)).where(
                    ProviderCall.id == call_id
                )
            ).one()
            session.commit()
            return row

        submitted_at, now = retry_db("reading a provider call", times, session=session)
        latency = (
            (now - submitted_at).total_seconds()
            if submitted_at is not None
            else time.monotonic() - started
        )
        self._write(
            session,
            self._owned(call_id, run_id, attempt).values(
                status="succeeded",
                raw_artifact_uri=stored.uri,
                raw_sha256=stored.sha256,
                raw_bytes=stored.bytes,
                cost=cost,
                latency_seconds=latency,
                finished_at=sql_now(session),
                owner_run_id=None,
                owner_attempt=None,
                lease_expires_at=None,
            ),
        )
        return RawOutput(
            uri=stored.uri, sha256=stored.sha256, bytes=stored.bytes, call_id=call_id, cached=False
        )

    def _submit(
        self,
        session: Session,
        provider: Provider,
        request: GenerationRequest,
        call_id: int,
        run_id: int,
        attempt: int,
        how: _Call,
    ) -> tuple[adm.Admission | None, GenerationRequest]:
        """Admit, record the intent, submit, record the job id (in ``how.job_id``)."""
        if how.uncertain and not getattr(provider, "accepts_idempotency_key", False):
            policy = how.paid.on_uncertain_submit if how.paid else "fail"
            prices = how.paid.prices if how.paid else ()
            # A call that costs nothing (a local program) is simply made again.
            free = estimate_usd(request.provider, request.model, request.params, prices) == 0
            if policy != "resubmit" and not free:
                error = TerminalError(
                    f"provider call {call_id} was cut off between its submit to "
                    f"{request.provider} and the record of the job id (a worker died, or "
                    "the submit got no answer): "
                    f"a job may exist at {request.provider} and be billed. Check the "
                    "provider's dashboard, then `reelbench retry EXPERIMENT` submits it "
                    'again (or set on_uncertain_submit = "resubmit" in the spec\'s [retry])'
                )
                self._fail(session, call_id, run_id, attempt, error)
                raise error
            log.warning(
                "provider call %d: its earlier submit may have reached %s; submitting again "
                "(on_uncertain_submit = resubmit)",
                call_id,
                request.provider,
            )
        key = how.idempotency_key or uuid.uuid4().hex
        request = dataclasses.replace(request, idempotency_key=key)
        intent = self._owned(call_id, run_id, attempt).values(
            status="submitting", idempotency_key=key
        )
        admission: adm.Admission | None = None
        try:
            if how.paid is not None:
                admission = adm.admit(
                    session,
                    how.paid,
                    request,
                    call_id=call_id,
                    run_id=run_id,
                    attempt=attempt,
                    intent=intent.execution_options(synchronize_session=False),
                )
                if admission is None:
                    raise CallTakenOver(f"provider call {call_id} was taken over before submit")
            elif not self._write(session, intent):
                raise CallTakenOver(f"provider call {call_id} was taken over before submit")
        except Deferred:
            # Not now: leave the row (pending, or an uncertain submit) to the next taker.
            self._release(session, call_id, run_id, attempt)
            raise
        except TerminalError as exc:
            self._fail(session, call_id, run_id, attempt, exc)
            raise
        try:
            job_id = provider.submit(request)
        except RetryableError as exc:
            self._slow_down(session, request, exc)
            if getattr(provider, "accepts_idempotency_key", False) or exc.maybe_delivered:
                # A timeout or a dropped connection may hide a job that was
                # created: keep the intent (and its reservation). The next
                # attempt sends the same key, so the provider starts no second
                # job; a provider without keys leaves it to on_uncertain_submit.
                self._release(session, call_id, run_id, attempt)
                if admission is not None:
                    adm.give_back(session, admission)
                raise
            self._fail(session, call_id, run_id, attempt, exc)
            self._nothing_billed(session, call_id, admission)
            raise
        except BaseException as exc:
            # The provider answered with an error: nothing (billable) is running.
            self._fail(session, call_id, run_id, attempt, exc)
            self._nothing_billed(session, call_id, admission)
            self._slow_down(session, request, exc)
            raise
        stmt = self._owned(call_id, run_id, attempt).values(
            status="submitted",
            job_id=job_id,
            submitted_at=sql_now(session),
            lease_expires_at=sql_later(session, self.policy.lease_seconds),
        )
        if not self._write(session, stmt):
            if admission is not None:
                adm.give_back(session, admission)
            raise CallTakenOver(
                f"provider call {call_id} was taken over while submitting job {job_id}"
            )
        how.job_id = job_id
        return admission, request

    def _admit_resume(
        self,
        session: Session,
        request: GenerationRequest,
        call_id: int,
        run_id: int,
        attempt: int,
        how: _Call,
    ) -> adm.Admission | None:
        """An in-flight slot for polling a job that exists (no submit, no new reservation)."""
        if how.paid is None:
            return None
        try:
            return adm.admit(
                session,
                how.paid,
                request,
                call_id=call_id,
                run_id=run_id,
                attempt=attempt,
                submit=False,
            )
        except Deferred:
            self._release(session, call_id, run_id, attempt)
            raise

    def _nothing_billed(
        self, session: Session, call_id: int, admission: adm.Admission | None
    ) -> None:
        retry_db("releasing a reservation", lambda: release_call(session, call_id), session=session)
        if admission is not None:
            adm.give_back(session, admission)

    @staticmethod
    def _slow_down(session: Session, request: GenerationRequest, exc: BaseException) -> None:
        """A provider's Retry-After holds the whole fleet's submits to it, not only ours."""
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(exc, RetryableError) and retry_after:
            try:
                retry_db(
                    "pausing a provider",
                    lambda: limits.pause(session, request.provider, float(retry_after)),
                    session=session,
                    max_seconds=10.0,
                )
            except Exception:  # best effort: the run's own backoff still applies
                log.warning("could not record the Retry-After of %s", request.provider)

    @staticmethod
    def _free_raw_path(
        session: Session, raw_path: Path, call_id: int, uri_of: Callable[[Path], str]
    ) -> Path:
        """``raw_path``, unless another call's cached result lives there.

        Other runs' artifact rows may point at that file (cache hits), so it
        is never replaced; the new output goes next to it instead.
        """

        def read() -> Any:
            read_transaction(session)
            found = session.scalar(
                select(ProviderCall.id).where(
                    ProviderCall.raw_artifact_uri == uri_of(raw_path),
                    ProviderCall.id != call_id,
                    ProviderCall.status == "succeeded",
                )
            )
            session.commit()
            return found

        other = retry_db("reading provider calls", read, session=session)
        if other is None:
            return raw_path
        return raw_path.with_name(f"{raw_path.stem}-call{call_id}{raw_path.suffix}")

    def _await_job(
        self,
        session: Session,
        provider: Provider,
        request: GenerationRequest,
        call_id: int,
        job_id: str,
        run_id: int,
        attempt: int,
        stop: threading.Event,
    ) -> None:
        delay = self.policy.poll_initial
        while True:
            if stop.is_set():
                raise LeaseLost(f"run {run_id} stopped while polling job {job_id}")
            status = provider.poll(job_id, request)
            if status.state == "succeeded":
                return
            if status.state == "failed":
                message = f"{request.provider}: job {job_id} failed: {status.error or 'no reason'}"
                if status.retryable:
                    error: RunError = RetryableError(message)
                    self._fail(session, call_id, run_id, attempt, error)
                    raise error
                raise TerminalError(message)
            self._renew(session, call_id, run_id, attempt)
            pause = delay if status.retry_after is None else min(status.retry_after, delay)
            self._sleep(stop, min(pause, self.policy.poll_max))
            delay = min(delay * self.policy.poll_factor, self.policy.poll_max)


@dataclass
class _Call:
    """How one call is being made (admission context, an uncertain earlier submit)."""

    paid: adm.PaidCallPolicy | None = None
    #: The row was found ``submitting`` without a job id (see the module docs).
    uncertain: bool = False
    idempotency_key: str | None = None
    job_id: str | None = None
