"""Stopping ``reelbench run`` halfway and running it again finishes the rest, nothing twice.

The command runs as a real process (the installed console script), stopped
with Ctrl-C (SIGINT: clean stop) or killed outright (SIGKILL: a crash).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from reelbench.db.claim import reclaim_dead_local_runs
from reelbench.db.engine import open_database
from reelbench.db.models import ProviderCall, Run, RunAttempt
from reelbench.spec import load_spec
from reelbench.submit import submit_spec

REELBENCH = str(Path(sys.executable).with_name("reelbench"))

SPEC = """
[experiment]
name = "resume"

[canonical]
width = 64
height = 48
fps = 8
crf = 30
preset = "ultrafast"

[[items]]
id = "a"
prompt = "first"

[[items]]
id = "b"
prompt = "second"

[[variants]]
key = "slow"
provider = "synthetic"
model = "orbit"
repeats = 6
# Each provider call takes a moment, so the run can be stopped halfway.
params = { seconds = 0.5, width = 64, height = 48, fps = 8, latency_seconds = 0.4 }
"""
TOTAL_RUNS = 12


def start(spec: Path, url: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [REELBENCH, "run", str(spec), "--db", url, "--artifacts", str(cwd / "art"),
         "--workers", "2", "--report", str(cwd / "report")],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def counts(url: str) -> dict[str, int]:
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}  # not created yet (connecting would create an empty file)
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            rows = session.execute(select(Run.status, func.count()).group_by(Run.status))
            return {status: n for status, n in rows}
    except sa_exc.OperationalError:  # the database may not exist yet
        return {}
    finally:
        engine.dispose()


def wait_for_succeeded(url: str, proc: subprocess.Popen[str], at_least: int) -> None:
    deadline = time.monotonic() + 120
    while counts(url).get("succeeded", 0) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


Snapshot = dict[int, tuple[int, str | None, int | None, datetime | None]]


def snapshot(url: str) -> tuple[Snapshot, dict[int, tuple[str, datetime | None]], dict[int, int]]:
    """Succeeded runs (attempt, canon hash, call), succeeded calls, attempts per run."""
    engine = create_engine(url)
    with Session(engine) as session:
        runs = {
            r.id: (r.attempt, r.canon_sha256, r.provider_call_id, r.finished_at)
            for r in session.scalars(select(Run).where(Run.status == "succeeded"))
        }
        calls = {
            c.id: (c.request_hash, c.finished_at)
            for c in session.scalars(select(ProviderCall).where(ProviderCall.status == "succeeded"))
        }
        rows = session.execute(select(RunAttempt.run_id, func.count()).group_by(RunAttempt.run_id))
        attempts = {run_id: n for run_id, n in rows}
    engine.dispose()
    return runs, calls, attempts


def assert_resumed_without_repeats(url: str, runs: Snapshot, calls: dict, attempts: dict) -> None:
    runs_after, calls_after, attempts_after = snapshot(url)
    assert len(runs_after) == TOTAL_RUNS
    # Succeeded runs were not run again: same attempt, same output, same finish time.
    for run_id, before in runs.items():
        assert runs_after[run_id] == before
        assert attempts_after[run_id] == attempts[run_id]
    # Provider calls that succeeded were not made again.
    for call_id, before in calls.items():
        assert calls_after[call_id] == before
    # One provider call per distinct request, no duplicates.
    assert len(calls_after) == TOTAL_RUNS
    assert len({h for h, _ in calls_after.values()}) == TOTAL_RUNS


def test_ctrl_c_stops_cleanly_and_the_same_command_finishes_the_rest(
    database_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "resume.toml"
    spec.write_text(SPEC)
    proc = start(spec, database_url, tmp_path)
    wait_for_succeeded(database_url, proc, 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again" in err
    stopped = counts(database_url)
    # Clean stop: nothing left running, some work still queued.
    assert stopped.get("running", 0) == 0
    assert 3 <= stopped.get("succeeded", 0) < TOTAL_RUNS
    assert stopped.get("queued", 0) == TOTAL_RUNS - stopped["succeeded"]
    assert (tmp_path / "report" / "index.html").is_file()  # partial report written

    runs, calls, attempts = snapshot(database_url)
    second = start(spec, database_url, tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert f"{TOTAL_RUNS} succeeded" in out
    assert_resumed_without_repeats(database_url, runs, calls, attempts)


def test_killed_run_is_resumed_and_its_in_flight_runs_taken_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reelbench.db'}"
    spec = tmp_path / "resume.toml"
    spec.write_text(SPEC)
    proc = start(spec, url, tmp_path)
    wait_for_succeeded(url, proc, 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    left_running = counts(url).get("running", 0)

    runs, calls, attempts = snapshot(url)
    second = start(spec, url, tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert f"{TOTAL_RUNS} succeeded" in out
    if left_running:
        # The dead process's runs were freed at once rather than after their lease.
        assert f"{left_running} taken back from a stopped run" in err
    assert_resumed_without_repeats(url, runs, calls, attempts)


@pytest.mark.skipif(not Path(REELBENCH).exists(), reason="console script not installed")
def test_console_script_is_installed() -> None:
    assert os.access(REELBENCH, os.X_OK)


def test_only_runs_of_dead_local_processes_are_taken_back(
    database_url: str, tmp_path: Path
) -> None:
    spec_path = tmp_path / "resume.toml"
    spec_path.write_text(SPEC)
    db = open_database(database_url)
    try:
        submitted = submit_spec(db.sessions, load_spec(spec_path))
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        host = socket.gethostname()
        later = datetime.now(UTC) + timedelta(minutes=10)
        owners = {
            f"{host}:{dead.pid}:aaaaaa": True,  # this machine, process gone
            f"{host}:{os.getpid()}:bbbbbb": False,  # this very process
            f"{host}:1:cccccc": False,  # alive (init)
            f"elsewhere.example:{dead.pid}:dddddd": False,  # another machine: cannot tell
        }
        with db.sessions() as session, session.begin():
            run_ids = session.scalars(
                select(Run.id).where(Run.experiment_id == submitted.experiment_id).order_by(Run.id)
            ).all()
            for run_id, worker in zip(run_ids, owners, strict=False):
                session.execute(
                    update(Run)
                    .where(Run.id == run_id)
                    .values(status="running", attempt=1, worker_id=worker, lease_expires_at=later)
                )
        assert reclaim_dead_local_runs(db.sessions, submitted.experiment_id) == 1
        with db.sessions() as session:
            leases = dict(
                session.execute(
                    select(Run.worker_id, Run.lease_expires_at).where(Run.status == "running")
                ).all()
            )
        for worker, freed in owners.items():
            lease = leases[worker]
            assert lease is not None
            assert (lease < datetime.now(UTC)) is freed, worker
    finally:
        db.dispose()
