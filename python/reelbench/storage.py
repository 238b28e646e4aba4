"""The artifact store: files under a root directory, addressed by ``file://`` URIs.

An ``s3://bucket/prefix`` root selects the object store of
:mod:`reelbench.object_store` instead, behind the same interface:
:func:`open_store` picks by the root's scheme. Code that needs a file on
this machine asks the store (``local_path``), never the URI itself.

Layout: ``{run_id}/raw/raw.mp4``, ``{run_id}/canon/canon.mp4``,
``{run_id}/metrics/frames.json``; lossless canonical copies of reference
videos, shared by every run of every item that uses them, in
``references/{key}.mp4``. Writes are atomic: content goes to a
temporary name in the final directory, is fsynced, then renamed over the
final name (and the directory fsynced), so a crash never leaves a half file
under a final name. ``commit`` takes a ``before_rename`` hook: the run
processor checks its fencing token there, so a worker that lost its run does
not replace the new owner's file. The window left is the few microseconds
between that check and the rename; a stale worker can at worst replace a
file with one of identical meaning (same request, same canonical format)
before the new owner's own rename replaces it again, and the database row
(written under the fence) always carries the hash of the file its owner wrote.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from reelbench.identity import Sha256, sha256_file
from reelbench.settings import DEFAULT_ARTIFACT_ROOT, artifact_root_of

__all__ = [
    "DEFAULT_ARTIFACT_ROOT",
    "ArtifactStore",
    "StoredFile",
    "artifact_root_of",
    "open_store",
    "path_from_uri",
]

ARTIFACT_NAMES = {
    "raw": ("raw", "raw.mp4"),
    "canon": ("canon", "canon.mp4"),
    "frames": ("metrics", "frames.json"),
}


@dataclass(frozen=True)
class StoredFile:
    """A file in the store: where it is, its SHA-256 and size."""

    uri: str
    sha256: str
    bytes: int

    @property
    def path(self) -> Path:
        """Local path of the file."""
        return path_from_uri(self.uri)


def path_from_uri(uri: str) -> Path:
    """The local path of a ``file://`` URI (``ValueError`` for other schemes)."""
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise ValueError(f"unsupported artifact URI {uri!r}: only file:// URIs are stored now")
    return Path(unquote(parts.path))


_OPEN: dict[tuple[str, str, str], ArtifactStore] = {}


def open_store(root: str | os.PathLike[str]) -> ArtifactStore:
    """The store for an artifact root: local folder, or ``s3://bucket/prefix``.

    Object stores are kept per process (root, scratch folder, endpoint), so
    their clients and the hashes of scratch files are shared by every run.
    """
    text = os.fspath(root)
    if not text.startswith("s3://"):
        return ArtifactStore(text)
    from reelbench.object_store import S3ArtifactStore, default_scratch

    key = (text.rstrip("/"), str(default_scratch()), os.environ.get("AWS_ENDPOINT_URL", ""))
    store = _OPEN.get(key)
    if store is None:
        store = _OPEN.setdefault(key, S3ArtifactStore(text))
    return store


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactStore:
    """Artifacts of runs under ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def check_writable(self) -> None:
        """Create the root if needed and write (then remove) a probe file in it.

        Raises ``OSError`` naming the root: a worker checks this before claiming
        anything, so an unwritable root stops it with one line instead of
        failing every run it claims.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-check-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise OSError(
                exc.errno, f"cannot write the artifact root {self.root}: {reason}"
            ) from exc

    def path_for(self, run_id: int, kind: str) -> Path:
        """Final path of a run's artifact of ``kind`` (raw, canon, frames)."""
        folder, name = ARTIFACT_NAMES[kind]
        return self.root / str(run_id) / folder / name

    def reference_path(self, key: str) -> Path:
        """Final path of the canonical copy of a reference video (``key``: its derived key)."""
        return self.root / "references" / f"{key}.mp4"

    def temp_path(self, final: Path) -> Path:
        """A fresh temporary name next to ``final`` (same directory, so rename is atomic)."""
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")

    def commit(
        self,
        temp: Path,
        final: Path,
        *,
        sha256: str | None = None,
        before_rename: Callable[[], None] | None = None,
    ) -> StoredFile:
        """fsync ``temp``, run ``before_rename`` (may raise), rename it to ``final``.

        ``sha256``: the hash already computed while writing; otherwise the file
        is hashed here (natively, streaming). On any exception ``temp`` is removed.
        """
        try:
            with temp.open("rb+") as handle:
                os.fsync(handle.fileno())
            size = temp.stat().st_size
            digest = sha256 or sha256_file(temp)
            if before_rename is not None:
                before_rename()
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return StoredFile(uri=final.as_uri(), sha256=digest, bytes=size)

    def write_bytes(
        self, final: Path, data: bytes, *, before_rename: Callable[[], None] | None = None
    ) -> StoredFile:
        """Atomically write ``data`` to ``final``."""
        temp = self.temp_path(final)
        temp.write_bytes(data)
        # Hash the bytes in hand rather than reading the file back.
        return self.commit(
            temp, final, sha256=Sha256(data).hexdigest(), before_rename=before_rename
        )

    def uri_of(self, path: Path) -> str:
        """The URI a file at ``path`` (under the root) is recorded with."""
        return path.as_uri()

    def local_path(self, uri: str, sha256: str | None = None) -> Path:
        """The local file behind ``uri`` (``sha256``: checked by stores that fetch files)."""
        return path_from_uri(uri)

    def verify(self, uri: str, sha256: str | None) -> bool:
        """True when the file at ``uri`` exists and its SHA-256 is ``sha256``."""
        if not sha256:
            return False
        try:
            path = path_from_uri(uri)
        except ValueError:
            return False
        return path.is_file() and sha256_file(path) == sha256
