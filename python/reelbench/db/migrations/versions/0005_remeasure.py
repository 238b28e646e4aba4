"""Remeasuring finished runs: the run's task, and the metric version of every number.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Nullable columns only: ``runs.task`` (None: generate; ``remeasure``: compute
metrics again from the canonical video), ``runs.remeasure`` (what to
compute), ``metrics.version`` (the metrics version that produced the value;
None for values recorded before it was kept).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("task", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("remeasure", sa.JSON(), nullable=True))
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_column("version")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("remeasure")
        batch.drop_column("task")
