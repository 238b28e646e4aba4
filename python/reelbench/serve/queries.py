"""What the web app's pages read from the database, as plain frozen values.

Every function takes an open session and returns detached data: handlers
render after the session is closed, and nothing here holds ORM rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from reelbench.db.item_files import item_file
from reelbench.db.models import Artifact, Experiment, Item, ProviderCall, Run, RunStatus, Variant
from reelbench.judging.storage import judgeable_runs, load_votes
from reelbench.report.model import Report, build_report
from reelbench.results import query_results

__all__ = [
    "VIDEO_KINDS",
    "CompareChoice",
    "CompareVideo",
    "ExperimentProgress",
    "NotFound",
    "compare_choice",
    "experiment_report",
    "experiments_progress",
    "pick_videos",
    "reference_path",
]

#: Artifact kinds the app serves as videos (by artifact id).
VIDEO_KINDS = ("canon", "reference")

#: States in the order the pages list them.
STATES = tuple(s.value for s in RunStatus)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class ExperimentProgress:
    """One experiment on the experiments page and in the progress JSON."""

    id: int
    name: str
    counts: dict[str, int]
    #: Sum of the cost of the distinct provider calls behind its runs; None when none has one.
    spend: float | None

    @property
    def total(self) -> int:
        """Runs of the experiment."""
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        """Runs in a terminal state."""
        return sum(n for s, n in self.counts.items() if s in TERMINAL)

    def as_dict(self) -> dict[str, Any]:
        """The progress JSON of this experiment."""
        return {
            "id": self.id,
            "name": self.name,
            "counts": self.counts,
            "total": self.total,
            "finished": self.finished,
            "spend": self.spend,
        }


def experiments_progress(
    session: Session, experiment_id: int | None = None
) -> list[ExperimentProgress]:
    """Every experiment (or the one with ``experiment_id``) by name: runs by state, spend."""
    exps, runs = cast(Table, Experiment.__table__), cast(Table, Run.__table__)
    calls = cast(Table, ProviderCall.__table__)
    conn = session.connection()
    base = select(exps.c.id, exps.c.name).order_by(exps.c.name)
    if experiment_id is not None:
        base = base.where(exps.c.id == experiment_id)
    found = conn.execute(base).all()
    if not found:
        return []
    ids = [r.id for r in found]
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for eid, status, n in conn.execute(
        select(runs.c.experiment_id, runs.c.status, func.count())
        .where(runs.c.experiment_id.in_(ids))
        .group_by(runs.c.experiment_id, runs.c.status)
    ):
        counts[eid][status] = int(n)
    # A cached call is shared by several runs and was paid once: count each call once.
    used = (
        select(runs.c.experiment_id, runs.c.provider_call_id)
        .where(runs.c.experiment_id.in_(ids), runs.c.provider_call_id.is_not(None))
        .distinct()
        .subquery()
    )
    spend: dict[int, float | None] = {}
    for eid, total in conn.execute(
        select(used.c.experiment_id, func.sum(calls.c.cost))
        .join(calls, calls.c.id == used.c.provider_call_id)
        .group_by(used.c.experiment_id)
    ):
        spend[eid] = None if total is None else float(total)
    return [
        ExperimentProgress(
            id=r.id,
            name=r.name,
            counts={s: counts[r.id][s] for s in STATES if s in counts[r.id]},
            spend=spend.get(r.id),
        )
        for r in found
    ]


def experiment_report(session: Session, experiment_id: int) -> tuple[Report, dict[str, str]]:
    """The experiment's report (with its votes) and the app's URL of each video it shows.

    Artifacts are linked by id (``/video/ID``), items' reference videos by
    item id (``/reference/ID``): the keys are the URIs and paths the report
    names, the values hold no path.
    """
    info, records = query_results(session, experiment_id)
    report = build_report(info, records, votes=load_votes(session, experiment_id))
    arts, runs = cast(Table, Artifact.__table__), cast(Table, Run.__table__)
    rows = session.connection().execute(
        select(arts.c.id, arts.c.uri)
        .join(runs, runs.c.id == arts.c.run_id)
        .where(runs.c.experiment_id == experiment_id, arts.c.kind.in_(VIDEO_KINDS))
    )
    links = {uri: f"/video/{aid}" for aid, uri in rows}
    for item in session.scalars(select(Item).where(Item.experiment_id == experiment_id)):
        path = reference_path(session, item)
        if path is not None:
            links.setdefault(str(path), f"/reference/{item.id}")
    return report, links


def reference_path(session: Session, item: Item) -> Path | None:
    """The file of an item's reference video, as the report resolves it; None without one."""
    exp = session.get(Experiment, item.experiment_id)
    spec_dir = Path(exp.spec_path).parent if exp is not None and exp.spec_path else None
    found = item_file(item.reference_path, spec_dir)
    return Path(found) if found else None


@dataclass(frozen=True)
class CompareVideo:
    """One player of the compare page."""

    variant: str
    run_id: int
    repeat: int
    artifact_id: int


@dataclass(frozen=True)
class CompareChoice:
    """An item of an experiment and the variants that have a video of it."""

    experiment_id: int
    experiment: str
    fps: float | None
    item_id: int
    item_key: str
    prompt: str
    #: Every item of the experiment with a video: (id, key), for the item menu.
    items: list[tuple[int, str]]
    #: Per variant (in experiment order): its videos of this item, by repeat.
    videos: dict[str, list[CompareVideo]] = field(default_factory=dict)


class NotFound(LookupError):
    """No such experiment or item."""


def compare_choice(session: Session, experiment_id: int, item_id: int | None) -> CompareChoice:
    """What the compare page can show for an item (the first with videos when None).

    Raises :class:`NotFound` for an unknown experiment or an item not of it.
    """
    exp = session.get(Experiment, experiment_id)
    if exp is None:
        raise NotFound(f"no experiment {experiment_id}")
    runs = judgeable_runs(session, experiment_id)
    items = list(dict.fromkeys((r.item_id, r.item_key) for r in runs))
    if item_id is None:
        if not items:
            raise NotFound(f"experiment {exp.name!r} has no videos yet")
        item_id = items[0][0]
    item = session.get(Item, item_id)
    if item is None or item.experiment_id != experiment_id:
        raise NotFound(f"no item {item_id} in experiment {exp.name!r}")
    order = session.scalars(
        select(Variant.key).where(Variant.experiment_id == experiment_id).order_by(Variant.id)
    ).all()
    videos: dict[str, list[CompareVideo]] = {}
    for key in order:
        mine = [
            CompareVideo(r.variant_key, r.run_id, r.repeat, r.artifact_id)
            for r in runs
            if r.item_id == item_id and r.variant_key == key
        ]
        if mine:
            videos[key] = mine
    fps = (exp.canonical or {}).get("fps")
    return CompareChoice(
        experiment_id=experiment_id,
        experiment=exp.name,
        fps=float(fps) if isinstance(fps, int | float) else None,
        item_id=item.id,
        item_key=item.key,
        prompt=item.prompt,
        items=items,
        videos=videos,
    )


def pick_videos(choice: CompareChoice, asked: Sequence[str]) -> list[CompareVideo]:
    """The first-repeat video of each asked variant; ValueError saying why when refused."""
    if len(asked) > 4:
        raise ValueError(f"compare shows at most 4 variants at once, {len(asked)} were asked")
    if len(set(asked)) != len(asked):
        raise ValueError("a variant was asked twice: choose different variants")
    unknown = [v for v in asked if v not in choice.videos]
    if unknown:
        raise ValueError(
            f"no video of item {choice.item_key!r} from variant(s) {', '.join(unknown)}: "
            f"choose among {', '.join(choice.videos) or 'none'}"
        )
    return [choice.videos[v][0] for v in asked]
