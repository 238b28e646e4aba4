"""Shared fixtures: a real database per test, on SQLite and on PostgreSQL.

PostgreSQL: ``REELBENCH_TEST_POSTGRES_URL`` (a server URL whose user may
create databases) if set; otherwise a throwaway cluster started for the test
session from the local PostgreSQL binaries (``/usr/lib/postgresql/*/bin``)
and removed afterwards. PostgreSQL refuses to run as root, so when the tests
run as root the cluster runs as the ``postgres`` user. Without binaries the
PostgreSQL half of the suite is skipped, except under ``CI=true`` where that
is a failure: CI must test both backends.

Fixtures:
- ``database_url``: a fresh, migrated, empty database, parametrized over
  ``sqlite`` and ``postgresql`` (use it for everything that touches the db);
- ``sqlite_url`` / ``postgres_url``: one backend only;
- ``postgres_cluster``: the throwaway cluster (restart it to test reconnects);
- ``s3_server``: a SeaweedFS server on loopback for the session (skipped
  without the ``weed`` binary, a failure under ``CI=true``);
- ``s3_root``: a fresh ``s3://bucket/prefix`` artifact root, with the
  server's credentials and a per-test scratch folder in the environment.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_cluster import PG_MISSING, PostgresCluster, cluster, have_server_binaries
from s3_server import WEED_MISSING, S3Server, find_weed, start_s3_server
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from reelbench.db.engine import upgrade

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL server (started on first use, removed at the end)."""
    given = os.environ.get("REELBENCH_TEST_POSTGRES_URL")
    if given:
        yield PostgresCluster(url=given)
        return
    if not have_server_binaries():
        if IN_CI:
            pytest.fail(PG_MISSING, pytrace=False)
        pytest.skip(PG_MISSING)
    with cluster() as running:
        yield running


def _wait_for_server(engine_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    engine = create_engine(engine_url, isolation_level="AUTOCOMMIT")
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, migrated, empty PostgreSQL database, dropped after the test."""
    _wait_for_server(postgres_cluster.url)
    name = f"test_{uuid.uuid4().hex}"
    # No pooling: a test may restart the server, killing pooled connections.
    admin = create_engine(postgres_cluster.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = postgres_cluster.database_url(name)
        upgrade(url)
        yield url
        _wait_for_server(postgres_cluster.url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated, empty SQLite database file under ``tmp_path``."""
    url = f"sqlite:///{tmp_path / 'reelbench.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated, empty database on each backend in turn."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def backend(database_url: str) -> str:
    """``sqlite`` or ``postgresql``: the backend of ``database_url``."""
    return make_url(database_url).get_backend_name()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The session's S3-compatible server (SeaweedFS), stopped at the end."""
    if find_weed() is None:
        if IN_CI:
            pytest.fail(WEED_MISSING, pytrace=False)
        pytest.skip(WEED_MISSING)
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_root(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh artifact root in the test bucket; credentials and scratch in the environment."""
    if s3_server.proc is None:  # a test that stopped it failed before starting it again
        s3_server.start()
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REELBENCH_SCRATCH", str(tmp_path / "scratch"))
    yield f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:12]}"
