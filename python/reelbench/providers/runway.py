"""``runway``: Runway's developer API (https://docs.dev.runwayml.com), version 2024-11-06.

Written against the official SDK ``runwayml`` 5.13.0 (github.com/runwayml/sdk-python):

* image-to-video ``POST {base}/v1/image_to_video`` with ``model``, ``promptImage``
  (the item's image as a data URI), ``promptText``, ``ratio``, ``duration``, ``seed``
* text-to-video ``POST {base}/v1/text_to_video`` (same body without ``promptImage``)
* both answer ``{"id": ...}``, the task id (the job id)
* poll ``GET {base}/v1/tasks/{id}``: PENDING, THROTTLED, RUNNING -> running;
  SUCCEEDED -> the first URL of ``output`` is downloaded; FAILED -> failed with
  Runway's ``failure`` and ``failureCode`` (terminal, except internal failures);
  CANCELLED -> failed, retryable.

Every request carries ``Authorization: Bearer $RUNWAYML_API_SECRET`` and
``X-Runway-Version`` (``api_version``, default 2024-11-06). The base URL is
``params.base_url``, else ``RUNWAYML_BASE_URL``, else https://api.dev.runwayml.com
(the SDK's default). Other params go into the body unchanged, under Runway's
own names (``contentModeration``, ``negativePrompt``, ``audio``...).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reelbench.errors import TerminalError
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.http import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    HostedProvider,
    HttpApi,
    file_data_uri,
    find_url,
)
from reelbench.providers.params import number_param

__all__ = ["RUNWAY_API_VERSION", "RunwayProvider"]

#: The ``X-Runway-Version`` this adapter was written against (the SDK's default).
RUNWAY_API_VERSION = "2024-11-06"
_DEFAULT_TIMEOUT = 60.0
#: Runway takes inline images as data URIs of up to 5 MB.
_MAX_DATA_URI = 5 * 1024 * 1024
_TASKS = ("image_to_video", "text_to_video")
#: Params the adapter reads itself; everything else goes into the request body.
_OWN_PARAMS = (
    "base_url",
    "max_download_bytes",
    "send_seed",
    "timeout",
    "api_version",
    "task",
)


def _failure_retryable(code: str | None) -> bool:
    """Runway's internal failures may pass on a new task; input/safety ones will not."""
    if not code:
        return False
    parts = code.upper().split(".")
    return "INTERNAL" in parts and "SAFETY" not in parts


class RunwayProvider(HostedProvider):
    """Hosted generation on Runway (Gen-4 Turbo, Gen-4.5, Veo and the other task models)."""

    name = "runway"
    model_pattern = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
    model_hint = "a Runway model id like 'gen4_turbo' or 'gen4.5'"
    default_image_input = "promptImage"

    key_env = ("RUNWAYML_API_SECRET",)
    honours_seed = True
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        "ratio": (None, "output resolution as Runway names it, e.g. '1280:720' (required)"),
        "duration": (None, "seconds of video (gen4_turbo: 5 or 10; gen4.5: 2-10)"),
        "task": (None, "'image_to_video' or 'text_to_video' (default: by the item's image)"),
        "api_version": (RUNWAY_API_VERSION, "the X-Runway-Version header"),
        "base_url": ("https://api.dev.runwayml.com", "API root (or RUNWAYML_BASE_URL)"),
        "timeout": (_DEFAULT_TIMEOUT, "seconds to wait for each HTTP response"),
        "send_seed": (True, "send the run's seed (false for models that take none)"),
        "max_download_bytes": (DEFAULT_MAX_DOWNLOAD_BYTES, "largest output accepted"),
    }

    def __init__(self) -> None:
        super().__init__(self._make_api(_DEFAULT_TIMEOUT))
        self._timed: dict[float, HttpApi] = {_DEFAULT_TIMEOUT: self.api}
        self._timed_lock = threading.Lock()

    def _make_api(self, timeout: float) -> HttpApi:
        return HttpApi(
            self.name,
            key_env=self.key_env,
            auth_scheme="Bearer",
            default_base_url="https://api.dev.runwayml.com",
            base_url_env="RUNWAYML_BASE_URL",
            timeout=timeout,
            extra_headers={"X-Runway-Version": RUNWAY_API_VERSION},
        )

    def _api(self, params: Mapping[str, Any]) -> HttpApi:
        timeout = float(params.get("timeout", _DEFAULT_TIMEOUT))
        with self._timed_lock:
            if timeout not in self._timed:
                self._timed[timeout] = self._make_api(timeout)
            return self._timed[timeout]

    @staticmethod
    def _headers(params: Mapping[str, Any]) -> dict[str, str]:
        return {"X-Runway-Version": str(params.get("api_version", RUNWAY_API_VERSION))}

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """Model id, ``task``, ``ratio``, ``duration`` and ``timeout`` must be usable."""
        super().validate(model, params)
        number_param(self.name, params, "timeout", _DEFAULT_TIMEOUT, lo=1, hi=3600)
        if "duration" in params:
            number_param(self.name, params, "duration", 5, lo=1, hi=60, integer=True)
        task = params.get("task")
        if task is not None and task not in _TASKS:
            raise ValueError(
                f"provider 'runway': task must be one of {', '.join(_TASKS)}, got {task!r}"
            )
        ratio = params.get("ratio")
        if ratio is not None and not (isinstance(ratio, str) and re.fullmatch(r"\d+:\d+", ratio)):
            raise ValueError(
                f"provider 'runway': ratio must be 'WIDTH:HEIGHT' like '1280:720', got {ratio!r}"
            )
        version = params.get("api_version", RUNWAY_API_VERSION)
        if not isinstance(version, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", version):
            raise ValueError(
                f"provider 'runway': api_version must be a date like "
                f"{RUNWAY_API_VERSION!r}, got {version!r}"
            )

    def task_body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """The task endpoint (``image_to_video``/``text_to_video``) and its JSON body."""
        params = request.params
        task = str(params.get("task") or ("image_to_video" if request.image else "text_to_video"))
        body: dict[str, Any] = {"model": request.model, "promptText": request.prompt}
        if params.get("send_seed", True):
            body["seed"] = request.seed
        body.update({k: v for k, v in params.items() if k not in _OWN_PARAMS})
        if isinstance(body.get("duration"), float):
            body["duration"] = int(body["duration"])  # Runway takes whole seconds only
        if task == "image_to_video":
            if not request.image:
                raise TerminalError(
                    f"runway: task image_to_video needs an image but item "
                    f"{request.item_id!r} has none; give the item an image or set "
                    f"task = 'text_to_video'"
                )
            uri = file_data_uri(request.image)
            if len(uri) > _MAX_DATA_URI:
                raise TerminalError(
                    f"runway: the image of item {request.item_id!r} is {len(uri)} bytes as a "
                    f"data URI, over Runway's 5 MB limit; use a smaller image"
                )
            body["promptImage"] = uri
        return task, body

    def submit(self, request: GenerationRequest) -> str:
        """Create the task; its id is the job id."""
        api = self._api(request.params)
        task, body = self.task_body(request)
        url = f"{api.base_url(request.params)}/v1/{task}"
        data = api.request_json(
            "POST",
            url,
            json_body=body,
            what=f"creating a {task} task",
            headers=self._headers(request.params),
        )
        job_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise TerminalError(f"runway: the task response has no id ({url})")
        return job_id

    def _task(self, job_id: str, request: GenerationRequest) -> dict[str, Any]:
        api = self._api(request.params)
        url = f"{api.base_url(request.params)}/v1/tasks/{job_id}"
        data = api.request_json(
            "GET", url, what=f"polling task {job_id}", headers=self._headers(request.params)
        )
        if not isinstance(data, dict):
            raise TerminalError(f"runway: unexpected task body for {job_id}")
        return data

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Map the task status onto running / succeeded / failed."""
        data = self._task(job_id, request)
        status = data.get("status")
        if status in ("PENDING", "THROTTLED", "RUNNING"):
            return JobStatus("running")
        if status == "SUCCEEDED":
            return JobStatus("succeeded")
        if status == "CANCELLED":
            return JobStatus("failed", error=f"task {job_id} was cancelled", retryable=True)
        if status == "FAILED":
            code = data.get("failureCode")
            code = code if isinstance(code, str) else None
            reason = data.get("failure") or "no reason given"
            message = f"task {job_id} failed: {reason}" + (f" ({code})" if code else "")
            return JobStatus("failed", error=message, retryable=_failure_retryable(code))
        raise TerminalError(f"runway: unknown task status {status!r} for {job_id}")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Download the task's first output (Runway's URLs expire, so ask afresh)."""
        api = self._api(request.params)
        data = self._task(job_id, request)
        url = find_url(data.get("output"))
        if not url:
            raise TerminalError(f"runway: task {job_id} has no output URL")
        max_bytes = int(request.params.get("max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES))
        sha, size = api.download(
            url, dest, max_bytes=max_bytes, base_url=api.base_url(request.params), stop=request.stop
        )
        return FetchResult(sha256=sha, bytes=size)
