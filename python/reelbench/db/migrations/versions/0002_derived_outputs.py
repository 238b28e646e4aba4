"""Derived outputs (canonical videos and references reused across runs); who made a call.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A new table and a nullable column: existing experiments, runs, artifacts and
metrics are not touched; runs made before it have no derived rows, and their
calls no ``made_by_run_id``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "derived_outputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("source_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "key"),
    )
    with op.batch_alter_table("provider_calls") as batch:
        batch.add_column(sa.Column("made_by_run_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("provider_calls") as batch:
        batch.drop_column("made_by_run_id")
    op.drop_table("derived_outputs")
