"""Votes in the database: what can be judged, recording a vote, reading votes back.

A vote names the two runs as shown (left, right) and the SHA-256 of the
canonical video each one showed. Recording refuses, with a sentence, a vote
whose runs are gone, belong to another item or experiment, no longer
succeeded, or whose canonical video changed since the pair was shown (the
run was made again): such a vote would count for a video the rater never
saw. Votes already stored for a run that was re-made later are kept, marked
stale, and left out of the ratings.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reelbench.db.models import Artifact, Item, Judgment, Run, RunStatus, Variant
from reelbench.errors import ReelbenchError

__all__ = [
    "MAX_COMMENT",
    "MAX_RATER",
    "OUTCOMES",
    "JudgeableRun",
    "Vote",
    "VoteRefused",
    "current_votes",
    "judgeable_runs",
    "load_votes",
    "record_vote",
]

#: left: the left video is better; right; tie: equally good; both_bad: neither is acceptable.
OUTCOMES = ("left", "right", "tie", "both_bad")
MAX_RATER = 100
MAX_COMMENT = 2000


class VoteRefused(ReelbenchError):
    """The vote cannot be recorded as given; the message says why and what to do."""


@dataclass(frozen=True)
class JudgeableRun:
    """A succeeded run with a canonical video: one side of a pair."""

    run_id: int
    item_id: int
    item_key: str
    variant_key: str
    repeat: int
    canon_sha256: str
    #: The canonical video's artifact row: how the server finds the file.
    artifact_id: int


@dataclass(frozen=True)
class Vote:
    """One stored vote, with the item and variants it compared."""

    vote_uid: str
    item_key: str
    left_run_id: int
    right_run_id: int
    left_variant: str
    right_variant: str
    left_repeat: int
    right_repeat: int
    left_sha256: str
    right_sha256: str
    outcome: str
    rater: str
    comment: str | None
    seconds_to_vote: float | None
    created_at: datetime
    #: A run was made again since the vote (its video changed) or no longer succeeded.
    stale: bool = False

    @property
    def winner_run(self) -> int | None:
        """The run the rater preferred; None for a tie or both bad."""
        if self.outcome == "left":
            return self.left_run_id
        if self.outcome == "right":
            return self.right_run_id
        return None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the time as ISO 8601)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["created_at"] = self.created_at.isoformat()
        return out


def judgeable_runs(session: Session, experiment_id: int) -> list[JudgeableRun]:
    """Succeeded runs of the experiment that have a canonical video, by item and variant."""
    runs, items, variants = (cast(Table, m.__table__) for m in (Run, Item, Variant))
    arts = cast(Table, Artifact.__table__)
    rows = session.connection().execute(
        select(
            runs.c.id, runs.c.item_id, items.c.key.label("item_key"),
            variants.c.key.label("variant_key"), runs.c.repeat, runs.c.canon_sha256,
            arts.c.id.label("artifact_id"),
        )
        .join(items, runs.c.item_id == items.c.id)
        .join(variants, runs.c.variant_id == variants.c.id)
        .join(arts, (arts.c.run_id == runs.c.id) & (arts.c.kind == "canon"))
        .where(runs.c.experiment_id == experiment_id)
        .where(runs.c.status == RunStatus.SUCCEEDED.value)
        .where(runs.c.canon_sha256.is_not(None))
        .order_by(items.c.id, variants.c.id, runs.c.repeat)
    ).all()  # fmt: skip
    return [
        JudgeableRun(r.id, r.item_id, r.item_key, r.variant_key, r.repeat, r.canon_sha256,
                     r.artifact_id)
        for r in rows
    ]  # fmt: skip


def _check_text(rater: str, comment: str | None) -> tuple[str, str | None]:
    rater = rater.strip()
    if not rater:
        raise VoteRefused("a vote needs a rater name: give one (it is kept in a cookie)")
    if len(rater) > MAX_RATER:
        raise VoteRefused(f"rater name longer than {MAX_RATER} characters: use a shorter one")
    if comment is not None:
        comment = comment.strip() or None
    if comment is not None and len(comment) > MAX_COMMENT:
        raise VoteRefused(f"comment longer than {MAX_COMMENT} characters: shorten it")
    return rater, comment


def record_vote(
    session: Session,
    *,
    experiment_id: int,
    left_run_id: int,
    right_run_id: int,
    left_sha256: str,
    right_sha256: str,
    outcome: str,
    rater: str,
    comment: str | None = None,
    seconds_to_vote: float | None = None,
    vote_uid: str | None = None,
    created_at: datetime | None = None,
) -> tuple[Judgment, bool]:
    """Check and commit one vote; return it and whether it is new.

    A ``vote_uid`` already stored returns the stored vote (False): a vote
    sent twice (a double click, an import run again) is stored once.
    Raises :class:`VoteRefused` and stores nothing when the vote does not
    describe two current videos of one item from two variants.
    """
    if outcome not in OUTCOMES:
        raise VoteRefused(f"unknown outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}")
    rater, comment = _check_text(rater, comment)
    if seconds_to_vote is not None and not (0 <= seconds_to_vote < 10**7):
        seconds_to_vote = None
    vote_uid = vote_uid or uuid.uuid4().hex
    existing = session.scalars(select(Judgment).where(Judgment.vote_uid == vote_uid)).first()
    if existing is not None:
        return existing, False
    if left_run_id == right_run_id:
        raise VoteRefused("the two sides of a vote are the same run")
    left, right = session.get(Run, left_run_id), session.get(Run, right_run_id)
    for side, run, sha in (("left", left, left_sha256), ("right", right, right_sha256)):
        if run is None or run.experiment_id != experiment_id:
            raise VoteRefused(
                f"the {side} video's run no longer exists in this experiment: "
                "the vote was not recorded; load a new pair"
            )
        if run.status != RunStatus.SUCCEEDED.value or run.canon_sha256 != sha:
            raise VoteRefused(
                f"the {side} video's run was made again (or is being made again) since the "
                "pair was shown: the vote was not recorded; load a new pair"
            )
    assert left is not None and right is not None
    if left.item_id != right.item_id:
        raise VoteRefused("the two runs of a vote must show the same item")
    if left.variant_id == right.variant_id:
        raise VoteRefused("the two runs of a vote must come from two different variants")
    vote = Judgment(
        vote_uid=vote_uid,
        experiment_id=experiment_id,
        item_id=left.item_id,
        left_run_id=left.id,
        right_run_id=right.id,
        left_sha256=left_sha256,
        right_sha256=right_sha256,
        outcome=outcome,
        rater=rater,
        comment=comment,
        seconds_to_vote=seconds_to_vote,
        created_at=created_at or datetime.now(UTC),
    )
    session.add(vote)
    try:
        session.commit()
    except IntegrityError:
        # The same vote_uid committed concurrently (or its run was deleted
        # in between): the stored row, if any, is the answer.
        session.rollback()
        existing = session.scalars(select(Judgment).where(Judgment.vote_uid == vote_uid)).first()
        if existing is None:
            raise VoteRefused("the runs of this vote changed while it was being recorded") from None
        return existing, False
    return vote, True


def load_votes(session: Session, experiment_id: int) -> list[Vote]:
    """Every vote of the experiment in the order given, oldest first."""
    j, runs, items, variants = (cast(Table, m.__table__) for m in (Judgment, Run, Item, Variant))
    lr, rr = runs.alias("lr"), runs.alias("rr")
    lv, rv = variants.alias("lv"), variants.alias("rv")
    rows = session.connection().execute(
        select(
            j.c.vote_uid, items.c.key.label("item_key"), j.c.left_run_id, j.c.right_run_id,
            lv.c.key.label("left_variant"), rv.c.key.label("right_variant"),
            lr.c.repeat.label("left_repeat"), rr.c.repeat.label("right_repeat"),
            j.c.left_sha256, j.c.right_sha256, j.c.outcome, j.c.rater, j.c.comment,
            j.c.seconds_to_vote, j.c.created_at,
            lr.c.canon_sha256.label("left_now"), rr.c.canon_sha256.label("right_now"),
            lr.c.status.label("left_status"), rr.c.status.label("right_status"),
        )
        .join(items, j.c.item_id == items.c.id)
        .join(lr, j.c.left_run_id == lr.c.id)
        .join(rr, j.c.right_run_id == rr.c.id)
        .join(lv, lr.c.variant_id == lv.c.id)
        .join(rv, rr.c.variant_id == rv.c.id)
        .where(j.c.experiment_id == experiment_id)
        .order_by(j.c.created_at, j.c.id)
    ).all()  # fmt: skip
    out = []
    for r in rows:
        created = r.created_at
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        stale = not (
            r.left_now == r.left_sha256
            and r.right_now == r.right_sha256
            and r.left_status == r.right_status == RunStatus.SUCCEEDED.value
        )
        out.append(
            Vote(r.vote_uid, r.item_key, r.left_run_id, r.right_run_id, r.left_variant,
                 r.right_variant, r.left_repeat, r.right_repeat, r.left_sha256, r.right_sha256,
                 r.outcome, r.rater, r.comment, r.seconds_to_vote, created, stale)
        )  # fmt: skip
    return out


def current_votes(votes: Sequence[Vote]) -> list[Vote]:
    """The votes that still describe the videos as they are (stale ones left out)."""
    return [v for v in votes if not v.stale]
