"""The ``luma`` adapter against a local server speaking Luma's generations API."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hosted_fakes import LUMA_PREFIX, serve_luma
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
from reelbench.providers.luma import LUMA_DEFAULT_BASE_URL
from reelbench.providers.pricing import estimate_usd
from reelbench.providers.synthetic import render_video

SECRET = "luma-TopSecretKey-5d0a77"


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "served.mp4"
    params = {"width": 48, "height": 32, "fps": 12, "seconds": 0.5}
    render_video(GenerationRequest("synthetic", "orbit", params, "x", 5), path)
    return path


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LUMAAI_API_KEY", SECRET)
    return SECRET


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


def _request(
    root: str, image: str | None = None, prompt: str = "a cat", **params: object
) -> GenerationRequest:
    params = {"base_url": root + LUMA_PREFIX, "resolution": "720p", "duration": "5s", **params}
    return GenerationRequest("luma", "ray-2", params, prompt, 42, "cat", image)


def _run(request: GenerationRequest, dest: Path) -> str:
    provider = get_provider("luma")
    job = provider.submit(request)
    for _ in range(50):
        status = provider.poll(job, request)
        if status.state != "running":
            break
    assert status.state == "succeeded", status
    provider.fetch(job, request, dest)
    return job


def test_generation_body_has_no_seed_and_the_image_as_first_keyframe(
    tmp_path: Path, video: Path, key: str
) -> None:
    image = png(tmp_path / "first.png")
    with serve_luma(video) as api:
        api.running_polls = 2
        dest = tmp_path / "out.mp4"
        job = _run(_request(api.base_url, str(image), aspect_ratio="16:9", loop=True), dest)
    assert sha256_file(dest) == sha256_file(video)
    create = api.received[0]
    assert (create.method, create.path) == ("POST", f"{LUMA_PREFIX}/generations/video")
    frame0 = create.body.pop("keyframes")["frame0"]
    assert frame0["type"] == "image"
    prefix = "data:image/png;base64,"
    assert base64.b64decode(frame0["url"][len(prefix) :]) == image.read_bytes()
    assert create.body == {
        "prompt": "a cat",
        "model": "ray-2",
        "resolution": "720p",
        "duration": "5s",
        "aspect_ratio": "16:9",
        "loop": True,
    }
    assert create.headers["Authorization"] == f"Bearer {key}"
    assert ("GET", f"{LUMA_PREFIX}/generations/{job}") in [(r.method, r.path) for r in api.received]
    assert api.submits == 1


def test_published_images_are_sent_by_url_and_numbers_become_luma_durations(
    tmp_path: Path, video: Path, key: str
) -> None:
    image = png(tmp_path / "my still.png")
    with serve_luma(video) as api:
        request = _request(
            api.base_url, str(image), duration=9, image_url_base="https://cdn.example.com/items/"
        )
        _run(request, tmp_path / "out.mp4")
    body = api.received[0].body
    assert body["keyframes"] == {
        "frame0": {"type": "image", "url": "https://cdn.example.com/items/my%20still.png"}
    }
    assert body["duration"] == "9s"


def test_queued_and_dreaming_are_running(video: Path, key: str) -> None:
    with serve_luma(video) as api:
        api.running_polls = 3
        request = _request(api.base_url)
        provider = get_provider("luma")
        job = provider.submit(request)
        states = [provider.poll(job, request).state for _ in range(4)]
    assert states == ["running", "running", "running", "succeeded"]


def test_429_is_retryable_with_retry_after_and_5xx_is_retryable(video: Path, key: str) -> None:
    with serve_luma(video) as api:
        api.scripted.append((429, {"Retry-After": "4"}, {"detail": "Too Many Requests"}))
        api.scripted.append((503, {}, {"detail": "Service Unavailable"}))
        request = _request(api.base_url)
        provider = get_provider("luma")
        with pytest.raises(RetryableError) as throttled:
            provider.submit(request)
        with pytest.raises(RetryableError) as unavailable:
            provider.submit(request)
        assert provider.submit(request)
    assert throttled.value.retry_after == 4.0
    assert "503" in str(unavailable.value)


def test_a_refused_prompt_is_terminal_with_lumas_message(video: Path, key: str) -> None:
    with serve_luma(video) as api, pytest.raises(TerminalError) as info:
        get_provider("luma").submit(_request(api.base_url, prompt="REFUSE this"))
    assert "400" in str(info.value) and "advanced moderation failed" in str(info.value)


def test_a_bad_model_is_terminal_with_lumas_message(video: Path, key: str) -> None:
    with serve_luma(video) as api:
        params = {"base_url": api.base_url + LUMA_PREFIX}
        bad = GenerationRequest("luma", "ray-9000", params, "x", 1)
        api.scripted.append((400, {}, {"detail": "model: invalid model 'ray-9000'"}))
        with pytest.raises(TerminalError, match="invalid model"):
            get_provider("luma").submit(bad)


def test_a_failed_generation_carries_the_failure_reason(video: Path, key: str) -> None:
    with serve_luma(video) as api:
        api.fail_with = "frame0 image could not be downloaded"
        request = _request(api.base_url)
        provider = get_provider("luma")
        status = provider.poll(provider.submit(request), request)
    assert status.state == "failed" and not status.retryable
    assert "could not be downloaded" in (status.error or "")


def test_the_timeout_param_bounds_each_request(key: str) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        root = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(RetryableError, match="timed out"):
            get_provider("luma").submit(_request(root, timeout=1))


def test_missing_key_is_terminal_and_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUMAAI_API_KEY", raising=False)
    with pytest.raises(TerminalError, match="LUMAAI_API_KEY"):
        get_provider("luma").submit(_request("http://127.0.0.1:9"))


def test_validate_names_the_bad_param() -> None:
    provider = get_provider("luma")
    provider.validate("ray-flash-2", {"duration": 9, "resolution": "1080p"})
    for params, word in [
        ({"duration": "long"}, "duration"),
        ({"timeout": -1}, "timeout"),
        ({"image_url_base": "cdn/items"}, "image_url_base"),
        ({"send_seed": True}, "no seed"),
    ]:
        with pytest.raises(ValueError, match=word):
            provider.validate("ray-2", params)
    with pytest.raises(ValueError, match="Luma video model"):
        provider.validate("photon-1", {})


def test_described_for_the_providers_listing() -> None:
    provider = get_provider("luma")
    assert provider.key_env == ("LUMAAI_API_KEY",)  # type: ignore[attr-defined]
    assert provider.honours_seed is False  # type: ignore[attr-defined]
    assert provider.accepts_idempotency_key is False  # type: ignore[attr-defined]
    assert provider.api.default_base_url == LUMA_DEFAULT_BASE_URL  # type: ignore[attr-defined]
    assert estimate_usd("luma", "ray-flash-2", {"duration": "5s"}) == 0.24


def test_whole_experiment_through_the_worker(
    lab: Lab, tmp_path: Path, video: Path, key: str
) -> None:
    image = png(tmp_path / "still.png")
    with serve_luma(video) as api:
        api.running_polls = 2
        variant = {
            "key": "ray2",
            "provider": "luma",
            "model": "ray-2",
            "params": {"base_url": api.base_url + LUMA_PREFIX, "duration": "5s"},
        }
        experiment_through_the_worker(lab, api, variant, image, price_usd=0.71)
    creates = [r.body for r in api.received if r.method == "POST"]
    assert len(creates) == 2 and all("seed" not in body for body in creates)
    assert sum("keyframes" in body for body in creates) == 1


def test_worker_killed_while_polling_is_resumed_on_the_same_generation(
    lab: Lab, tmp_path: Path, video: Path, key: str
) -> None:
    with serve_luma(video) as api:
        variant = {
            "key": "ray2",
            "provider": "luma",
            "model": "ray-2",
            "params": {"base_url": api.base_url + LUMA_PREFIX},
        }
        job = kill_while_polling_then_resume(lab, tmp_path, api, variant)
    assert job == "gen-1"
    assert api.submits == 1, "the stored generation was polled, not created again"


def test_the_key_reaches_no_table_artifact_log_error_or_report(
    lab: Lab, tmp_path: Path, video: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_luma(video) as api:
        api.scripted.append((401, {}, {"detail": f"Invalid API key {key}"}))
        root = api.base_url + LUMA_PREFIX
        variants = [
            {"key": "fails", "provider": "luma", "model": "ray-2", "params": {"base_url": root}},
            {"key": "works", "provider": "luma", "model": "ray-flash-2",
             "params": {"base_url": root}},
        ]  # fmt: skip
        assert_no_secret_anywhere(lab, tmp_path, variants, key, caplog)
    assert any(r.headers.get("Authorization") == f"Bearer {key}" for r in api.received)
