"""PostgreSQL: a statement waiting on a lock held elsewhere fails after the lock timeout.

A worker's step that waits behind a stuck transaction must not hang the
worker: the wait ends with an ``OperationalError``, which the reconnect-and-
retry loop retries, and a stopping worker gives up.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from reelbench.db.engine import LOCK_TIMEOUT_SECONDS, make_engine
from reelbench.db.retry import Stopping, retry_db


def test_lock_waits_end_and_a_stopping_caller_gives_up(postgres_url: str) -> None:
    holder = make_engine(postgres_url)
    waiter = make_engine(postgres_url, lock_timeout=0.3)
    default = make_engine(postgres_url)
    try:
        with holder.begin() as conn:
            conn.execute(text("CREATE TABLE lock_probe (id INTEGER PRIMARY KEY, n INTEGER)"))
            conn.execute(text("INSERT INTO lock_probe VALUES (1, 0)"))
        with default.connect() as conn:
            shown = conn.execute(text("SHOW lock_timeout")).scalar_one()
        assert shown == f"{round(LOCK_TIMEOUT_SECONDS)}s"

        with holder.connect() as stuck:
            # A transaction that holds the row and never ends (until the test says so).
            stuck.execute(text("UPDATE lock_probe SET n = n + 1 WHERE id = 1"))

            def bump() -> None:
                with waiter.begin() as conn:
                    conn.execute(text("UPDATE lock_probe SET n = n + 10 WHERE id = 1"))

            started = time.monotonic()
            with pytest.raises(sa_exc.OperationalError, match="lock timeout"):
                bump()
            assert time.monotonic() - started < 10  # not the default 30 s, nor forever

            stopping = threading.Event()
            stopping.set()
            with pytest.raises(Stopping):
                retry_db("bumping the probe", bump, stopping=stopping)
            stuck.rollback()
        # With the holder gone the same step goes through.
        bump()
        with default.connect() as conn:
            assert conn.execute(text("SELECT n FROM lock_probe")).scalar_one() == 10
    finally:
        for engine in (holder, waiter, default):
            engine.dispose()
