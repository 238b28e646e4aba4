"""Local HTTP servers that speak the Replicate and fal job APIs, for adapter tests.

They run on 127.0.0.1 in a thread, keep every request they receive (method,
path, headers, JSON body) and serve a video file as the job's output. Tests
script them: how many polls a job stays running, status codes to answer
first (429 with Retry-After, 500, 4xx), whether the job fails.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FakeApi", "Received", "serve_fal", "serve_replicate"]


@dataclass
class Received:
    """One request the fake API got."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    """Shared state of a fake API: script it before, inspect it after."""

    video: Path
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    #: Polls answered "running" before the job reports done (per job).
    running_polls: int = 0
    #: Hold jobs running until this is set (for kill-while-running tests).
    release: threading.Event = field(default_factory=threading.Event)
    #: Responses to give first, whatever the request: (status, headers, body).
    scripted: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    #: The job ends failed with this message.
    fail_with: str | None = None
    polls: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.release.set()

    @property
    def submits(self) -> int:
        """POST requests received (jobs created)."""
        return sum(1 for r in self.received if r.method == "POST")

    def job_done(self, job_id: str) -> bool:
        """Advance the job's poll count; True when it should report done."""
        with self.lock:
            self.polls[job_id] = self.polls.get(job_id, 0) + 1
            return self.release.is_set() and self.polls[job_id] > self.running_polls


class _Handler(BaseHTTPRequestHandler):
    api: FakeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _record(self) -> Received:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        got = Received(self.command, self.path, dict(self.headers.items()), body)
        with self.api.lock:
            self.api.received.append(got)
        return got

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _scripted(self) -> bool:
        with self.api.lock:
            if not self.api.scripted:
                return False
            status, headers, body = self.api.scripted.pop(0)
        self._send(status, body, headers)
        return True

    def _file(self) -> None:
        data = self.api.video.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Replicate(_Handler):
    def do_POST(self) -> None:
        got = self._record()
        if self._scripted():
            return
        if not got.path.startswith("/v1/") or not got.path.endswith("predictions"):
            self._send(404, {"detail": "not found"})
            return
        job = f"p{self.api.submits}"
        self._send(201, self._prediction(job, "starting", got.body.get("input")))

    def do_GET(self) -> None:
        got = self._record()
        if got.path.startswith("/files/"):
            self._file()
            return
        if self._scripted():
            return
        job = got.path.rsplit("/", 1)[-1]
        if not self.api.job_done(job):
            self._send(200, self._prediction(job, "processing", None))
        elif self.api.fail_with:
            body = self._prediction(job, "failed", None) | {"error": self.api.fail_with}
            self._send(200, body)
        else:
            body = self._prediction(job, "succeeded", None)
            body["output"] = f"{self.api.base_url}/files/{job}.mp4"
            body["metrics"] = {"predict_time": 1.5}
            self._send(200, body)

    def _prediction(self, job: str, status: str, inputs: Any) -> dict[str, Any]:
        return {
            "id": job,
            "status": status,
            "input": inputs,
            "output": None,
            "error": None,
            "urls": {
                "get": f"{self.api.base_url}/v1/predictions/{job}",
                "cancel": f"{self.api.base_url}/v1/predictions/{job}/cancel",
            },
        }


class _Fal(_Handler):
    def do_POST(self) -> None:
        got = self._record()
        if self._scripted():
            return
        job = f"r{self.api.submits}"
        app = "/".join(got.path.strip("/").split("/")[:2])
        base = f"{self.api.base_url}/{app}/requests/{job}"
        self._send(
            200,
            {
                "request_id": job,
                "status_url": f"{base}/status",
                "response_url": base,
                "cancel_url": f"{base}/cancel",
            },
        )

    def do_GET(self) -> None:
        got = self._record()
        if got.path.startswith("/files/"):
            self._file()
            return
        if self._scripted():
            return
        parts = got.path.strip("/").split("/")
        if parts[-1] == "status":
            job = parts[-2]
            if not self.api.job_done(job):
                self._send(202, {"status": "IN_PROGRESS", "queue_position": 0})
            elif self.api.fail_with:
                self._send(200, {"status": "COMPLETED", "error": self.api.fail_with})
            else:
                self._send(200, {"status": "COMPLETED", "response_url": got.path[:-7]})
            return
        job = parts[-1]
        self._send(
            200,
            {
                "video": {
                    "url": f"{self.api.base_url}/files/{job}.mp4",
                    "content_type": "video/mp4",
                },
                "seed": 1,
            },
        )


@contextmanager
def _serve(handler: type[_Handler], video: Path) -> Iterator[FakeApi]:
    api = FakeApi(video=video)
    cls = type(handler.__name__, (handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    api.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def serve_replicate(video: Path) -> Any:
    """A fake ``api.replicate.com`` serving ``video`` as every prediction's output."""
    return _serve(_Replicate, video)


def serve_fal(video: Path) -> Any:
    """A fake ``queue.fal.run`` serving ``video`` as every request's result."""
    return _serve(_Fal, video)
