"""Replicate and fal adapters against local servers speaking those APIs."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from provider_servers import serve_fal, serve_replicate

from reelbench.errors import RetryableError, TerminalError
from reelbench.identity import sha256_file
from reelbench.providers import GenerationRequest, get_provider
from reelbench.providers.http import find_url, parse_retry_after
from reelbench.providers.synthetic import render_video

TOKEN = "r8_secret_token_value_123"
FAL_KEY = "fal-secret-key:abcdef"


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "served.mp4"
    render_video(
        GenerationRequest(
            "synthetic", "orbit", {"width": 32, "height": 24, "seconds": 0.25}, "x", 1
        ),
        path,
    )
    return path


def _request(provider: str, model: str, base_url: str, **params: object) -> GenerationRequest:
    return GenerationRequest(provider, model, {"base_url": base_url, **params}, "a cat", 42)


def _run(provider_name: str, request: GenerationRequest, dest: Path) -> str:
    provider = get_provider(provider_name)
    job = provider.submit(request)
    for _ in range(20):
        status = provider.poll(job, request)
        if status.state != "running":
            break
    assert status.state == "succeeded", status
    provider.fetch(job, request, dest)
    return job


def test_replicate_model_flow_sends_input_and_bearer_token(
    tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    with serve_replicate(video) as api:
        api.running_polls = 2
        request = _request("replicate", "acme/video-gen", api.base_url, num_frames=49)
        dest = tmp_path / "out.mp4"
        _run("replicate", request, dest)
    assert sha256_file(dest) == sha256_file(video)
    create = api.received[0]
    assert (create.method, create.path) == ("POST", "/v1/models/acme/video-gen/predictions")
    assert create.body == {"input": {"prompt": "a cat", "seed": 42, "num_frames": 49}}
    assert create.headers["Authorization"] == f"Bearer {TOKEN}"
    assert api.submits == 1
    # The output file lives on the same host here, so it got the token; never the body.
    assert all(TOKEN not in str(r.body) for r in api.received)


def test_replicate_version_goes_to_predictions_endpoint(
    tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    with serve_replicate(video) as api:
        request = _request("replicate", "acme/video-gen:" + "ab" * 32, api.base_url)
        _run("replicate", request, tmp_path / "out.mp4")
    assert api.received[0].path == "/v1/predictions"
    assert api.received[0].body["version"] == "ab" * 32


def test_fal_queue_flow_uses_app_routes_and_key_header(
    tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    with serve_fal(video) as api:
        api.running_polls = 1
        request = _request("fal", "fal-ai/kling-video/v1/standard/text-to-video", api.base_url)
        dest = tmp_path / "out.mp4"
        job = _run("fal", request, dest)
    assert sha256_file(dest) == sha256_file(video)
    paths = [(r.method, r.path) for r in api.received]
    assert paths[0] == ("POST", "/fal-ai/kling-video/v1/standard/text-to-video")
    assert ("GET", f"/fal-ai/kling-video/requests/{job}/status") in paths
    assert ("GET", f"/fal-ai/kling-video/requests/{job}") in paths
    assert api.received[0].headers["Authorization"] == f"Key {FAL_KEY}"
    assert api.received[0].body == {"prompt": "a cat", "seed": 42}


@pytest.mark.parametrize("serve, name", [(serve_replicate, "replicate"), (serve_fal, "fal")])
def test_http_429_is_retryable_and_honors_retry_after(
    video: Path, monkeypatch: pytest.MonkeyPatch, serve: object, name: str
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    with serve(video) as api:  # type: ignore[operator]
        api.scripted.append((429, {"Retry-After": "7"}, {"detail": "throttled"}))
        request = _request(name, "acme/video-gen", api.base_url)
        with pytest.raises(RetryableError) as info:
            get_provider(name).submit(request)
    assert info.value.retry_after == 7.0
    assert "429" in str(info.value)


@pytest.mark.parametrize(
    "status, error",
    [
        (500, RetryableError),
        (502, RetryableError),
        (503, RetryableError),
        (504, RetryableError),
        (422, TerminalError),
        (401, TerminalError),
    ],
)
def test_http_status_classes(
    video: Path, monkeypatch: pytest.MonkeyPatch, status: int, error: type[Exception]
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    with serve_replicate(video) as api:
        api.scripted.append((status, {}, {"detail": f"echo {TOKEN}"}))
        request = _request("replicate", "acme/video-gen", api.base_url)
        with pytest.raises(error) as info:
            get_provider("replicate").submit(request)
    message = str(info.value)
    assert str(status) in message
    assert TOKEN not in message, "an API key echoed by the server must be redacted"
    if isinstance(info.value, RetryableError):
        # Only a gateway that gave up waiting may have passed the submit on.
        assert info.value.maybe_delivered == (status in (502, 504))


def test_unreachable_server_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    request = _request("fal", "fal-ai/x", "http://127.0.0.1:9")
    with pytest.raises(RetryableError) as info:
        get_provider("fal").submit(request)
    # No connection was made: the submit surely never arrived.
    assert not info.value.maybe_delivered


def test_a_submit_cut_off_after_sending_may_have_been_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    got = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def read_then_hang_up() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                got.set()

        thread = threading.Thread(target=read_then_hang_up, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(RetryableError) as info:
            get_provider("replicate").submit(_request("replicate", "acme/video-gen", base))
        thread.join(10)
    assert got.is_set(), "the request reached the server"
    assert info.value.maybe_delivered


def test_missing_key_is_terminal_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    request = _request("replicate", "acme/video-gen", "http://127.0.0.1:9")
    with pytest.raises(TerminalError, match="REPLICATE_API_TOKEN"):
        get_provider("replicate").submit(request)


def test_failed_job_is_reported_failed(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    with serve_replicate(video) as api:
        api.fail_with = "NSFW content detected"
        request = _request("replicate", "acme/video-gen", api.base_url)
        provider = get_provider("replicate")
        status = provider.poll(provider.submit(request), request)
    assert status.state == "failed"
    assert not status.retryable
    assert "NSFW" in (status.error or "")


def test_download_over_the_size_cap_is_terminal(
    tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    with serve_fal(video) as api:
        request = _request("fal", "fal-ai/x", api.base_url, max_download_bytes=100)
        provider = get_provider("fal")
        job = provider.submit(request)
        with pytest.raises(TerminalError, match="max_download_bytes"):
            provider.fetch(job, request, tmp_path / "out.mp4")


def test_retry_after_parses_seconds_and_dates() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_find_url_digs_through_output_shapes() -> None:
    assert find_url("https://x/a.mp4") == "https://x/a.mp4"
    assert find_url(["https://x/a.mp4", "https://x/b.mp4"]) == "https://x/a.mp4"
    assert find_url({"video": {"url": "https://x/v.mp4"}, "thumb": "https://x/t.png"}) == (
        "https://x/v.mp4"
    )
    assert find_url({"text": "no"}) is None


def test_adapters_require_a_model() -> None:
    with pytest.raises(ValueError, match="owner/name"):
        get_provider("replicate").validate(None, {})
    with pytest.raises(ValueError, match="fal model id"):
        get_provider("fal").validate("", {})
