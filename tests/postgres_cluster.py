"""A throwaway PostgreSQL cluster from the local server binaries (tests and benches).

PostgreSQL refuses to run as root, so when we are root the cluster runs as
the ``postgres`` user (``runuser``). fsync is off: the data is disposable.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

PG_MISSING = (
    "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
    "install the 'postgresql' package (scripts/ensure-test-deps) or set "
    "REELBENCH_TEST_POSTGRES_URL"
)


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

    def restart(self, mode: str = "fast") -> None:
        """Restart the server, dropping every connection (``-m fast``; ``immediate``: a crash)."""
        log = str(self.data_dir.parent / "log")  # type: ignore[union-attr]
        self.pg_ctl("restart", "-m", mode, "-w", "-o", self.options, "-l", log)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``-m fast``: connections are cut; ``immediate``: a crash)."""
        self.pg_ctl("stop", "-m", mode, "-w")

    def start(self) -> None:
        """Start the stopped server again with its original options."""
        log = str(self.data_dir.parent / "log")  # type: ignore[union-attr]
        self.pg_ctl("start", "-w", "-o", self.options, "-l", log)

    def database_url(self, name: str) -> str:
        """URL of database ``name`` on this server."""
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)


def have_server_binaries() -> bool:
    """True when a local PostgreSQL server can be started."""
    return _pg_bin_dir() is not None


def start_cluster(tmp_root: Path) -> PostgresCluster:
    """initdb + start a cluster in ``tmp_root`` on a free port; see :func:`cluster`."""
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError(PG_MISSING)
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
        # fsync off: the data is disposable, but a server crash (pg_ctl -m
        # immediate) still keeps every commit, as on a real server; the outage
        # tests rely on that (synchronous_commit stays on).
        f"-p {port} -k {tmp_root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c full_page_writes=off -c max_connections=200"
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


@contextlib.contextmanager
def cluster() -> Iterator[PostgresCluster]:
    """A running throwaway cluster, stopped and deleted on exit."""
    tmp_root = Path(tempfile.mkdtemp(prefix="reelbench-pg-"))
    running: PostgresCluster | None = None
    try:
        running = start_cluster(tmp_root)
        yield running
    finally:
        if running is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                running.pg_ctl("stop", "-m", "immediate", "-w")
        shutil.rmtree(tmp_root, ignore_errors=True)
