"""load_results: one record per run, numbers exactly as the database holds them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from report_data import Fixture, fill_database
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import reelbench
from reelbench.db.models import Metric, Run
from reelbench.results import DatabaseNotFound, ExperimentNotFound, RunRecord, load_results


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> tuple[str, Fixture]:
    """The fixture experiment in a fresh database, on SQLite and on PostgreSQL."""
    return database_url, fill_database(database_url, tmp_path)


def test_one_record_per_run_in_grid_order(db: tuple[str, Fixture]) -> None:
    url, fx = db
    records = load_results(fx.name, url)
    assert len(records) == len(fx.items) * len(fx.variants) * 2
    assert all(isinstance(r, RunRecord) for r in records)
    assert [(r.item_key, r.variant_key, r.repeat) for r in records] == [
        (i, v, rep) for i in fx.items for v in fx.variants for rep in range(2)
    ]


def test_records_carry_metrics_exactly_as_stored(db: tuple[str, Fixture]) -> None:
    url, fx = db
    engine = create_engine(url)
    stored: dict[int, dict[str, dict[str, float | None]]] = defaultdict(lambda: defaultdict(dict))
    with Session(engine) as session:
        for m in session.scalars(select(Metric)):
            stored[m.run_id][m.name][m.stat] = m.value
    engine.dispose()
    records = load_results(fx.name, url)
    assert sum(1 for r in records if r.metrics) == len(stored)
    for r in records:
        assert r.metrics == stored.get(r.run_id, {})


def test_failed_runs_keep_error_class_message_and_attempts(db: tuple[str, Fixture]) -> None:
    url, fx = db
    failed = {(r.item_key, r.repeat): r for r in load_results(fx.name, url) if r.status == "failed"}
    assert set(failed) == {("xss", 0), ("city", 1)}
    assert failed["xss", 0].error_class == "retryable"
    assert failed["xss", 0].attempt == 3
    assert failed["city", 1].error_class == "terminal"
    assert "moov atom" in (failed["city", 1].error_message or "")
    assert failed["city", 1].canon_uri is None


def test_records_join_provider_cost_latency_and_artifacts(db: tuple[str, Fixture]) -> None:
    url, fx = db
    records = load_results(fx.name, url)
    alpha = [r for r in records if r.variant_key == "alpha"]
    assert {r.cost for r in alpha} == {0.01}
    assert {r.latency_seconds for r in alpha} == {1.5}
    assert all(r.raw_sha256 == r.canon_sha256 for r in alpha)
    for r in alpha:
        assert r.canon_uri and r.canon_uri.startswith("file://")
        assert r.frames_uri and r.frames_uri.endswith("/metrics/frames.json")
        assert r.provider == "synthetic" and r.model == "orbit"


def test_experiment_found_by_id_as_well_as_name(db: tuple[str, Fixture]) -> None:
    url, fx = db
    by_id = load_results(fx.experiment_id, url)
    by_id_text = load_results(str(fx.experiment_id), url)
    assert [r.run_id for r in by_id] == [r.run_id for r in load_results(fx.name, url)]
    assert [r.run_id for r in by_id_text] == [r.run_id for r in by_id]


def test_unknown_experiment_error_lists_known_names(db: tuple[str, Fixture]) -> None:
    url, fx = db
    with pytest.raises(ExperimentNotFound, match=fx.name):
        load_results("no-such-experiment", url)


def test_missing_sqlite_file_is_an_error_not_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(DatabaseNotFound, match=r"absent\.db"):
        load_results("x", f"sqlite:///{path}")
    assert not path.exists()


def test_default_database_is_env_then_dot_reelbench(
    db: tuple[str, Fixture], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, fx = db
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REELBENCH_DATABASE_URL", url)
    assert len(load_results(fx.name)) == 18
    monkeypatch.delenv("REELBENCH_DATABASE_URL")
    with pytest.raises(DatabaseNotFound, match=r"\.reelbench"):
        load_results(fx.name)


def test_records_export_as_plain_json_ready_dicts(db: tuple[str, Fixture]) -> None:
    url, fx = db
    record = load_results(fx.name, url)[0]
    as_dict = record.as_dict()
    assert as_dict["run_id"] == record.run_id
    assert isinstance(as_dict["finished_at"], str)
    assert as_dict["metrics"] == record.metrics


def test_load_results_is_exported_from_the_package() -> None:
    assert reelbench.load_results is load_results
    assert isinstance(reelbench.__version__, str)


def test_status_column_matches_the_database(db: tuple[str, Fixture]) -> None:
    url, fx = db
    engine = create_engine(url)
    with Session(engine) as session:
        statuses = {i: s for i, s in session.execute(select(Run.id, Run.status))}
    engine.dispose()
    assert {r.run_id: r.status for r in load_results(fx.name, url)} == statuses
