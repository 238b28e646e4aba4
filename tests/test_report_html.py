"""The HTML report file: escaped strings, relative content-addressed videos, plots, failures."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path

import pytest
from report_data import XSS_PROMPT, Fixture, make_sqlite_database

from reelbench.report import (
    Report,
    build_report,
    load_report,
    report_paths,
    write_report_files,
)
from reelbench.report.html import render_html, write_html
from reelbench.results import RunRecord


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Fixture]:
    return make_sqlite_database(tmp_path_factory.mktemp("html"))


@pytest.fixture(scope="module")
def report(db: tuple[str, Fixture]) -> Report:
    url, fx = db
    return load_report(fx.name, url, baseline="alpha")


def test_user_strings_are_escaped(report: Report, tmp_path: Path) -> None:
    page = write_html(report, tmp_path / "index.html").read_text()
    assert "<script>window.__pwned" not in page
    assert html.escape(XSS_PROMPT) in page
    assert "<b>moov atom</b>" not in page
    assert "&lt;b&gt;moov atom&lt;/b&gt;" in page
    assert page.count("<script") == 1


def test_only_the_page_script_is_allowed_by_content_security_policy(
    report: Report, tmp_path: Path
) -> None:
    page = render_html(report, out_dir=tmp_path)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page


def test_videos_are_relative_and_placed_once_per_content(report: Report, tmp_path: Path) -> None:
    page = write_html(report, tmp_path / "out" / "index.html").read_text()
    sources = re.findall(r'<video src="([^"]+)"', page)
    succeeded = [r for r in report.runs if r.status == "succeeded"]
    assert len(sources) == len(succeeded) + 1  # plus the sunset reference
    assert all(s.startswith("videos/") and s.endswith(".mp4") for s in sources)
    placed = sorted(p.name for p in (tmp_path / "out" / "videos").iterdir())
    # beta's repeats are byte-identical: one file serves both players.
    assert len(placed) == len(set(sources)) < len(sources)
    for r in succeeded:
        assert r.canon_sha256 is not None
        assert f"videos/{r.canon_sha256[:16]}.mp4" in sources


def test_videos_are_hard_linked_from_the_artifact_store(report: Report, tmp_path: Path) -> None:
    write_html(report, tmp_path / "index.html")
    run = next(r for r in report.runs if r.status == "succeeded")
    assert run.canon_uri is not None and run.canon_sha256 is not None
    source = Path(run.canon_uri.removeprefix("file://"))
    placed = tmp_path / "videos" / f"{run.canon_sha256[:16]}.mp4"
    assert placed.stat().st_ino == source.stat().st_ino


def test_missing_canonical_video_is_reported_in_its_cell(
    db: tuple[str, Fixture], tmp_path: Path
) -> None:
    url, fx = db
    rep = load_report(fx.name, url)
    run = next(r for r in rep.runs if r.status == "succeeded")
    assert run.canon_uri is not None
    moved = rep.runs.index(run)
    rep.runs[moved] = type(run)(**{**run.__dict__, "canon_uri": "file:///nonexistent/canon.mp4"})
    page = write_html(rep, tmp_path / "index.html").read_text()
    assert "canonical video not found: <code>file:///nonexistent/canon.mp4</code>" in page


def test_per_frame_plots_are_inline_svg_per_item(report: Report, tmp_path: Path) -> None:
    page = write_html(report, tmp_path / "index.html").read_text()
    frames = page[page.index('id="frames"') : page.index('id="failures"')]
    for item in ("sunset", "xss", "city"):
        assert f"<h3>{item}</h3>" in frames
    # mad_prev, sharpness, luma_mean, black for each item; psnr_ref where there is a reference.
    assert frames.count("<svg") == 3 * 4 + 1
    assert frames.count('aria-label="psnr_ref"') == 1
    assert "<polyline" in frames


def test_failures_section_lists_every_failed_run(report: Report, tmp_path: Path) -> None:
    page = write_html(report, tmp_path / "index.html").read_text()
    failures = page[page.index('id="failures"') :]
    assert "Failures (2)" in failures
    assert "HTTP 503 from &lt;provider&gt; after 3 attempts" in failures
    assert ">terminal<" in failures and ">retryable<" in failures


def test_report_folder_holds_page_json_and_videos(report: Report, tmp_path: Path) -> None:
    html_path, json_path = write_report_files(report, tmp_path / "rep")
    assert (html_path, json_path) == (tmp_path / "rep/index.html", tmp_path / "rep/report.json")
    assert json.loads(json_path.read_text())["experiment"]["name"] == report.experiment.name
    assert any((tmp_path / "rep/videos").iterdir())
    assert report_paths(tmp_path / "x.html") == (tmp_path / "x.html", tmp_path / "x.json")
    assert not list(tmp_path.glob("rep/.*.tmp"))


def _records_with_frames(root: Path, items: int, frames: int) -> list[RunRecord]:
    records = []
    for i in range(items):
        path = root / f"{i}" / "frames.json"
        path.parent.mkdir(parents=True)
        path.write_text(
            json.dumps({"frames": [{"index": f, "luma_mean": float(f % 7)} for f in range(frames)]})
        )
        records.append(
            RunRecord(
                run_id=i + 1, experiment="big", item_key=f"item-{i}", prompt="p",
                variant_key="v", provider="synthetic", model=None, repeat=0, seed=i,
                status="succeeded", attempt=1, frames_uri=path.as_uri(),
                metrics={"luma_mean": {"mean": 3.0}},
            )
        )  # fmt: skip
    return records


def test_long_videos_are_plotted_sampled_with_the_true_frame_count(
    report: Report, tmp_path: Path
) -> None:
    big = build_report(report.experiment, _records_with_frames(tmp_path, 1, 1000))
    page = render_html(big)
    (points,) = re.findall(r'<polyline points="([^"]+)"', page)
    # At most 240 points: every 5th of the 1000 frames.
    assert len(points.split()) == 200
    assert "frame 999" in page


def test_plots_are_limited_to_the_first_items_with_a_note(report: Report, tmp_path: Path) -> None:
    many = build_report(report.experiment, _records_with_frames(tmp_path, 52, 4))
    page = render_html(many)
    frames = page[page.index('id="frames"') : page.index('id="failures"')]
    assert frames.count("<h3>") == 50
    assert "Plots for the first 50 of 52 items" in frames
