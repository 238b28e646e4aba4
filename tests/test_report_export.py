"""CSV and JSON exports hold the database's numbers exactly; the terminal table shows them."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
from report_data import Fixture, fill_database
from rich.console import Console
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from reelbench.db.models import Metric, ProviderCall, Run
from reelbench.report import Report, load_report, render_table, write_csv, write_json


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> tuple[str, Fixture]:
    """The fixture experiment in a fresh database, on SQLite and on PostgreSQL."""
    return database_url, fill_database(database_url, tmp_path)


@pytest.fixture
def report(db: tuple[str, Fixture]) -> Report:
    url, fx = db
    return load_report(fx.name, url, baseline="beta")


@pytest.fixture
def stored(db: tuple[str, Fixture]) -> dict[int, dict[str, object]]:
    """What the database holds per run: metric values, cost, latency, status."""
    url, _ = db
    engine = create_engine(url)
    out: dict[int, dict[str, object]] = defaultdict(dict)
    with Session(engine) as session:
        for m in session.scalars(select(Metric)):
            out[m.run_id][f"{m.name}.{m.stat}"] = m.value
        for run, call in session.execute(
            select(Run, ProviderCall).outerjoin(
                ProviderCall, Run.provider_call_id == ProviderCall.id
            )
        ):
            out[run.id]["status"] = run.status
            out[run.id]["cost"] = call.cost if call else None
            out[run.id]["latency_seconds"] = call.latency_seconds if call else None
    engine.dispose()
    return out


def test_csv_has_one_row_per_run_with_the_stored_numbers(
    report: Report, stored: dict[int, dict[str, object]]
) -> None:
    out = io.StringIO()
    write_csv(report, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == len(stored) == 18
    compared = 0
    for row in rows:
        expected = stored[int(row["run_id"])]
        assert row["status"] == expected["status"]
        for column, value in expected.items():
            if column == "status":
                continue
            # Empty field = NULL; otherwise the float must read back bit-for-bit.
            assert (float(row[column]) if row[column] else None) == value, column
            compared += 1
        # No metric column is filled for a run that has no such metric.
        for column, text in row.items():
            if "." in column and column not in expected:
                assert text == "", column
    assert compared > 18 * 2


def test_json_has_every_variant_metric_and_the_stored_numbers(
    report: Report, stored: dict[int, dict[str, object]]
) -> None:
    out = io.StringIO()
    write_json(report, out)
    doc = json.loads(out.getvalue(), parse_constant=pytest.fail)  # strict: no NaN/Infinity
    assert doc["format"] == "reelbench-report" and doc["version"] == 1
    assert [v["key"] for v in doc["variants"]] == ["alpha", "beta", "gamma"]
    assert set(doc["metrics"]) == set(report.metric_names)
    for v in doc["variants"]:
        assert set(v["metrics"]) == set(report.metric_names)
    assert len(doc["runs"]) == 18
    for run in doc["runs"]:
        expected = stored[run["run_id"]]
        assert run["status"] == expected["status"]
        assert run["cost"] == expected["cost"]
        assert run["latency_seconds"] == expected["latency_seconds"]
        flat = {f"{n}.{s}": v for n, stats in run["metrics"].items() for s, v in stats.items()}
        assert flat == {k: v for k, v in expected.items() if "." in k}


def test_json_summary_matches_the_report_model(report: Report) -> None:
    out = io.StringIO()
    write_json(report, out)
    doc = json.loads(out.getvalue())
    for v, summary in zip(doc["variants"], report.variants, strict=True):
        for name, spread in summary.metrics.items():
            assert v["metrics"][name]["mean"] == spread.mean
            assert v["metrics"][name]["std"] == spread.std
        assert v["status_counts"] == summary.status_counts
        assert v["failures_by_class"] == summary.failures_by_class
    comparisons = doc["baseline"]["comparisons"]
    assert doc["baseline"]["variant"] == "beta"
    assert set(comparisons) == {"alpha", "gamma"}
    c = report.comparison("gamma", "sharpness")
    assert c is not None
    assert comparisons["gamma"]["sharpness"]["ratio"] == c.ratio
    gamma = next(v for v in doc["variants"] if v["key"] == "gamma")
    assert gamma["seed_check"]["verdict"] == "not reproducible"


def test_undefined_values_are_null_in_json_and_empty_in_csv(report: Report) -> None:
    out = io.StringIO()
    write_json(report, out)
    runs = json.loads(out.getvalue())["runs"]
    identical = [r for r in runs if r["metrics"].get("psnr_ref", {}).get("mean", 0) is None]
    assert len(identical) == 1
    csv_out = io.StringIO()
    write_csv(report, csv_out)
    row = next(
        r
        for r in csv.DictReader(io.StringIO(csv_out.getvalue()))
        if int(r["run_id"]) == identical[0]["run_id"]
    )
    assert row["psnr_ref.mean"] == ""
    assert not any(isinstance(x, float) and math.isnan(x) for x in row.values())


def test_terminal_table_shows_variants_metrics_and_failures_literally(report: Report) -> None:
    console = Console(record=True, width=200, color_system=None)
    render_table(report, console)
    text = console.export_text()
    for key in ("alpha", "beta (baseline)", "gamma", "sharpness", "temporal_flicker"):
        assert key in text
    assert "retryable 1, terminal 1" in text
    # Markup-like text in error messages prints as typed, not as styling.
    assert "<b>moov atom</b>" in text
    assert "HTTP 503 from <provider>" in text
