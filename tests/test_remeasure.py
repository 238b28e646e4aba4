"""``reelbench remeasure``: metrics of finished runs computed again from their canonical videos."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from odd_videos import make_video
from processor_support import Lab, work
from sqlalchemy import func, select, update

from reelbench.cli import main
from reelbench.db.models import Artifact, Metric, ProviderCall, Run, RunAttempt
from reelbench.metrics import METRICS_VERSION, measure_video
from reelbench.report import load_report
from reelbench.storage import path_from_uri


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


def _finished(lab: Lab, tmp_path: Path) -> None:
    reference = make_video(tmp_path / "ref.mp4", width=80, height=60, frames=12, fps=12)
    items = [
        {"id": "cat", "prompt": "a cat", "reference": str(reference)},
        {"id": "dog", "prompt": "a dog"},
    ]
    variants = [{"key": "orbit", "provider": "synthetic", "model": "orbit", "repeats": 2,
                 "params": {"seconds": 1}}]  # fmt: skip
    lab.submit("e", variants, items=items, metrics={"groups": ["frame", "reference"]})
    work(lab, "e")


def _metrics(lab: Lab, run_id: int) -> dict[tuple[str, str], tuple[float | None, int | None]]:
    with lab.db.sessions() as session:
        rows = session.execute(
            select(Metric.name, Metric.stat, Metric.value, Metric.version).where(
                Metric.run_id == run_id
            )
        ).all()
    return {(r.name, r.stat): (r.value, r.version) for r in rows}


def test_remeasure_adds_motion_from_the_canonical_video_only(lab: Lab, tmp_path: Path) -> None:
    _finished(lab, tmp_path)
    with lab.db.sessions() as session:
        runs = session.scalars(select(Run).order_by(Run.id)).all()
        calls_before = session.scalar(select(func.count()).select_from(ProviderCall))
    before = {r.id: _metrics(lab, r.id) for r in runs}
    canon = {r.id: (r.canon_uri, r.canon_sha256) for r in runs}
    mtimes = {r.id: os.stat(path_from_uri(r.canon_uri or "")).st_mtime_ns for r in runs}
    assert all(("motion_mean", "mean") not in m for m in before.values())

    queued = CliRunner().invoke(main, ["remeasure", "e", "--metric", "motion", "--db", lab.db.url])
    assert queued.exit_code == 0, queued.output
    assert "4 finished run(s) queued to remeasure motion" in queued.output
    status = CliRunner().invoke(main, ["status", "e", "--json", "--db", lab.db.url])
    assert json.loads(status.output)["experiments"][0]["counts"]["queued"] == 4
    work(lab, "e")

    with lab.db.sessions() as session:
        after_runs = session.scalars(select(Run).order_by(Run.id)).all()
        assert {r.status for r in after_runs} == {"succeeded"}
        assert {r.task for r in after_runs} == {None}
        # No provider call, no re-encode: the canonical videos are the same files.
        assert session.scalar(select(func.count()).select_from(ProviderCall)) == calls_before
    for run in after_runs:
        assert (run.canon_uri, run.canon_sha256) == canon[run.id]
        assert os.stat(path_from_uri(run.canon_uri or "")).st_mtime_ns == mtimes[run.id]
        now = _metrics(lab, run.id)
        # Old metrics kept as they were; motion added with the current version.
        for key, value in before[run.id].items():
            assert now[key] == value
        expected = measure_video(path_from_uri(run.canon_uri or ""), groups=["motion"]).summary()
        assert now["motion_mean", "mean"] == (pytest.approx(expected["motion_mean"]["mean"]),
                                              METRICS_VERSION)  # fmt: skip
        assert now["dynamic_degree", "value"][1] == METRICS_VERSION
    with lab.db.sessions() as session:
        frames_uri = session.scalar(
            select(Artifact.uri).where(Artifact.run_id == runs[0].id, Artifact.kind == "frames")
        )
    doc = json.loads(path_from_uri(frames_uri or "").read_text())
    assert "motion_mean" in doc["summary"] and "sharpness" in doc["summary"]
    assert "motion_mean" in doc["frames"][1] and "sharpness" in doc["frames"][1]
    assert doc["remeasured"][0]["groups"] == ["motion"]
    report = load_report("e", lab.db.url)
    versions = report.runs[0].metric_versions
    assert versions["motion_mean"] == METRICS_VERSION and versions["sharpness"] == METRICS_VERSION
    assert "motion_mean" in report.metric_names


def test_remeasure_recomputes_reference_metrics_from_the_canonical_copy(
    lab: Lab, tmp_path: Path
) -> None:
    _finished(lab, tmp_path)
    with lab.db.sessions() as session:
        cat = session.scalars(select(Run).order_by(Run.id)).first()
        assert cat is not None
        # A value a remeasure must put right again.
        session.execute(
            update(Metric)
            .where(Metric.run_id == cat.id, Metric.name == "psnr_ref", Metric.stat == "mean")
            .values(value=-1.0, version=1)
        )
        session.commit()
    before = _metrics(lab, cat.id)
    CliRunner().invoke(main, ["remeasure", "e", "-m", "reference", "--db", lab.db.url])
    work(lab, "e")
    after = _metrics(lab, cat.id)
    assert after["psnr_ref", "mean"][0] != -1.0 and after["psnr_ref", "mean"][1] == METRICS_VERSION
    assert after["sharpness", "mean"] == before["sharpness", "mean"]


def test_a_failed_remeasure_keeps_the_run_and_its_metrics(lab: Lab, tmp_path: Path) -> None:
    _finished(lab, tmp_path)
    with lab.db.sessions() as session:
        run = session.scalars(select(Run).order_by(Run.id)).first()
        assert run is not None and run.canon_uri
        path_from_uri(run.canon_uri).write_bytes(b"not the video any more")
    before = _metrics(lab, run.id)
    CliRunner().invoke(main, ["remeasure", "e", "-m", "motion", "--db", lab.db.url])
    work(lab, "e")
    with lab.db.sessions() as session:
        again = session.get(Run, run.id)
        assert again is not None and again.status == "succeeded" and again.task is None
        assert "remeasure failed, earlier metrics kept" in (again.error_message or "")
        assert "no longer matches its SHA-256" in (again.error_message or "")
        others = session.scalars(select(Run.status).where(Run.id != run.id)).all()
        assert set(others) == {"succeeded"}
    assert _metrics(lab, run.id) == before


def test_cancelling_a_remeasure_leaves_runs_succeeded(lab: Lab, tmp_path: Path) -> None:
    _finished(lab, tmp_path)
    CliRunner().invoke(main, ["remeasure", "e", "--db", lab.db.url])
    out = CliRunner().invoke(main, ["cancel", "e", "--db", lab.db.url])
    assert out.exit_code == 0, out.output
    with lab.db.sessions() as session:
        assert set(session.scalars(select(Run.status))) == {"succeeded"}
        assert set(session.scalars(select(Run.task))) == {None}
        assert session.scalar(select(func.count()).where(RunAttempt.outcome == "lost")) == 0


def test_remeasure_refuses_unknown_metrics_and_experiments(lab: Lab, tmp_path: Path) -> None:
    _finished(lab, tmp_path)
    bad = CliRunner().invoke(main, ["remeasure", "e", "-m", "sharpness", "--db", lab.db.url])
    assert bad.exit_code == 2 and "unknown metric 'sharpness'" in bad.output
    missing = CliRunner().invoke(main, ["remeasure", "nope", "--db", lab.db.url])
    assert missing.exit_code == 2
    with lab.db.sessions() as session:
        assert set(session.scalars(select(Run.status))) == {"succeeded"}


EXAMPLE_SRC = Path(__file__).resolve().parent.parent / "examples/plugins/reelbench-colorfulness/src"
SLOW_PLUGIN = """
import os, time
from pathlib import Path
from reelbench.metric_plugins import MetricPlugin

class _Slow:
    def __init__(self, run):
        marks = Path(os.environ["SLOW_MARKS"])
        (marks / f"{run.run_id}-{os.getpid()}").write_text("")
        self.pause = float(os.environ.get("SLOW_SECONDS", "0"))
    def frame(self, index, pixels):
        return None
    def finish(self):
        time.sleep(self.pause)
        return {"slowmark": 1.0}

plugin = MetricPlugin(name="slowmark", start=_Slow, run_outputs=("slowmark",))
"""


def _plugin_site(root: Path) -> Path:
    """The example colorfulness plugin and a slow one, as pip would install them."""
    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "slowmark.py").write_text(SLOW_PLUGIN)
    entries = (
        ("reelbench_colorfulness", "colorfulness", "reelbench_colorfulness:plugin"),
        ("slowmark", "slowmark", "slowmark:plugin"),
    )
    for dist, metric, target in entries:
        info = site / f"{dist}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text(f"[reelbench.metrics]\n{metric} = {target}\n")
    return site


def test_remeasure_brings_a_plugin_to_an_old_experiment_through_a_killed_worker(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from processor_support import calls, counting_command

    variants = [{"key": "local", "provider": "command", "repeats": 3,
                 "params": {"command": counting_command(tmp_path)}}]  # fmt: skip
    lab.submit("old", variants, metrics={"groups": ["frame"]})
    work(lab, "old")
    generated = calls(tmp_path)
    assert generated == 3
    with lab.db.sessions() as session:
        canon = dict(session.execute(select(Run.id, Run.canon_sha256)).all())

    site = _plugin_site(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    monkeypatch.syspath_prepend(str(site))
    queued = CliRunner().invoke(
        main, ["remeasure", "old", "-m", "colorfulness", "-m", "slowmark", "--db", lab.db.url]
    )
    assert queued.exit_code == 0, queued.output
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(site), str(EXAMPLE_SRC), os.environ.get("PYTHONPATH", "")]
        ),
        "SLOW_MARKS": str(marks),
    }

    def worker(*args: str, pause: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "reelbench", "worker", "--db", lab.db.url,
             "--artifacts", str(lab.artifacts), "--lease-seconds", "1", *args],
            env={**env, "SLOW_SECONDS": pause},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    doomed = worker(pause="60")
    try:
        deadline = time.monotonic() + 60
        while not any(marks.iterdir()):
            assert time.monotonic() < deadline, "the remeasure never started"
            assert doomed.poll() is None
            time.sleep(0.05)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(30)
    heir = worker("--drain", pause="0")
    assert heir.wait(120) == 0

    assert calls(tmp_path) == generated, "no provider call"
    with lab.db.sessions() as session:
        runs = session.scalars(select(Run).order_by(Run.id)).all()
        frames = dict(
            session.execute(
                select(Artifact.run_id, Artifact.uri).where(Artifact.kind == "frames")
            ).all()
        )
        killed = session.scalars(
            select(RunAttempt.run_id).where(RunAttempt.outcome == "lost")
        ).all()
        done = session.scalar(
            select(func.count()).where(
                RunAttempt.run_id == killed[0], RunAttempt.outcome == "succeeded"
            )
        )
    assert {r.status for r in runs} == {"succeeded"} and {r.task for r in runs} == {None}
    assert {r.id: r.canon_sha256 for r in runs} == canon, "canonical videos unchanged"
    for run in runs:
        got = _metrics(lab, run.id)
        assert got["colorfulness", "mean"][1] == METRICS_VERSION
        assert got["colorfulness_drift", "value"][0] is not None
        assert got["sharpness", "mean"][0] is not None
        doc = json.loads(path_from_uri(frames[run.id]).read_text())
        assert len(doc["remeasured"]) == 1, "each run remeasured exactly once"
    assert len(killed) == 1
    assert done == 2  # the first generation, then the heir's remeasure
