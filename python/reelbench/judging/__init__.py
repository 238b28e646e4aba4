"""Human judgement: blind pairwise votes, Bradley-Terry ratings, and metric agreement.

- :mod:`~reelbench.judging.storage`: the ``judgments`` table, read and written;
- :mod:`~reelbench.judging.selection`: the next pair a rater sees;
- :mod:`~reelbench.judging.ratings`: Bradley-Terry strengths, bootstrap intervals;
- :mod:`~reelbench.judging.agreement`: rater agreement, position bias, metric agreement.

:func:`summarize_judging` ties them together for reports; :func:`load_judgments`
reads an experiment's votes from a database URL, for notebooks.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from reelbench.judging.agreement import (
    MetricAgreement,
    PositionBias,
    RaterAgreement,
    metric_agreement,
    position_bias,
    rater_agreement,
)
from reelbench.judging.ratings import Ratings, compute_ratings
from reelbench.judging.storage import Vote, VoteRefused, load_votes, record_vote
from reelbench.results import RunRecord

__all__ = [
    "JudgingSummary",
    "Vote",
    "VoteRefused",
    "load_judgments",
    "load_votes",
    "record_vote",
    "summarize_judging",
]


@dataclass(frozen=True)
class JudgingSummary:
    """Everything a report shows about the human votes of one experiment."""

    ratings: Ratings
    agreement: RaterAgreement
    position: PositionBias
    metrics: list[MetricAgreement]
    both_bad: int


def summarize_judging(
    votes: Sequence[Vote],
    runs: Sequence[RunRecord],
    metric_names: Sequence[str],
    *,
    bootstrap: int | None = None,
) -> JudgingSummary:
    """Ratings, agreement, position bias and metric agreement of ``votes``."""
    variants = list(dict.fromkeys(r.variant_key for r in runs))
    kwargs = {} if bootstrap is None else {"bootstrap": bootstrap}
    ratings = compute_ratings(votes, variants, **kwargs)
    run_metrics = {
        r.run_id: {name: r.metric(name) for name in metric_names}
        for r in runs
        if r.status == "succeeded"
    }
    means: dict[str, dict[str, float | None]] = {}
    for v in variants:
        succeeded = [r for r in runs if r.variant_key == v and r.status == "succeeded"]
        means[v] = {}
        for name in metric_names:
            values = [x for r in succeeded if (x := r.metric(name)) is not None]
            means[v][name] = statistics.fmean(values) if values else None
    return JudgingSummary(
        ratings=ratings,
        agreement=rater_agreement(votes),
        position=position_bias(votes),
        metrics=metric_agreement(votes, ratings, run_metrics, means, metric_names),
        both_bad=sum(v.outcome == "both_bad" for v in votes if not v.stale),
    )


def load_judgments(experiment: str | int, db: str | None = None) -> list[Vote]:
    """Every vote of ``experiment`` (a name or an id), oldest first, stale ones marked.

    ``db`` as for :func:`reelbench.load_results`.

    >>> import pandas as pd                                   # doctest: +SKIP
    >>> votes = load_judgments("demo")                        # doctest: +SKIP
    >>> pd.DataFrame([v.as_dict() for v in votes])            # doctest: +SKIP
    """
    from reelbench.results import _open_engine, find_experiment, resolve_db_url

    engine = _open_engine(resolve_db_url(db))
    try:
        with Session(engine) as session:
            return load_votes(session, find_experiment(session, experiment).id)
    finally:
        engine.dispose()
