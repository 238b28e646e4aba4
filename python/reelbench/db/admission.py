"""Admission of a paid provider call: fleet limits, then the budget, then the intent.

The provider-call protocol (``reelbench.call_cache``) asks for admission
right before it submits (or resumes polling) a job:

1. :func:`reelbench.db.limits.acquire` takes the fleet-wide slots the call
   needs (in-flight slots, a submit of the per-minute window) or says how
   long to wait;
2. :func:`reelbench.db.budget.reserve` reserves the call's estimated cost
   against the experiment's budget, in the same transaction that records
   the submit intent (the call's status becomes ``submitting`` with its
   idempotency key), so a crash can never leave an intent without its
   reservation or the other way round.

When either says "not now", every slot taken is given back and
:class:`reelbench.errors.Deferred` is raised: the run goes back to the queue
without using an attempt. Nothing here sleeps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from reelbench.db import budget, limits
from reelbench.db.retry import retry_db
from reelbench.errors import Deferred, TerminalError
from reelbench.providers.base import GenerationRequest
from reelbench.providers.pricing import Price, estimate_usd

__all__ = [
    "UNCERTAIN_POLICIES",
    "Admission",
    "PaidCallPolicy",
    "admit",
    "finish",
    "give_back",
]

#: What a run does with a call whose submit may have reached the provider
#: before its worker died (no job id recorded): ``fail`` or ``resubmit``.
UNCERTAIN_POLICIES = ("fail", "resubmit")


@dataclass(frozen=True)
class PaidCallPolicy:
    """What admission needs to know about the run's experiment."""

    experiment_id: int
    #: The spec's ``[[prices]]`` (they override the built-in table).
    prices: tuple[Price, ...] = ()
    on_uncertain_submit: str = "fail"
    #: Lease of the slots taken; the worker's heartbeat renews them with the run's.
    lease_seconds: float = 60.0
    #: How long a run held back by the budget waits before it is looked at again
    #: (raising the budget wakes such runs at once).
    budget_recheck_seconds: float = 60.0


@dataclass
class Admission:
    """What an admitted call holds until it ends."""

    grant: limits.Grant
    estimate_usd: float | None
    spend_id: int | None = None
    released: bool = field(default=False)


def estimate(policy: PaidCallPolicy, request: GenerationRequest) -> float | None:
    """The call's estimated cost in USD from the price tables (None: no price known)."""
    return estimate_usd(request.provider, request.model, request.params, policy.prices)


def admit(
    session: Session,
    policy: PaidCallPolicy,
    request: GenerationRequest,
    *,
    call_id: int,
    run_id: int,
    attempt: int,
    intent: Any = None,
    submit: bool = True,
    rng: random.Random | None = None,
) -> Admission | None:
    """Take slots and reserve the budget for one call, or raise :class:`Deferred`.

    ``submit=False`` (resuming a job that already exists): only an in-flight
    slot is taken; no rate slot, no reservation. ``intent``: the UPDATE that
    records the submit intent, executed with the reservation (None when the
    caller records it itself). Returns None when the intent hit no row (the
    call was taken over meanwhile).
    """
    grant = retry_db(
        "taking a provider slot",
        lambda: limits.acquire(
            session,
            request.provider,
            request.model,
            run_id=run_id,
            attempt=attempt,
            lease_seconds=policy.lease_seconds,
            rng=rng,
            submit=submit,
        ),
        session=session,
    )
    if isinstance(grant, limits.Wait):
        raise Deferred(grant.reason, retry_in=grant.seconds, kind="limit")
    cost = estimate(policy, request)
    admission = Admission(grant=grant, estimate_usd=cost)
    if not submit:
        return admission
    try:
        state = budget.budget_state(session, policy.experiment_id)
        session.commit()
        if cost is None and state.max_usd is not None:
            raise TerminalError(
                f"no price is known for {request.provider}"
                f"{':' + request.model if request.model else ''}, so the budget of "
                f"${state.max_usd:.2f} cannot be enforced: add a [[prices]] entry "
                "(provider, model, usd_per_second) to the spec"
            )
        existing = budget.open_spend_of_call(session, call_id)
        if existing is not None:
            # A resubmit of an uncertain call: its reservation still counts.
            admission.spend_id = existing
            if intent is not None and not _execute(session, intent):
                give_back(session, admission)
                return None
            return admission
        reserved = retry_db(
            "reserving the budget",
            lambda: budget.reserve(
                session,
                experiment_id=policy.experiment_id,
                run_id=run_id,
                attempt=attempt,
                call_id=call_id,
                provider=request.provider,
                model=request.model,
                estimate_usd=cost or 0.0,
                with_statement=intent,
            ),
            session=session,
        )
    except BaseException:
        give_back(session, admission)
        raise
    if reserved is None:
        give_back(session, admission)
        return None
    if isinstance(reserved, budget.BudgetState):
        give_back(session, admission)
        raise Deferred(
            f"{budget.BUDGET_WAIT}: ${reserved.committed_usd:.2f} of "
            f"${reserved.max_usd or 0:.2f} spent or committed, this call needs "
            f"${cost or 0:.2f}; raise it with `reelbench budget EXPERIMENT --max-usd N`",
            retry_in=policy.budget_recheck_seconds,
            kind="budget",
        )
    admission.spend_id = reserved
    return admission


def _execute(session: Session, stmt: Any) -> bool:
    def write() -> bool:
        hit = bool(getattr(session.execute(stmt), "rowcount", 0) == 1)
        session.commit()
        return hit

    return retry_db("recording a submit intent", write, session=session)


def give_back(session: Session, admission: Admission) -> None:
    """Return the slots of an admission (its call ended or never started)."""
    if admission.released:
        return
    admission.released = True
    retry_db(
        "giving back a provider slot",
        lambda: limits.release(session, admission.grant),
        session=session,
    )


def finish(
    session: Session, admission: Admission | None, call_id: int, cost: float | None
) -> float | None:
    """Record the cost of a call that delivered: the provider's, else the estimate.

    Returns the cost recorded. The slots go back too.
    """
    estimate_usd_ = admission.estimate_usd if admission else None
    recorded = cost if cost is not None else estimate_usd_
    source = "provider" if cost is not None else "price"
    retry_db(
        "recording a cost",
        lambda: budget.charge(session, call_id, recorded or 0.0, source),
        session=session,
    )
    if admission is not None:
        give_back(session, admission)
    return recorded
