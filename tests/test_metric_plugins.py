"""Metric plugins and the motion group in runs: spec -> one decode pass -> frames.json,
metric rows and reports.

The example plugin (examples/plugins/reelbench-colorfulness) is installed the
way pip would leave it, without touching the environment: its source folder
and a ``.dist-info`` folder holding its entry point go on ``sys.path``, and
``importlib.metadata`` finds it like any installed distribution.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from click.testing import CliRunner
from numpy.typing import NDArray
from processor_support import Lab
from rich.console import Console
from sqlalchemy import select
from videos import encode_video, moving_pattern

from reelbench.cli import main
from reelbench.db.models import Artifact, Metric, Run
from reelbench.derived import canonical_key
from reelbench.metric_plugins import (
    MetricPlugin,
    PluginError,
    PluginRun,
    available_plugins,
    load_plugin,
    register_plugin,
    unregister_plugin,
)
from reelbench.report import build_report, query_results, render_html, render_table
from reelbench.report.export import report_to_dict, write_csv
from reelbench.spec import SpecError, parse_spec
from reelbench.storage import path_from_uri
from reelbench.video.canonical import CanonicalFormat

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "reelbench-colorfulness"

ORBIT = {
    "key": "orbit",
    "provider": "synthetic",
    "model": "orbit",
    "params": {"width": 80, "height": 60, "fps": 12, "seconds": 1},
}


@pytest.fixture
def sqlite_lab(sqlite_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(sqlite_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


@pytest.fixture
def colorfulness_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example package as pip installs it: importable, with its entry point's metadata."""
    site = tmp_path / "site"
    info = site / "reelbench_colorfulness-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: reelbench-colorfulness\nVersion: 0.1.0\n"
    )
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    assert 'colorfulness = "reelbench_colorfulness:plugin"' in pyproject
    (info / "entry_points.txt").write_text(
        "[reelbench.metrics]\ncolorfulness = reelbench_colorfulness:plugin\n"
    )
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(site))
    yield
    unregister_plugin("colorfulness")  # forget the cached load
    sys.modules.pop("reelbench_colorfulness", None)


def _hasler(rgb: NDArray[np.uint8]) -> float:
    """The colorfulness formula written out independently of the plugin."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, (r + g) / 2 - b
    return float(
        np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    )


def _rows(lab: Lab, run_id: int) -> dict[tuple[str, str], float | None]:
    with lab.db.sessions() as session:
        return {
            (m.name, m.stat): m.value
            for m in session.scalars(select(Metric).where(Metric.run_id == run_id))
        }


def _frames_doc(lab: Lab, run_id: int) -> dict[str, Any]:
    with lab.db.sessions() as session:
        uri = session.scalars(
            select(Artifact.uri).where(Artifact.run_id == run_id, Artifact.kind == "frames")
        ).one()
    doc: dict[str, Any] = json.loads(path_from_uri(uri).read_text())
    return doc


def _report(lab: Lab, experiment: str) -> Any:
    with lab.db.sessions() as session:
        info, records = query_results(session, experiment)
    return build_report(info, records)


def test_example_plugin_is_found_by_its_entry_point(colorfulness_installed: None) -> None:
    assert "colorfulness" in available_plugins()
    plugin = load_plugin("colorfulness")
    assert plugin.version == "0.1.0"  # from the distribution's metadata
    assert plugin.frame_format == "rgb" and plugin.outputs == (
        "colorfulness",
        "colorfulness_drift",
    )


def test_plugin_values_reach_frames_json_rows_and_every_report(
    lab: Lab, colorfulness_installed: None, tmp_path: Path
) -> None:
    metrics = {"groups": ["frame", "motion"], "plugins": ["colorfulness"]}
    (ctx,) = lab.claim(lab.submit("color", [ORBIT], metrics=metrics))
    uri, _ = lab.process(ctx)

    with av.open(str(path_from_uri(uri))) as container:
        expected = [_hasler(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    doc = _frames_doc(lab, ctx.run_id)
    got = [f["colorfulness"] for f in doc["frames"]]
    assert len(got) == len(expected) == 12
    # The plugin saw the frames before encoding, the test decodes them after: CRF noise only.
    assert got == pytest.approx(expected, abs=0.5)
    assert max(expected) > 5  # the orbit pattern is coloured: not a trivially zero metric
    assert doc["metric_plugins"]["colorfulness"]["version"] == "0.1.0"
    assert doc["metric_plugins"]["colorfulness"]["error"] is None
    assert doc["summary"]["colorfulness"]["mean"] == pytest.approx(np.mean(got))
    assert doc["frames"][1]["motion_mean"] is not None  # native motion in the same records

    rows = _rows(lab, ctx.run_id)
    assert rows[("colorfulness", "mean")] == pytest.approx(np.mean(got))
    assert rows[("colorfulness", "p95")] == pytest.approx(np.percentile(got, 95))
    assert rows[("colorfulness_drift", "value")] == pytest.approx(abs(got[-1] - got[0]))

    report = _report(lab, "color")
    doc_json = report_to_dict(report)
    (run,) = doc_json["runs"]
    assert run["metrics"]["colorfulness"]["mean"] == pytest.approx(np.mean(got))
    assert doc_json["variants"][0]["metrics"]["colorfulness"]["n"] == 1
    assert doc_json["metric_errors"] == []
    out = io.StringIO()
    write_csv(report, out)
    header = out.getvalue().splitlines()[0].split(",")
    assert "colorfulness.mean" in header and "colorfulness_drift.value" in header
    console = Console(file=io.StringIO(), width=200)
    render_table(report, console)
    assert "colorfulness" in console.file.getvalue()  # type: ignore[attr-defined]
    html = render_html(report, artifact_root=lab.artifacts)
    assert ">colorfulness<" in html and ">dynamic_degree<" in html


class _Recorder:
    """A plugin that keeps what it was given, and fails at a chosen frame."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.runs: list[PluginRun] = []
        self.seen: list[tuple[int, tuple[int, ...], str]] = []
        self.fail_at = fail_at

    def plugin(self, name: str, **kwargs: Any) -> MetricPlugin:
        recorder = self

        class Measurer:
            def frame(self, index: int, pixels: NDArray[np.uint8]) -> Mapping[str, float]:
                if index == recorder.fail_at:
                    raise ValueError("weights file not found: /models/clip.pt")
                recorder.seen.append((index, pixels.shape, str(pixels.dtype)))
                return {name: float(pixels.mean())}

            def finish(self) -> Mapping[str, float | None]:
                return {f"{name}_frames": float(len(recorder.seen))}

        def start(run: PluginRun) -> Measurer:
            recorder.runs.append(run)
            return Measurer()

        return MetricPlugin(
            name=name, start=start, frame_outputs=(name,), run_outputs=(f"{name}_frames",),
            version="1", **kwargs,
        )  # fmt: skip


@pytest.fixture
def registered() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        unregister_plugin(name)


def test_plugin_gets_prompt_image_and_the_frames_it_asked_for(
    sqlite_lab: Lab, registered: list[str], tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG not decoded by the synthetic provider")
    recorder = _Recorder()
    register_plugin(recorder.plugin("probe", frame_format="y", size=(32, 24), every=5))
    registered.append("probe")
    items = [{"id": "cat", "prompt": "a cat surfing at dawn", "image": str(image)}]
    experiment = sqlite_lab.submit("probe", [ORBIT], items=items, metrics={"plugins": ["probe"]})
    (ctx,) = sqlite_lab.claim(experiment)
    sqlite_lab.process(ctx)

    (run,) = recorder.runs
    assert run.prompt == "a cat surfing at dawn" and run.image == image.resolve()
    assert (run.width, run.height, run.fps, run.item_id) == (64, 48, 12, "cat")
    assert recorder.seen == [(0, (24, 32), "uint8"), (5, (24, 32), "uint8"),
                             (10, (24, 32), "uint8")]  # fmt: skip
    doc = _frames_doc(sqlite_lab, ctx.run_id)
    assert [f.get("probe") is not None for f in doc["frames"]] == [i % 5 == 0 for i in range(12)]
    assert _rows(sqlite_lab, ctx.run_id)[("probe_frames", "value")] == 3.0


def test_failing_plugin_fails_only_its_metric_and_reports_say_so(
    sqlite_lab: Lab, registered: list[str]
) -> None:
    broken, fine = _Recorder(fail_at=3), _Recorder()
    register_plugin(broken.plugin("clipsim"))
    register_plugin(fine.plugin("exposure", frame_format="rgb"))
    registered.extend(["clipsim", "exposure"])
    metrics = {"plugins": ["clipsim", "exposure"]}
    (ctx,) = sqlite_lab.claim(sqlite_lab.submit("broken", [ORBIT], metrics=metrics))
    sqlite_lab.process(ctx)

    with sqlite_lab.db.sessions() as session:
        assert session.get(Run, ctx.run_id).status == "succeeded"  # type: ignore[union-attr]
    rows = _rows(sqlite_lab, ctx.run_id)
    assert rows[("clipsim", "error")] == 1.0 and rows[("clipsim_frames", "error")] == 1.0
    assert ("clipsim", "mean") not in rows  # partial values of a failed metric are dropped
    assert rows[("exposure", "mean")] is not None and rows[("exposure_frames", "value")] == 12
    assert rows[("ssim_prev", "mean")] is not None  # native metrics unaffected
    doc = _frames_doc(sqlite_lab, ctx.run_id)
    error = doc["metric_plugins"]["clipsim"]["error"]
    assert error.startswith("frame 3: ValueError: weights file not found")
    assert all("clipsim" not in f for f in doc["frames"])

    report = _report(sqlite_lab, "broken")
    spread = report.variants[0].metrics["clipsim"]
    assert (spread.n, spread.errors) == (0, 1)
    assert "clipsim" in report.shown_metric_names
    assert [(r.run_id, m) for r, m in report.metric_errors] == [
        (ctx.run_id, "clipsim"),
        (ctx.run_id, "clipsim_frames"),
    ]
    as_json = report_to_dict(report)
    assert {e["metric"] for e in as_json["metric_errors"]} == {"clipsim", "clipsim_frames"}
    assert as_json["runs"][0]["metrics"]["clipsim"] == {"error": 1.0}
    console = Console(file=io.StringIO(), width=200)
    render_table(report, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "(1 failed)" in text and "Metric errors (2)" in text
    html = render_html(report, artifact_root=sqlite_lab.artifacts)
    assert 'id="metric-errors"' in html and "weights file not found" in html


def test_plugin_missing_on_the_worker_fails_only_its_metric(
    sqlite_lab: Lab, registered: list[str]
) -> None:
    register_plugin(_Recorder().plugin("gone"))
    registered.append("gone")
    (ctx,) = sqlite_lab.claim(sqlite_lab.submit("gone", [ORBIT], metrics={"plugins": ["gone"]}))
    unregister_plugin("gone")  # submitted where it was installed, run where it is not
    sqlite_lab.process(ctx)
    rows = _rows(sqlite_lab, ctx.run_id)
    assert rows[("gone", "error")] == 1.0 and rows[("luma_mean", "mean")] is not None
    error = _frames_doc(sqlite_lab, ctx.run_id)["metric_plugins"]["gone"]["error"]
    assert "no metric plugin 'gone' is installed" in error


def test_spec_naming_a_plugin_that_is_not_installed_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {
                "experiment": {"name": "x"},
                "metrics": {"plugins": ["no_such_metric"]},
                "items": [{"id": "a", "prompt": "p"}],
                "variants": [{"key": "v", "provider": "synthetic"}],
            }
        )
    assert "metrics.plugins[0]: no metric plugin 'no_such_metric' is installed" in str(caught.value)


def test_plugin_declarations_are_checked() -> None:
    with pytest.raises(PluginError, match=re.escape("must be 'tint' or 'tint_...'")):
        MetricPlugin(name="tint", start=lambda run: None, frame_outputs=("ssim_prev",))  # type: ignore[arg-type,return-value]
    with pytest.raises(PluginError, match="declares no"):
        MetricPlugin(name="tint", start=lambda run: None)  # type: ignore[arg-type,return-value]


def test_adding_a_plugin_or_motion_does_not_reuse_metrics_made_without_it(
    sqlite_lab: Lab, registered: list[str]
) -> None:
    """The same raw video (a provider-call cache hit) is measured again, not reused."""
    first = sqlite_lab.submit("before", [ORBIT])
    (ctx,) = sqlite_lab.claim(first)
    sqlite_lab.process(ctx)
    register_plugin(_Recorder().plugin("later"))
    registered.append("later")
    metrics = {"groups": ["frame", "temporal", "motion"], "plugins": ["later"]}
    (again,) = sqlite_lab.claim(sqlite_lab.submit("after", [ORBIT], metrics=metrics))
    sqlite_lab.process(again)
    rows = _rows(sqlite_lab, again.run_id)
    assert rows[("later", "mean")] is not None
    assert rows[("motion_mean", "mean")] is not None and ("dynamic_degree", "value") in rows
    assert _frames_doc(sqlite_lab, again.run_id)["run_id"] == again.run_id  # made, not reused


def test_canonical_key_changes_with_plugins_versions_and_threshold() -> None:
    fmt = CanonicalFormat()
    base = canonical_key("ab" * 32, fmt, None, ["frame", "motion"])
    keys = {
        base,
        canonical_key("ab" * 32, fmt, None, ["frame", "motion"], plugins=[("c", "1")]),
        canonical_key("ab" * 32, fmt, None, ["frame", "motion"], plugins=[("c", "2")]),
        canonical_key("ab" * 32, fmt, None, ["frame", "motion"], dynamic_threshold=0.01),
    }
    assert len(keys) == 4
    assert base == canonical_key("ab" * 32, fmt, None, ["frame", "motion"])


def test_motion_group_separates_still_pan_and_flicker(sqlite_lab: Lab) -> None:
    variants = [
        {"key": p, "provider": "synthetic", "model": p,
         "params": {"width": 96, "height": 72, "fps": 12, "seconds": 1}}
        for p in ("still", "orbit")
    ]  # fmt: skip
    metrics = {"groups": ["motion"], "dynamic_threshold": 0.02}
    experiment = sqlite_lab.submit("motion", variants, metrics=metrics)
    contexts = sqlite_lab.claim(experiment)
    sqlite_lab.process_all(contexts)
    by_key = {c.variant_key: _rows(sqlite_lab, c.run_id) for c in contexts}
    still, orbit = by_key["still"], by_key["orbit"]
    # A flat still frame's encoder noise gives some spurious flow (docs/metrics.md):
    # the orbiting disc must still read as clearly more dynamic.
    assert orbit[("dynamic_degree", "value")] > still[("dynamic_degree", "value")]  # type: ignore[operator]
    assert orbit[("motion_mean", "mean")] > 2 * still[("motion_mean", "mean")]  # type: ignore[operator]
    assert set(by_key["orbit"]) >= {("warp_error", "mean"), ("si", "mean"), ("ti", "p95")}
    doc = _frames_doc(sqlite_lab, contexts[0].run_id)
    assert doc["dynamic_threshold"] == 0.02 and doc["metric_groups"] == ["motion"]
    report = _report(sqlite_lab, "motion")
    assert {"motion_mean", "warp_error", "dynamic_degree", "si", "ti"} <= set(
        report.shown_metric_names
    )


def test_reelbench_run_with_the_installed_plugin_reports_it(
    colorfulness_installed: None, sqlite_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "color.toml"
    spec.write_text(
        textwrap.dedent(
            """
            [experiment]
            name = "color-cli"

            [canonical]
            width = 64
            height = 48
            fps = 8
            preset = "ultrafast"

            [metrics]
            groups = ["frame", "motion"]
            plugins = ["colorfulness"]

            [[items]]
            id = "a"
            prompt = "a red kite"

            [[variants]]
            key = "orbit"
            provider = "synthetic"
            model = "orbit"
            repeats = 2
            params = { seconds = 0.5, width = 64, height = 48, fps = 8 }
            """
        )
    )
    report_dir = tmp_path / "report"
    with contextlib.chdir(tmp_path):
        result = CliRunner().invoke(
            main,
            ["run", str(spec), "--db", sqlite_url, "--artifacts", str(tmp_path / "art"),
             "--report", str(report_dir), "--workers", "2"],
            catch_exceptions=False,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "colorfulness" in result.stdout and "dynamic_degree" in result.stdout
    doc = json.loads((report_dir / "report.json").read_text())
    assert len(doc["runs"]) == 2
    for run in doc["runs"]:
        assert run["status"] == "succeeded"
        assert run["metrics"]["colorfulness"]["mean"] > 0
        assert "value" in run["metrics"]["colorfulness_drift"]
    assert doc["variants"][0]["metrics"]["colorfulness"]["n"] == 2
    assert ">colorfulness<" in (report_dir / "index.html").read_text()


def test_metrics_command_feeds_plugins_and_reports_a_failing_one(
    colorfulness_installed: None, registered: list[str], tmp_path: Path
) -> None:
    video = tmp_path / "clip.mp4"
    encode_video(video, moving_pattern(64, 48, 6, seed=2, step=2), crf=18)
    broken = _Recorder(fail_at=2)
    register_plugin(broken.plugin("clipsim"))
    registered.append("clipsim")
    args = ["metrics", str(video), "-p", "colorfulness", "-p", "clipsim", "--prompt", "a kite"]
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len([f for f in doc["frames"] if "colorfulness" in f]) == 6
    assert doc["summary"]["colorfulness"]["mean"] >= 0
    assert doc["summary"]["clipsim"] == {"error": 1.0}
    assert doc["metric_plugins"]["clipsim"]["error"].startswith("frame 2: ValueError")
    assert broken.runs[0].prompt == "a kite"

    table = CliRunner().invoke(main, [*args, "--no-progress"], catch_exceptions=False)
    assert table.exit_code == 0
    assert "colorfulness" in table.stdout and "colorfulness_drift" in table.stdout
    assert "metric plugin clipsim failed (clipsim, clipsim_frames)" in table.stdout

    missing = CliRunner().invoke(main, ["metrics", str(video), "-p", "nope"])
    assert missing.exit_code == 2 and "--plugin nope: not installed" in missing.output
