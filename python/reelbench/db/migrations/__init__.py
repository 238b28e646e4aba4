"""Alembic migrations shipped with the package (run by ``reelbench.db.engine.upgrade``)."""
