"""The ``google`` (Veo via the Gemini API) adapter against a local server speaking that API."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_providers.checks import assert_key_kept_out, write_png
from fake_providers.google import serve_google
from processor_support import FAST, Lab, work
from sqlalchemy import select

from reelbench.db.models import ProviderCall, Run
from reelbench.errors import RetryableError, TerminalError
from reelbench.identity import sha256_file
from reelbench.processor import RunProcessor
from reelbench.providers import GenerationRequest, get_provider
from reelbench.providers.pricing import estimate_usd
from reelbench.providers.synthetic import render_video
from reelbench.report import load_report

KEY = "AIzaSyTopSecretGeminiKey_0d3f77"
MODEL = "veo-3.0-generate-001"


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "served.mp4"
    params = {"width": 48, "height": 32, "fps": 12, "seconds": 0.5}
    render_video(GenerationRequest("synthetic", "bars", params, "x", 7), path)
    return path


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)


def _request(base: str, image: str | None = None, **params: object) -> GenerationRequest:
    return GenerationRequest(
        "google", MODEL, {"base_url": base, **params}, "a cat surfing", 2**33 + 5, image=image
    )


def _until_done(request: GenerationRequest, job: str, polls: int = 50) -> str:
    provider = get_provider("google")
    for _ in range(polls):
        status = provider.poll(job, request)
        if status.state != "running":
            return status.state
    raise AssertionError("the operation never finished")


def test_image_to_video_predicts_polls_the_operation_and_downloads(
    tmp_path: Path, video: Path
) -> None:
    image = write_png(tmp_path / "cat.png")
    with serve_google(video, KEY) as api:
        api.running_polls = 3  # a slow operation
        request = _request(
            api.base_url, str(image), aspectRatio="9:16", durationSeconds=6,
            resolution="1080p", negativePrompt="rain",
        )  # fmt: skip
        provider = get_provider("google")
        job = provider.submit(request)
        assert job == f"models/{MODEL}/operations/op0001"
        assert _until_done(request, job) == "succeeded"
        result = provider.fetch(job, request, tmp_path / "out.mp4")
    assert result.sha256 == sha256_file(video) == sha256_file(tmp_path / "out.mp4")
    assert result.cost is None
    create = api.received[0]
    assert (create.method, create.route) == ("POST", f"/v1beta/models/{MODEL}:predictLongRunning")
    assert create.headers["x-goog-api-key"] == KEY
    assert "Authorization" not in create.headers
    assert create.body == {
        "instances": [
            {
                "prompt": "a cat surfing",
                "image": {
                    "bytesBase64Encoded": base64.b64encode(image.read_bytes()).decode(),
                    "mimeType": "image/png",
                },
            }
        ],
        "parameters": {"aspectRatio": "9:16", "durationSeconds": 6, "resolution": "1080p",
                       "negativePrompt": "rain"},
    }  # fmt: skip
    routes = [(r.method, r.route) for r in api.received]
    assert routes.count(("GET", f"/v1beta/{job}")) == 5  # 4 polls and the fetch
    assert ("GET", "/v1beta/files/f0001:download") in routes
    storage = [r for r in api.received if r.route.startswith("/storage/")]
    assert len(storage) == 1
    assert storage[0].headers["Host"].startswith("localhost:")
    assert "x-goog-api-key" not in {h.lower() for h in storage[0].headers}, (
        "the key must not follow a redirect to another host"
    )


def test_no_seed_unless_asked_then_a_uint32(video: Path) -> None:
    with serve_google(video, KEY) as api:
        provider = get_provider("google")
        provider.submit(_request(api.base_url))
        # The Gemini API refuses a seed (as the fake does): send_seed makes it a 400.
        with pytest.raises(TerminalError, match="seed isn't supported"):
            provider.submit(_request(api.base_url, send_seed=True))
    assert api.received[0].body["parameters"] == {}
    assert api.received[1].body["parameters"] == {"seed": 5}
    assert not provider.honours_seed  # type: ignore[attr-defined]


def test_google_api_key_wins_over_gemini_api_key(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_API_KEY", "other-key")
    with serve_google(video, KEY) as api:
        get_provider("google").submit(_request(api.base_url))
    assert api.received[0].headers["x-goog-api-key"] == KEY


def test_missing_key_names_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(TerminalError, match="GOOGLE_API_KEY or GEMINI_API_KEY"):
        get_provider("google").submit(_request("http://127.0.0.1:9"))


def test_429_is_retryable_and_honours_retry_after(video: Path) -> None:
    with serve_google(video, KEY) as api:
        api.scripted.append(
            (429, {"Retry-After": "30"}, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                                     "message": "Quota exceeded"}})
        )  # fmt: skip
        with pytest.raises(RetryableError) as info:
            get_provider("google").submit(_request(api.base_url))
    assert info.value.retry_after == 30.0
    assert "Quota exceeded" in str(info.value)


def test_5xx_while_polling_is_retryable(video: Path) -> None:
    with serve_google(video, KEY) as api:
        request = _request(api.base_url)
        provider = get_provider("google")
        job = provider.submit(request)
        api.scripted.append((503, {}, {"error": {"code": 503, "message": "overloaded"}}))
        with pytest.raises(RetryableError, match="503"):
            provider.poll(job, request)
        assert _until_done(request, job) == "succeeded"
    assert api.creates == 1


def test_content_filter_refusal_is_terminal_with_google_reason(video: Path) -> None:
    reason = "This prompt may violate our policies about depicting minors."
    with serve_google(video, KEY) as api:
        api.refuse_with = reason
        request = _request(api.base_url)
        provider = get_provider("google")
        job = provider.submit(request)
        status = provider.poll(job, request)
        with pytest.raises(TerminalError, match="no generated video"):
            provider.fetch(job, request, Path("unused"))
    assert status.state == "failed" and not status.retryable
    assert reason in (status.error or "")


def test_refused_prompt_at_create_is_terminal_with_google_message(video: Path) -> None:
    message = "The prompt could not be submitted. It may violate our policies."
    with serve_google(video, KEY) as api:
        api.scripted.append(
            (400, {}, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})
        )
        with pytest.raises(TerminalError) as info:
            get_provider("google").submit(_request(api.base_url))
    assert message in str(info.value)


@pytest.mark.parametrize(("code", "retryable"), [(3, False), (13, True)])
def test_operation_error_carries_its_message_and_class(
    video: Path, code: int, retryable: bool
) -> None:
    with serve_google(video, KEY) as api:
        api.fail_with = (code, f"operation broke with {code}")
        request = _request(api.base_url)
        provider = get_provider("google")
        status = provider.poll(provider.submit(request), request)
    assert status.state == "failed" and status.retryable is retryable
    assert f"operation broke with {code}" in (status.error or "")


def test_validate() -> None:
    provider = get_provider("google")
    provider.validate("models/veo-2.0-generate-001", {"durationSeconds": 5})
    with pytest.raises(ValueError, match="model"):
        provider.validate(None, {})
    with pytest.raises(ValueError, match="sampleCount"):
        provider.validate(MODEL, {"sampleCount": 2})
    with pytest.raises(ValueError, match="aspectRatio"):
        provider.validate(MODEL, {"aspectRatio": 1.77})


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


def test_whole_experiment_through_the_worker_and_a_rerun_calls_nothing(
    lab: Lab, tmp_path: Path, video: Path
) -> None:
    image = write_png(tmp_path / "cat.png")
    items = [
        {"id": "cat", "prompt": "a cat surfing", "image": str(image)},
        {"id": "dog", "prompt": "a dog skating"},
    ]
    with serve_google(video, KEY) as api:
        api.running_polls = 2
        variants = [{"key": "veo", "provider": "google", "model": MODEL, "repeats": 2,
                     "params": {"base_url": api.base_url, "durationSeconds": 8,
                                "negativePrompt": "rain"}}]  # fmt: skip
        lab.submit("veo-exp", variants, items=items)
        work(lab, "veo-exp")
        requests_made = len(api.received)
        assert api.creates == 4
        lab.submit("veo-again", variants, items=items)
        work(lab, "veo-again")
        assert len(api.received) == requests_made, "a re-run made no request at all"
    with lab.db.sessions() as session:
        assert set(session.scalars(select(Run.status))) == {"succeeded"}
        calls = session.scalars(select(ProviderCall)).all()
        assert len(calls) == 4 and {c.status for c in calls} == {"succeeded"}
        assert all(c.job_id and c.job_id.startswith(f"models/{MODEL}/operations/") for c in calls)
    for name in ("veo-exp", "veo-again"):
        report = load_report(name, lab.db.url)
        assert len(report.runs) == 4
        for run in report.runs:
            assert run.canon_sha256 and run.canon_uri
            assert run.metric("temporal_flicker") is not None
    posts = [r for r in api.received if r.method == "POST"]
    with_image = [r for r in posts if "image" in r.body["instances"][0]]
    assert len(with_image) == 2
    assert estimate_usd("google", MODEL, {"durationSeconds": 8}) == pytest.approx(3.2)


def test_the_key_reaches_no_table_artifact_log_error_or_report(
    lab: Lab, tmp_path: Path, video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with serve_google(video, KEY) as api:
        api.scripted.append(
            (400, {}, {"error": {"code": 400, "message": f"API key {KEY} expired",
                                 "status": "INVALID_ARGUMENT"}})
        )  # fmt: skip
        variants = [
            {"key": "veo-fail", "provider": "google", "model": MODEL,
             "params": {"base_url": api.base_url, "aspectRatio": "16:9"}},
            {"key": "veo", "provider": "google", "model": MODEL,
             "params": {"base_url": api.base_url}},
        ]  # fmt: skip
        contexts = lab.claim(lab.submit("veo-secrets", variants))
        messages = []
        for ctx in sorted(contexts, key=lambda c: c.variant_key != "veo-fail"):
            if ctx.variant_key == "veo-fail":
                with lab.db.sessions() as session, pytest.raises(TerminalError) as info:
                    RunProcessor(policy=FAST).process(ctx, session)
                messages.append(str(info.value))
            else:
                lab.process(ctx)
    keyed = [r for r in api.received if not r.route.startswith("/storage/")]
    assert keyed and all(r.headers["x-goog-api-key"] == KEY for r in keyed)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert_key_kept_out(lab, "veo-secrets", tmp_path / "report", KEY, logged, messages)
