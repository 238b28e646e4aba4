"""The artifact store: layout, file:// URIs, atomic and fenced writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reelbench.errors import LeaseLost
from reelbench.storage import ArtifactStore, path_from_uri


def test_layout_and_uris(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    assert store.path_for(7, "raw") == tmp_path.resolve() / "7" / "raw" / "raw.mp4"
    assert store.path_for(7, "canon") == tmp_path.resolve() / "7" / "canon" / "canon.mp4"
    assert store.path_for(7, "frames") == tmp_path.resolve() / "7" / "metrics" / "frames.json"
    stored = store.write_bytes(store.path_for(7, "frames"), b"{}")
    assert stored.uri.startswith("file:///")
    assert path_from_uri(stored.uri) == store.path_for(7, "frames")


def test_write_reports_hash_and_size_and_replaces_atomically(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a b")  # a space: URIs are quoted and unquoted
    final = store.path_for(1, "raw")
    store.write_bytes(final, b"old content")
    stored = store.write_bytes(final, b"new content")
    assert final.read_bytes() == b"new content"
    assert stored.sha256 == hashlib.sha256(b"new content").hexdigest()
    assert stored.bytes == len(b"new content")
    assert stored.path == final
    assert sorted(p.name for p in final.parent.iterdir()) == ["raw.mp4"], "no temp file left"


def test_failed_fence_keeps_the_existing_file_and_removes_the_temp(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    final = store.path_for(1, "canon")
    store.write_bytes(final, b"the new owner's video")

    def fence() -> None:
        raise LeaseLost("run 1 was reclaimed")

    with pytest.raises(LeaseLost):
        store.write_bytes(final, b"a stale worker's video", before_rename=fence)
    assert final.read_bytes() == b"the new owner's video"
    assert [p.name for p in final.parent.iterdir()] == ["canon.mp4"]


def test_verify_checks_presence_and_hash(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    stored = store.write_bytes(store.path_for(2, "raw"), b"video")
    assert store.verify(stored.uri, stored.sha256)
    assert not store.verify(stored.uri, "0" * 64)
    assert not store.verify(stored.uri, None)
    stored.path.unlink()
    assert not store.verify(stored.uri, stored.sha256)
    assert not store.verify("s3://bucket/key", stored.sha256)


def test_only_file_uris_are_supported() -> None:
    with pytest.raises(ValueError, match="only file://"):
        path_from_uri("https://example.com/a.mp4")
