"""``luma``: Luma's Dream Machine API (https://docs.lumalabs.ai), ``/dream-machine/v1``.

Written against the official SDK ``lumaai`` 1.18.1 (github.com/lumalabs/lumaai-python):

* create ``POST {base}/generations/video`` with ``prompt``, ``model``,
  ``resolution``, ``duration``, ``aspect_ratio`` (and any other param, e.g.
  ``loop``, ``concepts``) -> a generation whose ``id`` is the job id; an item
  image is the first keyframe, ``keyframes.frame0 = {"type": "image", "url": ...}``
* poll ``GET {base}/generations/{id}``: ``queued``, ``dreaming`` -> running;
  ``completed`` -> ``assets.video`` is downloaded; ``failed`` -> failed with
  Luma's ``failure_reason`` (terminal).

The base URL is ``params.base_url``, else ``LUMAAI_BASE_URL``, else
https://api.lumalabs.ai/dream-machine/v1 (the SDK's default, so the variable
means what it means to the SDK). The key is ``LUMAAI_API_KEY`` (Bearer).

Luma documents keyframe images as URLs only. With ``image_url_base`` set
(where the item images are published, e.g. ``https://cdn.example.com/items/``)
the keyframe is that base plus the image's file name; without it the image is
sent inline as a data URI, which the API may refuse (then the run fails with
Luma's message). Luma takes no seed: none is sent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reelbench.errors import TerminalError
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.http import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    HostedProvider,
    HttpApi,
    file_data_uri,
)
from reelbench.providers.params import number_param

__all__ = ["LUMA_DEFAULT_BASE_URL", "LumaProvider"]

LUMA_DEFAULT_BASE_URL = "https://api.lumalabs.ai/dream-machine/v1"
_DEFAULT_TIMEOUT = 60.0
#: Params the adapter reads itself; everything else goes into the request body.
_OWN_PARAMS = ("base_url", "max_download_bytes", "timeout", "image_url_base", "send_seed")


def _duration(value: Any) -> Any:
    """Luma spells durations ``"5s"``; a bare number of seconds is accepted too."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{int(value)}s" if float(value).is_integer() else f"{value}s"
    return value


class LumaProvider(HostedProvider):
    """Hosted generation on Luma (Ray 2, Ray Flash 2 and newer)."""

    name = "luma"
    model_pattern = re.compile(r"^ray-[a-z0-9-]+$")
    model_hint = "a Luma video model id like 'ray-2' or 'ray-flash-2'"
    default_image_input = "keyframes"

    key_env = ("LUMAAI_API_KEY",)
    honours_seed = False
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        "resolution": (None, "'540p', '720p', '1080p' or '4k' (Luma's default if unset)"),
        "duration": (None, "'5s' or '9s' (a number of seconds is turned into '5s')"),
        "aspect_ratio": (None, "'16:9', '9:16', '1:1', '4:3', '3:4', '21:9' or '9:21'"),
        "loop": (None, "whether the video loops"),
        "image_url_base": (None, "public URL prefix where the item images are published"),
        "base_url": (LUMA_DEFAULT_BASE_URL, "API root (or LUMAAI_BASE_URL)"),
        "timeout": (_DEFAULT_TIMEOUT, "seconds to wait for each HTTP response"),
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
            default_base_url=LUMA_DEFAULT_BASE_URL,
            base_url_env="LUMAAI_BASE_URL",
            timeout=timeout,
        )

    def _api(self, params: Mapping[str, Any]) -> HttpApi:
        timeout = float(params.get("timeout", _DEFAULT_TIMEOUT))
        with self._timed_lock:
            if timeout not in self._timed:
                self._timed[timeout] = self._make_api(timeout)
            return self._timed[timeout]

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """Model id, ``timeout``, ``duration`` and ``image_url_base`` must be usable."""
        super().validate(model, params)
        number_param(self.name, params, "timeout", _DEFAULT_TIMEOUT, lo=1, hi=3600)
        if params.get("send_seed"):
            raise ValueError("provider 'luma': the API takes no seed; remove send_seed")
        duration = _duration(params.get("duration", "5s"))
        if not isinstance(duration, str) or not re.fullmatch(r"\d+s", duration):
            raise ValueError(
                f"provider 'luma': duration must be like '5s' or 9, got {params['duration']!r}"
            )
        base = params.get("image_url_base")
        if base is not None and not (
            isinstance(base, str) and base.startswith(("https://", "http://"))
        ):
            raise ValueError(
                f"provider 'luma': image_url_base must be an http(s) URL, got {base!r}"
            )

    def generation_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body of the create call (no seed: Luma has none)."""
        params = request.params
        body: dict[str, Any] = {"prompt": request.prompt, "model": request.model}
        body.update({k: v for k, v in params.items() if k not in _OWN_PARAMS})
        if "duration" in body:
            body["duration"] = _duration(body["duration"])
        if request.image:
            base = params.get("image_url_base")
            if base:
                url = str(base).rstrip("/") + "/" + quote(Path(request.image).name)
            else:
                url = file_data_uri(request.image)
            body["keyframes"] = {"frame0": {"type": "image", "url": url}}
        return body

    def submit(self, request: GenerationRequest) -> str:
        """Create the generation; its id is the job id."""
        api = self._api(request.params)
        url = f"{api.base_url(request.params)}/generations/video"
        data = api.request_json(
            "POST", url, json_body=self.generation_body(request), what="creating a generation"
        )
        job_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise TerminalError(f"luma: the generation response has no id ({url})")
        return job_id

    def _generation(self, job_id: str, request: GenerationRequest) -> dict[str, Any]:
        api = self._api(request.params)
        url = f"{api.base_url(request.params)}/generations/{job_id}"
        data = api.request_json("GET", url, what=f"polling generation {job_id}")
        if not isinstance(data, dict):
            raise TerminalError(f"luma: unexpected generation body for {job_id}")
        return data

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Map the generation state onto running / succeeded / failed."""
        data = self._generation(job_id, request)
        state = data.get("state")
        if state in ("queued", "dreaming"):
            return JobStatus("running")
        if state == "completed":
            return JobStatus("succeeded")
        if state == "failed":
            reason = data.get("failure_reason") or "no reason given"
            return JobStatus("failed", error=f"generation {job_id} failed: {reason}")
        raise TerminalError(f"luma: unknown generation state {state!r} for {job_id}")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Download the generation's ``assets.video``."""
        api = self._api(request.params)
        data = self._generation(job_id, request)
        assets = data.get("assets")
        url = assets.get("video") if isinstance(assets, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise TerminalError(f"luma: generation {job_id} has no video asset")
        max_bytes = int(request.params.get("max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES))
        sha, size = api.download(
            url, dest, max_bytes=max_bytes, base_url=api.base_url(request.params), stop=request.stop
        )
        return FetchResult(sha256=sha, bytes=size)
