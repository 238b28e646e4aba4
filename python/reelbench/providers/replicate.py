"""``replicate``: Replicate's predictions API (https://replicate.com/docs/reference/http).

* ``model = "owner/name"`` -> ``POST {base}/v1/models/owner/name/predictions``
* ``model = "owner/name:VERSION"`` or a bare version id -> ``POST {base}/v1/predictions``
  with ``{"version": ..., "input": ...}``
* poll ``GET {base}/v1/predictions/{id}`` (starting, processing -> running;
  succeeded; failed; canceled -> failed, retryable)
* the output (a URL, a list of URLs or an object holding one) is downloaded.

The model input is ``{"prompt": ..., "seed": ..., **params}`` minus the
adapter's own keys (``base_url``, ``max_download_bytes``, ``image_input``,
``send_seed``). An item image is sent as a data URI under ``image_input``
(default ``"image"``). The key comes from ``REPLICATE_API_TOKEN``.
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

__all__ = ["ReplicateProvider"]


class ReplicateProvider(HostedProvider):
    """Hosted generation on Replicate."""

    name = "replicate"
    model_pattern = re.compile(r"^[\w.-]+/[\w.-]+(:[0-9a-f]{16,})?$|^[0-9a-f]{64}$")
    model_hint = "'owner/name' or 'owner/name:version'"
    default_image_input = "image"
    key_env = ("REPLICATE_API_TOKEN",)
    #: The seed is sent (unless ``send_seed = false``); whether the model honours it varies.
    honours_seed = True
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        **HOSTED_PARAM_DOCS,
        "base_url": ("https://api.replicate.com", "API base (env REPLICATE_BASE_URL)"),
        "image_input": ("image", "the model input that receives the item's image"),
    }

    def __init__(self) -> None:
        super().__init__(
            HttpApi(
                self.name,
                key_env="REPLICATE_API_TOKEN",
                auth_scheme="Bearer",
                default_base_url="https://api.replicate.com",
                base_url_env="REPLICATE_BASE_URL",
            )
        )

    def submit(self, request: GenerationRequest) -> str:
        """Create a prediction; its id is the job id."""
        model = request.model or ""
        base = self.api.base_url(request.params)
        if "/" in model and ":" not in model:
            url = f"{base}/v1/models/{model}/predictions"
            body: dict[str, Any] = {"input": self.model_input(request)}
        else:
            url = f"{base}/v1/predictions"
            body = {"version": model.rsplit(":", 1)[-1], "input": self.model_input(request)}
        data = self.api.request_json("POST", url, json_body=body, what="creating a prediction")
        job_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise TerminalError(f"replicate: the prediction response has no id ({url})")
        return job_id

    def _get(self, job_id: str, request: GenerationRequest) -> dict[str, Any]:
        url = f"{self.api.base_url(request.params)}/v1/predictions/{job_id}"
        data = self.api.request_json("GET", url, what=f"polling prediction {job_id}")
        if not isinstance(data, dict):
            raise TerminalError(f"replicate: unexpected prediction body for {job_id}")
        return data

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Map the prediction status onto running / succeeded / failed."""
        data = self._get(job_id, request)
        status = data.get("status")
        if status in ("starting", "processing"):
            return JobStatus("running")
        if status == "succeeded":
            return JobStatus("succeeded")
        if status == "canceled":
            return JobStatus("failed", error=f"prediction {job_id} was canceled", retryable=True)
        if status == "failed":
            return JobStatus("failed", error=f"prediction {job_id} failed: {data.get('error')}")
        raise TerminalError(f"replicate: unknown prediction status {status!r} for {job_id}")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Download the prediction's output video."""
        data = self._get(job_id, request)
        url = find_url(data.get("output"))
        if not url:
            raise TerminalError(f"replicate: prediction {job_id} has no output URL")
        max_bytes = int(request.params.get("max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES))
        sha, size = self.api.download(
            url,
            dest,
            max_bytes=max_bytes,
            base_url=self.api.base_url(request.params),
            stop=request.stop,
        )
        metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
        info = {"predict_time": metrics.get("predict_time")} if metrics else {}
        return FetchResult(sha256=sha, bytes=size, info=info)
