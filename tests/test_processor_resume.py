"""Hosted providers through the processor: resume after a crash, and secrets kept out."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processor_support import FAST, Lab
from provider_servers import serve_fal, serve_replicate
from sqlalchemy import select, update

from reelbench.db.models import Base, ProviderCall, Run
from reelbench.errors import TerminalError
from reelbench.processor import RunProcessor
from reelbench.providers.base import GenerationRequest
from reelbench.providers.synthetic import render_video
from reelbench.report import load_report, write_csv, write_report_files

TOKEN = "r8_TopSecretToken_4f9a"
FAL_KEY = "fal-TopSecretKey:77aa"


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


@pytest.fixture
def served_video(tmp_path: Path) -> Path:
    path = tmp_path / "served.mp4"
    params = {"width": 48, "height": 32, "fps": 12, "seconds": 0.5}
    render_video(GenerationRequest("synthetic", "orbit", params, "x", 5), path)
    return path


WORKER = textwrap.dedent(
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


def _wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_worker_killed_after_submit_is_resumed_by_polling_the_stored_job(
    lab: Lab, tmp_path: Path, served_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    with serve_replicate(served_video) as api:
        api.release.clear()  # the job keeps "processing" until released
        variant = {
            "key": "hosted",
            "provider": "replicate",
            "model": "acme/video-gen",
            "params": {"base_url": api.base_url},
        }
        (ctx,) = lab.claim(lab.submit("e", [variant]))
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        doomed = subprocess.Popen(
            [sys.executable, str(script), lab.db.url, str(ctx.run_id), str(ctx.attempt),
             str(lab.artifacts)],
            stderr=subprocess.PIPE,
        )  # fmt: skip

        def job_stored() -> bool:
            assert doomed.poll() is None, doomed.stderr.read() if doomed.stderr else ""
            with lab.db.sessions() as session:
                return session.scalar(select(ProviderCall.job_id)) is not None

        _wait_for(job_stored)
        _wait_for(lambda: sum(1 for r in api.received if r.method == "GET") >= 1)
        os.kill(doomed.pid, signal.SIGKILL)  # no clean-up code runs
        doomed.wait()
        if doomed.stderr:
            doomed.stderr.close()

        # Its lease runs out; another worker claims the run (attempt 2).
        with lab.db.sessions() as session:
            session.execute(
                update(Run).where(Run.id == ctx.run_id).values(lease_expires_at=Run.created_at)
            )
            session.commit()
        (again,) = lab.claim(ctx.experiment_id)
        assert (again.run_id, again.attempt) == (ctx.run_id, ctx.attempt + 1)
        api.release.set()
        lab.process(again)

    assert api.submits == 1, "the stored job was polled, not submitted again"
    with lab.db.sessions() as session:
        call = session.scalars(select(ProviderCall)).one()
        assert call.status == "succeeded" and call.job_id == "p1"
        assert session.get(Run, ctx.run_id).status == "succeeded"  # type: ignore[union-attr]


def _everything_stored(lab: Lab) -> str:
    """Every value of every table and every artifact file, as one text."""
    parts: list[str] = []
    with lab.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            parts.extend(repr(tuple(row)) for row in conn.execute(table.select()))
    for path in lab.artifacts.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def test_api_keys_reach_no_table_artifact_log_or_report(
    lab: Lab,
    tmp_path: Path,
    served_video: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    with serve_replicate(served_video) as rep, serve_fal(served_video) as fal:
        # The failing server echoes the key it was sent, as some APIs do in errors.
        rep.scripted.append((401, {}, {"detail": f"invalid token {TOKEN}"}))
        variants = [
            {"key": "rep-fail", "provider": "replicate", "model": "acme/a",
             "params": {"base_url": rep.base_url}},
            {"key": "rep", "provider": "replicate", "model": "acme/b",
             "params": {"base_url": rep.base_url}},
            {"key": "fal", "provider": "fal", "model": "fal-ai/c",
             "params": {"base_url": fal.base_url}},
        ]  # fmt: skip
        contexts = lab.claim(lab.submit("secrets", variants))
        messages = []
        for ctx in contexts:
            if ctx.variant_key == "rep-fail":
                with lab.db.sessions() as session, pytest.raises(TerminalError) as info:
                    RunProcessor(policy=FAST).process(ctx, session)
                messages.append(str(info.value))
            else:
                lab.process(ctx)
    assert all(
        r.headers["Authorization"].endswith(TOKEN) for r in rep.received if r.method == "POST"
    )
    report = load_report("secrets", lab.db.url)
    html, json_doc = write_report_files(report, tmp_path / "report", artifact_root=lab.artifacts)
    csv = io.StringIO()
    write_csv(report, csv)
    reported = html.read_text() + json_doc.read_text() + csv.getvalue()
    assert "rep-fail" in reported
    stored = _everything_stored(lab)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (TOKEN, FAL_KEY):
        assert secret not in stored
        assert secret not in reported
        assert secret not in logged
        assert all(secret not in m for m in messages)
    assert "[redacted]" in stored, "the echoed key was replaced in the recorded error"
