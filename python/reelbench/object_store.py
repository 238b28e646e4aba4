"""Artifacts in an S3-compatible object store, with a local scratch folder.

``s3://bucket/prefix`` as the artifact root selects this store. The layout
under the prefix is the local one (``{run_id}/raw/raw.mp4``, ...) and every
URI recorded is ``s3://bucket/key``. Credentials, endpoint and region come
from ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``
and ``AWS_REGION``/``AWS_DEFAULT_REGION``; they are passed to the client and
never stored, printed or recorded.

Writers still produce files locally: paths handed out by ``path_for`` and
``temp_path`` live in the scratch folder (``REELBENCH_SCRATCH``, default
``~/.cache/reelbench/scratch``), under ``{bucket}/{key}``. ``commit`` streams
the file to its final key as a multipart upload, hashing each chunk as it
goes; the ``before_rename`` hook runs after the last part is sent and before
the upload is completed, so a fenced-out worker's object never becomes
visible. The caller records the row only after ``commit`` returns.

Reads (``local_path``, ``verify``) download an object into scratch and check
its SHA-256: a mismatch is a missing artifact. Scratch is a cache: past its
cap (``REELBENCH_SCRATCH_MAX_MB``, default 20000) the least recently used
files are removed, except those used in the last minute.

Transient errors are retried by the client, then by this store a few times;
after that a :class:`~reelbench.errors.RetryableError` says what failed, and
the run goes back to the queue.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from reelbench.errors import RetryableError
from reelbench.identity import Sha256, sha256_file
from reelbench.storage import ArtifactStore, StoredFile

__all__ = [
    "S3ArtifactStore",
    "S3Location",
    "S3Settings",
    "default_scratch",
    "is_object_uri",
    "parse_s3_uri",
    "s3_client_store",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Bytes per multipart part and per read: large enough for throughput, small
#: enough that memory stays a few parts whatever the file's size.
CHUNK = 8 * 1024 * 1024
#: Attempts of one store operation (each with the client's own retries).
ATTEMPTS = 4
#: Files used this recently are never evicted from scratch (in use by a run).
KEEP_RECENT_SECONDS = 60.0
SCRATCH_ENV = "REELBENCH_SCRATCH"
SCRATCH_MAX_ENV = "REELBENCH_SCRATCH_MAX_MB"
DEFAULT_SCRATCH_MAX_MB = 20000


def is_object_uri(root: str | os.PathLike[str]) -> bool:
    """True for an ``s3://`` artifact root or URI."""
    return isinstance(root, str) and root.startswith("s3://")


class S3Location:
    """A bucket and a key (or key prefix) parsed from ``s3://bucket/key``."""

    def __init__(self, bucket: str, key: str) -> None:
        self.bucket = bucket
        self.key = key

    @property
    def uri(self) -> str:
        """The ``s3://bucket/key`` form."""
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> S3Location:
    """``s3://bucket/key`` -> bucket and key (``ValueError`` when it is not one)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return S3Location(parts.netloc, unquote(parts.path).lstrip("/"))


def default_scratch() -> Path:
    """The scratch folder: ``REELBENCH_SCRATCH`` or ``$XDG_CACHE_HOME/reelbench/scratch``."""
    given = os.environ.get(SCRATCH_ENV)
    if given:
        return Path(given).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "reelbench" / "scratch"


class S3Settings:
    """Client settings read from the environment (secrets kept out of ``repr``)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self.endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        self.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self._key_id = env.get("AWS_ACCESS_KEY_ID") or None
        self._secret = env.get("AWS_SECRET_ACCESS_KEY") or None
        self._token = env.get("AWS_SESSION_TOKEN") or None
        # Role-based credentials the client finds by itself (cloud workers).
        self.ambient = any(
            env.get(name)
            for name in (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            )
        )

    def __repr__(self) -> str:
        return f"S3Settings(endpoint={self.endpoint!r}, region={self.region!r})"

    @property
    def where(self) -> str:
        """The endpoint as shown in messages."""
        return self.endpoint or f"AWS S3 ({self.region})"

    def check(self, bucket: str) -> None:
        """Raise ``PermissionError`` when no credentials are configured (not worth a retry)."""
        if (self._key_id and self._secret) or self.ambient:
            return
        missing = [
            name
            for name, value in (
                ("AWS_ACCESS_KEY_ID", self._key_id),
                ("AWS_SECRET_ACCESS_KEY", self._secret),
            )
            if not value
        ]
        raise PermissionError(
            f"no credentials for the artifact bucket {bucket!r} at {self.where}: "
            f"set {' and '.join(missing)} (and AWS_ENDPOINT_URL for a server other than AWS)"
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``obstore.store.S3Store`` (credentials included)."""
        kwargs: dict[str, Any] = {"region": self.region}
        if self._key_id and self._secret:
            kwargs["access_key_id"] = self._key_id
            kwargs["secret_access_key"] = self._secret
            if self._token:
                kwargs["session_token"] = self._token
        if self.endpoint:
            kwargs["endpoint"] = self.endpoint
        return kwargs


def s3_client_store(bucket: str, settings: S3Settings) -> Any:
    """An ``obstore`` S3 store for ``bucket`` (imported here: only s3 roots need it)."""
    from datetime import timedelta

    from obstore.store import S3Store

    kwargs = settings.client_kwargs()
    client_options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=5),
        "timeout": timedelta(seconds=120),
    }
    if settings.endpoint and settings.endpoint.startswith("http://"):
        client_options["allow_http"] = True
    retry = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=15),
        "backoff": {
            "init_backoff": timedelta(milliseconds=200),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
    }
    return S3Store(
        bucket,
        client_options=client_options,  # type: ignore[arg-type]
        retry_config=retry,  # type: ignore[arg-type]
        virtual_hosted_style_request=False,
        **kwargs,
    )


def first_line(exc: BaseException) -> str:
    """The first line of an error (client errors carry long debug dumps)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_not_found(exc: BaseException) -> bool:
    """True for the client's "no such object" error."""
    return isinstance(exc, FileNotFoundError)


def with_retries(what: str, operation: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """Run ``operation``; retry transient errors, then raise :class:`RetryableError`.

    Not-found and permission errors are not transient: they are raised as they are.
    """
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as exc:
            if _fatal(exc):
                raise
            if attempt == attempts:
                raise RetryableError(
                    f"object store: {what} failed after {attempts} tries: {first_line(exc)}"
                ) from exc
            log.warning("object store: %s failed (%s); trying again", what, first_line(exc))
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
    raise AssertionError("unreachable")


def _fatal(exc: BaseException) -> bool:
    # Our own errors (a fence that raised, a stop) are never the store's to retry.
    from obstore.exceptions import BaseError

    return not isinstance(exc, (BaseError, OSError, TimeoutError, ConnectionError))


def hashed_chunks(
    path: Path, digest: Sha256, after_last: Callable[[], None] | None = None
) -> Iterator[bytes]:
    """The file's bytes in parts, each added to ``digest``; ``after_last`` before the end.

    An exception from ``after_last`` aborts the upload that consumes this
    iterator, so the object is never completed.
    """
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            yield chunk
    if after_last is not None:
        after_last()


def download(store: Any, key: str, target: Path) -> tuple[str, int]:
    """Stream ``key`` into ``target`` (atomically, via a temporary name); ``(sha256, bytes)``.

    A second thread hashes and writes each chunk while the next one arrives
    (both release the GIL); at most two chunks wait in between, so memory
    stays a few chunks whatever the object's size.
    """
    import obstore

    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    digest = Sha256()
    chunks: queue.Queue[Any] = queue.Queue(maxsize=2)
    failed: list[BaseException] = []

    def sink() -> None:
        try:
            with temp.open("wb") as handle:
                while (chunk := chunks.get()) is not None:
                    digest.update(chunk)
                    handle.write(chunk)
        except BaseException as exc:
            failed.append(exc)
            while chunks.get() is not None:  # let the reader finish and stop
                pass

    writer = threading.Thread(target=sink, name="s3-download-writer")
    writer.start()
    size = 0
    try:
        try:
            result = obstore.get(store, key)
            for chunk in result.stream(min_chunk_size=CHUNK):
                if failed:
                    break
                chunks.put(chunk)
                size += len(chunk)
        finally:
            chunks.put(None)
            writer.join()
        if failed:
            raise failed[0]
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size


class Scratch:
    """The local folder that holds files on their way to or from the store."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        # path -> (size, mtime_ns, sha256): files this process already hashed.
        self._hashed: dict[str, tuple[int, int, str]] = {}
        self._added = max_bytes  # unknown content at start: the first check looks
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, root: Path | None = None) -> Scratch:
        """Scratch at ``root`` (or the default) with the cap from the environment."""
        cap = int(os.environ.get(SCRATCH_MAX_ENV) or DEFAULT_SCRATCH_MAX_MB)
        return cls((root or default_scratch()).expanduser().resolve(), cap * 1024 * 1024)

    def local(self, bucket: str, key: str) -> Path:
        """Where the object ``bucket/key`` lives in scratch."""
        return self.root / bucket / key

    def remember(self, path: Path, sha256: str) -> None:
        """Note that ``path`` (as it is now) has ``sha256``; mark it used."""
        st = path.stat()
        self._hashed[str(path)] = (st.st_size, st.st_mtime_ns, sha256)

    def sha256(self, path: Path) -> str | None:
        """SHA-256 of ``path`` (cached while the file is unchanged), None when absent."""
        try:
            st = path.stat()
        except OSError:
            return None
        known = self._hashed.get(str(path))
        if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
            self.touch(path)
            return known[2]
        digest = sha256_file(path)
        self.touch(path)
        self.remember(path, digest)
        return digest

    @staticmethod
    def touch(path: Path) -> None:
        """Mark a file as used now (its access time orders eviction)."""
        try:
            st = path.stat()
            os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
        except OSError:
            pass

    def added(self, size: int) -> None:
        """Note ``size`` new bytes in scratch; trim when a twentieth of the cap came in.

        Walking the folder after every file would cost more as scratch grows.
        """
        with self._lock:
            self._added += size
            due = self._added * 20 >= self.max_bytes
            if due:
                self._added = 0
        if due:
            self.trim()

    def trim(self) -> list[Path]:
        """Remove least recently used files until scratch fits its cap; the files removed."""
        files: list[tuple[float, int, Path]] = []
        total = 0
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except OSError:
                    continue
                total += st.st_size
                if not name.endswith(".tmp"):  # files being written are not ours to take
                    files.append((max(st.st_atime, st.st_mtime), st.st_size, path))
        removed: list[Path] = []
        if total <= self.max_bytes:
            return removed
        recent = time.time() - KEEP_RECENT_SECONDS
        for used, size, path in sorted(files, key=lambda f: f[0]):
            if total <= self.max_bytes:
                break
            if used > recent:
                break
            try:
                path.unlink()
            except OSError:
                continue
            self._hashed.pop(str(path), None)
            total -= size
            removed.append(path)
        return removed


class S3ArtifactStore(ArtifactStore):
    """Artifacts under ``s3://bucket/prefix``; local work in a scratch folder."""

    def __init__(
        self,
        root_uri: str,
        *,
        scratch: Path | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        location = parse_s3_uri(root_uri)
        if not location.bucket:
            raise ValueError(f"artifact root {root_uri!r} names no bucket")
        self.bucket = location.bucket
        self.prefix = location.key.strip("/")
        self.root_uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.settings = S3Settings(environ)
        self.scratch = Scratch.from_env(scratch)
        # Local paths mirror keys: ``root`` is the prefix's folder in scratch.
        super().__init__(self.scratch.local(self.bucket, self.prefix))
        self._client: Any = None

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.root_uri!r}, scratch={str(self.scratch.root)!r})"

    @property
    def client(self) -> Any:
        """The object-store client (made on first use)."""
        if self._client is None:
            self.settings.check(self.bucket)
            self._client = s3_client_store(self.bucket, self.settings)
        return self._client

    def _key_of(self, path: Path) -> str:
        try:
            relative = path.resolve().relative_to(self.scratch.root / self.bucket)
        except ValueError:
            raise ValueError(f"{path} is not in the scratch folder of {self.root_uri}") from None
        return relative.as_posix()

    def uri_of(self, path: Path) -> str:
        """The ``s3://`` URI a scratch path is stored under."""
        return f"s3://{self.bucket}/{self._key_of(path)}"

    def check_writable(self) -> None:
        """Put then delete a probe object; ``OSError`` naming bucket and endpoint if refused."""
        import obstore

        where = f"bucket {self.bucket!r} at {self.settings.where}"
        self.settings.check(self.bucket)
        key = "/".join(p for p in (self.prefix, f".write-check-{uuid.uuid4().hex}") if p)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot write the scratch folder {self.scratch.root}: {exc.strerror}"
            ) from exc
        try:
            obstore.put(self.client, key, b"", use_multipart=False)
            obstore.delete(self.client, key)
        except Exception as exc:
            raise OSError(
                f"cannot write the artifact store {self.root_uri} ({where}): {first_line(exc)}; "
                "check that the bucket exists, the credentials in AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY may write it, and AWS_ENDPOINT_URL"
            ) from exc

    def commit(
        self,
        temp: Path,
        final: Path,
        *,
        sha256: str | None = None,
        before_rename: Callable[[], None] | None = None,
    ) -> StoredFile:
        """Upload ``temp`` to ``final``'s key; ``before_rename`` runs before it completes.

        The SHA-256 is computed from the bytes sent. On success the file stays in
        scratch under ``final`` (a later read needs no download); on any
        exception ``temp`` is removed and the object is not completed.
        """
        import obstore

        key = self._key_of(final)
        try:
            size = temp.stat().st_size

            def upload() -> str:
                digest = Sha256()
                obstore.put(
                    self.client,
                    key,
                    hashed_chunks(temp, digest, before_rename),
                    chunk_size=CHUNK,
                    max_concurrency=4,
                )
                return digest.hexdigest()

            digest = with_retries(f"uploading {self.bucket}/{key}", upload)
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self.scratch.remember(final, digest)
        self.scratch.added(size)
        return StoredFile(uri=f"s3://{self.bucket}/{key}", sha256=digest, bytes=size)

    def local_path(self, uri: str, sha256: str | None = None) -> Path:
        """A local copy of ``uri`` (downloaded into scratch unless already there).

        With ``sha256``, a copy whose hash differs is fetched again, and
        ``FileNotFoundError`` is raised when the object itself does not match.
        """
        if not is_object_uri(uri):
            return super().local_path(uri, sha256)
        location = parse_s3_uri(uri)
        if location.bucket != self.bucket:
            raise ValueError(f"artifact {uri} is not in the bucket of {self.root_uri}")
        local = self.scratch.local(location.bucket, location.key)
        have = self.scratch.sha256(local)
        if have is not None and (sha256 is None or have == sha256):
            return local

        def fetch() -> tuple[str, int]:
            return download(self.client, location.key, local)

        try:
            got, size = with_retries(f"downloading {uri}", fetch)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"artifact {uri} is not in the object store") from exc
        self.scratch.remember(local, got)
        self.scratch.added(size)
        if sha256 is not None and got != sha256:
            local.unlink(missing_ok=True)
            raise FileNotFoundError(f"artifact {uri} does not match its recorded SHA-256")
        return local

    def verify(self, uri: str, sha256: str | None) -> bool:
        """True when the object at ``uri`` has SHA-256 ``sha256`` (it is fetched into scratch)."""
        if not sha256:
            return False
        try:
            self.local_path(uri, sha256)
        except (FileNotFoundError, ValueError):
            return False
        return True

    def delete(self, uri: str) -> bool:
        """Delete the object at ``uri`` and its scratch copy; True when it existed."""
        import obstore

        location = parse_s3_uri(uri)
        self.scratch.local(location.bucket, location.key).unlink(missing_ok=True)
        try:
            with_retries(f"reading {uri}", lambda: obstore.head(self.client, location.key))
        except FileNotFoundError:
            return False
        with_retries(f"deleting {uri}", lambda: obstore.delete(self.client, location.key))
        return True
