"""The provider-call cache as the user sees it: list, show and forget recorded calls.

A call is found by its id or a prefix of its request hash (at least 6 hex
digits, unique), or through the runs that used it (an experiment, a
variant). Forgetting a call makes the next identical request call the
provider again: the row keeps its history (request, job id, cost) under a
new key and status ``forgotten``, runs that used it keep pointing at it, and
its raw video is deleted only when no artifact row of any run refers to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from reelbench.db.experiments import find_experiment
from reelbench.db.models import Artifact, ProviderCall, Run, Variant
from reelbench.identity import spec_hash
from reelbench.storage import path_from_uri

__all__ = [
    "CallSummary",
    "ForgetResult",
    "call_runs",
    "find_calls",
    "forget_calls",
    "list_calls",
    "remove_files",
]

#: Shortest request-hash prefix accepted.
MIN_PREFIX = 6


@dataclass(frozen=True)
class CallSummary:
    """One provider call and how many runs use it."""

    id: int
    request_hash: str
    provider: str
    model: str | None
    status: str
    runs: int
    cost: float | None
    job_id: str | None
    raw_artifact_uri: str | None
    created_at: Any

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (times as ISO 8601)."""
        out = dict(self.__dict__)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


def _uses() -> Any:
    return (
        select(Run.provider_call_id, func.count().label("runs"))
        .where(Run.provider_call_id.is_not(None))
        .group_by(Run.provider_call_id)
        .subquery()
    )


def list_calls(
    session: Session,
    *,
    experiment: str | None = None,
    variant: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[CallSummary]:
    """Calls, newest first; ``experiment``/``variant``: only those its runs used."""
    uses = _uses()
    query = (
        select(ProviderCall, func.coalesce(uses.c.runs, 0))
        .outerjoin(uses, uses.c.provider_call_id == ProviderCall.id)
        .order_by(ProviderCall.id.desc())
    )
    if experiment is not None:
        exp = find_experiment(session, experiment)
        scope = select(Run.id).where(Run.experiment_id == exp.id)
        if variant is not None:
            variant_id = session.scalar(
                select(Variant.id).where(Variant.experiment_id == exp.id, Variant.key == variant)
            )
            if variant_id is None:
                raise LookupError(f"experiment {exp.name!r} has no variant {variant!r}")
            scope = scope.where(Run.variant_id == variant_id)
        # Calls the runs used (cache hits included) or made (failed ones too).
        used = select(Run.provider_call_id).where(Run.id.in_(scope))
        query = query.where(ProviderCall.id.in_(used) | ProviderCall.made_by_run_id.in_(scope))
    elif variant is not None:
        raise LookupError("--variant needs --experiment (variant keys are per experiment)")
    if status is not None:
        query = query.where(ProviderCall.status == status)
    if limit is not None:
        query = query.limit(limit)
    return [
        CallSummary(
            id=call.id,
            request_hash=call.request_hash,
            provider=call.provider,
            model=call.model,
            status=call.status,
            runs=int(runs),
            cost=call.cost,
            job_id=call.job_id,
            raw_artifact_uri=call.raw_artifact_uri,
            created_at=call.created_at,
        )
        for call, runs in session.execute(query).all()
    ]


def find_calls(session: Session, idents: Sequence[str]) -> list[ProviderCall]:
    """The calls named by ids or request-hash prefixes; LookupError: unknown or ambiguous."""
    found: dict[int, ProviderCall] = {}
    for ident in idents:
        text = ident.strip().lower()
        if text.isdigit() and len(text) < MIN_PREFIX:
            call = session.get(ProviderCall, int(text))
            if call is None:
                raise LookupError(f"no provider call with id {text}")
            found[call.id] = call
            continue
        if len(text) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in text):
            raise LookupError(
                f"{ident!r}: give a call id or at least {MIN_PREFIX} hex digits of a request hash"
            )
        calls = session.scalars(
            select(ProviderCall).where(ProviderCall.request_hash.startswith(text)).limit(2)
        ).all()
        if not calls:
            raise LookupError(f"no provider call whose request hash starts with {text}")
        if len(calls) > 1:
            raise LookupError(f"{text} matches several provider calls: give more digits")
        found[calls[0].id] = calls[0]
    return list(found.values())


def call_runs(session: Session, call_id: int) -> list[tuple[int, str, str]]:
    """``(run id, experiment id, status)`` of the runs that used the call."""
    rows = session.execute(
        select(Run.id, Run.experiment_id, Run.status)
        .where(Run.provider_call_id == call_id)
        .order_by(Run.id)
    ).all()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


@dataclass(frozen=True)
class ForgetResult:
    """What forgetting did."""

    forgotten: list[int]
    #: Calls left alone because a run is making them right now.
    in_flight: list[int]
    #: Raw files no artifact row points at: removed by :func:`remove_files` after the commit.
    unreferenced_files: list[str]
    #: Raw files kept because runs' artifact rows point at them.
    kept_files: list[str]


def forget_calls(session: Session, calls: Sequence[ProviderCall]) -> ForgetResult:
    """Stop serving ``calls`` from the cache (in the caller's transaction; commit it).

    A call being made now (pending or submitted) is left alone: forgetting it
    would let a second run submit the same job while the first is paid for.
    """
    forgotten, in_flight, deleted, kept = [], [], [], []
    for call in calls:
        if call.status in ("pending", "submitted"):
            in_flight.append(call.id)
            continue
        if call.status == "forgotten":
            continue
        # A new key frees the request's hash for the next identical request;
        # the old row keeps its request, job id and cost for the record.
        moved = spec_hash({"forgotten": call.id, "request_hash": call.request_hash})
        session.execute(
            update(ProviderCall)
            .where(ProviderCall.id == call.id, ProviderCall.status == call.status)
            .values(request_hash=moved, status="forgotten")
            .execution_options(synchronize_session=False)
        )
        forgotten.append(call.id)
        uri = call.raw_artifact_uri
        if not uri:
            continue
        referenced = session.scalar(select(func.count()).where(Artifact.uri == uri))
        if referenced:
            kept.append(uri)
            continue
        deleted.append(uri)
    return ForgetResult(forgotten, in_flight, deleted, kept)


def remove_files(uris: Sequence[str]) -> list[str]:
    """Delete the files (after the forgetting was committed); the URIs actually removed.

    ``s3://`` objects are deleted from their bucket (credentials from the environment).
    """
    removed = []
    for uri in uris:
        if uri.startswith("s3://"):
            from reelbench.object_store import S3ArtifactStore, parse_s3_uri
            from reelbench.storage import open_store

            store = open_store(f"s3://{parse_s3_uri(uri).bucket}")
            if isinstance(store, S3ArtifactStore) and store.delete(uri):
                removed.append(uri)
            continue
        try:
            path = path_from_uri(uri)
        except ValueError:
            continue  # not a local file: left where it is
        if path.is_file():
            path.unlink()
            removed.append(uri)
    return removed
