"""``google``: Veo through the Gemini API (https://ai.google.dev/gemini-api/docs/video).

Written against the shapes of google-genai 2.19.0 in Gemini Developer API
mode (``models.py`` ``generate_videos``, ``operations.py``, ``files.py``),
API version ``v1beta``:

* create ``POST {base}/v1beta/models/{model}:predictLongRunning`` with
  ``{"instances": [{"prompt", "image": {"bytesBase64Encoded", "mimeType"}}],
  "parameters": {...}}`` -> a long-running operation whose ``name``
  (``models/{model}/operations/{id}``) is the job id;
* poll ``GET {base}/v1beta/{name}`` until ``done``; an ``error``
  (``google.rpc.Status``) fails the job; otherwise the video is
  ``response.generateVideoResponse.generatedSamples[0].video.uri``, and a
  response without samples but with ``raiMediaFilteredReasons`` is a refusal;
* download the sample like the SDK: ``{base}/v1beta/files/{id}:download?alt=media``
  with the key.

The key is sent as ``x-goog-api-key``, from ``GOOGLE_API_KEY`` or
``GEMINI_API_KEY`` (the SDK's order). ``base`` is ``params.base_url``, else
``GOOGLE_GEMINI_BASE_URL``, else ``https://generativelanguage.googleapis.com``.

Every param but the adapter's own (``base_url``, ``max_download_bytes``,
``send_seed``) goes into ``parameters`` under its API name (``aspectRatio``,
``durationSeconds``, ``resolution``, ``negativePrompt``, ``personGeneration``,
...). The Gemini API takes no seed (the SDK refuses ``seed`` outside Vertex
AI), so none is sent unless ``send_seed = true`` (for a compatible endpoint
that takes ``parameters.seed``, a uint32). The API reports no cost.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reelbench.errors import TerminalError
from reelbench.identity import Sha256
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.http import DEFAULT_MAX_DOWNLOAD_BYTES, HttpApi
from reelbench.providers.params import number_param

__all__ = ["GoogleProvider"]

API_VERSION = "v1beta"
_OWN = ("base_url", "max_download_bytes", "send_seed")
_MODEL = re.compile(r"^(models/)?[\w.-]+$")
_FILE_ID = re.compile(r"files/([a-z0-9]+)")
#: google.rpc.Code values of an operation error that may pass on a new try:
#: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE.
_RETRYABLE_CODES = (4, 8, 10, 13, 14)
_STRINGS = ("aspectRatio", "resolution", "negativePrompt", "personGeneration")


class GoogleProvider:
    """Veo 2, 3 and 3.1 through the Gemini API's long-running predict call."""

    name = "google"
    key_env = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    honours_seed = False
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        "aspectRatio": (None, "'16:9' or '9:16' (API default 16:9)"),
        "durationSeconds": (None, "clip length: Veo 2 5-8, Veo 3/3.1 4, 6 or 8 (default 8)"),
        "resolution": (None, "'720p', '1080p' (Veo 3/3.1), '4k' (Veo 3.1)"),
        "negativePrompt": (None, "what the video should not show"),
        "personGeneration": (None, "'allow_all', 'allow_adult' or 'dont_allow'"),
        "send_seed": (False, "send parameters.seed (the Gemini API takes none)"),
        "base_url": (
            "https://generativelanguage.googleapis.com",
            "API base without version (env GOOGLE_GEMINI_BASE_URL)",
        ),
        "max_download_bytes": (DEFAULT_MAX_DOWNLOAD_BYTES, "download cap in bytes"),
    }

    def __init__(self) -> None:
        self.api = HttpApi(
            self.name,
            key_env=self.key_env,
            auth_scheme="",
            auth_header="x-goog-api-key",
            default_base_url="https://generativelanguage.googleapis.com",
            base_url_env="GOOGLE_GEMINI_BASE_URL",
        )

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """A model id (``veo-3.0-generate-001``) and well-typed known parameters."""
        if not model or not _MODEL.match(model):
            raise ValueError(
                f"provider 'google': model must be a Veo model id like "
                f"'veo-3.0-generate-001', got {model!r}"
            )
        for key in _STRINGS:
            if key in params and not isinstance(params[key], str):
                raise ValueError(f"provider 'google': {key} must be a string, got {params[key]!r}")
        if "durationSeconds" in params:
            number_param(self.name, params, "durationSeconds", 8, lo=1, hi=60, integer=True)
        if params.get("sampleCount", 1) != 1:
            raise ValueError(
                "provider 'google': sampleCount must be 1 (one video per run; use repeats for more)"
            )
        if not isinstance(params.get("send_seed", False), bool):
            raise ValueError("provider 'google': send_seed must be true or false")
        number_param(
            self.name, params, "max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES, lo=1, hi=2**50
        )

    @staticmethod
    def _model(request: GenerationRequest) -> str:
        return (request.model or "").removeprefix("models/")

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body of the predictLongRunning call."""
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.image:
            path = Path(request.image)
            instance["image"] = {
                "bytesBase64Encoded": base64.b64encode(path.read_bytes()).decode("ascii"),
                "mimeType": mimetypes.guess_type(path.name)[0] or "image/png",
            }
        parameters = {k: v for k, v in request.params.items() if k not in _OWN}
        if "durationSeconds" in parameters:
            parameters["durationSeconds"] = int(parameters["durationSeconds"])
        if request.params.get("send_seed", False):
            parameters["seed"] = request.seed % 2**32
        return {"instances": [instance], "parameters": parameters}

    def submit(self, request: GenerationRequest) -> str:
        """Start the long-running predict call; the operation's name is the job id."""
        base = self.api.base_url(request.params)
        url = f"{base}/{API_VERSION}/models/{self._model(request)}:predictLongRunning"
        data = self.api.request_json(
            "POST", url, json_body=self.body(request), what="starting video generation"
        )
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            raise TerminalError(
                f"google: the predictLongRunning response has no operation name ({url})"
            )
        return name

    def _operation(self, job_id: str, request: GenerationRequest) -> dict[str, Any]:
        url = f"{self.api.base_url(request.params)}/{API_VERSION}/{quote(job_id, safe='/')}"
        data = self.api.request_json("GET", url, what=f"polling operation {job_id}")
        if not isinstance(data, dict):
            raise TerminalError(f"google: unexpected body polling operation {job_id}")
        return data

    @staticmethod
    def _video(operation: Mapping[str, Any]) -> Mapping[str, Any] | None:
        response = operation.get("response")
        generated = response.get("generateVideoResponse") if isinstance(response, dict) else None
        samples = generated.get("generatedSamples") if isinstance(generated, dict) else None
        if isinstance(samples, list) and samples and isinstance(samples[0], dict):
            video = samples[0].get("video")
            if isinstance(video, dict) and (video.get("uri") or video.get("encodedVideo")):
                return video
        return None

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Running until ``done``; then the error, the refusal or success."""
        operation = self._operation(job_id, request)
        if not operation.get("done"):
            return JobStatus("running")
        error = operation.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message") or "no error message"
            detail = self.api._redact(f"operation {job_id} failed (code {code}): {message}")
            return JobStatus("failed", error=detail, retryable=code in _RETRYABLE_CODES)
        if self._video(operation) is not None:
            return JobStatus("succeeded")
        response = operation.get("response")
        generated = response.get("generateVideoResponse") if isinstance(response, dict) else None
        reasons = generated.get("raiMediaFilteredReasons") if isinstance(generated, dict) else None
        if reasons:
            text = "; ".join(str(r) for r in reasons)
            return JobStatus(
                "failed", error=f"operation {job_id}: video filtered by Google: {text}"
            )
        return JobStatus("failed", error=f"operation {job_id} finished without a video")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Download the first generated sample (or decode it when inline)."""
        video = self._video(self._operation(job_id, request))
        if video is None:
            raise TerminalError(f"google: operation {job_id} has no generated video")
        max_bytes = int(request.params.get("max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES))
        base = self.api.base_url(request.params)
        uri = video.get("uri")
        if not uri:
            return self._write_inline(str(video.get("encodedVideo")), dest, max_bytes)
        found = _FILE_ID.search(str(uri))
        # Like the SDK: the file is fetched from the API's files service by id,
        # so the key goes to the API host (or the compatible endpoint in use).
        url = f"{base}/{API_VERSION}/files/{found.group(1)}:download?alt=media" if found else uri
        sha, size = self.api.download(
            str(url), dest, max_bytes=max_bytes, base_url=base, stop=request.stop
        )
        return FetchResult(sha256=sha, bytes=size)

    def _write_inline(self, encoded: str, dest: Path, max_bytes: int) -> FetchResult:
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TerminalError("google: the inline video is not valid base64") from exc
        if not data:
            raise TerminalError("google: the inline video is empty")
        if len(data) > max_bytes:
            raise TerminalError(
                f"google: output is {len(data)} bytes, over the max_download_bytes cap "
                f"of {max_bytes}"
            )
        dest.write_bytes(data)
        hasher = Sha256()
        hasher.update(data)
        return FetchResult(sha256=hasher.hexdigest(), bytes=len(data))
