"""What the web app's pages read from the database, as plain frozen values.

Every function takes an open session and returns detached data: handlers
render after the session is closed, and nothing here holds ORM rows.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from reelbench.db.item_files import item_file
from reelbench.db.models import (
    Artifact,
    Experiment,
    Item,
    Judgment,
    ProviderCall,
    Run,
    RunStatus,
    Variant,
)
from reelbench.judging.storage import JudgeableRun, Vote, judgeable_runs, load_votes
from reelbench.report.model import Report, build_report
from reelbench.results import query_results

__all__ = [
    "VIDEO_KINDS",
    "CompareChoice",
    "CompareVideo",
    "ExperimentProgress",
    "NotFound",
    "VoteCache",
    "compare_choice",
    "experiment_report",
    "experiments_progress",
    "pick_videos",
    "reference_path",
    "repeats_of",
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


def _item_path(session: Session, item: Item, stored: str | None) -> Path | None:
    """A file the item names (relative to the spec's folder as last submitted)."""
    exp = session.get(Experiment, item.experiment_id)
    spec_dir = Path(exp.spec_path).parent if exp is not None and exp.spec_path else None
    found = item_file(stored, spec_dir)
    return Path(found) if found else None


def reference_path(session: Session, item: Item) -> Path | None:
    """The file of an item's reference video, as the report resolves it; None without one."""
    return _item_path(session, item, item.reference_path)


def image_path(session: Session, item: Item) -> Path | None:
    """The file of an item's input image (image-to-video); None without one or when gone."""
    found = _item_path(session, item, item.image_path)
    return found if found is not None and found.is_file() else None


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


def repeats_of(choice: CompareChoice) -> list[int]:
    """Every repeat number that has a video of the item, in order (for the repeat menu)."""
    return sorted({v.repeat for videos in choice.videos.values() for v in videos})


def pick_videos(
    choice: CompareChoice, asked: Sequence[str], repeat: int | None = None
) -> list[CompareVideo]:
    """The video of each asked variant: of ``repeat``, or each one's first when None.

    Raises ValueError saying why when refused.
    """
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
    if repeat is None:
        return [choice.videos[v][0] for v in asked]
    picked = {v: [x for x in choice.videos[v] if x.repeat == repeat] for v in asked}
    lacking = [v for v, found in picked.items() if not found]
    if lacking:
        raise ValueError(
            f"no video of item {choice.item_key!r}, repeat {repeat}, from variant(s) "
            f"{', '.join(lacking)}: choose another repeat or other variants"
        )
    return [picked[v][0] for v in asked]


class VoteCache:
    """An experiment's votes kept in memory, refreshed by id: the judge page's input.

    Choosing the next pair needs every vote so far; reading them all on
    every page costs more the more votes there are. Each refresh reads only
    the ids of the stored votes and loads the rows not seen yet (ids are
    compared as a set, so a vote committed late with a lower id is not
    missed, and one removed is dropped). Which votes still count is decided
    against the runs as they are now (see :meth:`current`), as
    :func:`reelbench.judging.storage.load_votes` marks stale ones.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._votes: dict[int, dict[int, Vote]] = {}

    def refresh(self, session: Session, experiment_id: int) -> list[Vote]:
        """Every stored vote of the experiment, oldest first (stale ones included, unmarked)."""
        j = cast(Table, Judgment.__table__)
        conn = session.connection()
        ids = set(conn.execute(select(j.c.id).where(j.c.experiment_id == experiment_id)).scalars())
        with self._lock:
            known = dict(self._votes.get(experiment_id, {}))
        missing = ids - known.keys()
        if missing:
            known.update(_votes_by_id(session, experiment_id, sorted(missing)))
        votes = {i: known[i] for i in ids if i in known}
        with self._lock:
            self._votes[experiment_id] = votes
        return [votes[i] for i in sorted(votes, key=lambda i: (votes[i].created_at, i))]

    @staticmethod
    def current(votes: Sequence[Vote], runs: Sequence[JudgeableRun]) -> list[Vote]:
        """The votes whose two videos are still the runs' current canonical videos."""
        sha = {r.run_id: r.canon_sha256 for r in runs}
        return [
            v
            for v in votes
            if sha.get(v.left_run_id) == v.left_sha256 and sha.get(v.right_run_id) == v.right_sha256
        ]


def _votes_by_id(session: Session, experiment_id: int, ids: Sequence[int]) -> dict[int, Vote]:
    j, runs, items, variants = (cast(Table, m.__table__) for m in (Judgment, Run, Item, Variant))
    lr, rr = runs.alias("lr"), runs.alias("rr")
    lv, rv = variants.alias("lv"), variants.alias("rv")
    out: dict[int, Vote] = {}
    for start in range(0, len(ids), 500):
        rows = session.connection().execute(
            select(
                j.c.id, j.c.vote_uid, items.c.key.label("item_key"), j.c.left_run_id,
                j.c.right_run_id, lv.c.key.label("left_variant"),
                rv.c.key.label("right_variant"), lr.c.repeat.label("left_repeat"),
                rr.c.repeat.label("right_repeat"), j.c.left_sha256, j.c.right_sha256,
                j.c.outcome, j.c.rater, j.c.comment, j.c.seconds_to_vote, j.c.created_at,
            )
            .join(items, j.c.item_id == items.c.id)
            .join(lr, j.c.left_run_id == lr.c.id)
            .join(rr, j.c.right_run_id == rr.c.id)
            .join(lv, lr.c.variant_id == lv.c.id)
            .join(rv, rr.c.variant_id == rv.c.id)
            .where(j.c.experiment_id == experiment_id, j.c.id.in_(ids[start : start + 500]))
        )  # fmt: skip
        for r in rows:
            created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
            out[r.id] = Vote(r.vote_uid, r.item_key, r.left_run_id, r.right_run_id,
                             r.left_variant, r.right_variant, r.left_repeat, r.right_repeat,
                             r.left_sha256, r.right_sha256, r.outcome, r.rater, r.comment,
                             r.seconds_to_vote, created)  # fmt: skip
    return out
