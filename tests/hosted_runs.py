"""Whole experiments against a fake hosted API, shared by the Runway and Luma tests.

Each helper drives real components (spec submit, claim SQL, the processor,
the worker orchestrator, a worker process killed with SIGKILL) and asserts
what every hosted adapter must guarantee.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from processor_support import FAST, Lab, work
from provider_servers import FakeApi
from sqlalchemy import func, select, update

from reelbench.db.models import Base, Metric, ProviderCall, Run
from reelbench.errors import TerminalError
from reelbench.identity import sha256_file
from reelbench.processor import RunProcessor
from reelbench.providers.pricing import estimate_usd
from reelbench.report import load_report, write_csv, write_report_files
from reelbench.storage import path_from_uri

__all__ = [
    "assert_no_secret_anywhere",
    "experiment_through_the_worker",
    "kill_while_polling_then_resume",
    "png",
]


def png(path: Path) -> Path:
    """A real 2x2 RGB PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def _api_requests(api: FakeApi) -> int:
    return sum(1 for r in api.received if not r.path.startswith("/files/"))


def experiment_through_the_worker(
    lab: Lab, api: FakeApi, variant: dict[str, Any], image: Path, *, price_usd: float
) -> None:
    """Two items (with and without an image) through a real worker, then a re-run.

    Every run ends with a canonical video and metrics; the provider calls are
    stored with their job ids and the price table's cost, ``price_usd`` (these
    APIs report none); the re-run is served from the provider-call cache
    without a single new request.
    """
    items = [
        {"id": "still", "prompt": "a cat surfing", "image": str(image)},
        {"id": "text", "prompt": "a dog skating"},
    ]
    first = lab.submit("hosted", [variant], items=items)
    assert work(lab, "hosted").succeeded == 2
    with lab.db.sessions() as session:
        runs = session.scalars(select(Run).where(Run.experiment_id == first)).all()
        assert len(runs) == 2
        for run in runs:
            assert run.status == "succeeded"
            assert run.canon_uri and run.canon_sha256
            assert sha256_file(path_from_uri(run.canon_uri)) == run.canon_sha256
            metrics = session.scalar(select(func.count()).where(Metric.run_id == run.id))
            assert metrics and metrics > 0, "metrics were recorded"
        calls = session.scalars(select(ProviderCall)).all()
        assert len(calls) == 2
        assert all(c.status == "succeeded" and c.job_id for c in calls)
        # The API reports no cost: each call records the price table's estimate.
        assert [c.cost for c in calls] == [pytest.approx(price_usd)] * 2
    params = variant["params"]
    assert estimate_usd(variant["provider"], variant["model"], params) == price_usd

    before = _api_requests(api)
    lab.submit("hosted-again", [variant], items=items)
    assert work(lab, "hosted-again").succeeded == 2
    assert _api_requests(api) == before, "the re-run made no new request"


_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from reelbench.call_cache import CallPolicy
    from reelbench.context import build_context
    from reelbench.db.engine import open_database
    from reelbench.processor import RunProcessor

    url, run_id, attempt, artifacts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    db = open_database(url)
    with db.sessions() as session:
        ctx = build_context(
            session, run_id, attempt, worker_id="doomed", artifact_root=Path(artifacts)
        )
    with db.sessions() as session:
        RunProcessor(policy=CallPolicy(poll_initial=0.05, poll_max=0.05)).process(ctx, session)
    """
)


def _wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def kill_while_polling_then_resume(
    lab: Lab, tmp_path: Path, api: FakeApi, variant: dict[str, Any]
) -> str:
    """SIGKILL a worker while its job is polled; the next owner finishes that job.

    Returns the stored job id (the caller checks the fake saw one create).
    """
    api.release.clear()  # the job keeps running until released
    (ctx,) = lab.claim(lab.submit("killed", [variant]))
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    doomed = subprocess.Popen(
        [sys.executable, str(script), lab.db.url, str(ctx.run_id), str(ctx.attempt),
         str(lab.artifacts)],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def job_stored() -> bool:
            assert doomed.poll() is None, doomed.stderr.read() if doomed.stderr else ""
            with lab.db.sessions() as session:
                return session.scalar(select(ProviderCall.job_id)) is not None

        _wait_for(job_stored)
        polls_before = sum(api.polls.get(k, 0) for k in list(api.polls) if ":" not in k)
        _wait_for(
            lambda: sum(api.polls.get(k, 0) for k in list(api.polls) if ":" not in k) > polls_before
        )
        os.kill(doomed.pid, signal.SIGKILL)  # no clean-up code runs
    finally:
        doomed.wait()
        if doomed.stderr:
            doomed.stderr.close()
    with lab.db.sessions() as session:
        session.execute(
            update(Run).where(Run.id == ctx.run_id).values(lease_expires_at=Run.created_at)
        )
        session.commit()
    (again,) = lab.claim(ctx.experiment_id)
    assert (again.run_id, again.attempt) == (ctx.run_id, ctx.attempt + 1)
    api.release.set()
    lab.process(again)
    with lab.db.sessions() as session:
        call = session.scalars(select(ProviderCall)).one()
        assert call.status == "succeeded" and call.job_id
        run = session.get(Run, ctx.run_id)
        assert run is not None and run.status == "succeeded"
        return call.job_id


def _everything_stored(lab: Lab) -> str:
    parts: list[str] = []
    with lab.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            parts.extend(repr(tuple(row)) for row in conn.execute(table.select()))
    for path in lab.artifacts.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def assert_no_secret_anywhere(
    lab: Lab,
    tmp_path: Path,
    variants: list[dict[str, Any]],
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Run ``variants`` (the first fails on a server echoing ``secret``) and look everywhere.

    The key must be in no table, artifact, log record, error message or report.
    """
    caplog.set_level(logging.DEBUG)
    contexts = lab.claim(lab.submit("secrets", variants))
    failing = variants[0]["key"]
    contexts.sort(key=lambda c: c.variant_key != failing)
    messages = []
    for ctx in contexts:
        if ctx.variant_key == failing:
            with lab.db.sessions() as session, pytest.raises(TerminalError) as info:
                RunProcessor(policy=FAST).process(ctx, session)
            messages.append(str(info.value))
        else:
            lab.process(ctx)
    report = load_report("secrets", lab.db.url)
    html, json_doc = write_report_files(report, tmp_path / "report", artifact_root=lab.artifacts)
    csv = io.StringIO()
    write_csv(report, csv)
    reported = html.read_text() + json_doc.read_text() + csv.getvalue()
    assert failing in reported
    stored = _everything_stored(lab)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert messages and all(secret not in m for m in messages)
    assert secret not in stored
    assert secret not in reported
    assert secret not in logged
    assert "[redacted]" in stored, "the echoed key was replaced in the recorded error"
