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
- ``postgres_cluster``: the throwaway cluster (restart it to test reconnects).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from reelbench.db.engine import upgrade

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    return Path(found[-1]).parent if found else None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass
class PostgresCluster:
    """A PostgreSQL server for the test session (throwaway unless given by URL)."""

    url: str  # server URL; its database is the maintenance db ("postgres")
    bin_dir: Path | None = None
    data_dir: Path | None = None
    run_as: list[str] | None = None
    options: str = ""  # server options (port, socket dir...) given to pg_ctl start

    @property
    def restartable(self) -> bool:
        """True for the throwaway cluster this session started."""
        return self.data_dir is not None

    def pg_ctl(self, *args: str) -> None:
        """Run ``pg_ctl`` on the throwaway cluster."""
        assert self.bin_dir is not None and self.data_dir is not None
        cmd = [*(self.run_as or []), str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir)]
        subprocess.run([*cmd, *args], check=True, capture_output=True, timeout=120)

    def restart(self) -> None:
        """Restart the server, dropping every connection (``-m fast``)."""
        self.pg_ctl("restart", "-m", "fast", "-w", "-l", str(self.data_dir.parent / "log"))  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop the server (``-m fast``: connections are cut)."""
        self.pg_ctl("stop", "-m", "fast", "-w")

    def start(self) -> None:
        """Start the stopped server again with its original options."""
        log = str(self.data_dir.parent / "log")  # type: ignore[union-attr]
        self.pg_ctl("start", "-w", "-o", self.options, "-l", log)

    def database_url(self, name: str) -> str:
        """URL of database ``name`` on this server."""
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)


def _start_cluster(tmp_root: Path) -> PostgresCluster:
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        message = (
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
            "install the 'postgresql' package (scripts/ensure-test-deps) or set "
            "REELBENCH_TEST_POSTGRES_URL"
        )
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    run_as: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        shutil.chown(tmp_root, user="postgres", group="postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data_dir = tmp_root / "data"
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
         "-A", "trust", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    port = _free_port()
    options = (
        f"-p {port} -k {tmp_root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options,
         "-l", str(tmp_root / "log"), "-w", "start"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    return PostgresCluster(
        url=url, bin_dir=bin_dir, data_dir=data_dir, run_as=run_as, options=options
    )


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL server (started on first use, removed at the end)."""
    given = os.environ.get("REELBENCH_TEST_POSTGRES_URL")
    if given:
        yield PostgresCluster(url=given)
        return
    tmp_root = Path(tempfile.mkdtemp(prefix="reelbench-pg-"))
    cluster: PostgresCluster | None = None
    try:
        cluster = _start_cluster(tmp_root)
        yield cluster
    finally:
        if cluster is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                cluster.pg_ctl("stop", "-m", "immediate", "-w")
        shutil.rmtree(tmp_root, ignore_errors=True)


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
