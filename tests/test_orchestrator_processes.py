"""Real worker processes: exactly-once under contention, SIGKILL, SIGTERM, a database restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postgres_cluster import PostgresCluster
from queue_setup import attempt_rows, queue_runs, run_row
from queue_workers import RecordingProcessor
from sqlalchemy import func, select

from reelbench.db.engine import Database, open_database
from reelbench.db.models import Metric, Run
from reelbench.orchestrator import WorkerOrchestrator

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.dispose()


_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _kill_leftover_workers() -> Iterator[None]:
    # A failing test must not leave worker processes behind.
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def start_worker(
    url: str,
    tmp_path: Path,
    *args: str,
    sleep: float = 0.0,
    log_name: str = "worker",
    processor: str = "RecordingProcessor",
) -> subprocess.Popen[bytes]:
    """``reelbench worker`` in its own process, with the recording test processor."""
    (tmp_path / "record").mkdir(exist_ok=True)
    (tmp_path / "started").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        "RB_TEST_RECORD_DIR": str(tmp_path / "record"),
        "RB_TEST_STARTED_DIR": str(tmp_path / "started"),
        "RB_TEST_SLEEP": str(sleep),
    }
    # The child keeps its own copy of the log's file descriptor.
    with (tmp_path / f"{log_name}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from reelbench.cli import main; main()", "worker",
             "--db", url, "--artifacts", str(tmp_path / "artifacts"),
             "--processor", f"queue_workers:{processor}", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _started.append(proc)
    return proc


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def started(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "started").iterdir())


def ledger(tmp_path: Path) -> Counter[int]:
    return Counter(int(p.name.split("-")[0]) for p in (tmp_path / "record").iterdir())


def worker_log(tmp_path: Path, name: str = "worker") -> str:
    return (tmp_path / f"{name}.log").read_text(errors="replace")


def test_four_worker_processes_process_each_run_exactly_once(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    ids = queue_runs(db, items=100, repeats=20)
    assert len(ids) == 2000
    workers = [
        start_worker(database_url, tmp_path, "--drain", "--concurrency", "4", log_name=f"w{n}")
        for n in range(4)
    ]
    for n, proc in enumerate(workers):
        assert proc.wait(timeout=240) == 0, worker_log(tmp_path, f"w{n}")
    processed = ledger(tmp_path)
    assert set(processed) == set(ids)  # none lost
    assert max(processed.values()) == 1  # none processed twice
    with db.sessions() as session:
        states = dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        attempts = set(session.execute(select(Run.attempt)).scalars())
    assert states == {"succeeded": 2000}
    assert attempts == {1}
    # the work was shared: every worker process recorded some of it
    pids = {p.name.split("-")[2] for p in (tmp_path / "record").iterdir()}
    assert len(pids) == 4


def test_killed_worker_run_is_completed_by_another_after_lease_expiry(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    (run_id,) = queue_runs(db)
    victim = start_worker(database_url, tmp_path, "--lease-seconds", "1.5", sleep=600)
    try:
        wait_for(lambda: started(tmp_path) == [f"{run_id}-1"], what="the run to start")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    assert run_row(db, run_id).status == "running"
    rescuer = WorkerOrchestrator(
        db.sessions,
        RecordingProcessor(record_dir=str(tmp_path / "record")),
        worker_id="rescuer",
        lease_seconds=5,
        poll_seconds=0.1,
        artifact_root=tmp_path / "artifacts",
    )
    stats = rescuer.run_until_idle()  # waits for the dead worker's lease to expire
    assert stats.succeeded == 1
    row = run_row(db, run_id)
    assert (row.status, row.attempt, row.worker_id) == ("succeeded", 2, "rescuer")
    history = attempt_rows(db, run_id)
    assert [a["outcome"] for a in history] == ["lost", "succeeded"]
    assert history[0]["worker_id"] != "rescuer" and history[1]["worker_id"] == "rescuer"
    assert ledger(tmp_path) == Counter({run_id: 1})


def test_sigterm_lets_in_flight_runs_finish_and_exits_zero(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    ids = queue_runs(db, items=3)
    proc = start_worker(
        database_url, tmp_path, "--concurrency", "3", "--grace-seconds", "60", sleep=1.0
    )
    wait_for(lambda: len(started(tmp_path)) == 3, what="three runs in flight")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, worker_log(tmp_path)
    assert {run_row(db, i).status for i in ids} == {"succeeded"}
    assert "SIGTERM received" in worker_log(tmp_path)


def test_sigterm_hands_runs_back_when_the_grace_period_ends(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    ids = queue_runs(db, items=2)
    proc = start_worker(
        database_url, tmp_path, "--concurrency", "2", "--grace-seconds", "0.5", sleep=600
    )
    wait_for(lambda: len(started(tmp_path)) == 2, what="two runs in flight")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, worker_log(tmp_path)
    for run_id in ids:
        row = run_row(db, run_id)
        # nothing left running under a live lease: back in the queue, claimable now
        assert (row.status, row.lease_expires_at, row.not_before) == ("queued", None, None)
        assert [a["outcome"] for a in attempt_rows(db, run_id)] == ["released"]
    assert ledger(tmp_path) == Counter()


def test_worker_survives_a_postgresql_restart_mid_run(
    postgres_cluster: PostgresCluster, postgres_url: str, tmp_path: Path
) -> None:
    if not postgres_cluster.restartable:
        pytest.skip("REELBENCH_TEST_POSTGRES_URL is an external server; cannot restart it")
    db = open_database(postgres_url)
    try:
        ids = queue_runs(db, items=3)
        proc = start_worker(
            postgres_url, tmp_path, "--drain", "--lease-seconds", "3", sleep=1.0,
            processor="RowsProcessor",
        )  # fmt: skip
        wait_for(lambda: len(started(tmp_path)) >= 1, what="a run in flight")
        # Down for longer than the run takes: its heartbeat and the storing of
        # its result both meet a dead server and must wait for it.
        postgres_cluster.stop()
        time.sleep(2.5)
        postgres_cluster.start()
        assert proc.wait(timeout=120) == 0, worker_log(tmp_path)
        # every run succeeded on its first attempt: no result was lost with the
        # dropped connections, nothing was processed twice
        assert {(run_row(db, i).status, run_row(db, i).attempt) for i in ids} == {("succeeded", 1)}
        assert ledger(tmp_path) == Counter(dict.fromkeys(ids, 1))
        assert "database unavailable" in worker_log(tmp_path)
        # the processor's rows were saved with each result, even the one whose
        # commit the outage cut off: one metric row and the provider-call link
        with db.sessions() as session:
            for run_id in ids:
                metrics = session.scalars(select(Metric).where(Metric.run_id == run_id)).all()
                assert [(m.name, m.value) for m in metrics] == [("processed", 1.0)]
                assert session.get(Run, run_id).provider_call_id is not None  # type: ignore[union-attr]
    finally:
        db.dispose()
