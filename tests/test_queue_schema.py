"""The packaged migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from reelbench.db.engine import current_revision, head_revision, make_engine, open_database
from reelbench.db.models import Base


def _comparable(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
    # The claim index orders by an expression (priority DESC), which cannot be
    # reflected for comparison: it is checked by name instead.
    return name != "ix_runs_claim"


def test_migrated_schema_matches_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": _comparable})
            assert compare_metadata(context, Base.metadata) == []
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("runs")}
        assert {"ix_runs_claim", "ix_runs_experiment_status"} <= indexes
    finally:
        engine.dispose()


def test_empty_database_is_upgraded_on_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'fresh.db'}"
    db = open_database(url)
    try:
        assert current_revision(db.engine) == head_revision()
        with db.sessions() as session:
            assert session.execute(text("SELECT count(*) FROM runs")).scalar_one() == 0
    finally:
        db.dispose()


def test_sqlite_connections_use_wal_and_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()
