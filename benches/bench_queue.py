"""Queue throughput: reelbench workers draining no-op runs vs raw-SQL workers, same run.

PostgreSQL: 4 worker processes drain 20,000 runs. The candidate is
``reelbench worker`` (SQLAlchemy, context building, heartbeat, fenced
completion with attempt history); the baseline is a psycopg loop running the
same SKIP LOCKED claim statement and the same fenced completion, with no ORM
and nothing else. SQLite: one process drains 5,000 runs; its baseline is the
same claim/complete loop on the sqlite3 module.

Targets: PostgreSQL >= 1,000 runs/s and >= 0.25x the raw baseline; SQLite >=
500 runs/s. Rates are in each benchmark's ``extra_info`` (``runs_per_second``).

Run: ``make bench`` or ``pytest benches/bench_queue.py --benchmark-enable``.
This file also is the raw baseline worker (``python bench_queue.py raw-pg URL``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from postgres_cluster import PostgresCluster, cluster, have_server_binaries  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from reelbench.db.claim import _PG_CLAIM, LOST_MESSAGE  # noqa: E402
from reelbench.db.engine import open_database  # noqa: E402
from reelbench.db.models import Run  # noqa: E402
from reelbench.spec import parse_spec  # noqa: E402
from reelbench.submit import submit_spec  # noqa: E402

PG_RUNS = int(os.environ.get("REELBENCH_BENCH_PG_RUNS", "20000"))
SQLITE_RUNS = int(os.environ.get("REELBENCH_BENCH_SQLITE_RUNS", "5000"))
PROCESSES = 4
CONCURRENCY = int(
    os.environ.get("REELBENCH_BENCH_CONCURRENCY", "8")
)  # runs in flight per reelbench worker = claim batch size of the baseline

# --- the raw baselines (run as separate processes) ---------------------------

_RAW_COMPLETE = (
    "UPDATE runs SET status = 'succeeded', canon_uri = %s, canon_sha256 = %s, "
    "finished_at = now(), lease_expires_at = NULL "
    "WHERE id = %s AND attempt = %s AND status = 'running'"
)
_RAW_CLOSE_ATTEMPT = (
    "UPDATE run_attempts SET outcome = 'succeeded', finished_at = now() "
    "WHERE run_id = %s AND attempt = %s"
)


def raw_pg_worker(url: str) -> None:
    """Drain the queue with psycopg alone: the claim of db/claim.py, fenced completion."""
    import psycopg

    claim_sql = re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", _PG_CLAIM.format(experiment_filter=""))
    worker_id = f"raw-{os.getpid()}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        while True:
            with conn.transaction():
                # The claim also opens the attempt rows (see db/claim.py).
                params = {
                    "limit": CONCURRENCY,
                    "worker_id": worker_id,
                    "lease_seconds": 60,
                    "lost": LOST_MESSAGE,
                }
                rows = conn.execute(claim_sql, params).fetchall()
            if not rows:
                return
            for run_id, attempt, _old in rows:
                with conn.transaction():
                    done = conn.execute(
                        _RAW_COMPLETE, ("memory://noop", "0" * 64, run_id, attempt)
                    ).rowcount
                    if done:
                        conn.execute(_RAW_CLOSE_ATTEMPT, (run_id, attempt))


def raw_sqlite_worker(path: str) -> None:
    """Drain the queue with the sqlite3 module alone: BEGIN IMMEDIATE claim, fenced completion."""
    from datetime import UTC, datetime, timedelta

    def ts(dt: datetime) -> str:
        return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=60000")
    worker_id = f"raw-{os.getpid()}"
    while True:
        now = datetime.now(UTC)
        conn.execute("BEGIN IMMEDIATE")
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM runs WHERE (status = 'queued' AND (not_before IS NULL OR "
                "not_before <= ?)) OR (status = 'running' AND lease_expires_at < ?) "
                "ORDER BY priority DESC, id LIMIT ?",
                (ts(now), ts(now), CONCURRENCY),
            )
        ]
        rows = conn.execute(
            f"UPDATE runs SET status = 'running', attempt = attempt + 1, worker_id = ?, "
            f"lease_expires_at = ?, started_at = ?, not_before = NULL "
            f"WHERE id IN ({','.join('?' * len(ids))}) RETURNING id, attempt",
            (worker_id, ts(now + timedelta(seconds=60)), ts(now), *ids),
        ).fetchall()
        conn.executemany(
            "INSERT INTO run_attempts (run_id, attempt, worker_id, started_at) VALUES (?,?,?,?)",
            [(r[0], r[1], worker_id, ts(now)) for r in rows],
        )
        conn.execute("COMMIT")
        if not rows:
            return
        for run_id, attempt in rows:
            end = ts(datetime.now(UTC))
            conn.execute("BEGIN IMMEDIATE")
            done = conn.execute(
                "UPDATE runs SET status = 'succeeded', canon_uri = ?, canon_sha256 = ?, "
                "finished_at = ?, lease_expires_at = NULL "
                "WHERE id = ? AND attempt = ? AND status = 'running'",
                ("memory://noop", "0" * 64, end, run_id, attempt),
            ).rowcount
            if done:
                conn.execute(
                    "UPDATE run_attempts SET outcome = 'succeeded', finished_at = ? "
                    "WHERE run_id = ? AND attempt = ?",
                    (end, run_id, attempt),
                )
            conn.execute("COMMIT")


# --- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    given = os.environ.get("REELBENCH_TEST_POSTGRES_URL")
    if given:
        yield PostgresCluster(url=given)
        return
    if not have_server_binaries():
        pytest.skip("no PostgreSQL server binaries")
    with cluster() as running:
        yield running


def _queue(url: str, runs: int) -> None:
    items = runs // 100
    spec = parse_spec(
        {
            "experiment": {"name": "bench"},
            "items": [{"id": f"i{n}", "prompt": f"p{n}"} for n in range(items)],
            "variants": [{"key": "v", "provider": "synthetic", "repeats": 100}],
        }
    )
    db = open_database(url)
    try:
        submit_spec(db.sessions, spec)
    finally:
        db.dispose()


def _fresh_pg_database(pg: PostgresCluster, runs: int) -> str:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = pg.database_url(name)
    _queue(url, runs)
    return url


def _succeeded(url: str) -> int:
    db = open_database(url)
    try:
        with db.sessions() as session:
            return int(
                session.execute(select(func.count()).where(Run.status == "succeeded")).scalar_one()
            )
    finally:
        db.dispose()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "tests")}


def _reelbench_worker(url: str, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from reelbench.cli import main; main()", "worker",
         "--db", url, "--artifacts", str(tmp / "artifacts"), "--drain", "--quiet",
         "--concurrency", str(CONCURRENCY), "--processor", "queue_workers:NoopProcessor"],
        env=_env(),
    )  # fmt: skip


def _raw_worker(kind: str, target: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, kind, target], env=_env())


def _drain(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        assert proc.wait(timeout=1800) == 0


def _measure(benchmark: Any, setup: Any, start: Any, runs: int, **info: Any) -> dict[str, float]:
    figures: dict[str, float] = {}

    def timed(url: str) -> None:
        began = time.perf_counter()
        _drain(start(url))
        elapsed = time.perf_counter() - began
        assert _succeeded(url) == runs
        figures["seconds"] = elapsed
        figures["runs_per_second"] = runs / elapsed

    benchmark.pedantic(timed, setup=lambda: ((setup(),), {}), rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    benchmark.extra_info.update(figures)
    benchmark.extra_info["runs"] = runs
    return figures


@pytest.mark.benchmark(group="queue-postgresql")
def test_pg_raw_psycopg_baseline(benchmark: Any, pg: PostgresCluster) -> None:
    figures = _measure(
        benchmark,
        lambda: _fresh_pg_database(pg, PG_RUNS),
        lambda url: [_raw_worker("raw-pg", url) for _ in range(PROCESSES)],
        PG_RUNS,
        role="baseline",
        baseline="raw psycopg (same SKIP LOCKED claim and fenced completion, no ORM)",
    )
    print(f"\nraw psycopg, 4 processes: {figures['runs_per_second']:.0f} runs/s")


@pytest.mark.benchmark(group="queue-postgresql")
def test_pg_reelbench_workers(benchmark: Any, pg: PostgresCluster, tmp_path: Path) -> None:
    figures = _measure(
        benchmark,
        lambda: _fresh_pg_database(pg, PG_RUNS),
        lambda url: [_reelbench_worker(url, tmp_path) for _ in range(PROCESSES)],
        PG_RUNS,
        role="candidate",
        target=0.25,
        target_runs_per_second=1000,
    )
    print(f"\nreelbench worker, 4 processes: {figures['runs_per_second']:.0f} runs/s")


def _fresh_sqlite(tmp_path: Path) -> str:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.db"
    url = f"sqlite:///{path}"
    _queue(url, SQLITE_RUNS)
    return url


@pytest.mark.benchmark(group="queue-sqlite")
def test_sqlite_raw_baseline(benchmark: Any, tmp_path: Path) -> None:
    figures = _measure(
        benchmark,
        lambda: _fresh_sqlite(tmp_path),
        lambda url: [_raw_worker("raw-sqlite", url.removeprefix("sqlite:///"))],
        SQLITE_RUNS,
        role="baseline",
        baseline="raw sqlite3 (same BEGIN IMMEDIATE claim and fenced completion)",
    )
    print(f"\nraw sqlite3, 1 process: {figures['runs_per_second']:.0f} runs/s")


@pytest.mark.benchmark(group="queue-sqlite")
def test_sqlite_reelbench_worker(benchmark: Any, tmp_path: Path) -> None:
    figures = _measure(
        benchmark,
        lambda: _fresh_sqlite(tmp_path),
        lambda url: [_reelbench_worker(url, tmp_path)],
        SQLITE_RUNS,
        role="candidate",
        target_runs_per_second=500,
    )
    print(f"\nreelbench worker, 1 process: {figures['runs_per_second']:.0f} runs/s")


if __name__ == "__main__":
    kind, target = sys.argv[1], sys.argv[2]
    raw_pg_worker(target) if kind == "raw-pg" else raw_sqlite_worker(target)
