"""RunProcessor end to end on a real database: provider -> raw -> canonical + metrics -> rows."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import av
import pytest
from odd_videos import ODD_INPUTS, make_video
from processor_support import FAST, Lab, calls, counting_command
from provider_servers import serve_replicate
from sqlalchemy import select, update

from reelbench.context import RunContext
from reelbench.db.models import Artifact, Metric, ProviderCall, Run
from reelbench.errors import LeaseLost, TerminalError
from reelbench.identity import sha256_file
from reelbench.processor import RunProcessor
from reelbench.providers.base import GenerationRequest
from reelbench.providers.synthetic import render_video
from reelbench.storage import path_from_uri

SYNTHETIC = {
    "key": "orbit",
    "provider": "synthetic",
    "model": "orbit",
    "params": {"width": 80, "height": 60, "fps": 12, "seconds": 1},
}


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


@pytest.fixture
def sqlite_lab(sqlite_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(sqlite_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


def test_synthetic_run_writes_canonical_video_metrics_and_rows(lab: Lab) -> None:
    experiment = lab.submit("e1", [SYNTHETIC])
    (ctx,) = lab.claim(experiment)
    uri, sha = lab.process(ctx)

    canon = path_from_uri(uri)
    assert canon == lab.artifacts.resolve() / str(ctx.run_id) / "canon" / "canon.mp4"
    assert sha256_file(canon) == sha
    with av.open(str(canon)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        got = (stream.codec_context.name, stream.width, stream.height, stream.codec_context.pix_fmt)
        assert got == ("h264", 64, 48, "yuv420p")
        assert stream.average_rate == 12
    assert frames == 12

    with lab.db.sessions() as session:
        run = session.get(Run, ctx.run_id)
        assert run is not None and run.status == "succeeded" and run.canon_sha256 == sha
        artifacts = {a.kind: a for a in session.scalars(select(Artifact))}
        assert set(artifacts) == {"raw", "canon", "frames"}
        for artifact in artifacts.values():
            path = path_from_uri(artifact.uri)
            assert sha256_file(path) == artifact.sha256
            assert path.stat().st_size == artifact.bytes
        assert artifacts["raw"].uri.endswith(f"/{ctx.run_id}/raw/raw.mp4")
        call = session.scalars(select(ProviderCall)).one()
        assert call.status == "succeeded" and call.raw_sha256 == artifacts["raw"].sha256
        assert call.cost == 0.0 and call.latency_seconds is not None and call.job_id
        assert run.provider_call_id == call.id
        metrics = {(m.name, m.stat): m.value for m in session.scalars(select(Metric))}
    assert 0 < metrics[("ssim_prev", "mean")] < 1  # type: ignore[operator]
    assert ("scene_cuts", "value") in metrics
    assert ("ssim_ref", "mean") not in metrics or metrics[("ssim_ref", "mean")] is None

    doc = json.loads(path_from_uri(artifacts["frames"].uri).read_text())
    assert len(doc["frames"]) == 12
    assert doc["summary"]["luma_mean"]["mean"] == pytest.approx(metrics[("luma_mean", "mean")])


def test_same_request_again_makes_no_provider_call(sqlite_lab: Lab, tmp_path: Path) -> None:
    variant = {
        "key": "local",
        "provider": "command",
        "params": {"command": counting_command(tmp_path)},
    }
    first = sqlite_lab.process_all(sqlite_lab.claim(sqlite_lab.submit("a", [variant])))
    assert calls(tmp_path) == 1
    # A second experiment with the same item and variant asks the same thing.
    second = sqlite_lab.process_all(sqlite_lab.claim(sqlite_lab.submit("b", [variant])))
    assert calls(tmp_path) == 1, "the cached provider call was reused"
    assert [sha for _, sha in second] == [sha for _, sha in first], "same results"
    with sqlite_lab.db.sessions() as session:
        raws = session.scalars(select(Artifact.uri).where(Artifact.kind == "raw")).all()
        assert len(raws) == 2 and raws[0] == raws[1], "the hit points at the stored raw file"


def test_cache_opt_out_calls_the_provider_again(sqlite_lab: Lab, tmp_path: Path) -> None:
    variant = {
        "key": "local",
        "provider": "command",
        "cache": False,
        "params": {"command": counting_command(tmp_path)},
    }
    sqlite_lab.process_all(sqlite_lab.claim(sqlite_lab.submit("a", [variant])))
    sqlite_lab.process_all(sqlite_lab.claim(sqlite_lab.submit("b", [variant])))
    assert calls(tmp_path) == 2


def test_vanished_cached_file_is_generated_again(sqlite_lab: Lab, tmp_path: Path) -> None:
    variant = {
        "key": "local",
        "provider": "command",
        "params": {"command": counting_command(tmp_path)},
    }
    sqlite_lab.process_all(sqlite_lab.claim(sqlite_lab.submit("a", [variant])))
    with sqlite_lab.db.sessions() as session:
        raw_uri = session.scalars(select(ProviderCall.raw_artifact_uri)).one()
    path_from_uri(raw_uri or "").write_bytes(b"tampered")
    sqlite_lab.process_all(sqlite_lab.claim(sqlite_lab.submit("b", [variant])))
    assert calls(tmp_path) == 2, "a cache entry whose file no longer matches is not used"


def test_failed_call_is_not_cached(sqlite_lab: Lab, tmp_path: Path) -> None:
    variant = {
        "key": "local",
        "provider": "command",
        "params": {"command": counting_command(tmp_path)},
    }
    (tmp_path / "fail.flag").touch()
    (ctx,) = sqlite_lab.claim(sqlite_lab.submit("a", [variant]))
    with (
        sqlite_lab.db.sessions() as session,
        pytest.raises(TerminalError, match="CUDA out of memory"),
    ):
        RunProcessor(policy=FAST).process(ctx, session)
    with sqlite_lab.db.sessions() as session:
        call = session.scalars(select(ProviderCall)).one()
        assert (call.status, call.error_class) == ("failed", "terminal")
    (tmp_path / "fail.flag").unlink()
    sqlite_lab.process_all(sqlite_lab.claim(sqlite_lab.submit("b", [variant])))
    assert calls(tmp_path) == 2


def _process_concurrently(
    lab: Lab, contexts: list[RunContext], processor: RunProcessor
) -> list[str]:
    results: list[str] = []
    errors: list[BaseException] = []

    def work(ctx: RunContext) -> None:
        try:
            results.append(lab.process(ctx, processor)[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ctx,)) for ctx in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    return results


def test_two_runs_with_the_same_request_in_flight_make_one_call(lab: Lab, tmp_path: Path) -> None:
    variant = {
        "key": "local",
        "provider": "command",
        "params": {"command": counting_command(tmp_path, sleep=1.0)},
    }
    contexts = [*lab.claim(lab.submit("a", [variant])), *lab.claim(lab.submit("b", [variant]))]
    results = _process_concurrently(lab, contexts, RunProcessor(policy=FAST))
    assert calls(tmp_path) == 1
    assert len(results) == 2 and results[0] == results[1]


def test_a_call_longer_than_its_lease_is_not_taken_over(sqlite_lab: Lab, tmp_path: Path) -> None:
    # The program runs 1.5 s, five times the call lease: the owner keeps
    # renewing the lease while it waits, so the other run keeps waiting.
    variant = {
        "key": "local",
        "provider": "command",
        "params": {"command": counting_command(tmp_path, sleep=1.5)},
    }
    contexts = [
        *sqlite_lab.claim(sqlite_lab.submit("a", [variant])),
        *sqlite_lab.claim(sqlite_lab.submit("b", [variant])),
    ]
    policy = replace(FAST, lease_seconds=0.3)
    results = _process_concurrently(sqlite_lab, contexts, RunProcessor(policy=policy))
    assert calls(tmp_path) == 1
    assert len(results) == 2


@pytest.mark.parametrize("name", sorted(ODD_INPUTS))
def test_odd_provider_outputs_through_the_command_provider(
    sqlite_lab: Lab, tmp_path: Path, name: str
) -> None:
    maker, expected = ODD_INPUTS[name]
    source = maker(tmp_path / f"source-{name}.mp4")
    variant = {
        "key": "local",
        "provider": "command",
        "params": {"command": counting_command(tmp_path, source=source)},
    }
    (ctx,) = sqlite_lab.claim(sqlite_lab.submit("odd", [variant]))
    raw = ctx.run_output_dir / "raw" / "raw.mp4"
    if name == "zero_byte":
        # The command provider refuses an empty output before normalization sees it.
        expected = "wrote no video"
    if expected != "ok":
        with sqlite_lab.db.sessions() as session, pytest.raises(TerminalError, match=expected):
            RunProcessor(policy=FAST).process(ctx, session)
        if name != "zero_byte":
            assert raw.exists(), "the raw file stays for inspection"
        assert not (ctx.run_output_dir / "canon" / "canon.mp4").exists()
        return
    uri, _ = sqlite_lab.process(ctx)
    with av.open(str(path_from_uri(uri))) as container:
        stream = container.streams.video[0]
        got = (stream.width, stream.height, stream.codec_context.pix_fmt, stream.average_rate)
        assert got == (64, 48, "yuv420p", 12)
        assert not container.streams.audio


def test_reference_video_adds_reference_metrics(sqlite_lab: Lab, tmp_path: Path) -> None:
    reference = make_video(tmp_path / "ref.mp4", width=80, height=60, frames=12, fps=12)
    items = [{"id": "cat", "prompt": "a cat", "reference": str(reference)}]
    (ctx,) = sqlite_lab.claim(sqlite_lab.submit("ref", [SYNTHETIC], items=items))
    sqlite_lab.process(ctx)
    with sqlite_lab.db.sessions() as session:
        metrics = {(m.name, m.stat): m.value for m in session.scalars(select(Metric))}
        kinds = set(session.scalars(select(Artifact.kind)))
    assert 0 < metrics[("ssim_ref", "mean")] < 1  # type: ignore[operator]
    assert metrics[("mse_ref", "mean")] > 0  # type: ignore[operator]
    assert "reference" in kinds


def test_stale_worker_does_not_replace_files_or_write_rows(sqlite_lab: Lab) -> None:
    (ctx,) = sqlite_lab.claim(sqlite_lab.submit("e", [SYNTHETIC]))
    with sqlite_lab.db.sessions() as session:
        # Another worker reclaimed the run: the token moved on.
        session.execute(update(Run).where(Run.id == ctx.run_id).values(attempt=ctx.attempt + 1))
        session.commit()
    with sqlite_lab.db.sessions() as session, pytest.raises(LeaseLost):
        RunProcessor(policy=FAST).process(ctx, session)
    assert not (ctx.run_output_dir / "raw" / "raw.mp4").exists()
    assert not (ctx.run_output_dir / "canon" / "canon.mp4").exists()
    assert not [p for p in ctx.run_output_dir.rglob("*") if p.is_file()], "no temp file left"


def test_stop_event_raises_lease_lost(sqlite_lab: Lab) -> None:
    (ctx,) = sqlite_lab.claim(sqlite_lab.submit("e", [SYNTHETIC]))
    ctx.stop.set()
    with sqlite_lab.db.sessions() as session, pytest.raises(LeaseLost):
        RunProcessor(policy=FAST).process(ctx, session)


def test_fresh_call_never_overwrites_a_raw_file_other_runs_reuse(
    sqlite_lab: Lab, tmp_path: Path
) -> None:
    variant = {
        "key": "local",
        "provider": "command",
        "params": {"command": counting_command(tmp_path)},
    }
    (first,) = sqlite_lab.claim(sqlite_lab.submit("a", [variant]))
    sqlite_lab.process(first)
    (hit,) = sqlite_lab.claim(sqlite_lab.submit("b", [variant]))
    sqlite_lab.process(hit)  # a cache hit on the first run's raw file
    # The first run is run again without the cache: a new call, same run folder.
    with sqlite_lab.db.sessions() as session:
        session.execute(update(Run).where(Run.id == first.run_id).values(status="queued"))
        session.commit()
    (again,) = sqlite_lab.claim(first.experiment_id)
    sqlite_lab.process(replace(again, use_cache=False))
    assert calls(tmp_path) == 2
    with sqlite_lab.db.sessions() as session:
        raws = {
            a.run_id: a for a in session.scalars(select(Artifact).where(Artifact.kind == "raw"))
        }
    assert raws[first.run_id].uri.endswith("/raw/raw-call2.mp4")
    assert raws[hit.run_id].uri.endswith(f"/{first.run_id}/raw/raw.mp4")
    for artifact in raws.values():
        assert sha256_file(path_from_uri(artifact.uri)) == artifact.sha256


def test_job_reported_failed_fails_the_run_terminal_and_is_not_cached(
    sqlite_lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served.mp4"
    render_video(GenerationRequest("synthetic", None, {"width": 32, "height": 24}, "x", 1), served)
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_test")
    with serve_replicate(served) as api:
        api.fail_with = "content refused by the safety checker"
        variant = {"key": "hosted", "provider": "replicate", "model": "acme/v",
                   "params": {"base_url": api.base_url}}  # fmt: skip
        (ctx,) = sqlite_lab.claim(sqlite_lab.submit("e", [variant]))
        with sqlite_lab.db.sessions() as session, pytest.raises(TerminalError, match="safety"):
            RunProcessor(policy=FAST).process(ctx, session)
    with sqlite_lab.db.sessions() as session:
        call = session.scalars(select(ProviderCall)).one()
    assert (call.status, call.error_class, call.job_id) == ("failed", "terminal", "p1")
    assert call.owner_run_id is None
