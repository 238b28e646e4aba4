"""``reelbench worker --drain`` finishes the work of its scope, retries in backoff included."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_setup import queue_runs
from sqlalchemy import select

from reelbench.cli import main
from reelbench.db.engine import open_database
from reelbench.db.models import Run, RunAttempt
from reelbench.providers.synthetic import fault_draw
from reelbench.spec import parse_spec
from reelbench.submit import submit_spec


def _seed_failing_once(share: float) -> int:
    """A seed whose first attempt draws a retryable fault and whose second does not."""
    for seed in range(10_000):
        if fault_draw(seed, 1, "retryable") < share <= fault_draw(seed, 2, "retryable"):
            return seed
    raise AssertionError("no such seed")


def test_drain_waits_out_a_retry_backoff_then_exits_zero(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed = _seed_failing_once(0.5)
    spec = parse_spec({
        "experiment": {"name": "drain"},
        "canonical": {"width": 64, "height": 48, "fps": 8, "preset": "ultrafast"},
        "retry": {"max_attempts": 3, "backoff_seconds": 1.5},
        "items": [{"id": "a", "prompt": "p"}],
        "variants": [{"key": "flaky", "provider": "synthetic", "params": {
            "seed": seed, "fail_retryable": 0.5, "seconds": 0.25, "width": 64, "height": 48,
            "fps": 8}}],
    })  # fmt: skip
    db = open_database(database_url)
    try:
        submit_spec(db.sessions, spec)
        caplog.set_level(logging.INFO, logger="reelbench.worker")
        with contextlib.chdir(tmp_path):
            result = CliRunner().invoke(
                main, ["worker", "--drain", "--db", database_url, "--artifacts", "art"],
                catch_exceptions=False,
            )  # fmt: skip
        assert result.exit_code == 0, result.output
        with db.sessions() as session:
            run = session.scalars(select(Run)).one()
            outcomes = session.scalars(select(RunAttempt.outcome).order_by(RunAttempt.attempt))
            assert (run.status, run.attempt) == ("succeeded", 2)
            assert list(outcomes) == ["retryable", "succeeded"]
        assert "drained the queue: no run left to do" in caplog.text
    finally:
        db.dispose()


def test_drain_leaves_runs_other_workers_hold_and_says_so(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = open_database(database_url)
    try:
        ids = queue_runs(db, items=2)
        # Another live worker holds one of them under a fresh lease.
        from reelbench.db.claim import claim_runs

        with db.engine.begin() as conn:
            held = claim_runs(conn, "elsewhere:1:x", limit=1, lease_seconds=600)
        assert [c.run_id for c in held] == ids[:1]
        caplog.set_level(logging.INFO, logger="reelbench.worker")
        with contextlib.chdir(tmp_path):
            result = CliRunner().invoke(
                main, ["worker", "--drain", "--db", database_url, "--artifacts", "art",
                       "--processor", "queue_workers:NoopProcessor"],
                catch_exceptions=False,
            )  # fmt: skip
        assert result.exit_code == 0
        with db.sessions() as session:
            states = dict(session.execute(select(Run.id, Run.status)).all())
        assert states == {ids[0]: "running", ids[1]: "succeeded"}
        assert "1 run(s) remain, held by other workers (1 running" in caplog.text
    finally:
        db.dispose()
