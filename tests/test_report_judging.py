"""Human ratings and metric agreement in every report format, from votes in a real database."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_data import Fixture, fill_database
from sqlalchemy.orm import Session

from reelbench.cli import main
from reelbench.db.engine import make_engine
from reelbench.judging.agreement import MIN_AGREEMENT_VOTES
from reelbench.judging.storage import judgeable_runs, record_vote
from reelbench.report import load_report

#: People prefer alpha over beta over gamma.
ORDER = {"alpha": 2, "beta": 1, "gamma": 0}


def _vote_everything(url: str, fx: Fixture, rounds: int) -> int:
    engine = make_engine(url)
    n = 0
    try:
        with Session(engine) as session:
            runs = judgeable_runs(session, fx.experiment_id)
            for k in range(rounds):
                for a in runs:
                    for b in runs:
                        if a.item_key != b.item_key or ORDER[a.variant_key] <= ORDER[b.variant_key]:
                            continue
                        left, right = (a, b) if (n + k) % 2 else (b, a)
                        outcome = "left" if left is a else "right"
                        record_vote(session, experiment_id=fx.experiment_id,
                                    left_run_id=left.run_id, right_run_id=right.run_id,
                                    left_sha256=left.canon_sha256,
                                    right_sha256=right.canon_sha256, outcome=outcome,
                                    rater="<script>alert(1)</script>")  # fmt: skip
                        n += 1
    finally:
        engine.dispose()
    return n


@pytest.fixture
def voted(database_url: str, tmp_path: Path) -> tuple[str, Fixture, int]:
    fx = fill_database(database_url, tmp_path)
    return database_url, fx, _vote_everything(database_url, fx, 1)


def test_report_ranks_variants_as_the_votes_do(voted: tuple[str, Fixture, int]) -> None:
    url, fx, n = voted
    assert n >= MIN_AGREEMENT_VOTES
    report = load_report(fx.name, url)
    assert report.judging is not None
    ratings = report.judging.ratings
    assert ratings.votes == n
    assert [r.variant for r in ratings.variants] == ["alpha", "beta", "gamma"]
    assert ratings.win_rate["alpha"]["gamma"] == 1.0
    assert all(r.ci_low is not None and r.ci_low <= r.rating <= r.ci_high  # type: ignore[operator]
               for r in ratings.variants)  # fmt: skip
    assert not report.judging.position.flagged  # sides alternate
    rows = {m.metric: m for m in report.judging.metrics}
    assert set(rows) == set(report.metric_names)
    assert any(m.accuracy is not None for m in rows.values())


def test_every_format_shows_the_ratings(voted: tuple[str, Fixture, int], tmp_path: Path) -> None:
    url, fx, n = voted
    runner = CliRunner()
    table = runner.invoke(main, ["report", fx.name, "--db", url])
    assert table.exit_code == 0, table.output
    assert "Human ratings" in table.output and "Which metric agrees with the people" in table.output

    js = json.loads(runner.invoke(main, ["report", fx.name, "--db", url, "--json"]).output)
    assert js["judging"]["votes"] == n
    assert [r["variant"] for r in js["judging"]["ratings"]] == ["alpha", "beta", "gamma"]
    assert js["judging"]["metric_agreement"]

    out = runner.invoke(main, ["report", fx.name, "--db", url, "--format", "csv"]).output
    rows = list(csv.DictReader(io.StringIO(out)))
    alpha = next(r for r in rows if r["variant_key"] == "alpha")
    gamma = next(r for r in rows if r["variant_key"] == "gamma")
    assert float(alpha["human_rating"]) > float(gamma["human_rating"])

    page = tmp_path / "page.html"
    res = runner.invoke(main, ["report", fx.name, "--db", url, "--format", "html", "-o", str(page),
                               "--artifacts", str(fx.artifact_root)])  # fmt: skip
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert 'id="ratings-table"' in text and 'id="metric-agreement"' in text
    assert "<script>alert(1)</script>" not in text


def test_an_experiment_without_votes_has_no_judging_section(
    database_url: str, tmp_path: Path
) -> None:
    fx = fill_database(database_url, tmp_path)
    report = load_report(fx.name, database_url)
    assert report.judging is None
    out = CliRunner().invoke(main, ["report", fx.name, "--db", database_url, "--json"]).output
    assert json.loads(out)["judging"] is None
