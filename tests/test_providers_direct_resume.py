"""A worker SIGKILLed while it polls a Sora or Veo job: the next owner polls the same job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_providers.google import serve_google
from fake_providers.openai import serve_openai
from processor_support import Lab
from sqlalchemy import select, update

from reelbench.db.models import ProviderCall, Run
from reelbench.providers.base import GenerationRequest
from reelbench.providers.synthetic import render_video

KEYS = {"openai": ("OPENAI_API_KEY", "sk-resume-key-1"), "google": ("GEMINI_API_KEY", "g-resume")}

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


@pytest.fixture
def lab(sqlite_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(sqlite_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


def _wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_killed_worker_job_is_polled_by_the_next_owner_not_created_again(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    env, key = KEYS[provider]
    monkeypatch.setenv(env, key)
    video = tmp_path / "served.mp4"
    params = {"width": 48, "height": 32, "fps": 12, "seconds": 0.5}
    render_video(GenerationRequest("synthetic", "orbit", params, "x", 5), video)
    serve: Any = serve_openai if provider == "openai" else serve_google
    with serve(video, key) as api:
        api.release.clear()  # the job stays running until released
        base = f"{api.base_url}/v1" if provider == "openai" else api.base_url
        model = "sora-2" if provider == "openai" else "veo-3.0-generate-001"
        variant = {"key": "hosted", "provider": provider, "model": model,
                   "params": {"base_url": base}}  # fmt: skip
        (ctx,) = lab.claim(lab.submit("resume", [variant]))
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        doomed = subprocess.Popen(
            [sys.executable, str(script), lab.db.url, str(ctx.run_id), str(ctx.attempt),
             str(lab.artifacts)],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:

            def polling() -> bool:
                assert doomed.poll() is None, doomed.stderr.read() if doomed.stderr else ""
                with lab.db.sessions() as session:
                    stored = session.scalar(select(ProviderCall.job_id)) is not None
                return stored and sum(1 for r in api.received if r.method == "GET") >= 2

            _wait_for(polling)
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
    assert api.creates == 1, "the stored job was polled, not created again"
    with lab.db.sessions() as session:
        call = session.scalars(select(ProviderCall)).one()
        assert call.status == "succeeded" and call.job_id in api.jobs
        assert session.get(Run, ctx.run_id).status == "succeeded"  # type: ignore[union-attr]
