"""Results of an experiment as plain records: one per run, for reports and notebooks.

``load_results("cats")`` reads the runs of experiment ``cats`` with their item,
variant, provider call (cost, latency, raw output hash), canonical video and
metric summaries, and returns them as frozen :class:`RunRecord` objects. The
report layer builds on :func:`query_results`, the same query on an open
session.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, select
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from reelbench.db.engine import (
    DatabaseNotFound,
    make_engine,
    missing_database_message,
    sqlite_file,
)
from reelbench.db.item_files import item_file
from reelbench.db.models import Artifact, Experiment, Item, Metric, ProviderCall, Run, Variant
from reelbench.errors import ReelbenchError
from reelbench.settings import display_url, resolve_db_url

__all__ = [
    "DatabaseNotFound",
    "ExperimentInfo",
    "ExperimentNotFound",
    "MetricSummary",
    "RunRecord",
    "experiment_info",
    "find_experiment",
    "load_results",
    "query_results",
    "resolve_db_url",
]


#: ``{metric name: {stat: value}}``; a value is None where it is undefined or +inf (PSNR).
MetricSummary = Mapping[str, Mapping[str, float | None]]


class ExperimentNotFound(ReelbenchError):
    """No experiment with that name (or id) in the database."""


@dataclass(frozen=True)
class ExperimentInfo:
    """The experiment a set of records belongs to."""

    id: int
    name: str
    description: str | None
    spec_hash: str
    spec_path: str | None
    canonical: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    #: The spend budget in USD (None: no budget).
    max_usd: float | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run (item x variant x repeat) with everything a report shows about it."""

    run_id: int
    experiment: str
    item_key: str
    prompt: str
    variant_key: str
    provider: str
    model: str | None
    repeat: int
    seed: int
    status: str
    attempt: int
    error_class: str | None = None
    error_message: str | None = None
    #: Why a queued run waits (a provider slot, the rate window, the budget).
    wait_reason: str | None = None
    canon_uri: str | None = None
    canon_sha256: str | None = None
    #: URI of the per-frame metrics (``frames.json``), when the run produced one.
    frames_uri: str | None = None
    #: URI of the reference video the ``*_ref`` metrics were computed against.
    reference_uri: str | None = None
    item_image: str | None = None
    item_reference: str | None = None
    provider_call_id: int | None = None
    request_hash: str | None = None
    raw_sha256: str | None = None
    cost: float | None = None
    latency_seconds: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    metrics: MetricSummary = field(default_factory=dict)
    #: The metrics version that produced each metric's values (None: not recorded).
    metric_versions: Mapping[str, int | None] = field(default_factory=dict)

    def metric(self, name: str, stat: str | None = None) -> float | None:
        """The run's headline value of ``name``: ``stat`` if given, else ``value`` or ``mean``.

        Scalar metrics (``scene_cuts``, ``temporal_flicker``...) are stored as
        stat ``value``; per-frame metrics have ``mean``, ``min``, ... ``p95``.
        """
        stats = self.metrics.get(name)
        if stats is None:
            return None
        if stat is not None:
            return stats.get(stat)
        if "value" in stats:
            return stats["value"]
        return stats.get("mean")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (datetimes as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif name == "metrics":
                value = {m: dict(stats) for m, stats in value.items()}
            out[name] = value
        return out


def _open_engine(url: str) -> Engine:
    """An engine for reading; refuses to create an empty SQLite file by accident.

    No schema upgrade here: reading results must not write to the database.
    """
    try:
        path = sqlite_file(url)
    except ArgumentError as exc:
        raise DatabaseNotFound(
            f"not a database URL: {display_url(url)!r} (expected sqlite:///path.db or "
            "postgresql+psycopg://user@host/db)"
        ) from exc
    if path is not None and not path.is_file():
        raise DatabaseNotFound(missing_database_message(url, path))
    try:
        return make_engine(url)
    except ValueError as exc:
        raise DatabaseNotFound(str(exc)) from exc


def find_experiment(session: Session, experiment: str | int) -> Experiment:
    """The experiment named ``experiment`` (or with that id); ExperimentNotFound otherwise."""
    found: Experiment | None = None
    if isinstance(experiment, str):
        found = session.scalars(select(Experiment).where(Experiment.name == experiment)).first()
        if found is None and experiment.isdigit():
            found = session.get(Experiment, int(experiment))
    else:
        found = session.get(Experiment, experiment)
    if found is None:
        names = session.scalars(select(Experiment.name).order_by(Experiment.name)).all()
        known = ", ".join(names[:20]) if names else "none"
        raise ExperimentNotFound(
            f"no experiment {experiment!r} in this database (experiments: {known})"
        )
    return found


def experiment_info(exp: Experiment) -> ExperimentInfo:
    """A detached, frozen copy of an experiment row."""
    return ExperimentInfo(
        id=exp.id,
        name=exp.name,
        description=exp.description,
        spec_hash=exp.spec_hash,
        spec_path=exp.spec_path,
        canonical=dict(exp.canonical or {}),
        created_at=exp.created_at,
        updated_at=exp.updated_at,
        max_usd=exp.max_usd,
    )


def query_results(
    session: Session, experiment: str | int
) -> tuple[ExperimentInfo, list[RunRecord]]:
    """The experiment and one record per run, ordered by item, variant, repeat.

    Three queries whatever the size: runs joined to items, variants and provider
    calls; metrics; artifacts.
    """
    exp = find_experiment(session, experiment)
    # Plain columns through the connection (no ORM identity map): a report of
    # 10,000 runs reads hundreds of thousands of metric rows.
    conn = session.connection()
    runs, items, variants, calls = (
        cast(Table, m.__table__) for m in (Run, Item, Variant, ProviderCall)
    )
    metric_t, artifact_t = cast(Table, Metric.__table__), cast(Table, Artifact.__table__)
    rows = conn.execute(
        select(
            runs.c.id, runs.c.repeat, runs.c.seed, runs.c.status, runs.c.attempt,
            runs.c.error_class, runs.c.error_message, runs.c.wait_reason, runs.c.canon_uri,
            runs.c.canon_sha256,
            runs.c.provider_call_id, runs.c.started_at, runs.c.finished_at,
            items.c.key.label("item_key"), items.c.prompt, items.c.image_path,
            items.c.reference_path, variants.c.key.label("variant_key"), variants.c.provider,
            variants.c.model, calls.c.request_hash, calls.c.raw_sha256, calls.c.cost,
            calls.c.latency_seconds,
        )
        .join(items, runs.c.item_id == items.c.id)
        .join(variants, runs.c.variant_id == variants.c.id)
        .outerjoin(calls, runs.c.provider_call_id == calls.c.id)
        .where(runs.c.experiment_id == exp.id)
        .order_by(items.c.id, variants.c.id, runs.c.repeat)
    ).all()  # fmt: skip

    metrics: dict[int, dict[str, dict[str, float | None]]] = defaultdict(lambda: defaultdict(dict))
    versions: dict[int, dict[str, int | None]] = defaultdict(dict)
    for run_id, name, stat, value, version in conn.execute(
        select(
            metric_t.c.run_id, metric_t.c.name, metric_t.c.stat, metric_t.c.value,
            metric_t.c.version,
        )
        .join(runs, metric_t.c.run_id == runs.c.id)
        .where(runs.c.experiment_id == exp.id)
    ).all():  # fmt: skip
        metrics[run_id][name][stat] = value
        versions[run_id][name] = version

    artifacts: dict[int, dict[str, str]] = defaultdict(dict)
    for run_id, kind, uri in conn.execute(
        select(artifact_t.c.run_id, artifact_t.c.kind, artifact_t.c.uri)
        .join(runs, artifact_t.c.run_id == runs.c.id)
        .where(runs.c.experiment_id == exp.id)
    ).all():
        artifacts[run_id][kind] = uri

    spec_dir = Path(exp.spec_path).parent if exp.spec_path else None
    records = []
    for row in rows:
        arts = artifacts.get(row.id, {})
        run_metrics = metrics.get(row.id, {})
        records.append(
            RunRecord(
                run_id=row.id,
                experiment=exp.name,
                item_key=row.item_key,
                prompt=row.prompt,
                variant_key=row.variant_key,
                provider=row.provider,
                model=row.model,
                repeat=row.repeat,
                seed=row.seed,
                status=row.status,
                attempt=row.attempt,
                error_class=row.error_class,
                error_message=row.error_message,
                wait_reason=row.wait_reason if row.status == "queued" else None,
                canon_uri=row.canon_uri or arts.get("canon"),
                canon_sha256=row.canon_sha256,
                frames_uri=arts.get("frames"),
                reference_uri=arts.get("reference"),
                item_image=item_file(row.image_path, spec_dir),
                item_reference=item_file(row.reference_path, spec_dir),
                provider_call_id=row.provider_call_id,
                request_hash=row.request_hash,
                raw_sha256=row.raw_sha256,
                cost=row.cost,
                latency_seconds=row.latency_seconds,
                started_at=row.started_at,
                finished_at=row.finished_at,
                metrics={name: dict(stats) for name, stats in sorted(run_metrics.items())},
                metric_versions=dict(sorted(versions.get(row.id, {}).items())),
            )
        )
    return experiment_info(exp), records


def load_results(experiment: str | int, db: str | None = None) -> list[RunRecord]:
    """One :class:`RunRecord` per run of ``experiment`` (a name or an id).

    ``db`` is a database URL; None means ``$REELBENCH_DATABASE_URL`` or
    ``sqlite:///.reelbench/reelbench.db`` under the current folder, like the
    command line. Raises :class:`ExperimentNotFound` or :class:`DatabaseNotFound`.

    >>> import pandas as pd                              # doctest: +SKIP
    >>> runs = load_results("demo")                      # doctest: +SKIP
    >>> pd.DataFrame([r.as_dict() for r in runs])        # doctest: +SKIP
    """
    engine = _open_engine(resolve_db_url(db))
    try:
        with Session(engine) as session:
            return query_results(session, experiment)[1]
    finally:
        engine.dispose()
