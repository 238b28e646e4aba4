"""Fleet coordination: provider limits and slots, spend records, submit intents.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

New tables (``provider_limits``, ``provider_slots``, ``spend``) and nullable
columns only (``experiments.max_usd``, ``runs.wait_reason``,
``provider_calls.idempotency_key``): existing rows keep their meaning, an
experiment made before it has no budget and a call made before it has no
recorded intent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "provider_limits",
        sa.Column("scope", sa.String(length=400), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("per_minute", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("paused_until", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "provider_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("slot_no", sa.Integer(), nullable=False),
        sa.Column("holder_run_id", sa.Integer(), nullable=True),
        sa.Column("holder_attempt", sa.Integer(), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "kind", "slot_no"),
    )
    op.create_index("ix_provider_slots_holder", "provider_slots", ["holder_run_id"])
    op.create_table(
        "spend",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("holder_attempt", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("estimate_usd", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("cost_source", sa.String(length=16), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["call_id"], ["provider_calls.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_spend_experiment_state", "spend", ["experiment_id", "state"])
    op.create_index("ix_spend_call", "spend", ["call_id"])
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("max_usd", sa.Float(), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("wait_reason", sa.String(length=200), nullable=True))
    with op.batch_alter_table("provider_calls") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("provider_calls") as batch:
        batch.drop_column("idempotency_key")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("wait_reason")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("max_usd")
    op.drop_index("ix_spend_call", table_name="spend")
    op.drop_index("ix_spend_experiment_state", table_name="spend")
    op.drop_table("spend")
    op.drop_index("ix_provider_slots_holder", table_name="provider_slots")
    op.drop_table("provider_slots")
    op.drop_table("provider_limits")
