"""The object-store artifact store against a real S3 server (SeaweedFS on loopback).

Objects are read back with boto3, an independent client, so the checks do
not trust the store's own view of what it wrote.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from s3_server import S3Server

from reelbench.cli.options import BadInput, check_artifact_root
from reelbench.errors import LeaseLost, RetryableError
from reelbench.object_store import CHUNK, S3ArtifactStore, parse_s3_uri
from reelbench.storage import open_store


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[Any]:
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    yield client
    client.close()


def object_bytes(s3: Any, uri: str) -> bytes:
    loc = parse_s3_uri(uri)
    body = s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
    try:
        return bytes(body.read())
    finally:
        body.close()


def exists(s3: Any, uri: str) -> bool:
    loc = parse_s3_uri(uri)
    try:
        s3.head_object(Bucket=loc.bucket, Key=loc.key)
    except ClientError:
        return False
    return True


def test_s3_root_selects_the_object_store_with_the_local_layout(s3_root: str, s3: Any) -> None:
    store = open_store(s3_root)
    assert isinstance(store, S3ArtifactStore)
    stored = store.write_bytes(store.path_for(7, "frames"), b"{}")
    assert stored.uri == f"{s3_root}/7/metrics/frames.json"
    assert object_bytes(s3, stored.uri) == b"{}"
    assert store.uri_of(store.path_for(7, "raw")) == f"{s3_root}/7/raw/raw.mp4"


def test_multipart_upload_hash_matches_the_object_and_another_host_reads_it(
    s3_root: str, s3: Any, tmp_path: Path
) -> None:
    store = S3ArtifactStore(s3_root, scratch=tmp_path / "host-a")
    final = store.path_for(3, "raw")
    temp = store.temp_path(final)
    data = os.urandom(2 * CHUNK + 12345)  # three parts
    temp.write_bytes(data)
    stored = store.commit(temp, final)
    content = object_bytes(s3, stored.uri)
    assert content == data
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.bytes == len(data)
    assert not temp.exists()

    other = S3ArtifactStore(s3_root, scratch=tmp_path / "host-b")
    assert other.verify(stored.uri, stored.sha256)
    local = other.local_path(stored.uri, stored.sha256)
    assert local.is_relative_to(tmp_path / "host-b")
    assert local.read_bytes() == data


def test_failed_fence_never_makes_the_object_visible(s3_root: str, s3: Any) -> None:
    store = open_store(s3_root)
    final = store.path_for(1, "canon")
    owner = store.write_bytes(final, b"the new owner's video")

    def fence() -> None:
        raise LeaseLost("run 1 was reclaimed")

    temp = store.temp_path(final)
    temp.write_bytes(os.urandom(CHUNK + 1))  # multipart: the parts are sent, not completed
    with pytest.raises(LeaseLost):
        store.commit(temp, final, before_rename=fence)
    assert object_bytes(s3, owner.uri) == b"the new owner's video"
    assert not temp.exists()

    fresh = store.path_for(2, "canon")
    with pytest.raises(LeaseLost):
        store.write_bytes(fresh, b"stale", before_rename=fence)
    assert not exists(s3, store.uri_of(fresh))


def test_an_object_that_does_not_match_its_hash_counts_as_missing(
    s3_root: str, s3: Any, tmp_path: Path
) -> None:
    store = open_store(s3_root)
    stored = store.write_bytes(store.path_for(4, "raw"), b"video")
    loc = parse_s3_uri(stored.uri)
    s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=b"tampered")
    reader = S3ArtifactStore(s3_root, scratch=tmp_path / "reader")
    assert not reader.verify(stored.uri, stored.sha256)
    with pytest.raises(FileNotFoundError, match="does not match"):
        reader.local_path(stored.uri, stored.sha256)
    assert not reader.verify(f"{s3_root}/no/such/object", stored.sha256)


def test_scratch_keeps_under_its_cap_by_dropping_least_recently_used_files(
    s3_root: str, tmp_path: Path
) -> None:
    store = S3ArtifactStore(s3_root, scratch=tmp_path / "small")
    store.scratch.max_bytes = 2500
    uris = []
    for run_id in (1, 2, 3):
        path = store.path_for(run_id, "raw")
        uris.append(store.write_bytes(path, bytes([run_id]) * 1000))
        # Pretend each file was last used long ago, oldest first.
        os.utime(path, (1_000_000 + run_id, 1_000_000 + run_id))
    # The next file in (used now) makes scratch trim itself, oldest first.
    store.write_bytes(store.path_for(4, "raw"), b"\x04" * 1000)
    kept = sorted(p.parent.parent.name for p in (tmp_path / "small").rglob("raw.mp4"))
    assert kept == ["3", "4"]
    # An evicted file is fetched again on demand.
    local = store.local_path(uris[0].uri, uris[0].sha256)
    assert local.read_bytes() == b"\x01" * 1000


def test_missing_credentials_are_a_clear_error(
    s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BadInput, match="AWS_SECRET_ACCESS_KEY") as caught:
        check_artifact_root(s3_root + "/creds")
    assert "reelbench-test" in str(caught.value)


def test_missing_bucket_is_a_clear_error_naming_bucket_and_endpoint(
    s3_root: str, s3_server: S3Server
) -> None:
    with pytest.raises(BadInput) as caught:
        check_artifact_root("s3://no-such-bucket-here/prefix")
    message = str(caught.value)
    assert "no-such-bucket-here" in message
    assert s3_server.endpoint in message
    assert s3_server.secret_key not in message


def test_an_unreachable_store_raises_a_retryable_error(
    s3_root: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    store = S3ArtifactStore(s3_root, scratch=tmp_path / "down")
    with pytest.raises(RetryableError, match="uploading") as caught:
        store.write_bytes(store.path_for(1, "frames"), b"{}")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(caught.value)
    assert list((tmp_path / "down").rglob("*.tmp")) == []


def test_serve_streams_s3_videos_with_ranges(s3_root: str, sqlite_url: str, tmp_path: Path) -> None:
    import httpx
    from report_data import fill_database
    from sqlalchemy import update
    from sqlalchemy.orm import Session
    from test_serve import _serve

    from reelbench.db.engine import make_engine
    from reelbench.db.models import Artifact
    from reelbench.judging.storage import judgeable_runs
    from reelbench.storage import path_from_uri

    fx = fill_database(sqlite_url, tmp_path)
    store = open_store(s3_root)
    engine = make_engine(sqlite_url)
    try:
        with Session(engine) as session:
            run = judgeable_runs(session, fx.experiment_id)[0]
            art = session.get(Artifact, run.artifact_id)
            assert art is not None
            local = path_from_uri(art.uri)
            data = local.read_bytes()
            final = store.path_for(run.run_id, "canon")
            temp = store.temp_path(final)
            temp.write_bytes(data)
            stored = store.commit(temp, final)
            session.execute(update(Artifact).where(Artifact.id == art.id).values(uri=stored.uri))
            session.commit()
        local.unlink()  # served from the bucket, not from a file on this machine
        final.unlink()
    finally:
        engine.dispose()
    for base in _serve(sqlite_url):
        with httpx.Client(base_url=base, timeout=20) as client:
            whole = client.get(f"/video/{run.artifact_id}")
            assert whole.status_code == 200 and whole.content == data
            assert whole.headers["accept-ranges"] == "bytes"
            part = client.get(f"/video/{run.artifact_id}", headers={"range": "bytes=10-19"})
            assert part.status_code == 206 and part.content == data[10:20]
            assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
            tail = client.get(f"/video/{run.artifact_id}", headers={"range": "bytes=-5"})
            assert tail.status_code == 206 and tail.content == data[-5:]
            past = client.get(f"/video/{run.artifact_id}", headers={"range": f"bytes={len(data)}-"})
            assert past.status_code == 416


def test_forgotten_cache_files_are_deleted_from_the_bucket(s3_root: str, s3: Any) -> None:
    from reelbench.db.calls import remove_files

    store = open_store(s3_root)
    stored = store.write_bytes(store.path_for(9, "raw"), b"garbage")
    assert remove_files([stored.uri]) == [stored.uri]
    assert not exists(s3, stored.uri)
    assert remove_files([stored.uri]) == []
