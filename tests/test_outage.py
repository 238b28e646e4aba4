"""A database that restarts under a working fleet costs time, never an attempt.

The real pipeline (provider-call cache, normalization, metrics) in a real
``reelbench worker`` process, PostgreSQL crashed and restarted
(``pg_ctl stop -m immediate``, down for 3 s) while runs are in flight: every run must
succeed on its first attempt, with ``max_attempts = 1`` so that a single
attempt lost to the outage would fail its run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from postgres_cluster import PostgresCluster
from processor_support import SMALL_CANONICAL
from sqlalchemy import func, select

from reelbench.db.engine import open_database
from reelbench.db.models import ProviderCall, Run, RunAttempt
from reelbench.spec import parse_spec
from reelbench.submit import submit_spec


def test_postgresql_crash_mid_run_costs_no_attempt(
    postgres_cluster: PostgresCluster, postgres_url: str, tmp_path: Path
) -> None:
    if not postgres_cluster.restartable:
        pytest.skip("REELBENCH_TEST_POSTGRES_URL is an external server; cannot restart it")
    spec = parse_spec({
        "experiment": {"name": "outage"}, "canonical": SMALL_CANONICAL,
        "retry": {"max_attempts": 1},
        "items": [{"id": f"i{n}", "prompt": f"prompt {n}"} for n in range(12)],
        "variants": [{"key": "slow", "provider": "synthetic", "params": {
            "width": 64, "height": 48, "fps": 12, "seconds": 0.5, "latency_seconds": 1.5}}],
    })  # fmt: skip
    db = open_database(postgres_url)
    log = tmp_path / "worker.log"
    try:
        submit_spec(db.sessions, spec)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reelbench", "worker", "--db", postgres_url,
                 "--artifacts", str(tmp_path / "artifacts"), "--concurrency", "4", "--drain"],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
            )  # fmt: skip
        try:
            # Wait until jobs are submitted and being polled, then crash the server.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with db.sessions() as session:
                    if session.scalar(select(func.count()).where(Run.status == "running")):
                        break
                time.sleep(0.1)
            time.sleep(0.5)
            db.dispose()
            # Crashed, and down long enough that the worker's polls and
            # renewals meet the dead server (a restart alone may fall between them).
            postgres_cluster.stop("immediate")
            time.sleep(3)
            postgres_cluster.start()
            assert proc.wait(timeout=240) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
        with db.sessions() as session:
            runs = session.execute(select(Run.status, Run.attempt, Run.error_message)).all()
            assert {(r.status, r.attempt) for r in runs} == {("succeeded", 1)}, runs
            outcomes = session.scalars(select(RunAttempt.outcome)).all()
            assert outcomes == ["succeeded"] * 12
            # One provider call per request: nothing was paid for twice.
            assert session.scalar(select(func.count()).select_from(ProviderCall)) == 12
        assert "database unavailable" in log.read_text(), "the outage hit the worker"
    finally:
        db.dispose()
