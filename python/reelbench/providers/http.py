"""HTTP plumbing shared by the hosted-API adapters (``replicate``, ``fal``).

Maps HTTP outcomes to reelbench's error classes (429 -> retryable honoring
Retry-After, 5xx and transport errors/timeouts -> retryable, other 4xx ->
terminal), streams downloads to disk under a size cap while hashing, and
keeps API keys out of every message it builds.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from reelbench.errors import LeaseLost, RetryableError, TerminalError
from reelbench.identity import Sha256
from reelbench.providers.base import GenerationRequest
from reelbench.providers.params import number_param

__all__ = [
    "ADAPTER_PARAMS",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "HOSTED_PARAM_DOCS",
    "HostedProvider",
    "HttpApi",
    "file_data_uri",
    "find_url",
    "parse_retry_after",
]

DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
_BODY_SNIPPET = 500
_CHUNK = 1024 * 1024
_MAX_REDIRECTS = 10


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def file_data_uri(path: str) -> str:
    """A ``data:`` URI of a local file (how hosted APIs accept an input image inline)."""
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:{mime};base64,{data}"


def find_url(value: Any) -> str | None:
    """The first http(s) URL in a JSON output (string, list, or nested ``{"url": ...}``)."""
    if isinstance(value, str):
        return value if value.startswith(("http://", "https://")) else None
    if isinstance(value, Mapping):
        preferred = [value[k] for k in ("video", "url", "output") if k in value]
        rest = [v for k, v in value.items() if k not in ("video", "url", "output")]
        for item in [*preferred, *rest]:
            found = find_url(item)
            if found:
                return found
    if isinstance(value, list | tuple):
        for item in value:
            found = find_url(item)
            if found:
                return found
    return None


class HttpApi:
    """One hosted API: base URL, auth header from an environment variable, error mapping."""

    def __init__(
        self,
        provider: str,
        *,
        key_env: str | tuple[str, ...],
        auth_scheme: str,
        default_base_url: str,
        base_url_env: str,
        timeout: float = 60.0,
        auth_header: str = "Authorization",
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        #: Environment variables holding the key, tried in order (the first set wins).
        self.key_envs = (key_env,) if isinstance(key_env, str) else tuple(key_env)
        self.key_env = self.key_envs[0]
        #: ``"Bearer"`` -> ``Authorization: Bearer KEY``; ``""`` -> the bare key in ``auth_header``.
        self.auth_scheme = auth_scheme
        self.auth_header = auth_header
        self.extra_headers = dict(extra_headers or {})
        self.default_base_url = default_base_url
        self.base_url_env = base_url_env
        self.timeout = timeout
        self._http: httpx.Client | None = None
        self._client_lock = threading.Lock()

    def base_url(self, params: Mapping[str, Any]) -> str:
        """``params.base_url``, else the ``*_BASE_URL`` env variable, else the public API."""
        url = params.get("base_url") or os.environ.get(self.base_url_env) or self.default_base_url
        return str(url).rstrip("/")

    def _key(self) -> str:
        for env in self.key_envs:
            key = os.environ.get(env, "").strip()
            if key:
                return key
        names = " or ".join(self.key_envs)
        raise TerminalError(
            f"{self.provider}: the environment variable {names} is not set; "
            f"export your API key as {self.key_env} before starting workers"
        )

    def auth_headers(self) -> dict[str, str]:
        """The authentication header (and the API's fixed headers) of a request."""
        value = f"{self.auth_scheme} {self._key()}" if self.auth_scheme else self._key()
        return {**self.extra_headers, self.auth_header: value}

    def _redact(self, text: str) -> str:
        for env in self.key_envs:
            key = os.environ.get(env, "").strip()
            if key:
                text = text.replace(key, "[redacted]")
        return text

    def _client(self) -> httpx.Client:
        # One pooled client per adapter (httpx clients are thread-safe); building
        # one per request costs an SSL context each time.
        with self._client_lock:
            if self._http is None:
                self._http = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=10.0))
            return self._http

    def request_json(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        what: str,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send an authenticated request; return the JSON body or raise a RunError.

        ``headers`` are added to the auth header (an idempotency key, say);
        ``data``/``files`` send a multipart form instead of ``json_body``.
        """
        all_headers = {**self.auth_headers(), **(headers or {})}
        try:
            if files is not None or data is not None:
                response = self._client().request(
                    method, url, data=data, files=files, headers=all_headers
                )
            else:
                response = self._client().request(method, url, json=json_body, headers=all_headers)
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"{self.provider}: {what} timed out ({url})", maybe_delivered=_maybe_sent(exc)
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                f"{self.provider}: {what} failed: {self._redact(str(exc))} ({url})",
                maybe_delivered=_maybe_sent(exc),
            ) from exc
        self.raise_for_status(response, what)
        try:
            return response.json()
        except ValueError as exc:
            # A success status with a body we cannot read: the request was
            # acted on, what it created is unknown.
            raise RetryableError(
                f"{self.provider}: {what} returned a non-JSON body (HTTP {response.status_code})",
                maybe_delivered=True,
            ) from exc

    def raise_for_status(self, response: httpx.Response, what: str) -> None:
        """Map a non-2xx response to the matching error class."""
        status = response.status_code
        if status < 400:
            return
        body = self._redact(response.text[:_BODY_SNIPPET].strip())
        message = f"{self.provider}: {what} got HTTP {status} from {response.request.url}"
        if body:
            message += f": {body}"
        if status == 429:
            raise RetryableError(
                message, retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        if status >= 500 or status == 408:
            raise RetryableError(
                message,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                # A gateway that gave up waiting (502, 504) may have passed the
                # request on: the service behind it may have acted on it.
                maybe_delivered=status in (502, 504),
            )
        if status in (401, 403):
            message += f" (check {' or '.join(self.key_envs)})"
        raise TerminalError(message)

    def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int,
        base_url: str,
        stop: threading.Event | None = None,
    ) -> tuple[str, int]:
        """Stream ``url`` into ``dest`` hashing on the way; return (sha256, bytes).

        The API key is sent only to the API's own host: output files usually
        live on a CDN that must not see it.
        """
        hasher = Sha256()
        size = 0
        try:
            with self._open_following_redirects(url, base_url) as response:
                self.raise_for_status(response, "download of the output")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise TerminalError(
                        f"{self.provider}: output is {int(declared)} bytes, over the "
                        f"max_download_bytes cap of {max_bytes} ({url})"
                    )
                with dest.open("wb") as out:
                    for chunk in response.iter_bytes(_CHUNK):
                        if stop is not None and stop.is_set():
                            raise LeaseLost(f"{self.provider}: download stopped (run stopping)")
                        size += len(chunk)
                        if size > max_bytes:
                            raise TerminalError(
                                f"{self.provider}: output exceeds the max_download_bytes cap "
                                f"of {max_bytes} ({url})"
                            )
                        hasher.update(chunk)
                        out.write(chunk)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"{self.provider}: download timed out ({url})") from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                f"{self.provider}: download failed: {self._redact(str(exc))} ({url})"
            ) from exc
        if size == 0:
            raise TerminalError(f"{self.provider}: the output at {url} is empty")
        return hasher.hexdigest(), size

    @contextmanager
    def _open_following_redirects(self, url: str, base_url: str) -> Iterator[httpx.Response]:
        """A streamed GET of ``url`` that follows redirects itself.

        Each hop gets the auth header only when it goes to the API's own host:
        httpx strips ``Authorization`` on a cross-origin redirect but keeps any
        other header (``x-goog-api-key``, say), which would hand the key to a CDN.
        """
        api_host = urlsplit(base_url).netloc
        for _ in range(_MAX_REDIRECTS + 1):
            headers = self.auth_headers() if urlsplit(url).netloc == api_host else {}
            request = self._client().build_request("GET", url, headers=headers)
            response = self._client().send(request, stream=True)
            if not response.is_redirect:
                try:
                    yield response
                finally:
                    response.close()
                return
            location = response.headers.get("Location", "")
            response.close()
            url = str(response.url.join(location))
        raise RetryableError(f"{self.provider}: too many redirects downloading the output")


#: Params the adapters use themselves; everything else goes to the model.
ADAPTER_PARAMS = ("base_url", "max_download_bytes", "image_input", "send_seed")

#: ``param_docs`` of the adapter params that every :class:`HostedProvider` reads.
HOSTED_PARAM_DOCS: Mapping[str, tuple[Any, str]] = {
    "max_download_bytes": (DEFAULT_MAX_DOWNLOAD_BYTES, "download cap in bytes"),
    "send_seed": (True, "false: do not send the seed (models that reject it)"),
}


class HostedProvider:
    """What the hosted-API adapters share: the model check and the model input.

    The input is ``{"prompt", "seed", **params}`` minus :data:`ADAPTER_PARAMS`
    (``send_seed = false`` leaves the seed out, for models that take none); an
    item image goes as a data URI under ``params.image_input``.
    """

    name: str
    #: A model id this API accepts, and how to describe it in an error.
    model_pattern: re.Pattern[str]
    model_hint: str
    #: The input key of the image when ``image_input`` is not given.
    default_image_input: str

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """The model id must have this API's form; ``max_download_bytes`` must be sane."""
        if not model or not self.model_pattern.match(model):
            raise ValueError(
                f"provider {self.name!r}: model must be {self.model_hint}, got {model!r}"
            )
        number_param(
            self.name, params, "max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES, lo=1, hi=2**50
        )

    def model_input(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON input the model is given."""
        params = request.params
        body: dict[str, Any] = {"prompt": request.prompt}
        if params.get("send_seed", True):
            body["seed"] = request.seed
        body.update({k: v for k, v in params.items() if k not in ADAPTER_PARAMS})
        if request.image:
            key = str(params.get("image_input", self.default_image_input))
            body[key] = file_data_uri(request.image)
        return body


def _maybe_sent(exc: httpx.TransportError) -> bool:
    """False when the request surely never reached the server (no connection was made)."""
    return not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
