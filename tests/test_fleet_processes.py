"""The fleet through real worker processes and a real (fake) hosted API on loopback.

Fleet-wide limits (in flight, per minute, a dead worker's slot), the budget
(many workers racing for the last dollars, raising it), and the crash
between a provider's submit and the record of its job id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fleet_server import BillingApi, serve_billing
from fleet_support import plugin_path
from sqlalchemy import func, select

from reelbench.cli import main
from reelbench.db.engine import Database, open_database
from reelbench.db.models import ProviderCall, ProviderLimit, Run, RunAttempt, Spend
from reelbench.providers.base import GenerationRequest
from reelbench.providers.synthetic import render_video

TESTS_DIR = Path(__file__).resolve().parent
TOKEN = "r8_fleet_secret_token_91"

_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _kill_leftover_workers() -> Iterator[None]:
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # The submitting process checks the provider's key, as a user's would.
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "served.mp4"
    params = {"width": 48, "height": 32, "fps": 12, "seconds": 0.5}
    render_video(GenerationRequest("synthetic", "orbit", params, "x", 5), path)
    return path


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.dispose()


def write_spec(
    path: Path,
    api: BillingApi,
    *,
    runs: int,
    provider: str = "replicate",
    extra: str = "",
    name: str = "fleet",
    max_attempts: int = 1,
    on_uncertain_submit: str = "fail",
) -> Path:
    path.write_text(
        f"""
[experiment]
name = "{name}"

[canonical]
width = 64
height = 48
fps = 12
max_seconds = 2.0

[retry]
max_attempts = {max_attempts}
backoff_seconds = 0.2
on_uncertain_submit = "{on_uncertain_submit}"

[metrics]
groups = ["frame"]

[[prices]]
provider = "{provider}"
usd_per_second = 1.0
read_on = "2026-12-03"

[[items]]
id = "cat"
prompt = "a cat surfing"

[[variants]]
key = "hosted"
provider = "{provider}"
model = "acme/video-gen"
repeats = {runs}
params = {{ base_url = "{api.base_url}", seconds = 1 }}
{extra}
"""
    )
    return path


def submit(db: Database, spec: Path) -> None:
    result = CliRunner().invoke(main, ["submit", str(spec), "--db", db.url])
    assert result.exit_code == 0, result.output


def start_worker(
    db: Database, tmp_path: Path, *args: str, name: str = "worker"
) -> subprocess.Popen[bytes]:
    plugins = plugin_path(tmp_path / "plugins")
    env = {
        **os.environ,
        "REPLICATE_API_TOKEN": TOKEN,
        # A worker that hangs is sent SIGABRT: its threads' stacks go to its log.
        "PYTHONFAULTHANDLER": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(TESTS_DIR), str(plugins), os.environ.get("PYTHONPATH", "")]
        ),
    }
    with (tmp_path / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from reelbench.cli import main; main()", "worker",
             "--db", db.url, "--artifacts", str(tmp_path / "artifacts"),
             "--processor", "fleet_support:fast_processor", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _started.append(proc)
    return proc


def wait_for(condition: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def finish(procs: list[subprocess.Popen[bytes]], tmp_path: Path, timeout: float = 180) -> None:
    for proc in procs:
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            logs = "\n".join(p.read_text()[-8000:] for p in tmp_path.glob("*.log"))
            pytest.fail(f"a worker did not finish:\n{logs}")
        assert code == 0, "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("*.log"))


def statuses(db: Database) -> dict[str, int]:
    with db.sessions() as session:
        rows = session.execute(select(Run.status, func.count()).group_by(Run.status)).all()
    return {str(s): int(n) for s, n in rows}


def test_three_workers_never_exceed_the_fleet_concurrency_limit(
    db: Database, tmp_path: Path, video: Path
) -> None:
    with serve_billing(video, job_seconds=0.4) as api:
        spec = write_spec(
            tmp_path / "spec.toml",
            api,
            runs=18,
            extra='\n[limits]\n"replicate" = { concurrency = 3 }\n',
        )
        submit(db, spec)
        workers = [
            start_worker(db, tmp_path, "--concurrency", "8", "--drain", name=f"w{i}")
            for i in range(3)
        ]
        finish(workers, tmp_path)
    assert statuses(db) == {"succeeded": 18}
    assert api.billed == 18
    assert api.max_in_flight <= 3, f"the provider saw {api.max_in_flight} jobs at once"
    assert api.max_in_flight >= 2  # the limit, not a single worker, was the cap
    with db.sessions() as session:
        deferred = session.scalar(select(func.count()).where(RunAttempt.outcome == "deferred"))
        # max_attempts = 1: runs that waited for a slot did not use up their attempt
        assert deferred and deferred > 0
        assert session.scalar(select(func.count()).where(Run.error_class.is_not(None))) == 0


def test_per_minute_limit_holds_within_one_window(
    db: Database, tmp_path: Path, video: Path
) -> None:
    with serve_billing(video, job_seconds=0.05) as api:
        spec = write_spec(
            tmp_path / "spec.toml",
            api,
            runs=7,
            extra='\n[limits]\n"replicate:acme/video-gen" = { per_minute = 4 }\n',
        )
        submit(db, spec)
        workers = [start_worker(db, tmp_path, "--concurrency", "4", name=f"w{i}") for i in range(2)]

        def four_done_three_waiting() -> bool:
            with db.sessions() as session:
                waiting = session.scalar(
                    select(func.count()).where(
                        Run.status == "queued", Run.wait_reason.like("rate limit of%")
                    )
                )
            return statuses(db).get("succeeded", 0) == 4 and waiting == 3

        wait_for(four_done_three_waiting, what="4 runs done and 3 waiting for the rate window")
        # Let the workers try again for a while.
        time.sleep(2.0)
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        finish(workers, tmp_path)
    times = sorted(t for t, _ in api.creates)
    # No 60-second window, wherever it starts, holds more than 4 submits (on a
    # slow machine the test may outlast the first minute: later submits are fine).
    assert all(sum(1 for u in times if t <= u < t + 60) <= 4 for t in times), times
    assert len([t for t in times if t - times[0] < 60]) == 4
    result = CliRunner().invoke(main, ["status", "--db", db.url])
    assert "3 queued run(s) rate limit of replicate:acme/video-gen" in result.output


def test_a_killed_workers_slot_comes_back_after_its_lease(
    db: Database, tmp_path: Path, video: Path
) -> None:
    with serve_billing(video, job_seconds=0.1) as api:
        api.hold.clear()  # jobs keep "processing"
        spec = write_spec(
            tmp_path / "spec.toml",
            api,
            runs=2,
            extra='\n[limits]\n"replicate" = { concurrency = 1 }\n',
        )
        submit(db, spec)
        doomed = start_worker(db, tmp_path, "--concurrency", "2", "--lease-seconds", "1.5")
        wait_for(lambda: api.billed == 1, what="the first submit")
        time.sleep(0.5)
        assert api.billed == 1, "the second run must wait for the only slot"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(30)
        api.hold.set()
        heir = start_worker(db, tmp_path, "--concurrency", "2", "--drain", name="heir")
        finish([heir], tmp_path)
    assert statuses(db) == {"succeeded": 2}
    # The dead worker's job was polled by the heir, not submitted again.
    assert api.billed == 2 and len(api.creates) == 2


def test_budget_caps_spend_across_racing_workers_and_raising_it_continues(
    db: Database, tmp_path: Path, video: Path
) -> None:
    with serve_billing(video, job_seconds=0.05) as api:
        spec = write_spec(tmp_path / "spec.toml", api, runs=30, extra="\n[budget]\nmax_usd = 10\n")
        submit(db, spec)
        workers = [
            start_worker(db, tmp_path, "--concurrency", "4", "--drain", name=f"w{i}")
            for i in range(4)
        ]
        finish(workers, tmp_path)
        assert api.billed == 10, f"{api.billed} calls billed on a $10 budget at $1 each"
        assert statuses(db) == {"succeeded": 10, "queued": 20}
        status = CliRunner().invoke(main, ["status", "--db", db.url])
        assert "20 queued run(s) budget reached" in status.output
        assert "$10.00 / $10.00" in status.output
        report = CliRunner().invoke(main, ["report", "fleet", "--format", "json", "--db", db.url])
        doc = json.loads(report.output)
        assert doc["waiting"] == {"budget reached": 20}
        assert doc["cost_total"] == pytest.approx(10.0) and doc["experiment"]["max_usd"] == 10
        held = [r for r in doc["runs"] if r["status"] == "queued"]
        assert all(r["wait_reason"].startswith("budget reached") for r in held)

        raised = CliRunner().invoke(main, ["budget", "fleet", "--max-usd", "20", "--db", db.url])
        assert raised.exit_code == 0, raised.output
        assert "20 run(s) wait for budget; 20 woken up" in raised.output
        workers = [
            start_worker(db, tmp_path, "--concurrency", "4", "--drain", name=f"v{i}")
            for i in range(4)
        ]
        finish(workers, tmp_path)
    assert api.billed == 20
    assert statuses(db) == {"succeeded": 20, "queued": 10}
    shown = CliRunner().invoke(main, ["budget", "fleet", "--json", "--db", db.url])
    doc = json.loads(shown.output)
    assert doc["charged_usd"] == pytest.approx(20.0)
    assert doc["open_usd"] == 0
    assert doc["spend_by_variant"] == {"hosted": pytest.approx(20.0)}
    with db.sessions() as session:
        costs = session.scalars(select(ProviderCall.cost).where(ProviderCall.status == "succeeded"))
        assert [c for c in costs] == [1.0] * 20


def _kill_on_first_create(api: BillingApi, worker: dict[str, Any]) -> None:
    def kill(job: str) -> None:
        if job == "p1" and "proc" in worker:
            worker["proc"].send_signal(signal.SIGKILL)
            worker["proc"].wait(30)

    api.on_create = kill


def test_crash_between_submit_and_job_id_fails_the_run_without_a_second_submit(
    db: Database, tmp_path: Path, video: Path
) -> None:
    with serve_billing(video, job_seconds=0.05) as api:
        spec = write_spec(tmp_path / "spec.toml", api, runs=1)
        submit(db, spec)
        worker: dict[str, Any] = {}
        _kill_on_first_create(api, worker)
        worker["proc"] = start_worker(db, tmp_path, "--lease-seconds", "1")
        wait_for(lambda: api.billed == 1, what="the submit")
        worker["proc"].wait(30)
        heir = start_worker(db, tmp_path, "--drain", "--lease-seconds", "1", name="heir")
        finish([heir], tmp_path)
    assert len(api.creates) == 1, "no second submit reached the provider"
    with db.sessions() as session:
        run = session.scalars(select(Run)).one()
        assert run.status == "failed" and run.error_class == "terminal"
        assert "a job may exist at replicate" in (run.error_message or "")
        assert "reelbench retry" in (run.error_message or "")
        # The uncertain job still counts against the spend.
        spend = session.scalars(select(Spend)).one()
        assert spend.state == "open" and spend.estimate_usd == 1.0


def test_crash_between_submit_and_job_id_resubmits_with_the_same_idempotency_key(
    db: Database, tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The submitting process validates the spec: it must know the plugin too.
    monkeypatch.syspath_prepend(str(plugin_path(tmp_path / "plugins")))
    with serve_billing(video, job_seconds=0.05) as api:
        spec = write_spec(tmp_path / "spec.toml", api, runs=1, provider="idem")
        submit(db, spec)
        worker: dict[str, Any] = {}
        _kill_on_first_create(api, worker)
        worker["proc"] = start_worker(db, tmp_path, "--lease-seconds", "1")
        wait_for(lambda: api.billed == 1, what="the submit")
        worker["proc"].wait(30)
        heir = start_worker(db, tmp_path, "--drain", "--lease-seconds", "1", name="heir")
        finish([heir], tmp_path)
    keys = [key for _, key in api.creates]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0], keys
    assert api.billed == 1
    assert statuses(db) == {"succeeded": 1}
    with db.sessions() as session:
        assert session.scalars(select(Spend.state)).all() == ["charged"]


def test_a_429_with_retry_after_slows_the_whole_fleet(
    db: Database, tmp_path: Path, video: Path
) -> None:
    with serve_billing(video, job_seconds=0.05) as api:
        api.scripted.append((429, {"Retry-After": "3"}, {"detail": "slow down"}))
        # The run that met the 429 used an attempt; the others only waited.
        spec = write_spec(tmp_path / "spec.toml", api, runs=4, max_attempts=2)
        submit(db, spec)
        first = start_worker(db, tmp_path, "--drain", name="first")

        def paused() -> bool:
            with db.sessions() as session:
                return session.scalar(select(ProviderLimit.paused_until)) is not None

        wait_for(paused, what="the provider's pause to be recorded")
        others = [
            start_worker(db, tmp_path, "--concurrency", "4", "--drain", name=f"w{i}")
            for i in range(2)
        ]
        finish([first, *others], tmp_path)
    assert statuses(db) == {"succeeded": 4}
    first_429 = api.creates[0][0]
    later = [t - first_429 for t, _ in api.creates[1:]]
    # Every create after the 429 waited for its Retry-After, whichever worker made it.
    assert len(later) == 4 and min(later) >= 2.9, later
    with db.sessions() as session:
        waited = session.scalars(
            select(RunAttempt.error_message).where(RunAttempt.outcome == "deferred")
        ).all()
    assert any("asked to slow down (HTTP 429)" in (m or "") for m in waited)


def test_an_idempotent_provider_is_resent_the_same_key_after_a_failed_submit(
    db: Database, tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(plugin_path(tmp_path / "plugins")))
    with serve_billing(video, job_seconds=0.05) as api:
        # The submit's answer is lost (a 503 here; a timeout is the same for the
        # worker): a job may exist, so the retry must carry the same key.
        api.scripted.append((503, {}, {"detail": "upstream timed out"}))
        spec = write_spec(tmp_path / "spec.toml", api, runs=1, provider="idem", max_attempts=2)
        submit(db, spec)
        finish([start_worker(db, tmp_path, "--drain")], tmp_path)
    keys = [key for _, key in api.creates]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0], keys
    assert api.billed == 1 and statuses(db) == {"succeeded": 1}
    with db.sessions() as session:
        assert session.scalars(select(Spend.state)).all() == ["charged"]


@pytest.mark.parametrize("policy", ["fail", "resubmit"])
def test_a_submit_whose_answer_is_lost_is_uncertain_without_idempotency_keys(
    db: Database, tmp_path: Path, video: Path, policy: str
) -> None:
    with serve_billing(video, job_seconds=0.05) as api:
        # The job is created and billed; the connection closes before the answer.
        api.drop_answers = 1
        spec = write_spec(
            tmp_path / "spec.toml", api, runs=1, max_attempts=3, on_uncertain_submit=policy
        )
        submit(db, spec)
        finish([start_worker(db, tmp_path, "--drain")], tmp_path)
    with db.sessions() as session:
        run = session.scalars(select(Run)).one()
        attempts = session.scalars(select(RunAttempt).order_by(RunAttempt.attempt)).all()
        spend = session.scalars(select(Spend.state)).all()
    first = attempts[0]
    assert first.outcome == "retryable" and "Server disconnected" in (first.error_message or "")
    if policy == "fail":
        # No second submit: the job that may exist is the user's to check.
        assert len(api.creates) == 1 and api.billed == 1
        assert run.status == "failed" and run.error_class == "terminal"
        assert "the submit got no answer" in (run.error_message or "")
        assert "a job may exist at replicate" in (run.error_message or "")
        assert len(attempts) == 2
        assert spend == ["open"]  # the uncertain job still counts against the budget
    else:
        assert len(api.creates) == 2 and api.billed == 2
        assert run.status == "succeeded"


def test_a_submit_refused_or_never_sent_is_retried_without_doubt(
    db: Database, tmp_path: Path, video: Path
) -> None:
    with serve_billing(video, job_seconds=0.05) as api:
        # A 503 is the provider saying no: nothing was started.
        api.scripted.append((503, {}, {"detail": "overloaded"}))
        spec = write_spec(tmp_path / "spec.toml", api, runs=1, max_attempts=2)
        submit(db, spec)
        finish([start_worker(db, tmp_path, "--drain")], tmp_path)
    assert len(api.creates) == 2 and api.billed == 1
    assert statuses(db) == {"succeeded": 1}
