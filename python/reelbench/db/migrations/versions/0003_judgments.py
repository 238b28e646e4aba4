"""Human judgements: one row per blind pairwise vote.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

A new table only: existing experiments, runs, artifacts and metrics are not
touched, and an experiment made before it simply has no votes yet.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "judgments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vote_uid", sa.String(length=64), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("left_run_id", sa.Integer(), nullable=False),
        sa.Column("right_run_id", sa.Integer(), nullable=False),
        sa.Column("left_sha256", sa.String(length=64), nullable=False),
        sa.Column("right_sha256", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("rater", sa.String(length=100), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("seconds_to_vote", sa.Float(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["left_run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["right_run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("vote_uid"),
    )
    op.create_index("ix_judgments_experiment", "judgments", ["experiment_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_judgments_experiment", table_name="judgments")
    op.drop_table("judgments")
