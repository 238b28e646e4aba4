"""Load: 20 raters x 100 votes at once against one ``reelbench serve``, on SQLite and PostgreSQL.

Every vote is stored exactly once, no answer is a 5xx, every rater's votes
are there. Latencies are reported by the benchmark (benches/bench_serve.py),
not asserted: machines here are shared. ``REELBENCH_TEST_SERVE_VOTES``
changes the votes per rater.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from report_data import fill_database
from serve_load import load, serve_process
from sqlalchemy.orm import Session

from reelbench.db.engine import make_engine
from reelbench.judging.storage import load_votes

RATERS = 20
VOTES = int(os.environ.get("REELBENCH_TEST_SERVE_VOTES", "100"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_twenty_raters_times_a_hundred_votes_each_stored_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    fx = fill_database(database_url, tmp_path)
    for base in serve_process(database_url):
        latencies, errors, _ = load(base, fx.experiment_id, RATERS, VOTES)
    assert errors == []
    assert len(latencies) == RATERS * VOTES
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            votes = load_votes(session, fx.experiment_id)
    finally:
        engine.dispose()
    assert len(votes) == RATERS * VOTES == len({v.vote_uid for v in votes})
    per_rater = {f"rater {n}": 0 for n in range(RATERS)}
    for v in votes:
        per_rater[v.rater] += 1
    assert set(per_rater.values()) == {VOTES}
    assert all(v.left_variant != v.right_variant for v in votes)
