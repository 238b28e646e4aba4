"""Votes in a real database (SQLite and PostgreSQL): recorded, refused, read back, rated."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_data import Fixture, fill_database
from sqlalchemy import select
from sqlalchemy.orm import Session

from reelbench.db.engine import make_engine
from reelbench.db.models import Judgment, Run
from reelbench.judging import load_judgments, summarize_judging
from reelbench.judging.storage import (
    JudgeableRun,
    VoteRefused,
    judgeable_runs,
    load_votes,
    record_vote,
)
from reelbench.results import query_results


@pytest.fixture
def filled(database_url: str, tmp_path: Path) -> tuple[str, Fixture]:
    return database_url, fill_database(database_url, tmp_path)


def _pair(runs: list[JudgeableRun], item: str, a: str, b: str) -> tuple[JudgeableRun, ...]:
    left = next(r for r in runs if r.item_key == item and r.variant_key == a)
    right = next(r for r in runs if r.item_key == item and r.variant_key == b)
    return left, right


def _vote(session: Session, fx: Fixture, left: JudgeableRun, right: JudgeableRun,
          outcome: str = "left", **kw: object) -> tuple[Judgment, bool]:  # fmt: skip
    return record_vote(
        session, experiment_id=fx.experiment_id, left_run_id=left.run_id,
        right_run_id=right.run_id, left_sha256=left.canon_sha256,
        right_sha256=right.canon_sha256, outcome=outcome, rater=str(kw.pop("rater", "ann")),
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_judgeable_runs_are_the_succeeded_runs_with_a_video(filled: tuple[str, Fixture]) -> None:
    url, fx = filled
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = judgeable_runs(session, fx.experiment_id)
            # 18 runs, 2 of gamma failed.
            assert len(runs) == 16
            assert {r.variant_key for r in runs} == {"alpha", "beta", "gamma"}
            assert all(len(r.canon_sha256) == 64 and r.artifact_id > 0 for r in runs)
    finally:
        engine.dispose()


def test_votes_are_recorded_once_and_read_back(filled: tuple[str, Fixture]) -> None:
    url, fx = filled
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = judgeable_runs(session, fx.experiment_id)
            left, right = _pair(runs, "sunset", "alpha", "beta")
            first, new = _vote(session, fx, left, right, "left", vote_uid="u1", comment=" nice ",
                               seconds_to_vote=2.5)  # fmt: skip
            again, new_again = _vote(session, fx, left, right, "right", vote_uid="u1")
            assert new and not new_again and again.id == first.id and again.outcome == "left"
            _vote(session, fx, right, left, "tie", rater="bob")
            votes = load_votes(session, fx.experiment_id)
    finally:
        engine.dispose()
    assert [(v.left_variant, v.right_variant, v.outcome, v.rater) for v in votes] == [
        ("alpha", "beta", "left", "ann"),
        ("beta", "alpha", "tie", "bob"),
    ]
    assert votes[0].comment == "nice" and votes[0].seconds_to_vote == 2.5
    assert votes[0].left_run_id == left.run_id and not votes[0].stale
    assert votes[0].created_at.tzinfo is not None
    assert next(v.vote_uid for v in load_judgments(fx.name, url)) == "u1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("rerun", "made again"),
        ("other_item", "same item"),
        ("same_variant", "two different variants"),
        ("missing", "no longer exists"),
        ("outcome", "unknown outcome"),
        ("rater", "rater name"),
    ],
)
def test_bad_votes_are_refused_and_store_nothing(
    filled: tuple[str, Fixture], change: str, message: str
) -> None:
    url, fx = filled
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = judgeable_runs(session, fx.experiment_id)
            left, right = _pair(runs, "sunset", "alpha", "beta")
            kwargs: dict[str, object] = {}
            outcome = "left"
            if change == "rerun":
                run = session.get(Run, right.run_id)
                assert run is not None
                run.canon_sha256 = "f" * 64  # made again: another video now
                session.commit()
            elif change == "other_item":
                right = _pair(runs, "city", "alpha", "beta")[1]
            elif change == "same_variant":
                right = next(r for r in runs if r.variant_key == "alpha" and r.item_key == "sunset"
                             and r.run_id != left.run_id)  # fmt: skip
            elif change == "missing":
                session.delete(session.get(Run, right.run_id))
                session.commit()
            elif change == "outcome":
                outcome = "maybe"
            elif change == "rater":
                kwargs["rater"] = "   "
            with pytest.raises(VoteRefused, match=message):
                _vote(session, fx, left, right, outcome, **kwargs)
            session.rollback()
            assert session.scalars(select(Judgment)).all() == []
    finally:
        engine.dispose()


def test_a_rerun_makes_old_votes_stale_and_ratings_skip_them(filled: tuple[str, Fixture]) -> None:
    url, fx = filled
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = judgeable_runs(session, fx.experiment_id)
            for item in ("sunset", "city", "xss"):
                left, right = _pair(runs, item, "alpha", "beta")
                for _ in range(3):
                    _vote(session, fx, left, right, "left")
            left, right = _pair(runs, "sunset", "alpha", "beta")
            run = session.get(Run, right.run_id)
            assert run is not None
            run.canon_sha256 = "e" * 64
            session.commit()
            votes = load_votes(session, fx.experiment_id)
            _info, records = query_results(session, fx.name)
    finally:
        engine.dispose()
    assert sum(v.stale for v in votes) == 3
    summary = summarize_judging(votes, records, ["sharpness"], bootstrap=20)
    assert summary.ratings.votes == 6 and summary.ratings.stale_votes == 3
    assert next(r.variant for r in summary.ratings.variants) == "alpha"
    gamma = summary.ratings.rating("gamma")
    assert gamma is not None and gamma.votes == 0
    assert summary.position.decisive == 6
