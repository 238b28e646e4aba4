"""Processors for queue tests, importable by worker subprocesses (``--processor``).

Configured through environment variables so a test can start real
``reelbench worker`` processes with them:

- ``RB_TEST_RECORD_DIR``: every processing creates one file
  ``{run_id}-{attempt}-{pid}-{random}`` there (the exactly-once ledger);
- ``RB_TEST_STARTED_DIR``: a file ``{run_id}-{attempt}`` appears when a
  processing starts (tests wait for it to know a run is in flight);
- ``RB_TEST_SLEEP``: seconds each processing takes (checked against
  ``ctx.stop`` every 20 ms, as a real processor checks between steps).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from reelbench.context import RunContext
from reelbench.db.claim import link_provider_call
from reelbench.db.models import Metric, ProviderCall
from reelbench.errors import LeaseLost


def _touch(directory: str | None, name: str) -> None:
    if directory:
        path = Path(directory) / name
        path.write_text(str(os.getpid()))


class RecordingProcessor:
    """Sleeps (optionally), then records that it processed the run."""

    def __init__(
        self,
        record_dir: str | None = None,
        started_dir: str | None = None,
        sleep: float | None = None,
    ) -> None:
        self.record_dir = record_dir or os.environ.get("RB_TEST_RECORD_DIR")
        self.started_dir = started_dir or os.environ.get("RB_TEST_STARTED_DIR")
        self.sleep = float(os.environ.get("RB_TEST_SLEEP", "0")) if sleep is None else sleep

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        _touch(self.started_dir, f"{ctx.run_id}-{ctx.attempt}")
        deadline = time.monotonic() + self.sleep
        while time.monotonic() < deadline:
            if ctx.stop.wait(0.02):
                raise LeaseLost(f"run {ctx.run_id}: stop requested")
        name = f"{ctx.run_id}-{ctx.attempt}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        _touch(self.record_dir, name)
        digest = hashlib.sha256(f"{ctx.run_id}".encode()).hexdigest()
        return f"memory://{ctx.run_id}", digest


class RowsProcessor(RecordingProcessor):
    """Also leaves the rows a real processor leaves: a committed provider call,
    then (uncommitted, for the orchestrator's fenced commit) a metric row and
    the run's link to that call."""

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        call = ProviderCall(
            request_hash=hashlib.sha256(f"{ctx.run_id}-{ctx.attempt}".encode()).hexdigest(),
            provider="test",
            request={"run": ctx.run_id},
            status="succeeded",
            created_at=datetime.now(UTC),
        )
        session.add(call)
        session.commit()
        # Written before the processing "starts", so that a test stopping the
        # database once a run is in flight cuts off the commit of these rows.
        session.add(Metric(run_id=ctx.run_id, name="processed", stat="value", value=1.0))
        link_provider_call(session, ctx.run_id, ctx.attempt, call.id)
        return super().process(ctx, session)


class NoopProcessor:
    """Does nothing: measures the queue alone (benchmarks)."""

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        return "memory://noop", "0" * 64
