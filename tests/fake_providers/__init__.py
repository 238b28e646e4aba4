"""Local HTTP servers speaking the direct provider APIs (OpenAI videos, Gemini Veo).

Each runs on 127.0.0.1 in a thread, checks the API key header the real API
checks, keeps every request (method, path, headers, JSON or multipart body)
and serves a real video file as the job's output. Tests script them the way
``provider_servers`` scripts the Replicate and fal fakes: polls a job stays
running, responses to give first (429 with Retry-After, 5xx, 4xx refusals),
a job that fails with the provider's own error.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Fake", "Handler", "Part", "Received", "everything_stored", "serve"]


@dataclass(frozen=True)
class Part:
    """One part of a multipart form."""

    value: bytes
    filename: str | None
    content_type: str


@dataclass
class Received:
    """One request the fake got; ``form`` holds a multipart body's parts."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    form: dict[str, Part] = field(default_factory=dict)

    @property
    def route(self) -> str:
        """The path without its query string."""
        return urlsplit(self.path).path


@dataclass
class Fake:
    """Shared state of a fake API: script it before, inspect it after."""

    video: Path
    key: str
    base_url: str = ""
    #: The same server under another host name (for cross-host redirects).
    other_host_url: str = ""
    received: list[Received] = field(default_factory=list)
    running_polls: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    scripted: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    #: The job ends failed with this (code, message).
    fail_with: tuple[Any, str] | None = None
    #: The job ends refused by the content filter with this reason.
    refuse_with: str | None = None
    polls: dict[str, int] = field(default_factory=dict)
    #: What each created job was asked (fields or body), by job id.
    jobs: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.release.set()

    @property
    def creates(self) -> int:
        """Jobs created (POST requests that got past auth and scripting)."""
        with self.lock:
            return self._creates

    _creates: int = 0

    def new_job(self) -> int:
        """Count a created job; return its number."""
        with self.lock:
            self._creates += 1
            return self._creates

    def job_done(self, job_id: str) -> bool:
        """Advance the job's poll count; True when it should report done."""
        with self.lock:
            self.polls[job_id] = self.polls.get(job_id, 0) + 1
            return self.release.is_set() and self.polls[job_id] > self.running_polls


class Handler(BaseHTTPRequestHandler):
    """Recording, scripting and auth shared by the fake APIs."""

    fake: Fake
    protocol_version = "HTTP/1.1"
    #: (header, prefix): where the real API expects its key.
    auth: tuple[str, str] = ("Authorization", "Bearer ")

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def record(self) -> Received:
        """Read and keep the request."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        body: Any = None
        form: dict[str, Part] = {}
        if ctype.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + raw
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                form[str(name)] = Part(
                    part.get_payload(decode=True) or b"",
                    part.get_filename(),
                    part.get_content_type(),
                )
        elif raw:
            body = json.loads(raw)
        got = Received(self.command, self.path, dict(self.headers.items()), body, form)
        with self.fake.lock:
            self.fake.received.append(got)
        return got

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer with a JSON body."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_video(self) -> None:
        """Answer with the served video file."""
        data = self.fake.video.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location: str) -> None:
        """Answer 302 to ``location``."""
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def scripted(self) -> bool:
        """Give the next scripted response, if any."""
        with self.fake.lock:
            if not self.fake.scripted:
                return False
            status, headers, body = self.fake.scripted.pop(0)
        self.send_json(status, body, headers)
        return True

    def authorized(self, got: Received) -> bool:
        """True when the request carries the key; else answer 401 as the API does."""
        header, prefix = self.auth
        if got.headers.get(header) == prefix + self.fake.key:
            return True
        self.send_json(401, self.unauthorized_body())
        return False

    def unauthorized_body(self) -> Any:
        """The API's own 401 body."""
        return {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}


@contextmanager
def serve(handler: type[Handler], video: Path, key: str) -> Iterator[Fake]:
    """Run ``handler`` on a free loopback port until the block ends."""
    fake = Fake(video=video, key=key)
    cls = type(handler.__name__, (handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    port = server.server_address[1]
    fake.base_url = f"http://127.0.0.1:{port}"
    fake.other_host_url = f"http://localhost:{port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def everything_stored(engine: Any, artifacts: Path) -> str:
    """Every value of every table and every artifact file, as one text."""
    from reelbench.db.models import Base

    parts: list[str] = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            parts.extend(repr(tuple(row)) for row in conn.execute(table.select()))
    for path in artifacts.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)
