"""Fleet-wide provider limits, enforced in the database.

A limit applies to a *scope*: a provider (``openai``) or a provider and
model (``openai:sora-2``); a call is subject to both when both exist. Two
kinds of cap, each made of rows of ``provider_slots`` that are taken with a
compare-and-set ``UPDATE`` (one winner per row, on SQLite and PostgreSQL
alike, with no table lock):

* ``concurrency = N``: N leased slots. A run attempt holds one from just
  before its submit until its provider call ends; the lease is renewed with
  the run's own lease by the worker's heartbeat, so the slot of a worker
  that died comes back when its lease ends.
* ``per_minute = M``: M rate slots, each remembering when it last let a
  submit through. A slot is free again 60 seconds after its use, so no
  60-second window ever holds more than M submits, whichever workers made
  them.

A provider that answers 429 with Retry-After pauses its whole scope
(``paused_until``): no worker submits to it before then.

Limits come from a spec's ``[limits]`` (written when the spec is submitted,
where the database has none yet) or ``reelbench limits set`` (which wins:
the database value is what a running fleet obeys). Nothing here waits: a
caller that gets a :class:`Wait` defers the run (see :class:`Deferred`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from reelbench.db.claim import sql_later, sql_now
from reelbench.db.engine import read_transaction
from reelbench.db.models import ProviderLimit, ProviderSlot
from reelbench.spec import parse_scope

__all__ = [
    "CONCURRENCY",
    "RATE",
    "Grant",
    "LimitState",
    "Wait",
    "acquire",
    "apply_spec_limits",
    "clear_limit",
    "limit_states",
    "parse_scope",
    "pause",
    "release",
    "renew",
    "scopes_for",
    "set_limit",
]

CONCURRENCY = "concurrency"
RATE = "rate"
WINDOW_SECONDS = 60.0
#: Longest a provider's Retry-After may pause a whole scope.
MAX_PAUSE_SECONDS = 3600.0

_limits = cast(Table, ProviderLimit.__table__)
_slots = cast(Table, ProviderSlot.__table__)


def scopes_for(provider: str, model: str | None) -> list[str]:
    """The scopes a call to ``provider``/``model`` is subject to."""
    return [provider, f"{provider}:{model}"] if model else [provider]


def _now(session: Session) -> datetime:
    if session.get_bind().dialect.name == "postgresql":
        return cast(datetime, session.scalar(select(func.now())))
    return datetime.now(UTC)


# --- configuration -------------------------------------------------------------


def set_limit(
    session: Session,
    scope: str,
    *,
    concurrency: int | None,
    per_minute: int | None,
    source: str = "cli",
) -> None:
    """Store the limits of ``scope`` (None: no cap of that kind) and their slot rows. Commits."""
    scope = parse_scope(scope)
    for name, value in (("concurrency", concurrency), ("per_minute", per_minute)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    existing = session.get(ProviderLimit, scope)
    if existing is None:
        session.add(
            ProviderLimit(
                scope=scope,
                concurrency=concurrency,
                per_minute=per_minute,
                source=source,
                updated_at=datetime.now(UTC),
            )
        )
    else:
        existing.concurrency = concurrency
        existing.per_minute = per_minute
        existing.source = source
        existing.updated_at = datetime.now(UTC)
    session.flush()
    _ensure_slots(session, scope, CONCURRENCY, concurrency or 0)
    _ensure_slots(session, scope, RATE, per_minute or 0)
    session.commit()


def _ensure_slots(session: Session, scope: str, kind: str, count: int) -> None:
    have = set(
        session.scalars(
            select(_slots.c.slot_no).where(_slots.c.scope == scope, _slots.c.kind == kind)
        )
    )
    for slot_no in range(count):
        if slot_no not in have:
            session.add(ProviderSlot(scope=scope, kind=kind, slot_no=slot_no))
    # Slots past a lowered limit are simply not used (a holder keeps its slot
    # until its call ends); free ones are removed to keep the table small.
    session.execute(
        delete(_slots).where(
            _slots.c.scope == scope,
            _slots.c.kind == kind,
            _slots.c.slot_no >= count,
            _slots.c.holder_run_id.is_(None),
        )
    )
    session.flush()


def clear_limit(session: Session, scope: str) -> bool:
    """Remove the limits of ``scope``; True when there were some. Commits."""
    scope = parse_scope(scope)
    found = session.get(ProviderLimit, scope) is not None
    session.execute(delete(_slots).where(_slots.c.scope == scope))
    session.execute(delete(_limits).where(_limits.c.scope == scope))
    session.commit()
    return found


def apply_spec_limits(session: Session, limits: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Store a spec's ``[limits]`` where the database has none (or only an older spec's).

    Limits set with ``reelbench limits set`` are kept as they are: a running
    fleet obeys the database. Returns one line per spec limit that the
    database overrides, for the submitter to show. Commits.
    """
    notes = []
    for scope, values in limits.items():
        concurrency = values.get("concurrency")
        per_minute = values.get("per_minute")
        existing = session.get(ProviderLimit, parse_scope(scope))
        if existing is not None and existing.source == "cli":
            if (existing.concurrency, existing.per_minute) != (concurrency, per_minute):
                notes.append(
                    f"limits for {scope}: the database's (concurrency {existing.concurrency}, "
                    f"per minute {existing.per_minute}, from `reelbench limits set`) apply, "
                    f"not the spec's (concurrency {concurrency}, per minute {per_minute})"
                )
            continue
        set_limit(session, scope, concurrency=concurrency, per_minute=per_minute, source="spec")
    session.commit()
    return notes


@dataclass(frozen=True)
class LimitState:
    """A scope's limits and how much of them is in use now."""

    scope: str
    concurrency: int | None
    per_minute: int | None
    source: str
    in_flight: int
    submits_last_minute: int
    paused_until: datetime | None


def limit_states(session: Session) -> list[LimitState]:
    """Every stored limit with its live use (for ``reelbench limits`` and ``status``)."""
    now = _now(session)
    window_start = now - timedelta(seconds=WINDOW_SECONDS)
    states = []
    for row in session.execute(select(_limits).order_by(_limits.c.scope)).all():
        in_flight = session.scalar(
            select(func.count()).where(
                _slots.c.scope == row.scope,
                _slots.c.kind == CONCURRENCY,
                _slots.c.holder_run_id.is_not(None),
                _slots.c.lease_expires_at > now,
            )
        )
        recent = session.scalar(
            select(func.count()).where(
                _slots.c.scope == row.scope,
                _slots.c.kind == RATE,
                _slots.c.used_at > window_start,
            )
        )
        paused = row.paused_until if row.paused_until and row.paused_until > now else None
        states.append(
            LimitState(
                scope=row.scope,
                concurrency=row.concurrency,
                per_minute=row.per_minute,
                source=row.source,
                in_flight=int(in_flight or 0),
                submits_last_minute=int(recent or 0),
                paused_until=paused,
            )
        )
    session.commit()
    return states


# --- taking and giving back slots ---------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What a run attempt holds: its concurrency slots (rate slots are spent, not held)."""

    run_id: int
    attempt: int
    slot_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Wait:
    """No submit now: why, and after how many seconds to look again."""

    reason: str
    seconds: float


def acquire(
    session: Session,
    provider: str,
    model: str | None,
    *,
    run_id: int,
    attempt: int,
    lease_seconds: float,
    rng: random.Random | None = None,
    submit: bool = True,
) -> Grant | Wait:
    """Take what a submit to ``provider``/``model`` needs, or say how long to wait.

    ``submit=False`` (polling a job that already exists): an in-flight slot
    only, no submit of the per-minute window. Each compare-and-set commits
    on its own; on a :class:`Wait` every slot taken so far is given back first.
    """
    rng = rng or random.Random()
    scopes = scopes_for(provider, model)
    read_transaction(session)
    rows = session.execute(select(_limits).where(_limits.c.scope.in_(scopes))).all()
    session.commit()
    if not rows:
        return Grant(run_id, attempt)
    now = _now(session)
    for row in rows:
        if row.paused_until is not None and row.paused_until > now:
            seconds = (row.paused_until - now).total_seconds()
            return Wait(
                f"{row.scope} asked to slow down (HTTP 429): no submit for {seconds:.0f}s",
                seconds + rng.uniform(0, 0.5),
            )
    held: list[int] = []
    for row in rows:
        if not row.concurrency:
            continue
        slot = _take_concurrency(
            session, row.scope, row.concurrency, run_id, attempt, lease_seconds
        )
        if slot is None:
            release(session, Grant(run_id, attempt))
            return Wait(
                f"waiting for a {row.scope} slot ({row.concurrency} in flight, the fleet's limit)",
                rng.uniform(0.5, 1.5),
            )
        held.append(slot)
    for row in rows:
        if not row.per_minute or not submit:
            continue
        next_free = _take_rate(session, row.scope, row.per_minute)
        if next_free is not None:
            release(session, Grant(run_id, attempt))
            return Wait(
                f"rate limit of {row.scope}: {row.per_minute} submits per minute",
                next_free + rng.uniform(0.05, 0.5),
            )
    return Grant(run_id, attempt, tuple(held))


def _write(session: Session, stmt: Any) -> bool:
    result = cast(CursorResult[Any], session.execute(stmt))
    session.commit()
    return result.rowcount == 1


def _take_concurrency(
    session: Session, scope: str, limit: int, run_id: int, attempt: int, lease_seconds: float
) -> int | None:
    now = sql_now(session)
    free = or_(_slots.c.holder_run_id.is_(None), _slots.c.lease_expires_at <= now)
    candidates = list(
        session.scalars(
            select(_slots.c.id)
            .where(
                _slots.c.scope == scope,
                _slots.c.kind == CONCURRENCY,
                _slots.c.slot_no < limit,
                free,
            )
            .order_by(_slots.c.slot_no)
        )
    )
    session.commit()
    for slot_id in candidates:
        # The WHERE is evaluated again on the row as it is when the UPDATE
        # runs (PostgreSQL re-checks it after waiting on a row lock), so of two
        # workers racing for one slot, exactly one matches.
        taken = _write(
            session,
            update(_slots)
            .where(_slots.c.id == slot_id, free)
            .values(
                holder_run_id=run_id,
                holder_attempt=attempt,
                lease_expires_at=sql_later(session, lease_seconds),
            ),
        )
        if taken:
            return int(slot_id)
    return None


def _take_rate(session: Session, scope: str, limit: int) -> float | None:
    """Spend one rate slot of ``scope``; None on success, else seconds until one frees."""
    now = _now(session)
    cutoff = sql_later(session, -WINDOW_SECONDS)
    rows = session.execute(
        select(_slots.c.id, _slots.c.used_at)
        .where(_slots.c.scope == scope, _slots.c.kind == RATE, _slots.c.slot_no < limit)
        .order_by(_slots.c.used_at.is_not(None), _slots.c.used_at)
    ).all()
    session.commit()
    for slot_id, used_at in rows:
        if used_at is not None and used_at > now - timedelta(seconds=WINDOW_SECONDS):
            continue
        same = _slots.c.used_at.is_(None) if used_at is None else _slots.c.used_at == used_at
        stale = or_(_slots.c.used_at.is_(None), _slots.c.used_at <= cutoff)
        if _write(
            session,
            update(_slots)
            .where(_slots.c.id == slot_id, same, stale)
            .values(used_at=sql_now(session)),
        ):
            return None
    used = [u for _, u in rows if u is not None]
    if not used:
        return 0.5
    wait = (min(used) + timedelta(seconds=WINDOW_SECONDS) - now).total_seconds()
    return max(0.05, float(wait))


def release(session: Session, grant: Grant) -> None:
    """Give back the concurrency slots the attempt of ``grant`` holds (its call ended). Commits.

    By holder rather than by slot id: a slot whose taking was retried through
    a database outage (and so may be held twice) comes back too.
    """
    session.execute(
        update(_slots)
        .where(
            _slots.c.kind == CONCURRENCY,
            _slots.c.holder_run_id == grant.run_id,
            _slots.c.holder_attempt == grant.attempt,
        )
        .values(holder_run_id=None, holder_attempt=None, lease_expires_at=None)
    )
    session.commit()


def renew(session: Session, leases: list[tuple[int, int]], lease_seconds: float) -> None:
    """Extend the slots held by ``(run_id, attempt)`` pairs (the worker's heartbeat).

    Does not commit: it rides in the heartbeat's transaction.
    """
    if not leases:
        return
    session.execute(
        update(_slots)
        .where(
            tuple_(_slots.c.holder_run_id, _slots.c.holder_attempt).in_(leases),
            _slots.c.kind == CONCURRENCY,
        )
        .values(lease_expires_at=sql_later(session, lease_seconds))
    )


def pause(session: Session, provider: str, seconds: float) -> None:
    """Hold every submit to ``provider`` for ``seconds`` (its Retry-After). Commits."""
    seconds = min(max(0.0, seconds), MAX_PAUSE_SECONDS)
    until = _now(session) + timedelta(seconds=seconds)
    existing = session.get(ProviderLimit, provider)
    if existing is None:
        session.add(
            ProviderLimit(
                scope=provider,
                concurrency=None,
                per_minute=None,
                source="provider",
                paused_until=until,
                updated_at=datetime.now(UTC),
            )
        )
    elif existing.paused_until is None or existing.paused_until < until:
        existing.paused_until = until
    try:
        session.commit()
    except Exception:
        # Two workers inserting the same pause: one row is enough.
        session.rollback()
