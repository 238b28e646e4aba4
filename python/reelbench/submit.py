"""Submitting a spec: experiment, items, variants and one queued run per grid cell.

Idempotent by construction: every row is inserted only if missing, keyed by
the unique constraints (experiment name; item key and variant key within the
experiment; item x variant x repeat for runs). Submitting the same spec again
creates nothing; a spec with more items, variants or repeats adds only the
new runs. Two submitters racing on the same spec both succeed and create
each row once (``INSERT ... ON CONFLICT DO NOTHING``).

A spec that would change what an existing run means (another prompt for an
item id, other parameters for a variant key, another canonical format) is
refused: results already recorded under that key would no longer match it.
Give the changed item or variant a new id/key instead.

A spec's ``[budget] max_usd`` becomes the experiment's budget when the
experiment is new or the spec's value changed since the last submission
(``reelbench budget`` changes it in between); every variant of a budgeted
spec must have a known price. A spec's ``[limits]`` are stored where the
database has none set by ``reelbench limits set``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from reelbench.db.item_files import stored_path
from reelbench.db.limits import apply_spec_limits
from reelbench.db.models import Experiment, Item, Run, RunStatus, Variant
from reelbench.providers.pricing import estimate_usd
from reelbench.spec import ExperimentSpec, SpecError

__all__ = ["SubmitResult", "submit_spec"]

_CHUNK = 1000


@dataclass(frozen=True)
class SubmitResult:
    """What one submission did."""

    experiment_id: int
    experiment_name: str
    created_experiment: bool
    items_created: int
    variants_created: int
    runs_created: int
    runs_total: int
    #: Things the submitter should know (limits the database overrides...).
    notes: tuple[str, ...] = ()

    @property
    def runs_existing(self) -> int:
        """Runs of the grid that were already queued or done."""
        return self.runs_total - self.runs_created


def _insert_missing(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT rows, skipping any that collide with a unique constraint."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    for start in range(0, len(rows), _CHUNK):
        stmt = module.insert(table).on_conflict_do_nothing()
        session.execute(stmt, list(rows[start : start + _CHUNK]))


def _item_row(item: Any, spec_dir: Path | None) -> dict[str, Any]:
    return {
        "prompt": item.prompt,
        "image_path": stored_path(item.image, spec_dir),
        "reference_path": stored_path(item.reference, spec_dir),
        "extra": dict(item.meta),
    }


def _variant_row(variant: Any) -> dict[str, Any]:
    return {
        "provider": variant.provider,
        "model": variant.model,
        "params": dict(variant.params),
        "cache": variant.cache,
    }


def _conflicts(
    kind: str, existing: Iterable[Any], wanted: dict[str, dict[str, Any]], fields: Sequence[str]
) -> list[str]:
    problems = []
    for row in existing:
        new = wanted.get(row.key)
        if new is None:
            continue
        changed = [f for f in fields if getattr(row, f) != new[f]]
        if changed:
            problems.append(
                f"{kind} {row.key!r} already exists in this experiment with a different "
                f"{', '.join(changed)}; runs recorded under it would no longer match. "
                f"Give the changed {kind} a new {'id' if kind == 'item' else 'key'}."
            )
    return problems


def submit_spec(sessions: sessionmaker[Session], spec: ExperimentSpec) -> SubmitResult:
    """Create (or extend) the experiment of ``spec`` and queue its missing runs.

    All in one transaction: on a :class:`SpecError` (a conflicting change to an
    existing experiment) nothing is written.
    """
    _check_prices(spec)
    now = datetime.now(UTC)
    spec_json = spec.to_json()
    canonical = spec.canonical.model_dump(mode="json")
    with sessions() as session, session.begin():
        dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        inserted = session.execute(
            dialect.insert(Experiment.__table__)
            .values(
                name=spec.name,
                description=spec.experiment.description,
                spec_hash=spec.hash(),
                spec=spec_json,
                canonical=canonical,
                spec_path=str(spec.source) if spec.source else None,
                max_usd=spec.budget.max_usd,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(Experiment.__table__.c.id)
        ).first()
        created_experiment = inserted is not None
        experiment = session.execute(
            select(Experiment).where(Experiment.name == spec.name)
        ).scalar_one()
        source = str(spec.source) if spec.source else spec.name
        if experiment.canonical != canonical:
            raise SpecError(
                source,
                [
                    "canonical: differs from the canonical format this experiment was "
                    f"submitted with ({experiment.canonical}); outputs would not be comparable. "
                    "Use a new experiment name."
                ],
            )

        items = {item.id: item for item in spec.items}
        variants = {variant.key: variant for variant in spec.variants}
        spec_dir = spec.source.parent if spec.source else None
        wanted_items = {key: _item_row(item, spec_dir) for key, item in items.items()}
        wanted_variants = {key: _variant_row(v) for key, v in variants.items()}
        existing_items = session.execute(
            select(Item).where(Item.experiment_id == experiment.id)
        ).scalars()
        existing_variants = list(
            session.execute(select(Variant).where(Variant.experiment_id == experiment.id)).scalars()
        )
        problems = _conflicts("item", existing_items, wanted_items, list(_item_row_fields()))
        problems += _conflicts(
            "variant", existing_variants, wanted_variants, ["provider", "model", "params", "cache"]
        )
        if problems:
            raise SpecError(source, problems)

        item_count = _count(session, Item, experiment.id)
        variant_count = _count(session, Variant, experiment.id)
        _insert_missing(
            session,
            Item.__table__,  # type: ignore[arg-type]
            [{"experiment_id": experiment.id, "key": k, **row} for k, row in wanted_items.items()],
        )
        _insert_missing(
            session,
            Variant.__table__,  # type: ignore[arg-type]
            [
                {"experiment_id": experiment.id, "key": k, "repeats": variants[k].repeats, **row}
                for k, row in wanted_variants.items()
            ],
        )
        # More repeats extend a variant; fewer never delete recorded runs.
        for variant in existing_variants:
            if variant.key in variants and variants[variant.key].repeats > variant.repeats:
                session.execute(
                    update(Variant)
                    .where(Variant.id == variant.id)
                    .values(repeats=variants[variant.key].repeats)
                )
        item_ids = dict(
            session.execute(
                select(Item.key, Item.id).where(Item.experiment_id == experiment.id)
            ).all()
        )
        variant_ids = dict(
            session.execute(
                select(Variant.key, Variant.id).where(Variant.experiment_id == experiment.id)
            ).all()
        )
        have: set[tuple[int, int, int]] = set(
            session.execute(
                select(Run.item_id, Run.variant_id, Run.repeat).where(
                    Run.experiment_id == experiment.id
                )
            ).all()
        )
        have = {(int(a), int(b), int(c)) for a, b, c in have}
        new_runs = [
            {
                "experiment_id": experiment.id,
                "item_id": item_ids[item_key],
                "variant_id": variant_ids[variant.key],
                "repeat": repeat,
                "seed": variant.seed(item_key, repeat),
                "status": RunStatus.QUEUED.value,
                "attempt": 0,
                "max_attempts": spec.retry.max_attempts,
                "priority": 0,
                "created_at": now,
            }
            for item_key in items
            for variant in spec.variants
            for repeat in range(variant.repeats)
            if (item_ids[item_key], variant_ids[variant.key], repeat) not in have
        ]
        _insert_missing(session, Run.__table__, new_runs)  # type: ignore[arg-type]
        # The latest submission's retry policy and description apply from now on;
        # its budget too when the spec's value changed (not undoing `reelbench budget`).
        previous_budget = (experiment.spec or {}).get("budget", {}).get("max_usd")
        if not created_experiment and spec.budget.max_usd != previous_budget:
            session.execute(
                update(Experiment)
                .where(Experiment.id == experiment.id)
                .values(max_usd=spec.budget.max_usd)
            )
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment.id)
            .values(
                spec=spec_json,
                spec_hash=spec.hash(),
                description=spec.experiment.description,
                spec_path=str(spec.source) if spec.source else experiment.spec_path,
                updated_at=now,
            )
        )
        runs_total = _count(session, Run, experiment.id)
        result = SubmitResult(
            experiment_id=experiment.id,
            experiment_name=experiment.name,
            created_experiment=created_experiment,
            items_created=_count(session, Item, experiment.id) - item_count,
            variants_created=_count(session, Variant, experiment.id) - variant_count,
            runs_created=len(new_runs),
            runs_total=runs_total,
        )
    notes: list[str] = []
    if spec.limits:
        with sessions() as session:
            notes = apply_spec_limits(
                session, {scope: limit.model_dump() for scope, limit in spec.limits.items()}
            )
    return dataclasses.replace(result, notes=tuple(notes))


def _check_prices(spec: ExperimentSpec) -> None:
    """A budget needs a price for every variant: refuse the spec before queueing anything."""
    if spec.budget.max_usd is None:
        return
    problems = []
    for index, variant in enumerate(spec.variants):
        if (
            estimate_usd(variant.provider, variant.model, variant.params, spec.price_table())
            is None
        ):
            name = f"{variant.provider}:{variant.model}" if variant.model else variant.provider
            problems.append(
                f"variants[{index}] ({variant.key}): no price is known for {name}, or its "
                "length in seconds (params.seconds or duration), so the [budget] cannot be "
                "enforced; add a [[prices]] entry (provider, model, usd_per_second) and the length"
            )
    if problems:
        raise SpecError(str(spec.source) if spec.source else spec.name, problems)


def _item_row_fields() -> Iterable[str]:
    return ("prompt", "image_path", "reference_path", "extra")


def _count(session: Session, model: Any, experiment_id: int) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(model).where(model.experiment_id == experiment_id)
        ).scalar_one()
    )
