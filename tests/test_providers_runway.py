"""The ``runway`` adapter against a local server speaking Runway's task API."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hosted_fakes import serve_runway
from hosted_runs import (
    assert_no_secret_anywhere,
    experiment_through_the_worker,
    kill_while_polling_then_resume,
    png,
)
from processor_support import Lab

from reelbench.errors import RetryableError, TerminalError
from reelbench.identity import sha256_file
from reelbench.providers import GenerationRequest, get_provider
from reelbench.providers.pricing import estimate_usd
from reelbench.providers.runway import RUNWAY_API_VERSION
from reelbench.providers.synthetic import render_video

SECRET = "key_RunwayTopSecret_9c1f2e"


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "served.mp4"
    params = {"width": 48, "height": 32, "fps": 12, "seconds": 0.5}
    render_video(GenerationRequest("synthetic", "orbit", params, "x", 5), path)
    return path


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RUNWAYML_API_SECRET", SECRET)
    return SECRET


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


def _request(base_url: str, image: str | None = None, **params: object) -> GenerationRequest:
    params = {"base_url": base_url, "ratio": "1280:720", "duration": 5, **params}
    return GenerationRequest("runway", "gen4_turbo", params, "a cat", 42, "cat", image)


def _run(request: GenerationRequest, dest: Path) -> str:
    provider = get_provider("runway")
    job = provider.submit(request)
    for _ in range(50):
        status = provider.poll(job, request)
        if status.state != "running":
            break
    assert status.state == "succeeded", status
    provider.fetch(job, request, dest)
    return job


def test_image_to_video_sends_the_sdk_body_and_headers_and_downloads_the_output(
    tmp_path: Path, video: Path, key: str
) -> None:
    image = png(tmp_path / "first.png")
    with serve_runway(video) as api:
        api.running_polls = 2
        dest = tmp_path / "out.mp4"
        job = _run(_request(api.base_url, str(image)), dest)
    assert sha256_file(dest) == sha256_file(video)
    create = api.received[0]
    assert (create.method, create.path) == ("POST", "/v1/image_to_video")
    prefix = "data:image/png;base64,"
    assert create.body["promptImage"].startswith(prefix)
    assert base64.b64decode(create.body["promptImage"][len(prefix) :]) == image.read_bytes()
    assert {k: v for k, v in create.body.items() if k != "promptImage"} == {
        "model": "gen4_turbo",
        "promptText": "a cat",
        "ratio": "1280:720",
        "duration": 5,
        "seed": 42,
    }
    for r in api.received:
        if not r.path.startswith("/files/"):
            assert r.headers["Authorization"] == f"Bearer {key}"
            assert r.headers["X-Runway-Version"] == RUNWAY_API_VERSION
    polls = [r.path for r in api.received if r.method == "GET" and r.path.startswith("/v1/")]
    assert polls[0] == f"/v1/tasks/{job}"
    assert api.submits == 1


def test_throttled_and_running_tasks_are_running(video: Path, key: str) -> None:
    with serve_runway(video) as api:
        api.running_polls = 3
        request = _request(api.base_url)
        provider = get_provider("runway")
        job = provider.submit(request)
        states = [provider.poll(job, request).state for _ in range(4)]
    assert states == ["running", "running", "running", "succeeded"]
    # The fake answers THROTTLED first, then RUNNING: both mean "wait".
    assert api.polls[job] == 4


def test_text_to_video_without_image_and_api_version_override(
    tmp_path: Path, video: Path, key: str
) -> None:
    with serve_runway(video) as api:
        request = _request(api.base_url, api_version="2025-01-01", send_seed=False, duration=10.0)
        _run(request, tmp_path / "out.mp4")
    create = api.received[0]
    assert create.path == "/v1/text_to_video"
    assert "promptImage" not in create.body and "seed" not in create.body
    assert create.headers["X-Runway-Version"] == "2025-01-01"
    assert create.body["duration"] == 10 and isinstance(create.body["duration"], int)


def test_image_to_video_without_an_image_is_terminal_and_says_what_to_do(
    video: Path, key: str
) -> None:
    with serve_runway(video) as api:
        request = _request(api.base_url, task="image_to_video")
        with pytest.raises(TerminalError, match="text_to_video"):
            get_provider("runway").submit(request)
    assert api.submits == 0


def test_429_is_retryable_with_retry_after_and_5xx_is_retryable(video: Path, key: str) -> None:
    with serve_runway(video) as api:
        api.scripted.append((429, {"Retry-After": "11"}, {"error": "Too many requests"}))
        api.scripted.append((502, {}, {"error": "Bad gateway"}))
        request = _request(api.base_url)
        provider = get_provider("runway")
        with pytest.raises(RetryableError) as throttled:
            provider.submit(request)
        with pytest.raises(RetryableError) as bad_gateway:
            provider.submit(request)
        assert provider.submit(request)  # then it goes through
    assert throttled.value.retry_after == 11.0
    assert "502" in str(bad_gateway.value)


def test_a_bad_parameter_is_terminal_with_runways_message(video: Path, key: str) -> None:
    with serve_runway(video) as api:
        request = _request(api.base_url)
        params = {k: v for k, v in request.params.items() if k != "ratio"}
        bad = GenerationRequest("runway", "gen4_turbo", params, "a cat", 42)
        with pytest.raises(TerminalError) as info:
            get_provider("runway").submit(bad)
    assert "400" in str(info.value) and "ratio" in str(info.value)
    assert "Validation of body failed" in str(info.value)


def test_a_refused_prompt_fails_terminal_with_the_moderation_message(video: Path, key: str) -> None:
    with serve_runway(video) as api:
        params = {"base_url": api.base_url, "ratio": "1280:720"}
        request = GenerationRequest("runway", "gen4.5", params, "REFUSE this", 1)
        provider = get_provider("runway")
        job = provider.submit(request)
        status = provider.poll(job, request)
    assert status.state == "failed" and not status.retryable
    assert "content moderation" in (status.error or "")
    assert "SAFETY.INPUT.TEXT" in (status.error or "")


def test_a_cancelled_task_is_retryable_and_an_unknown_status_terminal(
    video: Path, key: str
) -> None:
    with serve_runway(video) as api:
        request = _request(api.base_url)
        provider = get_provider("runway")
        job = provider.submit(request)
        task = {"id": job, "createdAt": "2026-12-03T12:00:00.000Z"}
        api.scripted.append((200, {}, task | {"status": "CANCELLED"}))
        api.scripted.append((200, {}, task | {"status": "EXPLODED"}))
        cancelled = provider.poll(job, request)
        with pytest.raises(TerminalError, match="EXPLODED"):
            provider.poll(job, request)
    assert cancelled.state == "failed" and cancelled.retryable
    assert "cancelled" in (cancelled.error or "")


def test_an_image_over_runways_data_uri_limit_fails_before_any_request(
    tmp_path: Path, video: Path, key: str
) -> None:
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + bytes(4 * 1024 * 1024))  # 5.3 MB once base64-encoded
    with serve_runway(video) as api, pytest.raises(TerminalError, match="5 MB"):
        get_provider("runway").submit(_request(api.base_url, str(big)))
    assert api.received == []


def test_an_internal_failure_may_be_retried(video: Path, key: str) -> None:
    with serve_runway(video) as api:
        api.fail_with = "An unexpected error occurred"
        request = _request(api.base_url)
        provider = get_provider("runway")
        status = provider.poll(provider.submit(request), request)
    assert status.state == "failed" and status.retryable


def test_the_timeout_param_bounds_each_request(key: str) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(RetryableError, match="timed out"):
            get_provider("runway").submit(_request(base, timeout=1))


def test_missing_key_is_terminal_and_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    with pytest.raises(TerminalError, match="RUNWAYML_API_SECRET"):
        get_provider("runway").submit(_request("http://127.0.0.1:9"))


def test_validate_names_the_bad_param() -> None:
    provider = get_provider("runway")
    provider.validate("gen4_turbo", {"ratio": "1280:720", "duration": 10})
    for params, word in [
        ({"ratio": "16:9x"}, "ratio"),
        ({"task": "image_to_image"}, "task"),
        ({"duration": 2.5}, "duration"),
        ({"timeout": 0}, "timeout"),
        ({"api_version": "latest"}, "api_version"),
    ]:
        with pytest.raises(ValueError, match=word):
            provider.validate("gen4_turbo", params)
    with pytest.raises(ValueError, match="Runway model id"):
        provider.validate("Gen 4", {})


def test_described_for_the_providers_listing() -> None:
    provider = get_provider("runway")
    assert provider.key_env == ("RUNWAYML_API_SECRET",)  # type: ignore[attr-defined]
    assert provider.honours_seed is True  # type: ignore[attr-defined]
    assert provider.accepts_idempotency_key is False  # type: ignore[attr-defined]
    assert {"ratio", "duration", "timeout"} <= set(provider.param_docs)  # type: ignore[attr-defined]
    assert estimate_usd("runway", "gen4_turbo", {"duration": 10}) == 0.5


def test_whole_experiment_through_the_worker(
    lab: Lab, tmp_path: Path, video: Path, key: str
) -> None:
    image = png(tmp_path / "still.png")
    with serve_runway(video) as api:
        api.running_polls = 2
        variant = {
            "key": "gen45",
            "provider": "runway",
            "model": "gen4.5",
            "params": {"base_url": api.base_url, "ratio": "1280:720", "duration": 5},
        }
        experiment_through_the_worker(lab, api, variant, image, price_usd=0.6)
    paths = sorted(r.path for r in api.received if r.method == "POST")
    assert paths == ["/v1/image_to_video", "/v1/text_to_video"]


def test_worker_killed_while_polling_is_resumed_on_the_same_task(
    lab: Lab, tmp_path: Path, video: Path, key: str
) -> None:
    with serve_runway(video) as api:
        variant = {
            "key": "gen4",
            "provider": "runway",
            "model": "gen4_turbo",
            "params": {"base_url": api.base_url, "ratio": "1280:720"},
        }
        job = kill_while_polling_then_resume(lab, tmp_path, api, variant)
    assert job == "task-1"
    assert api.submits == 1, "the stored task was polled, not created again"
    assert any(r.path == "/v1/tasks/task-1" for r in api.received)


def test_the_key_reaches_no_table_artifact_log_error_or_report(
    lab: Lab, tmp_path: Path, video: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_runway(video) as api:
        # The failing call's server echoes the key, as some APIs do in errors.
        api.scripted.append((401, {}, {"error": f"invalid key {key}"}))
        variants = [
            {"key": "fails", "provider": "runway", "model": "gen4_turbo",
             "params": {"base_url": api.base_url, "ratio": "1280:720"}},
            {"key": "works", "provider": "runway", "model": "gen4.5",
             "params": {"base_url": api.base_url, "ratio": "1280:720"}},
        ]  # fmt: skip
        assert_no_secret_anywhere(lab, tmp_path, variants, key, caplog)
    assert any(r.headers.get("Authorization") == f"Bearer {key}" for r in api.received)
