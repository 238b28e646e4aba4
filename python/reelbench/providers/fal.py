"""``fal``: fal.ai's queue API (https://docs.fal.ai/model-apis/model-endpoints/queue).

* submit ``POST {base}/{model}`` with the input as the JSON body -> ``request_id``
* status ``GET {base}/{app}/requests/{id}/status`` (IN_QUEUE, IN_PROGRESS -> running;
  COMPLETED -> succeeded, or failed when the status carries an ``error``)
* result ``GET {base}/{app}/requests/{id}`` -> the first video URL in the result
  (``{"video": {"url": ...}}`` for fal's video models) is downloaded.

``app`` is the model id's first two path segments (``fal-ai/kling-video`` of
``fal-ai/kling-video/v1/standard/text-to-video``), as fal's queue routes
status and result by app. The input is ``{"prompt", "seed", **params}`` minus
the adapter's own keys (``base_url``, ``max_download_bytes``, ``image_input``,
``send_seed``); an item image goes as a data URI under ``image_input``
(default ``"image_url"``). The key comes from ``FAL_KEY``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reelbench.errors import TerminalError
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.http import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    HOSTED_PARAM_DOCS,
    HostedProvider,
    HttpApi,
    find_url,
)

__all__ = ["FalProvider"]


class FalProvider(HostedProvider):
    """Hosted generation on fal.ai."""

    name = "fal"
    model_pattern = re.compile(r"^[\w.-]+/[\w.-]+(/[\w.-]+)*$")
    model_hint = "a fal model id like 'fal-ai/ltx-video'"
    default_image_input = "image_url"
    key_env = ("FAL_KEY",)
    #: The seed is sent (unless ``send_seed = false``); whether the model honours it varies.
    honours_seed = True
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        **HOSTED_PARAM_DOCS,
        "base_url": ("https://queue.fal.run", "API base (env FAL_BASE_URL)"),
        "image_input": ("image_url", "the model input that receives the item's image"),
    }

    def __init__(self) -> None:
        super().__init__(
            HttpApi(
                self.name,
                key_env="FAL_KEY",
                auth_scheme="Key",
                default_base_url="https://queue.fal.run",
                base_url_env="FAL_BASE_URL",
            )
        )

    @staticmethod
    def _app(model: str | None) -> str:
        return "/".join((model or "").split("/")[:2])

    def submit(self, request: GenerationRequest) -> str:
        """Queue the request; fal's ``request_id`` is the job id."""
        url = f"{self.api.base_url(request.params)}/{request.model}"
        data = self.api.request_json(
            "POST", url, json_body=self.model_input(request), what="queueing a request"
        )
        job_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise TerminalError(f"fal: the queue response has no request_id ({url})")
        return job_id

    def _url(self, job_id: str, request: GenerationRequest) -> str:
        return f"{self.api.base_url(request.params)}/{self._app(request.model)}/requests/{job_id}"

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Map the queue status onto running / succeeded / failed."""
        data = self.api.request_json(
            "GET", f"{self._url(job_id, request)}/status", what=f"polling request {job_id}"
        )
        status = data.get("status") if isinstance(data, dict) else None
        if status in ("IN_QUEUE", "IN_PROGRESS"):
            return JobStatus("running")
        if status == "COMPLETED":
            if isinstance(data, dict) and data.get("error"):
                return JobStatus("failed", error=f"request {job_id} failed: {data['error']}")
            return JobStatus("succeeded")
        raise TerminalError(f"fal: unknown queue status {status!r} for request {job_id}")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Get the result and download its video."""
        data = self.api.request_json(
            "GET", self._url(job_id, request), what=f"getting the result of {job_id}"
        )
        url = find_url(data)
        if not url:
            raise TerminalError(f"fal: the result of request {job_id} has no video URL")
        max_bytes = int(request.params.get("max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES))
        sha, size = self.api.download(
            url,
            dest,
            max_bytes=max_bytes,
            base_url=self.api.base_url(request.params),
            stop=request.stop,
        )
        return FetchResult(sha256=sha, bytes=size)
