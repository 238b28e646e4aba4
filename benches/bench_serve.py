"""Judging server under load: 20 raters voting at once against one server on loopback.

``reelbench serve`` runs as its own process (as deployed: the raters' clients
do not share its interpreter) on a 127.0.0.1 port with a SQLite database
holding the report fixture (3 items x 3 variants x 2 repeats). Twenty
threads, each one rater with its own httpx client, vote as fast as the
server answers; one measured step is "vote + next pair": the
POST of the vote and the judge page the redirect leads to (the vote is
committed and the next pair chosen from every vote so far before that page
is sent). Every vote must be stored exactly once and no answer may be a 5xx.

Reported in ``extra_info``: p50, p95 and max latency of the step in
milliseconds, and votes per second; for comparison, the median step of one
rater voting alone on the same server just before (its votes count too).
Votes per rater: ``REELBENCH_BENCH_SERVE_VOTES`` (default 25, so the whole
run stays well under a minute on two cores).

Run: ``make bench`` or ``pytest benches/bench_serve.py --benchmark-enable``.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from report_data import fill_database  # noqa: E402
from serve_load import load, rater, serve_process  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from reelbench.db.engine import make_engine, upgrade  # noqa: E402
from reelbench.judging.storage import load_votes  # noqa: E402

RATERS = 20
VOTES = int(os.environ.get("REELBENCH_BENCH_SERVE_VOTES", "25"))


def test_twenty_raters_vote_at_once(benchmark: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reelbench.db'}"
    upgrade(url)
    fx = fill_database(url, tmp_path)
    results: dict[str, Any] = {}

    def run(base: str) -> None:
        results["latencies"], results["errors"], results["wall"] = load(
            base, fx.experiment_id, RATERS, VOTES
        )

    alone: list[float] = []
    for base in serve_process(url):
        # The same step for one rater with the server to itself, first: the unloaded time.
        rater(base, fx.experiment_id, RATERS, VOTES, alone, results.setdefault("solo_errors", []))
        benchmark.pedantic(run, args=(base,), rounds=1, iterations=1)
    assert results["solo_errors"] == []
    latencies, errors, wall = results["latencies"], results["errors"], results["wall"]
    assert errors == []
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            votes = load_votes(session, fx.experiment_id)
    finally:
        engine.dispose()
    assert len(votes) == (RATERS + 1) * VOTES == len({v.vote_uid for v in votes})
    assert {v.rater for v in votes} == {f"rater {n}" for n in range(RATERS + 1)}
    ms = sorted(1000 * x for x in latencies)
    cuts = statistics.quantiles(ms, n=100)
    benchmark.extra_info.update(
        {
            "raters": RATERS,
            "votes": len(votes),
            "p50_ms": round(cuts[49], 1),
            "p95_ms": round(cuts[94], 1),
            "max_ms": round(ms[-1], 1),
            "one_rater_alone_p50_ms": round(1000 * statistics.median(alone), 1),
            "votes_per_second": round(len(votes) / wall, 1),
        }
    )
    print(f"\njudging server: {benchmark.extra_info}")
