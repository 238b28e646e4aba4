"""The queue commands: submit, worker, status, retry, cancel, db upgrade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from reelbench.cli import main
from reelbench.db.engine import current_revision, head_revision, make_engine, open_database
from reelbench.db.models import Experiment, Run

SPEC = """
[experiment]
name = "cli"

[retry]
max_attempts = 1
backoff_seconds = 0

[[items]]
id = "a"
prompt = "first"

[[items]]
id = "b"
prompt = "second"

[[variants]]
key = "v"
provider = "synthetic"
repeats = 2
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def run_count(url: str) -> int:
    db = open_database(url)
    try:
        with db.sessions() as session:
            return int(session.execute(select(func.count()).select_from(Run)).scalar_one())
    finally:
        db.dispose()


def test_submit_queues_runs_and_is_idempotent(database_url: str, spec_file: Path) -> None:
    code, out = invoke("submit", str(spec_file), "--db", database_url)
    assert code == 0 and "4 new run(s) queued, 4 in total" in out
    code, out = invoke("submit", str(spec_file), "--db", database_url, "--json")
    assert code == 0
    assert json.loads(out)["runs_created"] == 0
    assert run_count(database_url) == 4


def test_submit_bad_spec_exits_2_and_writes_nothing(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace("repeats = 2", "repeats = 0"))
    code, out = invoke("submit", str(bad), "--db", database_url)
    assert code == 2
    assert str(bad) in out and "variants[0].repeats" in out
    db = open_database(database_url)
    try:
        with db.sessions() as session:
            assert session.execute(select(func.count()).select_from(Experiment)).scalar() == 0
    finally:
        db.dispose()


def test_missing_spec_file_exits_2(tmp_path: Path) -> None:
    code, out = invoke("submit", str(tmp_path / "nope.toml"), "--db", f"sqlite:///{tmp_path}/x.db")
    assert code == 2 and "nope.toml" in out and "file not found" in out


def test_worker_drains_then_status_shows_counts(
    database_url: str, spec_file: Path, tmp_path: Path
) -> None:
    invoke("submit", str(spec_file), "--db", database_url)
    code, out = invoke(
        "worker", "--db", database_url, "--artifacts", str(tmp_path / "artifacts"),
        "--drain", "--concurrency", "2", "--processor", "queue_workers:NoopProcessor",
    )  # fmt: skip
    assert code == 0, out
    code, out = invoke("status", "cli", "--db", database_url, "--json")
    assert code == 0
    (status,) = json.loads(out)["experiments"]
    assert status["counts"]["succeeded"] == 4 and status["total"] == 4
    code, out = invoke("status", "--db", database_url)
    assert code == 0 and "cli" in out and "done" in out


def test_retry_and_cancel(database_url: str, spec_file: Path, tmp_path: Path) -> None:
    invoke("submit", str(spec_file), "--db", database_url)
    code, out = invoke(
        "worker", "--db", database_url, "--artifacts", str(tmp_path / "artifacts"),
        "--drain", "--processor", "test_queue_cli:always_fails",
    )  # fmt: skip
    assert code == 0, out
    code, out = invoke("retry", "cli", "--db", database_url)
    assert (code, out.strip()) == (0, "cli: 4 run(s) queued again")
    code, out = invoke("cancel", "cli", "--db", database_url)
    assert (code, out.strip()) == (0, "cli: 4 run(s) cancelled")
    code, out = invoke("status", "cli", "--db", database_url, "--json")
    assert json.loads(out)["experiments"][0]["counts"]["cancelled"] == 4


def always_fails(ctx: object, session: object) -> tuple[str, str]:
    """A processor function that always fails for good."""
    from reelbench.errors import TerminalError

    raise TerminalError("not today")


def test_unknown_experiment_exits_2(database_url: str) -> None:
    for command in ("status", "retry", "cancel"):
        code, out = invoke(command, "ghost", "--db", database_url)
        assert code == 2 and "no experiment named 'ghost'" in out


def test_bad_processor_reference_exits_2(sqlite_url: str) -> None:
    code, out = invoke("worker", "--db", sqlite_url, "--processor", "nomodule")
    assert code == 2 and "MODULE:NAME" in out


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out = invoke("db", "upgrade", "--db", url)
    assert code == 0 and head_revision() in out
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_unsupported_database_url_exits_2() -> None:
    code, out = invoke("status", "--db", "mysql://localhost/x")
    assert code == 2 and "unsupported database URL" in out
