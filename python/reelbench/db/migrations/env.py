"""Alembic environment: runs migrations on the connection ``upgrade()`` hands over.

Used programmatically only (``reelbench db upgrade`` or first use of a
database); there is no alembic.ini. For ``alembic revision --autogenerate``
during development, pass ``-x url=sqlite:///dev.db`` with a config naming this
folder as ``script_location``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from reelbench.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no database: pass -x url=... or use `reelbench db upgrade`")
    with create_engine(url).begin() as conn:
        _run(conn)
