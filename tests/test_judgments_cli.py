"""``reelbench judgments``: export as CSV/JSON, import into another database, idempotently."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner
from report_data import make_sqlite_database
from sqlalchemy.orm import Session

from reelbench.cli import main
from reelbench.db.engine import make_engine
from reelbench.judging.storage import judgeable_runs, load_votes, record_vote


def _seed_votes(url: str, experiment_id: int) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = judgeable_runs(session, experiment_id)
            by = {(r.item_key, r.variant_key, r.repeat): r for r in runs}
            n = 0
            for item in ("sunset", "city", "xss"):
                a, b = by[item, "alpha", 0], by[item, "beta", 1]
                for outcome, rater in (("left", "ann"), ("tie", "=cmd()"), ("right", "bob")):
                    record_vote(session, experiment_id=experiment_id, left_run_id=a.run_id,
                                right_run_id=b.run_id, left_sha256=a.canon_sha256,
                                right_sha256=b.canon_sha256, outcome=outcome, rater=rater,
                                comment="-looks off" if rater == "bob" else None,
                                seconds_to_vote=1.25)  # fmt: skip
                    n += 1
            return n
    finally:
        engine.dispose()


def test_export_csv_and_json_then_import_twice(tmp_path: Path) -> None:
    url, fx = make_sqlite_database(tmp_path / "one")
    n = _seed_votes(url, fx.experiment_id)
    runner = CliRunner()
    out = runner.invoke(main, ["judgments", fx.name, "--db", url])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert len(rows) == n
    assert {r["rater"] for r in rows} == {"ann", "'=cmd()", "bob"}  # spreadsheet-safe
    assert rows[0]["left_variant"] == "alpha" and rows[0]["right_repeat"] == "1"

    js = runner.invoke(main, ["judgments", fx.name, "--db", url, "--format", "json"])
    doc = json.loads(js.output)
    assert len(doc["judgments"]) == n and doc["judgments"][1]["rater"] == "=cmd()"

    export = tmp_path / "votes.csv"
    assert (
        runner.invoke(main, ["judgments", fx.name, "--db", url, "-o", str(export)]).exit_code == 0
    )

    # Another copy of the experiment (other run ids would be fine too: runs match by key).
    url2, fx2 = make_sqlite_database(tmp_path / "two")
    first = runner.invoke(main, ["judgments", fx2.name, "--db", url2, "--import", str(export)])
    assert first.exit_code == 0, first.output
    assert f"imported {n} new votes (0 already stored)" in first.output
    again = runner.invoke(main, ["judgments", fx2.name, "--db", url2, "--import", str(export)])
    assert f"imported 0 new votes ({n} already stored)" in again.output
    engine = make_engine(url2)
    try:
        with Session(engine) as session:
            votes = load_votes(session, fx2.experiment_id)
    finally:
        engine.dispose()
    assert len(votes) == n
    assert {v.rater for v in votes} == {"ann", "=cmd()", "bob"}
    assert {v.comment for v in votes} == {None, "-looks off"}
    original = list(csv.DictReader(io.StringIO(export.read_text())))
    assert [v.vote_uid for v in votes] == [r["vote_uid"] for r in original]
    assert [v.created_at.isoformat() for v in votes] == [r["created_at"] for r in original]


def test_import_of_a_bad_file_says_which_line_and_why(tmp_path: Path) -> None:
    url, fx = make_sqlite_database(tmp_path)
    _seed_votes(url, fx.experiment_id)
    runner = CliRunner()
    export = tmp_path / "votes.csv"
    runner.invoke(main, ["judgments", fx.name, "--db", url, "-o", str(export)])
    text = export.read_text().splitlines()
    header = text[0].split(",")
    cells = text[1].split(",")
    cells[header.index("vote_uid")] = "fresh-uid"
    cells[header.index("left_variant")] = "nosuch"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([text[0], ",".join(cells)]) + "\n")
    result = runner.invoke(main, ["judgments", fx.name, "--db", url, "--import", str(bad)])
    assert result.exit_code == 2
    assert "line 2" in result.output and "'nosuch'" in result.output

    not_csv = tmp_path / "x.csv"
    not_csv.write_text("a,b\n1,2\n")
    result = runner.invoke(main, ["judgments", fx.name, "--db", url, "--import", str(not_csv)])
    assert result.exit_code == 2 and "not a judgments CSV" in result.output

    unknown = runner.invoke(main, ["judgments", "nope", "--db", url])
    assert unknown.exit_code == 2 and "no experiment 'nope'" in unknown.output
