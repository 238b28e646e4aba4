"""Local HTTP servers that speak Runway's and Luma's job APIs, for adapter tests.

Shapes follow the official SDKs (runwayml 5.13.0: ``/v1/image_to_video``,
``/v1/text_to_video``, ``/v1/tasks/{id}`` with PENDING/THROTTLED/RUNNING/
SUCCEEDED/FAILED/CANCELLED; lumaai 1.18.1: ``/dream-machine/v1/generations/video``,
``/dream-machine/v1/generations/{id}`` with queued/dreaming/completed/failed).
Like ``provider_servers`` they run on 127.0.0.1 in a thread, keep every request
and can be scripted: polls a job stays running, responses to give first,
release to hold jobs running. A prompt containing ``REFUSE`` is refused by
moderation the way each API does it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from provider_servers import FakeApi, _Handler

__all__ = ["LUMA_PREFIX", "serve_luma", "serve_runway"]

LUMA_PREFIX = "/dream-machine/v1"
REFUSE = "REFUSE"


def _prompt_refused(body: Any, key: str) -> bool:
    return isinstance(body, dict) and REFUSE in str(body.get(key, ""))


class _Runway(_Handler):
    """Runway: Bearer key and ``X-Runway-Version`` required on every API call."""

    def _checked(self) -> bool:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._send(401, {"error": "Missing or invalid API key"})
            return False
        if not self.headers.get("X-Runway-Version"):
            self._send(400, {"error": "X-Runway-Version header is required"})
            return False
        return True

    def do_POST(self) -> None:
        got = self._record()
        if self._scripted() or not self._checked():
            return
        task = got.path.removeprefix("/v1/")
        if task not in ("image_to_video", "text_to_video"):
            self._send(404, {"error": "Not found"})
            return
        body = got.body if isinstance(got.body, dict) else {}
        issues = []
        if "ratio" not in body:
            issues.append({"path": ["ratio"], "message": "Required"})
        if task == "image_to_video" and not str(body.get("promptImage", "")).startswith(
            ("data:image/", "https://")
        ):
            issues.append({"path": ["promptImage"], "message": "Invalid image"})
        if issues:
            self._send(400, {"error": "Validation of body failed", "issues": issues})
            return
        job = f"task-{self.api.submits}"
        with self.api.lock:
            self.api.polls.setdefault(f"refused:{job}", int(_prompt_refused(body, "promptText")))
        self._send(200, {"id": job})

    def do_GET(self) -> None:
        got = self._record()
        if got.path.startswith("/files/"):
            self._file()
            return
        if self._scripted() or not self._checked():
            return
        job = got.path.rsplit("/", 1)[-1]
        if f"refused:{job}" not in self.api.polls:
            self._send(404, {"error": "Task not found"})
            return
        base = {"id": job, "createdAt": "2026-12-03T12:00:00.000Z"}
        first = self.api.polls.get(job, 0) == 0
        if not self.api.job_done(job):
            status = "THROTTLED" if first else "RUNNING"
            extra = {"progress": 0.5} if status == "RUNNING" else {}
            self._send(200, base | {"status": status} | extra)
        elif self.api.polls[f"refused:{job}"]:
            self._send(
                200,
                base
                | {
                    "status": "FAILED",
                    "failure": "Your prompt was flagged by our content moderation system.",
                    "failureCode": "SAFETY.INPUT.TEXT",
                },
            )
        elif self.api.fail_with:
            self._send(
                200,
                base
                | {"status": "FAILED", "failure": self.api.fail_with, "failureCode": "INTERNAL"},
            )
        else:
            self._send(
                200,
                base | {"status": "SUCCEEDED", "output": [f"{self.api.base_url}/files/{job}.mp4"]},
            )


class _Luma(_Handler):
    """Luma: Bearer key; a seed (the API has none) is a 400 naming the field."""

    def _checked(self) -> bool:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._send(401, {"detail": "Invalid API key"})
            return False
        return True

    def _generation(self, job: str, state: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": job,
            "generation_type": "video",
            "state": state,
            "failure_reason": None,
            "created_at": "2026-12-03T12:00:00.000Z",
            "assets": None,
            "model": "ray-2",
            "request": None,
        } | extra

    def do_POST(self) -> None:
        got = self._record()
        if self._scripted() or not self._checked():
            return
        if got.path != f"{LUMA_PREFIX}/generations/video":
            self._send(404, {"detail": "Not Found"})
            return
        body = got.body if isinstance(got.body, dict) else {}
        if "seed" in body:
            self._send(400, {"detail": "seed: Extra inputs are not permitted"})
            return
        if not str(body.get("model", "")).startswith("ray-"):
            self._send(400, {"detail": f"model: invalid model {body.get('model')!r}"})
            return
        if _prompt_refused(body, "prompt"):
            self._send(
                400, {"detail": "400: prompt not allowed because advanced moderation failed"}
            )
            return
        job = f"gen-{self.api.submits}"
        with self.api.lock:
            self.api.polls.setdefault(f"known:{job}", 1)
        self._send(201, self._generation(job, "queued", request=body))

    def do_GET(self) -> None:
        got = self._record()
        if got.path.startswith("/files/"):
            self._file()
            return
        if self._scripted() or not self._checked():
            return
        job = got.path.rsplit("/", 1)[-1]
        if f"known:{job}" not in self.api.polls:
            self._send(404, {"detail": "Generation not found"})
            return
        first = self.api.polls.get(job, 0) == 0
        if not self.api.job_done(job):
            self._send(200, self._generation(job, "queued" if first else "dreaming"))
        elif self.api.fail_with:
            self._send(200, self._generation(job, "failed", failure_reason=self.api.fail_with))
        else:
            assets = {"video": f"{self.api.base_url}/files/{job}.mp4", "image": None}
            self._send(200, self._generation(job, "completed", assets=assets))


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


def serve_runway(video: Path) -> Any:
    """A fake ``api.dev.runwayml.com`` serving ``video`` as every task's output."""
    return _serve(_Runway, video)


def serve_luma(video: Path) -> Any:
    """A fake ``api.lumalabs.ai`` serving ``video`` as every generation's asset.

    Its API root (the adapter's ``base_url``) is ``api.base_url + LUMA_PREFIX``.
    """
    return _serve(_Luma, video)
