"""The ``openai`` (Sora 2) adapter against a local server speaking OpenAI's video API."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_providers.checks import assert_key_kept_out, write_png
from fake_providers.openai import serve_openai
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

KEY = "sk-proj-TopSecretOpenAIKey_9c41"


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "served.mp4"
    params = {"width": 48, "height": 32, "fps": 12, "seconds": 0.5}
    render_video(GenerationRequest("synthetic", "orbit", params, "x", 5), path)
    return path


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _request(base: str, image: str | None = None, **params: object) -> GenerationRequest:
    return GenerationRequest(
        "openai", "sora-2", {"base_url": f"{base}/v1", **params}, "a cat surfing", 42,
        image=image,
    )  # fmt: skip


def _until_done(request: GenerationRequest, job: str, polls: int = 50) -> str:
    provider = get_provider("openai")
    for _ in range(polls):
        status = provider.poll(job, request)
        if status.state != "running":
            return status.state
    raise AssertionError("the job never finished")


def test_image_to_video_sends_the_form_polls_and_downloads(tmp_path: Path, video: Path) -> None:
    image = write_png(tmp_path / "cat.png")
    with serve_openai(video, KEY) as api:
        api.running_polls = 3  # a slow job: queued, then in_progress three times
        request = _request(api.base_url, str(image), seconds=8, size="1280x720")
        provider = get_provider("openai")
        job = provider.submit(request)
        assert _until_done(request, job) == "succeeded"
        result = provider.fetch(job, request, tmp_path / "out.mp4")
    assert result.sha256 == sha256_file(video) == sha256_file(tmp_path / "out.mp4")
    assert result.cost is None, "the API reports no cost; the price table gives it"
    create = api.received[0]
    assert (create.method, create.route) == ("POST", "/v1/videos")
    assert create.headers["Content-Type"].startswith("multipart/form-data")
    assert create.headers["Authorization"] == f"Bearer {KEY}"
    fields = {k: p.value.decode() for k, p in create.form.items() if p.filename is None}
    assert fields == {"prompt": "a cat surfing", "model": "sora-2", "seconds": "8",
                      "size": "1280x720"}  # fmt: skip
    reference = create.form["input_reference"]
    assert reference.filename == "cat.png" and reference.content_type == "image/png"
    assert reference.value == image.read_bytes()
    routes = [(r.method, r.route) for r in api.received]
    assert routes.count(("GET", f"/v1/videos/{job}")) == 4
    assert routes[-1] == ("GET", f"/v1/videos/{job}/content")
    assert api.creates == 1


def test_text_to_video_sends_no_file_and_no_seed(tmp_path: Path, video: Path) -> None:
    with serve_openai(video, KEY) as api:
        request = _request(api.base_url)
        provider = get_provider("openai")
        job = provider.submit(request)
        assert _until_done(request, job) == "succeeded"
    assert set(api.received[0].form) == {"prompt", "model"}
    assert not get_provider("openai").honours_seed  # type: ignore[attr-defined]


def test_base_url_from_the_environment(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_openai(video, KEY) as api:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{api.base_url}/v1")
        request = GenerationRequest("openai", "sora-2-pro", {}, "a dog", 1)
        get_provider("openai").submit(request)
    assert api.received[0].form["model"].value == b"sora-2-pro"


def test_429_is_retryable_and_honours_retry_after(video: Path) -> None:
    with serve_openai(video, KEY) as api:
        api.scripted.append(
            (429, {"Retry-After": "11"}, {"error": {"message": "Rate limit reached for sora-2",
                                                     "code": "rate_limit_exceeded"}})
        )  # fmt: skip
        with pytest.raises(RetryableError) as info:
            get_provider("openai").submit(_request(api.base_url))
    assert info.value.retry_after == 11.0
    assert "Rate limit reached" in str(info.value)
    assert api.creates == 0


def test_5xx_is_retryable(video: Path) -> None:
    with serve_openai(video, KEY) as api:
        api.scripted.append((502, {}, {"error": {"message": "Bad gateway"}}))
        with pytest.raises(RetryableError, match="502"):
            get_provider("openai").submit(_request(api.base_url))


def test_moderation_refusal_at_create_is_terminal_with_openai_message(video: Path) -> None:
    message = "Your request was blocked by our moderation system."
    with serve_openai(video, KEY) as api:
        api.scripted.append(
            (400, {}, {"error": {"message": message, "type": "invalid_request_error",
                                 "code": "moderation_blocked"}})
        )  # fmt: skip
        with pytest.raises(TerminalError) as info:
            get_provider("openai").submit(_request(api.base_url))
    assert message in str(info.value)


def test_bad_parameter_is_terminal_with_the_api_message(video: Path) -> None:
    with serve_openai(video, KEY) as api, pytest.raises(TerminalError) as info:
        get_provider("openai").submit(_request(api.base_url, seconds=5))
    assert "Supported values are: '4', '8', '12'" in str(info.value)


@pytest.mark.parametrize(
    ("code", "retryable"), [("moderation_blocked", False), ("internal_error", True)]
)
def test_failed_video_carries_the_error_and_its_class(
    video: Path, code: str, retryable: bool
) -> None:
    with serve_openai(video, KEY) as api:
        api.fail_with = (code, f"generation stopped: {code}")
        request = _request(api.base_url)
        provider = get_provider("openai")
        status = provider.poll(provider.submit(request), request)
    assert status.state == "failed"
    assert status.retryable is retryable
    assert f"({code}): generation stopped: {code}" in (status.error or "")


def test_wrong_key_is_terminal_and_names_the_variable(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with serve_openai(video, KEY) as api, pytest.raises(TerminalError) as info:
        get_provider("openai").submit(_request(api.base_url))
    assert "401" in str(info.value) and "OPENAI_API_KEY" in str(info.value)


def test_validate_refuses_bad_sizes_and_lengths() -> None:
    provider = get_provider("openai")
    provider.validate(None, {"seconds": "12", "size": "1792x1024"})
    with pytest.raises(ValueError, match="size"):
        provider.validate("sora-2", {"size": "big"})
    with pytest.raises(ValueError, match="seconds"):
        provider.validate("sora-2", {"seconds": 2.5})


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
    with serve_openai(video, KEY) as api:
        api.running_polls = 2
        variants = [{"key": "sora", "provider": "openai", "model": "sora-2", "repeats": 2,
                     "params": {"base_url": f"{api.base_url}/v1", "seconds": 4}}]  # fmt: skip
        lab.submit("sora-exp", variants, items=items)
        work(lab, "sora-exp")
        requests_made = len(api.received)
        assert api.creates == 4
        # The same grid again, as a new experiment: every call is a cache hit.
        lab.submit("sora-again", variants, items=items)
        work(lab, "sora-again")
        assert len(api.received) == requests_made, "a re-run made no request at all"
    with lab.db.sessions() as session:
        assert set(session.scalars(select(Run.status))) == {"succeeded"}
        calls = session.scalars(select(ProviderCall)).all()
        assert len(calls) == 4 and {c.status for c in calls} == {"succeeded"}
        assert all(c.job_id and c.job_id.startswith("video_") for c in calls)
    for name in ("sora-exp", "sora-again"):
        report = load_report(name, lab.db.url)
        assert len(report.runs) == 4
        for run in report.runs:
            assert run.canon_sha256 and run.canon_uri
            assert run.metric("temporal_flicker") is not None
    with_image = [r for r in api.received if r.method == "POST" and "input_reference" in r.form]
    assert len(with_image) == 2, "the cat's image went with both of its repeats"
    # The API reports no cost; the price table prices a 4-second sora-2 clip,
    # and that is what each call records (and the report sums).
    assert estimate_usd("openai", "sora-2", {"seconds": 4}) == pytest.approx(0.4)
    assert [c.cost for c in calls] == [pytest.approx(0.4)] * 4
    assert load_report("sora-exp", lab.db.url).variants[0].cost_total == pytest.approx(1.6)


def test_the_key_reaches_no_table_artifact_log_error_or_report(
    lab: Lab, tmp_path: Path, video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with serve_openai(video, KEY) as api:
        # A failing call whose error body echoes the key, as some APIs do.
        api.scripted.append((400, {}, {"error": {"message": f"bad request from {KEY}"}}))
        variants = [
            {"key": "sora-fail", "provider": "openai", "model": "sora-2",
             "params": {"base_url": f"{api.base_url}/v1", "size": "720x1280"}},
            {"key": "sora", "provider": "openai", "model": "sora-2",
             "params": {"base_url": f"{api.base_url}/v1"}},
        ]  # fmt: skip
        contexts = lab.claim(lab.submit("sora-secrets", variants))
        messages = []
        for ctx in sorted(contexts, key=lambda c: c.variant_key != "sora-fail"):
            if ctx.variant_key == "sora-fail":
                with lab.db.sessions() as session, pytest.raises(TerminalError) as info:
                    RunProcessor(policy=FAST).process(ctx, session)
                messages.append(str(info.value))
            else:
                lab.process(ctx)
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in api.received)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert_key_kept_out(lab, "sora-secrets", tmp_path / "report", KEY, logged, messages)
