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

from sqlalchemy import select
from sqlalchemy.orm import Session

from reelbench.db.models import Experiment, Item, Run, Variant
from reelbench.video.canonical import CanonicalFormat

__all__ = ["Processor", "RunContext", "build_context", "build_contexts"]


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
    artifact_root: Path
    run_output_dir: Path  # artifact_root / str(run_id)
    #: The fencing token: this claim's attempt number.
    attempt: int
    worker_id: str
    #: Set by the heartbeat when the lease is lost or the run is cancelled.
    stop: threading.Event = field(default_factory=threading.Event, compare=False)

    @property
    def seed(self) -> int:
        """The run's seed (explicit ``params.seed`` or derived from the keys)."""
        return int(self.gen_input["seed"])


@runtime_checkable
class Processor(Protocol):
    """Turns a claimed run into a canonical video. See the module docstring for the contract."""

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        """Do the work of ``ctx``; return ``(canon_uri, canon_sha256)`` or raise."""
        ...


def build_contexts(
    session: Session,
    claims: Sequence[tuple[int, int]],
    *,
    worker_id: str,
    artifact_root: Path,
    use_cache: bool = True,
) -> list[RunContext]:
    """Contexts for ``(run_id, attempt)`` claims, read in one query, in claim order."""
    if not claims:
        return []
    attempts = dict(claims)
    rows = session.execute(
        select(Run, Item, Variant, Experiment)
        .join(Item, Item.id == Run.item_id)
        .join(Variant, Variant.id == Run.variant_id)
        .join(Experiment, Experiment.id == Run.experiment_id)
        .where(Run.id.in_(list(attempts)))
    ).all()
    canonical_by_experiment: dict[int, CanonicalFormat] = {}
    root = artifact_root.resolve()
    contexts = {}
    for run, item, variant, experiment in rows:
        canonical = canonical_by_experiment.get(experiment.id)
        if canonical is None:
            canonical = CanonicalFormat.model_validate(experiment.canonical)
            canonical_by_experiment[experiment.id] = canonical
        # Plain dicts (not read-only proxies) so they serialize with json as-is;
        # each context gets its own copy.
        params = copy.deepcopy(dict(variant.params or {}))
        contexts[run.id] = RunContext(
            run_id=run.id,
            experiment_id=experiment.id,
            experiment_name=experiment.name,
            item_id=item.id,
            item_key=item.key,
            variant_id=variant.id,
            variant_key=variant.key,
            repeat=run.repeat,
            spec_hash=experiment.spec_hash,
            provider=variant.provider,
            model=variant.model,
            params=params,
            use_cache=bool(use_cache and variant.cache),
            gen_input={
                "prompt": item.prompt,
                "seed": int(run.seed),
                "image": item.image_path,
                "item_id": item.key,
                "params": params,
            },
            reference_path=item.reference_path,
            canonical=canonical,
            artifact_root=root,
            run_output_dir=root / str(run.id),
            attempt=attempts[run.id],
            worker_id=worker_id,
        )
    return [contexts[run_id] for run_id, _ in claims if run_id in contexts]


def build_context(
    session: Session,
    run_id: int,
    attempt: int,
    *,
    worker_id: str,
    artifact_root: Path,
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
