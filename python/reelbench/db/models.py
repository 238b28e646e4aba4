"""The schema: experiments, items, variants, runs and everything a run records.

Typed SQLAlchemy 2.0 models. Alembic migrations in ``reelbench/db/migrations``
are the source of truth for existing databases; keep both in step.

Timestamps are timezone-aware UTC everywhere (``timestamptz`` on PostgreSQL).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Artifact",
    "Base",
    "DerivedOutput",
    "Experiment",
    "Item",
    "Judgment",
    "Metric",
    "ProviderCall",
    "ProviderLimit",
    "ProviderSlot",
    "Run",
    "RunAttempt",
    "RunStatus",
    "Spend",
    "UTCDateTime",
    "Variant",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no timezone type: values are stored naive in UTC and given
    their tzinfo back when read, so comparisons behave the same on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")

        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None

        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RunStatus(enum.StrEnum):
    """Life cycle of a run. Terminal states: succeeded, failed, cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Base(DeclarativeBase):
    """Declarative base; JSON columns hold plain dicts and lists."""

    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}  # noqa: RUF012


class Experiment(Base):
    """One named experiment. Submitting its spec again extends it."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64))
    # The validated spec as last submitted (paths resolved), for reports.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    canonical: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_path: Mapped[str | None] = mapped_column(Text)
    #: The spend budget in USD (``[budget] max_usd``, ``reelbench budget``); None: no cap.
    max_usd: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    items: Mapped[list[Item]] = relationship(back_populates="experiment")
    variants: Mapped[list[Variant]] = relationship(back_populates="experiment")


class Item(Base):
    """A prompt (with optional input image and reference video)."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("experiment_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))  # the spec's item id
    prompt: Mapped[str] = mapped_column(Text)
    image_path: Mapped[str | None] = mapped_column(Text)
    reference_path: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    experiment: Mapped[Experiment] = relationship(back_populates="items")


class Variant(Base):
    """A provider + model + parameters combination."""

    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("experiment_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(300))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    repeats: Mapped[int] = mapped_column(Integer, default=1)
    cache: Mapped[bool] = mapped_column(Boolean, default=True)

    experiment: Mapped[Experiment] = relationship(back_populates="variants")


class Run(Base):
    """One cell of the grid: item x variant x repeat. The unit workers claim."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("item_id", "variant_id", "repeat"),
        # The claim walks claimable runs in (priority DESC, id) order and stops
        # after a batch. Only queued and running rows can be claimable, and
        # they are few next to the finished ones: a partial index on them
        # keeps the claim an index walk however large the history grows.
        Index(
            "ix_runs_claim",
            text("priority DESC"),
            "id",
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_runs_experiment_status", "experiment_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"))
    repeat: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED.value)
    # Fencing token: incremented by every claim; later writes check it.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_traceback: Mapped[str | None] = mapped_column(Text)
    provider_call_id: Mapped[int | None] = mapped_column(ForeignKey("provider_calls.id"))
    canon_uri: Mapped[str | None] = mapped_column(Text)
    canon_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: Why a queued run is waiting (provider slot, rate limit, budget); None: not waiting.
    wait_reason: Mapped[str | None] = mapped_column(String(200))
    #: None: generate (the grid's work); ``remeasure``: a finished run whose
    #: metrics are computed again from its canonical video (``reelbench remeasure``).
    task: Mapped[str | None] = mapped_column(String(16))
    #: What a remeasure computes: ``{"metrics": [group or plugin names]}``.
    remeasure: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RunAttempt(Base):
    """History: one row per claim of a run, with how that attempt ended."""

    __tablename__ = "run_attempts"
    __table_args__ = (UniqueConstraint("run_id", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # succeeded | retryable | terminal | cancelled | released | lost
    outcome: Mapped[str | None] = mapped_column(String(16))
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_traceback: Mapped[str | None] = mapped_column(Text)


class ProviderCall(Base):
    """One provider request, keyed by its hash: the cache that never pays twice."""

    __tablename__ = "provider_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(300))
    # What was asked, without secrets.
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    # pending | submitting (intent recorded, submit under way) | submitted |
    # succeeded | failed | forgotten (``reelbench cache forget``)
    status: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(String(300))
    #: Client-generated key sent with the submit to providers that take one;
    #: kept across takeovers so a repeated submit is recognised by the provider.
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    raw_artifact_uri: Mapped[str | None] = mapped_column(Text)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    raw_bytes: Mapped[int | None] = mapped_column(BigInteger)
    cost: Mapped[float | None] = mapped_column(Float)
    latency_seconds: Mapped[float | None] = mapped_column(Float)
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Single flight: the run attempt that owns the call while it is in flight.
    owner_run_id: Mapped[int | None] = mapped_column(Integer)
    #: The run whose attempt last made (or is making) the call, kept after it
    #: ends: how a failed call is traced back to its experiment.
    made_by_run_id: Mapped[int | None] = mapped_column(Integer)
    owner_attempt: Mapped[int | None] = mapped_column(Integer)
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ProviderLimit(Base):
    """Fleet-wide limits of one provider (``openai``) or provider and model (``openai:sora-2``)."""

    __tablename__ = "provider_limits"

    scope: Mapped[str] = mapped_column(String(400), primary_key=True)
    #: Provider calls in flight at once across the fleet (None: no cap).
    concurrency: Mapped[int | None] = mapped_column(Integer)
    #: Submits in any 60-second window across the fleet (None: no cap).
    per_minute: Mapped[int | None] = mapped_column(Integer)
    #: ``spec`` (from a submitted spec's ``[limits]``) or ``cli`` (``reelbench limits set``).
    source: Mapped[str] = mapped_column(String(16))
    #: A provider answered 429 with Retry-After: no submit for the scope before this.
    paused_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class ProviderSlot(Base):
    """One unit of a limit: a leased in-flight slot, or one submit of a per-minute window."""

    __tablename__ = "provider_slots"
    __table_args__ = (
        UniqueConstraint("scope", "kind", "slot_no"),
        Index("ix_provider_slots_holder", "holder_run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(16))  # concurrency | rate
    slot_no: Mapped[int] = mapped_column(Integer)
    holder_run_id: Mapped[int | None] = mapped_column(Integer)
    holder_attempt: Mapped[int | None] = mapped_column(Integer)
    lease_expires_at: Mapped[datetime | None]
    #: ``rate`` slots: when the slot last let a submit through.
    used_at: Mapped[datetime | None]


class Spend(Base):
    """Money of one paid provider call: reserved before submit, charged when it ends."""

    __tablename__ = "spend"
    __table_args__ = (
        Index("ix_spend_experiment_state", "experiment_id", "state"),
        Index("ix_spend_call", "call_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    holder_attempt: Mapped[int | None] = mapped_column(Integer)
    call_id: Mapped[int | None] = mapped_column(
        ForeignKey("provider_calls.id", ondelete="SET NULL")
    )
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(300))
    #: reserved (before submit, leased) | submitted (a job exists: counts until
    #: it ends) | charged | released (nothing was billed)
    state: Mapped[str] = mapped_column(String(16))
    estimate_usd: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    #: provider (reported by the API) | price (the price table)
    cost_source: Mapped[str | None] = mapped_column(String(16))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Artifact(Base):
    """A file a run produced: raw output, canonical video, per-frame metrics."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # raw | canon | frames | reference
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class Metric(Base):
    """One summary statistic of one metric of one run (e.g. ssim_prev / p05)."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name", "stat"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # mean | min | max | p05 | p50 | p95 | value (for scalars such as scene_cuts)
    stat: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)  # None: +inf PSNR or undefined
    #: The metrics version (``reelbench.metrics.METRICS_VERSION``) that produced
    #: the value; None for values recorded before versions were kept.
    version: Mapped[int | None] = mapped_column(Integer)


class DerivedOutput(Base):
    """A file made deterministically from other files, reused instead of being made again.

    ``kind``:

    - ``canonical``: the canonical video (``uri``) of a raw video, with its
      per-frame metrics file and summary in ``details``; ``key`` hashes the
      raw video's SHA-256, the canonical format, the reference and the metric
      configuration, so a provider-call cache hit reuses it without decoding;
    - ``reference``: a reference video in the canonical format, lossless
      (``details``: frame count); ``key`` hashes the reference's SHA-256 and
      the canonical format, so an item's reference is scaled once.

    A row is written only after its files are complete; readers check the
    SHA-256 before reusing one.
    """

    __tablename__ = "derived_outputs"
    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The run whose processing made it (for provenance; not a foreign key).
    source_run_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]


class Judgment(Base):
    """One human vote: two canonical videos of one item, which side won.

    The two runs are stored as shown (left and right) with the SHA-256 of the
    canonical video each showed: a run re-made since then has another hash,
    so its old votes are recognised as stale instead of counting for a video
    nobody judged. ``vote_uid`` names the vote everywhere (exports, imports),
    which is what makes an import idempotent.
    """

    __tablename__ = "judgments"
    __table_args__ = (Index("ix_judgments_experiment", "experiment_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vote_uid: Mapped[str] = mapped_column(String(64), unique=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    left_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    right_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    left_sha256: Mapped[str] = mapped_column(String(64))
    right_sha256: Mapped[str] = mapped_column(String(64))
    # left | right | tie | both_bad
    outcome: Mapped[str] = mapped_column(String(16))
    rater: Mapped[str] = mapped_column(String(100))
    comment: Mapped[str | None] = mapped_column(Text)
    seconds_to_vote: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
