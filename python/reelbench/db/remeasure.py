"""Queueing remeasures: finished runs whose metrics are computed again from their canonical video.

A remeasure is queued work on the run's own row: the run goes back to
``queued`` with ``task = 'remeasure'`` and the metrics to compute, so workers
claim it with the same claim, lease, fencing token, retries and progress as
any run (``status`` counts it as queued, then running). Its processing only
decodes the canonical video (no provider call, no re-encode) and replaces
the run's values of those metrics in the fenced commit of its result
(``reelbench.remeasure``). A remeasure that fails for good, or is cancelled,
leaves the run ``succeeded`` with its earlier metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from reelbench.db.claim import REMEASURE
from reelbench.db.experiments import find_experiment
from reelbench.db.models import Run, RunStatus
from reelbench.spec import RetryPolicy

__all__ = ["queue_remeasure"]


def queue_remeasure(session: Session, experiment: str, metrics: Sequence[str] = ()) -> int:
    """Queue a remeasure of every succeeded run of ``experiment``; returns how many. Commits.

    ``metrics``: metric groups (``motion``, ``chroma``...) or metric plugin
    names; empty means the experiment's current ``[metrics]`` (groups and
    plugins). Runs already queued, running, failed or cancelled are left alone.
    """
    found = find_experiment(session, experiment)
    policy = RetryPolicy.model_validate((found.spec or {}).get("retry", {}))
    result = cast(
        CursorResult[Any],
        session.execute(
            update(Run)
            .where(
                Run.experiment_id == found.id,
                Run.status == RunStatus.SUCCEEDED.value,
                Run.canon_uri.is_not(None),
            )
            .values(
                status=RunStatus.QUEUED.value,
                task=REMEASURE,
                remeasure={"metrics": list(metrics)},
                # the attempt counter is the fencing token and only grows
                max_attempts=Run.attempt + policy.max_attempts,
                not_before=None,
                worker_id=None,
                lease_expires_at=None,
                error_class=None,
                error_message=None,
                error_traceback=None,
            )
            .execution_options(synchronize_session=False)
        ),
    )
    session.commit()
    return int(result.rowcount or 0)
