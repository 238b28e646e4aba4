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


def test_a_database_of_the_first_release_upgrades_and_keeps_its_rows(database_url: str) -> None:
    """Made at revision 0001 with a finished run in it, then upgraded to the newest."""
    from sqlalchemy import create_engine

    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(text(f"DROP TABLE IF EXISTS {table.name}"))
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()
    from reelbench.db.engine import upgrade

    upgrade(database_url, "0001")
    raw = create_engine(database_url)
    now = "2026-11-24 10:00:00"
    try:
        with raw.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO experiments (id, name, spec_hash, spec, canonical, created_at, "
                    "updated_at) VALUES (1, 'old', 'h', '{}', '{}', :now, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO items (id, experiment_id, key, prompt, extra) "
                    "VALUES (1, 1, 'cat', 'a cat', '{}')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO variants (id, experiment_id, key, provider, params, "
                    "repeats, cache) VALUES (1, 1, 'v', 'synthetic', '{}', 1, true)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO runs (id, experiment_id, item_id, variant_id, repeat, seed, "
                    "status, attempt, max_attempts, priority, created_at, canon_uri, canon_sha256) "
                    "VALUES "
                    "(1, 1, 1, 1, 0, 7, 'succeeded', 1, 3, 0, :now, 'file:///c.mp4', :sha)"
                ),
                {"now": now, "sha": "a" * 64},
            )
            conn.execute(
                text(
                    "INSERT INTO artifacts (run_id, kind, uri, sha256, bytes, created_at) VALUES "
                    "(1, 'canon', 'file:///c.mp4', :sha, 10, :now)"
                ),
                {"now": now, "sha": "a" * 64},
            )
            conn.execute(
                text(
                    "INSERT INTO metrics (run_id, name, stat, value) "
                    "VALUES (1, 'ssim_prev', 'mean', 0.5)"
                )
            )
        upgrade(database_url)
        with raw.connect() as conn:
            assert conn.execute(text("SELECT name FROM experiments")).scalars().all() == ["old"]
            assert conn.execute(text("SELECT status, canon_sha256 FROM runs")).one() == (
                "succeeded",
                "a" * 64,
            )
            assert conn.execute(text("SELECT kind, bytes FROM artifacts")).one() == ("canon", 10)
            assert conn.execute(text("SELECT value FROM metrics")).scalar_one() == 0.5
            assert conn.execute(text("SELECT count(*) FROM derived_outputs")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM judgments")).scalar_one() == 0
            # Later columns start empty: no budget, no wait, no task, no recorded version.
            assert conn.execute(text("SELECT max_usd FROM experiments")).scalar_one() is None
            assert conn.execute(text("SELECT wait_reason, task FROM runs")).one() == (None, None)
            assert conn.execute(text("SELECT version FROM metrics")).scalar_one() is None
            assert conn.execute(text("SELECT count(*) FROM spend")).scalar_one() == 0
    finally:
        raw.dispose()
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
