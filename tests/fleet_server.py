"""A fake hosted API (Replicate's predictions shape) that bills jobs and counts them in flight.

For the fleet tests: real HTTP on a loopback port, jobs that take real wall
time, and the bookkeeping the tests check:

- ``in_flight`` / ``max_in_flight``: jobs created and not yet downloaded;
- ``billed``: jobs created (one dollar each), where a create that repeats an
  ``Idempotency-Key`` already seen returns the first job and bills nothing;
- ``creates``: every create request received (repeats included), with its key;
- ``on_create``: called inside the create handler before the answer is sent
  (a test kills the submitting worker there: the job exists, the worker
  never learns its id);
- ``scripted``: answers to give to the next creates, e.g. a 429 with Retry-After;
- ``drop_answers``: that many creates make (and bill) their job, then close
  the connection without answering (the answer lost on the way back).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["BillingApi", "serve_billing"]


@dataclass
class BillingApi:
    video: Path
    job_seconds: float = 0.3
    base_url: str = ""
    in_flight: int = 0
    max_in_flight: int = 0
    billed: int = 0
    creates: list[tuple[float, str | None]] = field(default_factory=list)
    jobs: dict[str, float] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    downloaded: set[str] = field(default_factory=set)
    scripted: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    on_create: Callable[[str], None] | None = None
    drop_answers: int = 0
    hold: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.hold.set()  # cleared: jobs stay "processing"


class _Handler(BaseHTTPRequestHandler):
    api: BillingApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        key = self.headers.get("Idempotency-Key")
        api = self.api
        with api.lock:
            api.creates.append((time.monotonic(), key))
            if api.scripted:
                status, headers, body = api.scripted.pop(0)
                scripted: tuple[int, dict[str, str], Any] | None = (status, headers, body)
            else:
                scripted = None
            if scripted is None:
                if key is not None and key in api.keys:
                    job = api.keys[key]
                else:
                    job = f"p{len(api.jobs) + 1}"
                    api.jobs[job] = time.monotonic()
                    api.billed += 1
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                    if key is not None:
                        api.keys[key] = job
        if scripted is not None:
            status, headers, body = scripted
            self._send(status, body, headers)
            return
        if api.on_create is not None:
            api.on_create(job)
        with api.lock:
            drop = api.drop_answers > 0
            api.drop_answers -= drop
        if drop:
            self.close_connection = True
            return
        self._send(201, {"id": job, "status": "starting", "output": None, "error": None})

    def do_GET(self) -> None:
        api = self.api
        if self.path.startswith("/files/"):
            job = self.path.rsplit("/", 1)[-1].removesuffix(".mp4")
            with api.lock:
                # The job counts as done when its download starts: a worker
                # frees its slot only after the download ends.
                if job not in api.downloaded:
                    api.downloaded.add(job)
                    api.in_flight -= 1
            data = api.video.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        job = self.path.rsplit("/", 1)[-1]
        with api.lock:
            created = api.jobs.get(job)
        if created is None:
            self._send(404, {"detail": f"no prediction {job}"})
            return
        done = api.hold.is_set() and time.monotonic() - created >= api.job_seconds
        body: dict[str, Any] = {"id": job, "status": "succeeded" if done else "processing"}
        if done:
            body["output"] = f"{api.base_url}/files/{job}.mp4"
        self._send(200, body)


@contextmanager
def serve_billing(video: Path, job_seconds: float = 0.3) -> Iterator[BillingApi]:
    """Serve a :class:`BillingApi` on 127.0.0.1 until the block ends."""
    api = BillingApi(video=video, job_seconds=job_seconds)
    handler = type("BillingHandler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    api.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.hold.set()
        server.shutdown()
        server.server_close()
        thread.join()
