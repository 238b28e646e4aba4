"""Cache-hit runs resolved in batches: a few set-based transactions instead of two per run.

A run is a *clean hit* when everything it would produce already exists:

* its request (provider, model, params, prompt, seed, item, input image's
  SHA-256) has a succeeded provider call whose raw file is intact;
* that raw video's canonical video, per-frame file and summary were made
  before for the run's canonical format, reference, metric groups and the
  current metric version (a ``derived_outputs`` row, ADR-0006), and both
  files still have their recorded SHA-256.

Such a run costs no provider call, no decode and nothing that fleet limits
or budgets count (the normal path returns a cache hit before any admission),
so there is nothing left to do but write its rows. :class:`HitBatcher`
reads a batch of queued runs, keeps the clean hits (files checked outside any
transaction, as the normal path does) and then, in **one** transaction, takes
those still queued at the attempt that was read (on PostgreSQL with ``FOR
UPDATE SKIP LOCKED``, so a run another worker is claiming is skipped) and
writes exactly what claim + processor + fenced completion write one run at a
time: the attempt history row (opened and closed ``succeeded``), the raw,
canonical, per-frame and reference artifact rows, the metric rows, the link
to the provider call and the succeeded status with the claim's new fencing
token. A worker killed before the commit leaves every run queued as it was.

Runs that are not clean hits (no call yet, a failed or vanished file, metric
plugins, remeasure tasks, ``--no-cache``, a run on its last allowed attempt,
a run taken back from a dead worker) are left to the normal per-run path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, literal, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from reelbench.call_cache import request_hash, request_record
from reelbench.context import ExperimentSettings, RunContext, build_contexts
from reelbench.db.claim import _succeeded_values, _ts
from reelbench.db.engine import read_transaction
from reelbench.db.models import (
    Artifact,
    DerivedOutput,
    Metric,
    ProviderCall,
    Run,
    RunAttempt,
    UTCDateTime,
)
from reelbench.db.retry import retry_db
from reelbench.derived import CANONICAL, canonical_key
from reelbench.providers import get_provider
from reelbench.storage import open_store

__all__ = ["HitBatcher", "HitScope"]

_RUNS = cast(Table, Run.__table__)
_ATTEMPTS = cast(Table, RunAttempt.__table__)
_ARTIFACTS = cast(Table, Artifact.__table__)
_METRICS = cast(Table, Metric.__table__)
_CALLS = cast(Table, ProviderCall.__table__)
_DERIVED = cast(Table, DerivedOutput.__table__)

QUEUED = "queued"

#: Runs looked at per batch.
BATCH = 200
#: After a batch without a single hit, how long before looking again.
MISS_PAUSE_SECONDS = 2.0


@dataclass(frozen=True)
class HitScope:
    """Which runs a worker may take, and what it needs to build their contexts."""

    worker_id: str
    experiment_id: int | None
    artifact_root: Path | str
    use_cache: bool
    lease_seconds: float
    settings_cache: dict[int, ExperimentSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class _Hit:
    ctx: RunContext
    read_attempt: int
    call_id: int
    raw: tuple[str, str, int]
    canon: tuple[str, str, int]
    frames: tuple[str, str, int]
    reference: tuple[str, str, int] | None
    summary: Mapping[str, Any]


class HitBatcher:
    """Keeps what one worker learnt between batches (file hashes, a pause after misses)."""

    def __init__(self, hashes: Any) -> None:
        #: A :class:`reelbench.processor.FileHashes` (an item's image and reference).
        self.hashes = hashes
        self._paused_until = 0.0

    def resolve(
        self, sessions: sessionmaker[Session], scope: HitScope, limit: int = BATCH
    ) -> list[RunContext]:
        """Resolve the clean cache hits among the next queued runs; their contexts, in order."""
        if not scope.use_cache or time.monotonic() < self._paused_until:
            return []
        hits, looked_at = self._find(sessions, scope, limit)
        if not hits:
            if looked_at:
                self._paused_until = time.monotonic() + MISS_PAUSE_SECONDS
            return []
        return _complete(sessions, scope.worker_id, hits)

    # --- finding clean hits -------------------------------------------------

    def _find(
        self, sessions: sessionmaker[Session], scope: HitScope, limit: int
    ) -> tuple[list[_Hit], int]:
        with sessions() as session:

            def read() -> list[RunContext]:
                read_transaction(session)
                candidates = session.execute(_candidates(session, scope, limit)).all()
                contexts = build_contexts(
                    session,
                    [(int(r.id), int(r.attempt) + 1) for r in candidates],
                    worker_id=scope.worker_id,
                    artifact_root=scope.artifact_root,
                    use_cache=scope.use_cache,
                    settings_cache=scope.settings_cache,
                    lease_seconds=scope.lease_seconds,
                )
                session.commit()
                return contexts

            contexts = retry_db("reading queued runs", read, session=session)
        looked_at = len(contexts)
        wanted = []
        for ctx in contexts:
            found = self._request_key(ctx) if _may_hit(ctx) else None
            if found is not None:
                wanted.append((ctx, found))
        if not wanted:
            return [], looked_at
        calls = _read_by_key(
            sessions, _READ_CALLS, sorted({key[0] for _, key in wanted}), "provider calls"
        )
        store = open_store(scope.artifact_root)
        checked: dict[tuple[str, str], bool] = {}

        def intact(uri: str | None, sha256: str | None) -> bool:
            if not uri or not sha256:
                return False
            known = checked.get((uri, sha256))
            if known is None:
                known = checked[uri, sha256] = store.verify(uri, sha256)
            return known

        staged: list[tuple[RunContext, Any, str, tuple[str, str, int] | None]] = []
        for ctx, (request_key, reference) in wanted:
            call = calls.get(request_key)
            if call is None or not intact(call.raw_artifact_uri, call.raw_sha256):
                continue
            key = canonical_key(
                call.raw_sha256,
                ctx.canonical,
                reference[1] if reference else None,
                list(ctx.metric_groups),
                plugins=(),
                dynamic_threshold=ctx.dynamic_threshold,
            )
            staged.append((ctx, call, key, reference))
        if not staged:
            return [], looked_at
        derived = _read_by_key(
            sessions, _READ_DERIVED, sorted({key for _, _, key, _ in staged}), "reusable outputs"
        )
        hits = []
        for ctx, call, key, reference in staged:
            made = derived.get(key)
            if made is None or not intact(made.uri, made.sha256):
                continue
            details = dict(made.details or {})
            frames = details.get("frames")
            if not isinstance(frames, Mapping) or not intact(
                str(frames.get("uri")), str(frames.get("sha256") or "")
            ):
                continue
            hits.append(
                _Hit(
                    ctx=ctx,
                    read_attempt=ctx.attempt - 1,
                    call_id=int(call.id),
                    raw=(call.raw_artifact_uri, call.raw_sha256, int(call.raw_bytes or 0)),
                    canon=(made.uri, made.sha256, int(made.bytes)),
                    frames=(str(frames["uri"]), str(frames["sha256"]), int(frames["bytes"])),
                    reference=reference,
                    summary=details["summary"],
                )
            )
        return hits, looked_at

    def _request_key(self, ctx: RunContext) -> tuple[str, tuple[str, str, int] | None] | None:
        """The run's request hash and reference ``(uri, sha256, bytes)``; None: not a hit here."""
        try:
            get_provider(ctx.provider)  # an unknown provider fails on the normal path
        except Exception:
            return None
        gen = ctx.gen_input
        image = gen.get("image")
        image_sha = None
        try:
            if image:
                image_sha, _ = self.hashes.sha256(Path(image))
            reference = None
            if ctx.reference_path:
                path = Path(ctx.reference_path)
                sha, size = self.hashes.sha256(path)
                reference = (path.resolve().as_uri(), sha, size)
        except OSError:
            return None  # a missing input is the normal path's error to report
        return request_hash(request_record(ctx.request(), image_sha)), reference


def _may_hit(ctx: RunContext) -> bool:
    # Plugins may fail per run and are never reused from a failed run; a
    # remeasure recomputes on purpose; --no-cache asks for a fresh call.
    return ctx.use_cache and ctx.task is None and not ctx.metric_plugins


def _claimable(session: Session) -> Any:
    """Queued, due, a generation (not a remeasure) and never past its allowed attempts."""
    if session.get_bind().dialect.name == "postgresql":
        now: Any = func.now()
    else:
        now = literal(datetime.now(UTC), UTCDateTime())
    return (
        (_RUNS.c.status == QUEUED)
        & (_RUNS.c.not_before.is_(None) | (_RUNS.c.not_before <= now))
        & _RUNS.c.task.is_(None)
        # A hand-back grows max_attempts: a run at its limit goes the normal path.
        & (_RUNS.c.attempt < _RUNS.c.max_attempts)
    )


def _candidates(session: Session, scope: HitScope, limit: int) -> Any:
    query = (
        select(_RUNS.c.id, _RUNS.c.attempt)
        .where(_claimable(session))
        .order_by(_RUNS.c.priority.desc(), _RUNS.c.id)
        .limit(limit)
    )
    if scope.experiment_id is not None:
        query = query.where(_RUNS.c.experiment_id == scope.experiment_id)
    return query


_READ_CALLS = select(
    _CALLS.c.id,
    _CALLS.c.request_hash.label("key"),
    _CALLS.c.raw_artifact_uri,
    _CALLS.c.raw_sha256,
    _CALLS.c.raw_bytes,
).where(
    _CALLS.c.request_hash.in_(bindparam("keys", expanding=True)),
    _CALLS.c.status == "succeeded",
)
_READ_DERIVED = select(
    _DERIVED.c.key, _DERIVED.c.uri, _DERIVED.c.sha256, _DERIVED.c.bytes, _DERIVED.c.details
).where(_DERIVED.c.kind == CANONICAL, _DERIVED.c.key.in_(bindparam("keys", expanding=True)))


def _read_by_key(
    sessions: sessionmaker[Session], statement: Any, keys: Sequence[str], what: str
) -> dict[str, Any]:
    """The rows of ``statement`` (a ``key`` column, an expanding ``keys`` bind) by key."""
    with sessions() as session:

        def read() -> dict[str, Any]:
            read_transaction(session)
            found: dict[str, Any] = {}
            for start in range(0, len(keys), 500):
                rows = session.execute(statement, {"keys": list(keys[start : start + 500])})
                found.update({row.key: row for row in rows})
            session.commit()
            return found

        return retry_db(f"reading {what}", read, session=session)


# --- writing a batch ----------------------------------------------------------


def _complete_statement(now: Any) -> Any:
    """Claim and succeed one queued run in one UPDATE, stamped with ``now``."""
    return (
        update(_RUNS)
        .where(_RUNS.c.id == bindparam("p_run_id"), _RUNS.c.status == QUEUED)
        .values(
            attempt=_RUNS.c.attempt + 1,
            worker_id=bindparam("p_worker_id"),
            started_at=now,
            not_before=None,
            wait_reason=None,
            provider_call_id=bindparam("p_call_id"),
            **_succeeded_values(now),
        )
    )


_COMPLETE_PG = _complete_statement(func.now())
_COMPLETE_SQLITE = _complete_statement(_ts("p_now"))


def _complete(
    sessions: sessionmaker[Session], worker_id: str, hits: Sequence[_Hit]
) -> list[RunContext]:
    """Claim and complete ``hits`` still queued at the attempt read, in one transaction."""
    by_id = {hit.ctx.run_id: hit for hit in hits}

    def write() -> list[RunContext]:
        with sessions() as session, session.begin():
            postgres = session.get_bind().dialect.name == "postgresql"
            lock = (
                select(_RUNS.c.id)
                .where(
                    tuple_(_RUNS.c.id, _RUNS.c.attempt).in_(
                        [(h.ctx.run_id, h.read_attempt) for h in hits]
                    ),
                    _claimable(session),
                )
                .order_by(_RUNS.c.id)
            )
            if postgres:
                # Rows another worker is claiming right now are skipped, not waited for.
                lock = lock.with_for_update(skip_locked=True)
            taken = [by_id[int(row[0])] for row in session.execute(lock)]
            if not taken:
                return []
            now = datetime.now(UTC)
            ids = [hit.ctx.run_id for hit in taken]
            session.execute(
                _COMPLETE_PG if postgres else _COMPLETE_SQLITE,
                [
                    {
                        "p_run_id": hit.ctx.run_id,
                        "p_worker_id": worker_id,
                        "p_call_id": hit.call_id,
                        "p_canon_uri": hit.canon[0],
                        "p_canon_sha256": hit.canon[1],
                        "p_now": now,
                    }
                    for hit in taken
                ],
            )
            stamp: Any = func.now() if postgres else now
            session.execute(
                insert(_ATTEMPTS).values(
                    [
                        {
                            "run_id": hit.ctx.run_id,
                            "attempt": hit.ctx.attempt,
                            "worker_id": worker_id,
                            "started_at": stamp,
                            "finished_at": stamp,
                            "outcome": "succeeded",
                        }
                        for hit in taken
                    ]
                )
            )
            session.execute(delete(_ARTIFACTS).where(_ARTIFACTS.c.run_id.in_(ids)))
            session.execute(delete(_METRICS).where(_METRICS.c.run_id.in_(ids)))
            session.execute(insert(_ARTIFACTS), _artifact_rows(taken, now))
            metrics = _metric_rows(taken)
            if metrics:
                session.execute(insert(_METRICS), metrics)
            # The fence of what was just written: every run is now succeeded
            # with this claim's attempt (nothing else can write it meanwhile:
            # SQLite's write lock, PostgreSQL's row locks).
            check = session.execute(
                select(func.count()).where(
                    tuple_(_RUNS.c.id, _RUNS.c.attempt).in_(
                        [(h.ctx.run_id, h.ctx.attempt) for h in taken]
                    ),
                    _RUNS.c.status == "succeeded",
                )
            ).scalar_one()
            if check != len(taken):
                raise RuntimeError(
                    f"cache-hit batch: {check} of {len(taken)} runs completed; rolled back"
                )
            return [hit.ctx for hit in taken]

    return retry_db("storing cache-hit results", write)


def _artifact_rows(hits: Sequence[_Hit], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for hit in hits:
        files = [("raw", hit.raw), ("canon", hit.canon), ("frames", hit.frames)]
        if hit.reference is not None:
            files.append(("reference", hit.reference))
        rows += [
            {"run_id": hit.ctx.run_id, "kind": kind, "uri": uri, "sha256": sha, "bytes": size,
             "created_at": now}
            for kind, (uri, sha, size) in files
        ]  # fmt: skip
    return rows


def _metric_rows(hits: Sequence[_Hit]) -> list[dict[str, Any]]:
    from reelbench.processor import metric_rows

    rows: list[dict[str, Any]] = []
    for hit in hits:
        rows += metric_rows(hit.ctx.run_id, hit.summary)
    return rows
