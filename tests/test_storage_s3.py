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
    store.scratch.trim()
    kept = sorted(p.parent.parent.name for p in (tmp_path / "small").rglob("raw.mp4"))
    assert kept == ["2", "3"]
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
