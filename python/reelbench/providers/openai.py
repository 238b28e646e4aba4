"""``openai``: OpenAI's video API, Sora 2 (https://platform.openai.com/docs/api-reference/videos).

Written against the shapes of openai-python 3.3.1 (``resources/videos.py``,
``types/video*.py``):

* create ``POST {base}/videos``, a multipart form with ``prompt``, ``model``,
  ``seconds`` (a string: ``"4"``, ``"8"``, ``"12"``), ``size`` (``"720x1280"``,
  ``"1280x720"``, ``"1024x1792"``, ``"1792x1024"``) and, for image-to-video,
  the item's image as the file ``input_reference`` -> a ``Video`` whose ``id``
  is the job id;
* poll ``GET {base}/videos/{id}``: ``status`` queued, in_progress -> running;
  completed -> succeeded; failed -> failed with the video's ``error``
  (``code``, ``message``);
* download ``GET {base}/videos/{id}/content`` (the MP4).

``base`` is ``params.base_url``, else ``OPENAI_BASE_URL``, else
``https://api.openai.com/v1`` (like the SDK, the base includes ``/v1``). The
key comes from ``OPENAI_API_KEY`` (``Authorization: Bearer ...``). Sora takes
no seed, so none is sent; the SDK sends no idempotency key for this API, so
neither does this adapter. The API reports no cost: spend comes from the
price table.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reelbench.errors import TerminalError
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.http import DEFAULT_MAX_DOWNLOAD_BYTES, HttpApi
from reelbench.providers.params import number_param

__all__ = ["OpenAIProvider"]

DEFAULT_MODEL = "sora-2"
_OWN = ("base_url", "max_download_bytes")
_SIZE = re.compile(r"^\d{2,5}x\d{2,5}$")
_MODEL = re.compile(r"^[\w.:-]+$")
#: Error codes of a failed video that say the service, not the request, failed.
_RETRYABLE_CODES = ("server_error", "internal_error", "rate_limit_exceeded", "timeout")


class OpenAIProvider:
    """Sora 2 and Sora 2 Pro through OpenAI's video API."""

    name = "openai"
    key_env = ("OPENAI_API_KEY",)
    honours_seed = False
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        "seconds": (None, "clip length: 4, 8 or 12 (API default 4)"),
        "size": (None, "WIDTHxHEIGHT: 720x1280, 1280x720, 1024x1792, 1792x1024 (default 720x1280)"),
        "base_url": ("https://api.openai.com/v1", "API base (env OPENAI_BASE_URL), with /v1"),
        "max_download_bytes": (DEFAULT_MAX_DOWNLOAD_BYTES, "download cap in bytes"),
    }

    def __init__(self) -> None:
        self.api = HttpApi(
            self.name,
            key_env=self.key_env,
            auth_scheme="Bearer",
            default_base_url="https://api.openai.com/v1",
            base_url_env="OPENAI_BASE_URL",
        )

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """``seconds`` a positive whole number, ``size`` ``WIDTHxHEIGHT``, model an id."""
        if model is not None and not _MODEL.match(model):
            raise ValueError(f"provider 'openai': model must be an id like 'sora-2', got {model!r}")
        if "seconds" in params:
            seconds = params["seconds"]
            if isinstance(seconds, str) and seconds.isdigit():
                seconds = int(seconds)
            number_param(self.name, {"seconds": seconds}, "seconds", 4, lo=1, hi=600, integer=True)
        size = params.get("size")
        if size is not None and not (isinstance(size, str) and _SIZE.match(size)):
            raise ValueError(
                f"provider 'openai': size must be WIDTHxHEIGHT like '1280x720', got {size!r}"
            )
        number_param(
            self.name, params, "max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES, lo=1, hi=2**50
        )

    def form(self, request: GenerationRequest) -> dict[str, Any]:
        """The multipart fields of the create call (every one a form field, no file)."""
        fields: dict[str, Any] = {"prompt": request.prompt, "model": request.model or DEFAULT_MODEL}
        for key, value in request.params.items():
            if key in _OWN:
                continue
            fields[key] = str(int(value)) if key == "seconds" else str(value)
        return fields

    def submit(self, request: GenerationRequest) -> str:
        """Create the video job; its ``id`` is the job id."""
        url = f"{self.api.base_url(request.params)}/videos"
        # Every field goes as a part of its own: the API takes multipart/form-data
        # (the SDK sends it so even without a file).
        files: dict[str, Any] = {k: (None, v) for k, v in self.form(request).items()}
        if request.image:
            path = Path(request.image)
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            files["input_reference"] = (path.name, path.read_bytes(), mime)
        data = self.api.request_json("POST", url, files=files, what="creating a video")
        job_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise TerminalError(f"openai: the create response has no video id ({url})")
        return job_id

    def _get(self, job_id: str, request: GenerationRequest) -> dict[str, Any]:
        url = f"{self.api.base_url(request.params)}/videos/{job_id}"
        data = self.api.request_json("GET", url, what=f"polling video {job_id}")
        if not isinstance(data, dict):
            raise TerminalError(f"openai: unexpected body polling video {job_id}")
        return data

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Map the video's ``status`` onto running / succeeded / failed."""
        data = self._get(job_id, request)
        status = data.get("status")
        if status in ("queued", "in_progress"):
            return JobStatus("running")
        if status == "completed":
            return JobStatus("succeeded")
        if status == "failed":
            raw = data.get("error")
            error: dict[str, Any] = raw if isinstance(raw, dict) else {}
            code = str(error.get("code") or "")
            message = error.get("message") or "no error message"
            detail = f"video {job_id} failed" + (f" ({code})" if code else "") + f": {message}"
            return JobStatus(
                "failed", error=self.api._redact(detail), retryable=code in _RETRYABLE_CODES
            )
        raise TerminalError(f"openai: unknown video status {status!r} for {job_id}")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Download the finished video's MP4."""
        base = self.api.base_url(request.params)
        max_bytes = int(request.params.get("max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES))
        sha, size = self.api.download(
            f"{base}/videos/{job_id}/content",
            dest,
            max_bytes=max_bytes,
            base_url=base,
            stop=request.stop,
        )
        return FetchResult(sha256=sha, bytes=size)
