"""A fleet with no shared disk: workers that share the database and an S3 bucket.

Real ``reelbench worker`` processes (the real pipeline: provider-call
cache, normalization, metrics), each with its own scratch folder, so they
are two hosts in effect: nothing written by one is on the other's disk
except through the object store. Objects are read back with boto3.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from processor_support import SMALL_CANONICAL
from s3_server import S3Server, start_s3_server
from sqlalchemy import func, select

from reelbench.db.engine import Database, open_database
from reelbench.db.models import Artifact, Experiment, ProviderCall, Run
from reelbench.object_store import parse_s3_uri
from reelbench.spec import parse_spec
from reelbench.submit import submit_spec

_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _kill_leftover_workers() -> Iterator[None]:
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@contextlib.contextmanager
def _client(server: S3Server) -> Iterator[Any]:
    client = boto3.client("s3", endpoint_url=server.endpoint,
                          aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key,
                          region_name="us-east-1")  # fmt: skip
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[Any]:
    with _client(s3_server) as client:
        yield client


@pytest.fixture
def fleet_db(database_url: str) -> Iterator[tuple[str, Database]]:
    """Both backends: the hosts of a fleet share PostgreSQL (or one SQLite file)."""
    database = open_database(database_url)
    yield database_url, database
    database.dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[tuple[str, Database]]:
    database = open_database(sqlite_url)
    yield sqlite_url, database
    database.dispose()


def spec(
    name: str,
    items: int,
    *,
    seed: int = 11,
    latency: float = 0.0,
    retry: dict[str, Any] | None = None,
) -> Any:
    # An explicit seed: every experiment with these items asks the same requests,
    # so a later experiment's runs are cache hits on an earlier one's calls.
    params = {"width": 64, "height": 48, "fps": 12, "seconds": 0.5, "seed": seed,
              "latency_seconds": latency}  # fmt: skip
    return parse_spec({
        "experiment": {"name": name}, "canonical": SMALL_CANONICAL, "retry": retry or {},
        "items": [{"id": f"i{n}", "prompt": f"prompt {n}"} for n in range(items)],
        "variants": [{"key": "v", "provider": "synthetic", "params": params}],
    })  # fmt: skip


def start_worker(
    url: str, root: str, scratch: Path, log: Path, *args: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "REELBENCH_SCRATCH"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reelbench", "worker", "--db", url, "--artifacts", root,
             "--scratch", str(scratch), "--drain", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    _started.append(proc)
    return proc


def object_sha256(s3: Any, uri: str) -> str | None:
    loc = parse_s3_uri(uri)
    try:
        body = s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    try:
        return hashlib.sha256(body.read()).hexdigest()
    finally:
        body.close()


def assert_every_recorded_file_matches_its_object(db: Database, s3: Any) -> int:
    """Artifacts and cached raw files: each recorded hash is the object's content's."""
    with db.sessions() as session:
        files = [(a.uri, a.sha256) for a in session.scalars(select(Artifact))
                 if a.kind != "reference"]  # fmt: skip
        files += [(c.raw_artifact_uri, c.raw_sha256) for c in session.scalars(
            select(ProviderCall).where(ProviderCall.status == "succeeded"))]  # fmt: skip
    for uri, sha in files:
        assert uri is not None and uri.startswith("s3://"), uri
        assert object_sha256(s3, uri) == sha, uri
    return len(files)


def run_statuses(db: Database, experiment: str) -> list[str]:
    with db.sessions() as session:
        return list(session.scalars(
            select(Run.status).join(Experiment).where(Experiment.name == experiment)))  # fmt: skip


def test_two_hosts_share_results_through_the_bucket_only(
    s3_root: str, fleet_db: tuple[str, Database], s3: Any, tmp_path: Path
) -> None:
    url, db = fleet_db
    # Host A makes the calls; host B's runs of the same requests are cache hits on
    # A's raw files, fetched by URI into B's own scratch and hash-checked.
    submit_spec(db.sessions, spec("first", 4))
    a = start_worker(url, s3_root, tmp_path / "scratch-a", tmp_path / "a.log",
                     "--experiment", "first")  # fmt: skip
    assert a.wait(timeout=240) == 0, (tmp_path / "a.log").read_text()
    assert run_statuses(db, "first") == ["succeeded"] * 4
    with db.sessions() as session:
        calls = session.scalar(select(func.count()).select_from(ProviderCall))
    assert calls == 4

    submit_spec(db.sessions, spec("second", 4))
    b = start_worker(url, s3_root, tmp_path / "scratch-b", tmp_path / "b.log",
                     "--experiment", "second")  # fmt: skip
    assert b.wait(timeout=240) == 0, (tmp_path / "b.log").read_text()
    assert run_statuses(db, "second") == ["succeeded"] * 4
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ProviderCall)) == 4, "no new call"
        raws = session.scalars(select(Artifact.uri).join(Run).join(Experiment).where(
            Experiment.name == "second", Artifact.kind == "raw")).all()  # fmt: skip
    fetched = {p.relative_to(tmp_path / "scratch-b").as_posix() for p in
               (tmp_path / "scratch-b").rglob("raw*.mp4")}  # fmt: skip
    for uri in raws:
        loc = parse_s3_uri(uri)
        assert f"{loc.bucket}/{loc.key}" in fetched, "B read A's raw file from the bucket"
    assert not list((tmp_path / "scratch-a").rglob("*.tmp"))
    assert not list((tmp_path / "scratch-b").rglob("*.tmp"))

    # Both hosts at once on a third experiment with new requests (another seed).
    submit_spec(db.sessions, spec("third", 8, seed=12, latency=0.2))
    procs = [
        start_worker(
            url,
            s3_root,
            tmp_path / f"scratch-{h}",
            tmp_path / f"{h}.log",
            "--experiment",
            "third",
            "--concurrency",
            "2",
        )
        for h in ("a", "b")
    ]
    for proc, h in zip(procs, ("a", "b"), strict=True):
        assert proc.wait(timeout=240) == 0, (tmp_path / f"{h}.log").read_text()
    assert run_statuses(db, "third") == ["succeeded"] * 8
    assert assert_every_recorded_file_matches_its_object(db, s3) >= 3 * 16

    # The HTML report downloads the canonical videos it shows: the page is offline.
    out = tmp_path / "report"
    report = subprocess.run(
        [sys.executable, "-m", "reelbench", "report", "third", "--db", url,
         "--artifacts", s3_root, "--format", "html", "--output", str(out)],
        capture_output=True, text=True, env={**os.environ, "REELBENCH_SCRATCH":
                                             str(tmp_path / "scratch-report")}, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    with db.sessions() as session:
        canon = set(session.scalars(select(Artifact.sha256).join(Run).join(Experiment).where(
            Experiment.name == "third", Artifact.kind == "canon")))  # fmt: skip
    videos = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "videos").glob("*.mp4")}
    assert canon and canon <= videos
    page = (out / "index.html").read_text()
    assert "s3://" not in page.split("<video", 1)[-1].split(">", 1)[0]


def test_s3_outage_mid_run_loses_nothing_and_records_nothing_half_written(
    s3_server: S3Server,
    sqlite_db: tuple[str, Database],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server of its own: the session's server stays as it is for other tests.
    own = start_s3_server(tmp_path / "s3")
    try:
        for name, value in own.env().items():
            monkeypatch.setenv(name, value)
        with _client(own) as s3:
            _outage(own, f"s3://{own.bucket}/outage", sqlite_db, s3, tmp_path)
    finally:
        own.stop()


def _outage(
    s3_server: S3Server, s3_root: str, sqlite_db: tuple[str, Database], s3: Any, tmp_path: Path
) -> None:
    url, db = sqlite_db
    submit_spec(db.sessions, spec("outage", 8, seed=13, latency=0.5,
                                  retry={"max_attempts": 6, "backoff_seconds": 1}))  # fmt: skip
    procs = [start_worker(url, s3_root, tmp_path / f"scratch-{h}", tmp_path / f"{h}.log",
                          "--concurrency", "2") for h in ("a", "b")]  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if run_statuses(db, "outage").count("succeeded") >= 1:
            break
        time.sleep(0.1)
    s3_server.stop()
    done_before = run_statuses(db, "outage").count("succeeded")
    time.sleep(4)
    s3_server.start()
    for proc, h in zip(procs, ("a", "b"), strict=True):
        assert proc.wait(timeout=300) == 0, (tmp_path / f"{h}.log").read_text()
    assert done_before < 8, "runs were in flight during the outage"
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "object store" in logs, "the outage hit the workers"
    assert run_statuses(db, "outage") == ["succeeded"] * 8
    assert assert_every_recorded_file_matches_its_object(db, s3) == 8 * 3 + 8


def test_reelbench_run_with_s3_artifacts_writes_an_offline_report(
    s3_root: str, sqlite_url: str, s3: Any, tmp_path: Path
) -> None:
    spec_file = tmp_path / "exp.toml"
    spec_file.write_text(
        '[experiment]\nname = "one-command"\n'
        "[canonical]\nwidth = 64\nheight = 48\nfps = 12\n"
        '[[items]]\nid = "a"\nprompt = "a"\n[[items]]\nid = "b"\nprompt = "b"\n'
        '[[variants]]\nkey = "v"\nprovider = "synthetic"\n'
        "params = { seconds = 0.5, width = 64, height = 48, fps = 12 }\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "reelbench", "run", str(spec_file), "--db", sqlite_url,
         "--artifacts", s3_root, "--scratch", str(tmp_path / "scratch"),
         "--report", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    db = open_database(sqlite_url)
    try:
        with db.sessions() as session:
            canon = set(session.scalars(select(Artifact.sha256).where(Artifact.kind == "canon")))
        assert len(canon) == 2
        assert assert_every_recorded_file_matches_its_object(db, s3) == 2 * 3 + 2
    finally:
        db.dispose()
    videos = (tmp_path / "report" / "videos").glob("*.mp4")
    assert canon <= {hashlib.sha256(p.read_bytes()).hexdigest() for p in videos}
