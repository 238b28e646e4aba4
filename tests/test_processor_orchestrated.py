"""Whole experiments: a real worker (WorkerOrchestrator) driving the RunProcessor."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from processor_support import Lab, calls, counting_command, work
from sqlalchemy import func, select

from reelbench.db.models import Artifact, ProviderCall, Run
from reelbench.identity import sha256_file
from reelbench.spec import load_spec
from reelbench.storage import path_from_uri
from reelbench.submit import submit_spec

ITEMS = [{"id": "cat", "prompt": "a cat surfing"}, {"id": "dog", "prompt": "a dog skiing"}]
SYNTHETIC = [
    {"key": "orbit", "provider": "synthetic", "model": "orbit", "repeats": 2,
     "params": {"width": 80, "height": 60, "fps": 12, "seconds": 0.5}},
    {"key": "bars", "provider": "synthetic", "model": "bars", "repeats": 2,
     "params": {"width": 96, "height": 40, "fps": 8, "seconds": 0.5}},
]  # fmt: skip


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


def test_synthetic_experiment_ends_with_every_run_canonical(lab: Lab) -> None:
    lab.submit("grid", SYNTHETIC, items=ITEMS)
    stats = work(lab, "grid")
    assert stats.succeeded == 8
    with lab.db.sessions() as session:
        runs = session.scalars(select(Run)).all()
        assert {r.status for r in runs} == {"succeeded"}
        for run in runs:
            path = path_from_uri(run.canon_uri or "")
            assert sha256_file(path) == run.canon_sha256
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                got = (stream.codec_context.name, stream.width, stream.height,
                       stream.codec_context.pix_fmt, stream.average_rate)  # fmt: skip
                assert got == ("h264", 64, 48, "yuv420p", 12)
        kinds = session.execute(select(Artifact.kind, func.count()).group_by(Artifact.kind)).all()
        assert dict(kinds) == {"raw": 8, "canon": 8, "frames": 8}


def test_running_the_same_experiment_again_makes_no_provider_call(lab: Lab, tmp_path: Path) -> None:
    variants = [{"key": "local", "provider": "command", "repeats": 2,
                 "params": {"command": counting_command(tmp_path)}}]  # fmt: skip
    lab.submit("first", variants, items=ITEMS)
    work(lab, "first")
    assert calls(tmp_path) == 4
    lab.submit("again", variants, items=ITEMS)
    stats = work(lab, "again")
    assert stats.succeeded == 4
    assert calls(tmp_path) == 4, "every request was answered from the provider-call cache"
    with lab.db.sessions() as session:
        by_experiment: dict[int, list[str | None]] = {}
        for run in session.scalars(select(Run).order_by(Run.item_id, Run.repeat)):
            by_experiment.setdefault(run.experiment_id, []).append(run.canon_sha256)
        first, again = by_experiment.values()
        assert first == again, "same results"
        assert session.scalar(select(func.count()).select_from(ProviderCall)) == 4


def test_no_cache_worker_calls_the_provider_again(lab: Lab, tmp_path: Path) -> None:
    variants = [{"key": "local", "provider": "command",
                 "params": {"command": counting_command(tmp_path)}}]  # fmt: skip
    lab.submit("first", variants)
    work(lab, "first")
    lab.submit("again", variants)
    work(lab, "again", use_cache=False)
    assert calls(tmp_path) == 2


def test_injected_faults_retryable_recover_terminal_fail_with_message(lab: Lab) -> None:
    flaky = {
        "key": "flaky",
        "provider": "synthetic",
        "repeats": 5,
        "params": {"width": 32, "height": 24, "fps": 8, "seconds": 0.25, "fail_retryable": 0.3},
    }
    broken = {
        "key": "broken",
        "provider": "synthetic",
        "repeats": 2,
        "params": {"width": 32, "height": 24, "fps": 8, "seconds": 0.25, "fail_terminal": 1.0},
    }
    corrupt = {"key": "corrupt", "provider": "synthetic",
               "params": {"width": 32, "height": 24, "fps": 8, "seconds": 0.25,
                          "corrupt": 1.0}}  # fmt: skip
    lab.submit("chaos", [flaky, broken, corrupt], items=ITEMS,
               retry={"max_attempts": 10, "backoff_seconds": 0})  # fmt: skip
    stats = work(lab, "chaos")  # returns: the worker survived every fault
    assert stats.retried > 0, "with 30% faults over 10 runs some attempts failed"
    with lab.db.sessions() as session:
        rows = session.execute(
            select(Run.status, Run.error_class, Run.error_message, Run.attempt)
        ).all()
        variant_ids = dict(session.execute(select(Run.variant_id, Run.variant_id)).all())
    assert variant_ids
    statuses = sorted((r.status, r.error_class) for r in rows)
    assert statuses.count(("succeeded", None)) == 10
    failed = [r for r in rows if r.status == "failed"]
    assert len(failed) == 6
    assert all(r.error_class == "terminal" and r.attempt == 1 for r in failed)
    messages = sorted(r.error_message or "" for r in failed)
    assert sum("injected terminal fault" in m for m in messages) == 4
    assert sum("not a readable media file" in m for m in messages) == 2


def test_command_paths_resolve_against_the_spec_folder(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    script = Path(counting_command(project)[1])
    (project / "exp.toml").write_text(
        "[experiment]\nname = 'relative'\n"
        "[canonical]\nwidth = 64\nheight = 48\nfps = 12\npreset = 'ultrafast'\n"
        "[[items]]\nid = 'cat'\nprompt = 'a cat'\n"
        "[[variants]]\nkey = 'local'\nprovider = 'command'\n"
        f"params = {{ command = [{json.dumps(sys.executable)}, {json.dumps(script.name)}] }}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the worker's folder is not the spec's
    submit_spec(lab.db.sessions, load_spec(project / "exp.toml"))
    stats = work(lab, "relative")
    assert (stats.succeeded, stats.failed) == (1, 0)
    assert calls(project) == 1


def test_an_unusable_output_is_not_served_again_from_the_cache(lab: Lab, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video at all\n" * 20)
    variants = [{"key": "local", "provider": "command",
                 "params": {"command": counting_command(tmp_path, source=garbage)}}]  # fmt: skip
    lab.submit("garbage", variants)
    assert work(lab, "garbage").failed == 1
    assert calls(tmp_path) == 1
    with lab.db.sessions() as session:
        call = session.scalars(select(ProviderCall)).one()
        assert (call.status, call.error_class) == ("failed", "terminal")
        assert "not a readable media file" in (call.error_message or "")
    # The same request in another experiment pays for a new generation, which
    # is now a real video, instead of failing on the cached garbage.
    garbage.unlink()
    (tmp_path / "generate.py").write_text(
        (tmp_path / "generate.py").read_text().replace(repr(str(garbage)), "None")
    )
    lab.submit("garbage-again", variants)
    stats = work(lab, "garbage-again")
    assert (stats.succeeded, stats.failed) == (1, 0)
    assert calls(tmp_path) == 2
