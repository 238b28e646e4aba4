"""RunContext: everything one attempt of one run needs, read once from the database.

The orchestrator claims a run, builds its context and hands it to a
:class:`Processor`. The processor never claims, never sets a run's status,
and learns everything from the context: what to generate (``gen_input``),
where to write (``run_output_dir``), the canonical format, and the fencing
token (``attempt``) that its own database writes must present (see
``reelbench.db.claim``).

The processor contract:

- it commits its own bookkeeping (provider calls) in short transactions of
  its own, never keeping one open while a provider works;
- the artifact and metric rows it ``session.add``\\ s at the end stay
  uncommitted: the orchestrator commits them in the same transaction as the
  fenced status update, or rolls them back when the fence fails;
- it checks ``ctx.stop`` between long steps and raises
  :class:`reelbench.errors.LeaseLost` when it is set (lease lost or run
  cancelled); the heartbeat sets it;
- it raises :class:`reelbench.errors.RetryableError` or
  :class:`reelbench.errors.TerminalError` to say how a failure should be
  treated; any other exception counts as retryable.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from reelbench.db.item_files import item_file
from reelbench.db.models import Experiment, Item, Run, Variant
from reelbench.providers.base import GenerationRequest
from reelbench.providers.pricing import Price
from reelbench.spec import BudgetSpec, MetricsSettings, PriceSpec, RetryPolicy
from reelbench.storage import artifact_root_of
from reelbench.video.canonical import CanonicalFormat

__all__ = [
    "ExperimentSettings",
    "Processor",
    "RunContext",
    "build_context",
    "build_contexts",
]


@dataclass(frozen=True)
class ExperimentSettings:
    """What every run of one experiment shares: canonical format, metric groups."""

    canonical: CanonicalFormat
    metric_groups: tuple[str, ...]
    #: The spec's ``[[prices]]`` (override the built-in price table).
    prices: tuple[Price, ...] = ()
    #: ``[retry] on_uncertain_submit``.
    on_uncertain_submit: str = "fail"
    #: ``[budget] recheck_seconds``.
    budget_recheck_seconds: float = 60.0
    metric_plugins: tuple[str, ...] = ()
    dynamic_threshold: float = 0.005


@dataclass(frozen=True)
class RunContext:
    """One claimed attempt of one run. Immutable; ``stop`` is the only live part."""

    run_id: int
    experiment_id: int
    experiment_name: str
    item_id: int  # database id of the item
    item_key: str  # the spec's item id
    variant_id: int
    variant_key: str
    repeat: int
    spec_hash: str
    provider: str
    model: str | None
    params: Mapping[str, Any]
    #: The variant's ``cache`` setting and the worker's ``--no-cache`` combined.
    use_cache: bool
    #: What the provider is asked: ``prompt``, ``seed``, ``image`` (absolute
    #: path or None), ``item_id`` (the spec's id), ``params``.
    gen_input: Mapping[str, Any]
    reference_path: str | None
    canonical: CanonicalFormat
    #: A folder, or an ``s3://bucket/prefix`` URI (see :func:`reelbench.storage.open_store`).
    artifact_root: Path | str
    run_output_dir: Path | str  # artifact_root / str(run_id)
    #: The fencing token: this claim's attempt number.
    attempt: int
    worker_id: str
    #: Set by the heartbeat when the lease is lost or the run is cancelled.
    stop: threading.Event = field(default_factory=threading.Event, compare=False)
    #: The folder of the spec file as submitted, when known: relative paths in
    #: a ``command`` provider's argument list resolve against it.
    spec_dir: Path | None = None
    #: The metric groups the run computes (the spec's ``[metrics] groups``).
    metric_groups: tuple[str, ...] = ("frame", "temporal", "reference")
    #: The experiment's price overrides and submit policy (see ExperimentSettings).
    prices: tuple[Price, ...] = ()
    on_uncertain_submit: str = "fail"
    budget_recheck_seconds: float = 60.0
    #: The worker's run lease: provider slots taken for the run last as long.
    lease_seconds: float = 60.0
    #: The metric plugins the run feeds (the spec's ``[metrics] plugins``).
    metric_plugins: tuple[str, ...] = ()
    #: The motion group's dynamic-degree threshold (``[metrics] dynamic_threshold``).
    dynamic_threshold: float = 0.005
    #: None: generate the run; ``remeasure``: compute the metrics named in
    #: ``remeasure_metrics`` again from the run's canonical video (empty: the
    #: experiment's current groups and plugins).
    task: str | None = None
    remeasure_metrics: tuple[str, ...] = ()
    #: The finished run's canonical video (what a remeasure decodes).
    canon_uri: str | None = None
    canon_sha256: str | None = None

    @property
    def seed(self) -> int:
        """The run's seed (explicit ``params.seed`` or derived from the keys)."""
        return int(self.gen_input["seed"])

    def request(self) -> GenerationRequest:
        """What the run asks its provider for (the provider-call cache hashes this)."""
        gen = self.gen_input
        image = gen.get("image")
        return GenerationRequest(
            provider=self.provider,
            model=self.model,
            params=dict(self.params),
            prompt=str(gen.get("prompt", "")),
            seed=int(gen["seed"]),
            item_id=self.item_key,
            image=str(image) if image else None,
            attempt=self.attempt,
            stop=self.stop,
            workdir=str(self.spec_dir) if self.spec_dir else None,
        )


@runtime_checkable
class Processor(Protocol):
    """Turns a claimed run into a canonical video. See the module docstring for the contract."""

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        """Do the work of ``ctx``; return ``(canon_uri, canon_sha256)`` or raise."""
        ...


# Plain columns, not ORM entities, built once: this runs once per claim batch
# on the queue's hot path, and the experiment's stored spec is not needed.
_CONTEXT_QUERY = (
    select(
        Run.id,
        Run.repeat,
        Run.seed,
        Run.task,
        Run.remeasure,
        Run.canon_uri,
        Run.canon_sha256,
        Item.id.label("item_id"),
        Item.key.label("item_key"),
        Item.prompt,
        Item.image_path,
        Item.reference_path,
        Variant.id.label("variant_id"),
        Variant.key.label("variant_key"),
        Variant.provider,
        Variant.model,
        Variant.params,
        Variant.cache,
        Experiment.id.label("experiment_id"),
        Experiment.name.label("experiment_name"),
        Experiment.spec_hash,
        Experiment.canonical,
        Experiment.spec_path,
    )
    .join(Item, Item.id == Run.item_id)
    .join(Variant, Variant.id == Run.variant_id)
    .join(Experiment, Experiment.id == Run.experiment_id)
    .where(Run.id.in_(bindparam("run_ids", expanding=True)))
)


def build_contexts(
    session: Session,
    claims: Sequence[tuple[int, int]],
    *,
    worker_id: str,
    artifact_root: Path | str,
    use_cache: bool = True,
    settings_cache: dict[int, ExperimentSettings] | None = None,
    lease_seconds: float = 60.0,
) -> list[RunContext]:
    """Contexts for ``(run_id, attempt)`` claims, read in one query, in claim order.

    ``settings_cache`` (experiment id -> settings) spares reading and
    re-validating the same experiment's settings batch after batch.
    """
    if not claims:
        return []
    attempts = dict(claims)
    rows = session.execute(_CONTEXT_QUERY, {"run_ids": list(attempts)}).all()
    by_experiment = {} if settings_cache is None else settings_cache
    root = artifact_root_of(artifact_root)
    contexts = {}
    for row in rows:
        settings = by_experiment.get(row.experiment_id)
        if settings is None:
            spec = session.execute(
                select(Experiment.spec).where(Experiment.id == row.experiment_id)
            ).scalar_one()
            spec = spec or {}
            metrics = MetricsSettings.model_validate(spec.get("metrics", {}))
            retry = RetryPolicy.model_validate(spec.get("retry", {}))
            budget = BudgetSpec.model_validate(spec.get("budget", {}))
            settings = ExperimentSettings(
                canonical=CanonicalFormat.model_validate(row.canonical),
                metric_groups=tuple(metrics.groups),
                prices=_prices(spec.get("prices", [])),
                on_uncertain_submit=retry.on_uncertain_submit,
                budget_recheck_seconds=budget.recheck_seconds,
                metric_plugins=tuple(metrics.plugins),
                dynamic_threshold=metrics.dynamic_threshold,
            )
            by_experiment[row.experiment_id] = settings
        # Plain dicts (not read-only proxies) so they serialize with json as-is;
        # each context gets its own copy.
        params = copy.deepcopy(dict(row.params or {}))
        spec_dir = Path(row.spec_path).parent if row.spec_path else None
        contexts[row.id] = RunContext(
            run_id=row.id,
            experiment_id=row.experiment_id,
            experiment_name=row.experiment_name,
            item_id=row.item_id,
            item_key=row.item_key,
            variant_id=row.variant_id,
            variant_key=row.variant_key,
            repeat=row.repeat,
            spec_hash=row.spec_hash,
            provider=row.provider,
            model=row.model,
            params=params,
            use_cache=bool(use_cache and row.cache),
            gen_input={
                "prompt": row.prompt,
                "seed": int(row.seed),
                "image": item_file(row.image_path, spec_dir),
                "item_id": row.item_key,
                "params": params,
            },
            reference_path=item_file(row.reference_path, spec_dir),
            canonical=settings.canonical,
            artifact_root=root,
            run_output_dir=f"{root}/{row.id}" if isinstance(root, str) else root / str(row.id),
            attempt=attempts[row.id],
            worker_id=worker_id,
            spec_dir=spec_dir,
            metric_groups=settings.metric_groups,
            prices=settings.prices,
            on_uncertain_submit=settings.on_uncertain_submit,
            budget_recheck_seconds=settings.budget_recheck_seconds,
            lease_seconds=lease_seconds,
            metric_plugins=settings.metric_plugins,
            dynamic_threshold=settings.dynamic_threshold,
            task=row.task,
            remeasure_metrics=tuple((row.remeasure or {}).get("metrics", ())),
            canon_uri=row.canon_uri,
            canon_sha256=row.canon_sha256,
        )
    return [contexts[run_id] for run_id, _ in claims if run_id in contexts]


def _prices(entries: Sequence[Mapping[str, Any]]) -> tuple[Price, ...]:
    specs = [PriceSpec.model_validate(e) for e in entries]
    return tuple(Price(p.provider, p.model, p.usd_per_second, p.read_on) for p in specs)


def build_context(
    session: Session,
    run_id: int,
    attempt: int,
    *,
    worker_id: str,
    artifact_root: Path | str,
    use_cache: bool = True,
) -> RunContext:
    """The context of one claimed run (see :func:`build_contexts`)."""
    found = build_contexts(
        session,
        [(run_id, attempt)],
        worker_id=worker_id,
        artifact_root=artifact_root,
        use_cache=use_cache,
    )
    if not found:
        raise LookupError(f"run {run_id} does not exist")
    return found[0]
