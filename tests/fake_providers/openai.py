"""A fake ``api.openai.com/v1`` video API (Sora), shapes as in openai-python 3.3.1.

``POST /v1/videos`` (multipart: prompt, model, seconds, size, input_reference)
-> a ``video`` object, ``queued``; ``GET /v1/videos/{id}`` -> ``in_progress``
for ``running_polls`` polls, then ``completed`` (or ``failed`` with
``error: {code, message}``); ``GET /v1/videos/{id}/content`` -> the MP4.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fake_providers import Handler, serve

__all__ = ["serve_openai"]

_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")


class _OpenAI(Handler):
    auth = ("Authorization", "Bearer ")

    def _video(self, job: str, status: str, fields: dict[str, str]) -> dict[str, Any]:
        return {
            "id": job,
            "object": "video",
            "created_at": int(time.time()),
            "completed_at": None,
            "expires_at": None,
            "error": None,
            "model": fields.get("model", "sora-2"),
            "progress": 100 if status == "completed" else 0,
            "prompt": fields.get("prompt"),
            "remixed_from_video_id": None,
            "seconds": fields.get("seconds", "4"),
            "size": fields.get("size", "720x1280"),
            "status": status,
        }

    def do_POST(self) -> None:
        got = self.record()
        if not self.authorized(got) or self.scripted():
            return
        if got.route != "/v1/videos":
            self.send_json(404, {"error": {"message": "Invalid URL", "code": None}})
            return
        fields = {k: p.value.decode() for k, p in got.form.items() if p.filename is None}
        problem = None
        if "prompt" not in fields:
            problem = "Missing required parameter: 'prompt'."
        elif fields.get("seconds", "4") not in ("4", "8", "12"):
            problem = f"Invalid value: '{fields['seconds']}'. Supported values are: '4', '8', '12'."
        elif fields.get("size", "720x1280") not in _SIZES:
            problem = f"Invalid value: '{fields['size']}'."
        elif "seed" in fields:
            problem = "Unknown parameter: 'seed'."
        if problem:
            self.send_json(
                400,
                {"error": {"message": problem, "type": "invalid_request_error", "code": None}},
            )
            return
        job = f"video_{self.fake.new_job():04d}"
        with self.fake.lock:
            self.fake.polls.setdefault(job, 0)
            self.fake.jobs[job] = fields
        self.send_json(200, self._video(job, "queued", fields))

    def do_GET(self) -> None:
        got = self.record()
        if not self.authorized(got) or self.scripted():
            return
        parts = got.route.strip("/").split("/")
        if len(parts) < 3 or parts[:2] != ["v1", "videos"]:
            self.send_json(404, {"error": {"message": "Invalid URL"}})
            return
        job = parts[2]
        fields = self.fake.jobs.get(job)
        if fields is None:
            self.send_json(404, {"error": {"message": f"Video {job} not found"}})
            return
        if parts[3:] == ["content"]:
            self.send_video()
            return
        if not self.fake.job_done(job):
            self.send_json(200, self._video(job, "in_progress", fields))
        elif self.fake.fail_with:
            code, message = self.fake.fail_with
            body = self._video(job, "failed", fields)
            body["error"] = {"code": code, "message": message}
            self.send_json(200, body)
        else:
            self.send_json(200, self._video(job, "completed", fields))


def serve_openai(video: Path, key: str) -> Any:
    """A fake OpenAI video API serving ``video``; its base URL is ``fake.base_url + '/v1'``."""
    return serve(_OpenAI, video, key)
