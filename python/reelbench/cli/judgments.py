"""``reelbench judgments``: export an experiment's votes, or import votes collected elsewhere.

The CSV names runs by item, variant and repeat (and the SHA-256 of the video
shown), not by database id, so votes collected on another copy of the
experiment import here. Each vote carries its ``vote_uid``: importing the
same file twice stores each vote once.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import IO, Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from reelbench.cli.options import BadInput, db_option, open_db
from reelbench.judging.storage import Vote, VoteRefused, load_votes, record_vote
from reelbench.report.export import spreadsheet_safe

__all__ = ["COLUMNS", "judgments_command"]

COLUMNS = (
    "vote_uid", "experiment", "item", "left_variant", "left_repeat", "left_sha256",
    "right_variant", "right_repeat", "right_sha256", "outcome", "rater", "comment",
    "seconds_to_vote", "created_at", "stale",
)  # fmt: skip


def _row(experiment: str, v: Vote) -> dict[str, Any]:
    return {
        "vote_uid": v.vote_uid, "experiment": experiment, "item": v.item_key,
        "left_variant": v.left_variant, "left_repeat": v.left_repeat,
        "left_sha256": v.left_sha256, "right_variant": v.right_variant,
        "right_repeat": v.right_repeat, "right_sha256": v.right_sha256, "outcome": v.outcome,
        "rater": v.rater, "comment": v.comment, "seconds_to_vote": v.seconds_to_vote,
        "created_at": v.created_at.isoformat(), "stale": v.stale,
    }  # fmt: skip


def write_votes(experiment: str, votes: list[Vote], fmt: str, out: IO[str]) -> None:
    """The votes as CSV (spreadsheet-safe text cells) or one JSON document."""
    rows = [_row(experiment, v) for v in votes]
    if fmt == "json":
        json.dump({"experiment": experiment, "judgments": rows}, out, indent=2)
        out.write("\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                spreadsheet_safe(x) if isinstance(x, str) else "" if x is None else x
                for x in (row[c] for c in COLUMNS)
            ]
        )


def _unsafe(text: str) -> str:
    """Undo :func:`spreadsheet_safe` on import: a leading ' before a formula trigger."""
    return text[1:] if text[:1] == "'" and text[1:2] in ("=", "+", "-", "@", "\t", "\r") else text


def import_votes(session: Session, experiment_id: int, path: Path) -> tuple[int, int]:
    """Store the votes of a CSV export; return (new, already there). Stops at the first bad row.

    Every row is checked before any is stored, so a bad file stores nothing.
    """
    from datetime import datetime

    from reelbench.db.models import Item, Run, Variant

    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from exc
    missing = [c for c in ("vote_uid", "item", "left_variant", "left_repeat", "left_sha256",
                           "right_variant", "right_repeat", "right_sha256", "outcome", "rater")
               if rows and c not in rows[0]]  # fmt: skip
    if missing:
        raise BadInput(f"{path}: not a judgments CSV (missing columns: {', '.join(missing)})")
    runs = {
        (item, variant, repeat): run_id
        for run_id, item, variant, repeat in session.execute(
            select(Run.id, Item.key, Variant.key, Run.repeat)
            .join(Item, Run.item_id == Item.id)
            .join(Variant, Run.variant_id == Variant.id)
            .where(Run.experiment_id == experiment_id)
        ).all()
    }
    new = old = 0
    for line, row in enumerate(rows, start=2):
        try:
            sides = []
            for side in ("left", "right"):
                key = (_unsafe(row["item"]), _unsafe(row[f"{side}_variant"]),
                       int(row[f"{side}_repeat"]))  # fmt: skip
                if key not in runs:
                    raise VoteRefused(
                        f"no run of item {key[0]!r}, variant {key[1]!r}, repeat {key[2]} here"
                    )
                sides.append(runs[key])
            seconds = float(row["seconds_to_vote"]) if row.get("seconds_to_vote") else None
            created = datetime.fromisoformat(row["created_at"]) if row.get("created_at") else None
            if created is not None and created.tzinfo is None:
                raise VoteRefused("created_at has no time zone")
            _, is_new = record_vote(
                session, experiment_id=experiment_id, left_run_id=sides[0],
                right_run_id=sides[1], left_sha256=row["left_sha256"],
                right_sha256=row["right_sha256"], outcome=row["outcome"],
                rater=_unsafe(row["rater"]), comment=_unsafe(row.get("comment") or "") or None,
                seconds_to_vote=seconds, vote_uid=row["vote_uid"], created_at=created,
            )  # fmt: skip
        except (VoteRefused, ValueError) as exc:
            raise BadInput(
                f"{path} line {line}: {exc}; the {new} new votes before it are stored, "
                "fix the line and import again (stored votes are not duplicated)"
            ) from exc
        new += is_new
        old += not is_new
    return new, old


@click.command("judgments")
@click.argument("experiment", metavar="EXPERIMENT")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["csv", "json"]), default="csv",
    show_default=True, help="csv: one row per vote; json: one document with every vote.",
)  # fmt: skip
@click.option(
    "--output", "-o", "output", metavar="FILE", type=click.Path(path_type=Path), default=None,
    help="Write the export here instead of stdout.",
)  # fmt: skip
@click.option(
    "--import", "import_file", metavar="FILE", default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Load the votes of a CSV made by this command (on this or another copy of the "
    "experiment). Runs are matched by item, variant and repeat; a vote whose video changed "
    "since is refused. Importing a file again adds nothing.",
)  # fmt: skip
@db_option
def judgments_command(
    experiment: str, fmt: str, output: Path | None, import_file: Path | None, db_url: str
) -> None:
    """Export the human votes of EXPERIMENT, or import votes collected elsewhere.

    Each row: the item, the two videos as shown (variant, repeat and the
    SHA-256 of the canonical video), the outcome (left, right, tie,
    both_bad), the rater, comment, seconds to vote, when, and whether the
    vote is stale (a run was made again since).
    """
    from reelbench.results import ExperimentNotFound, find_experiment

    db = open_db(db_url)
    try:
        with Session(db.engine) as session:
            try:
                exp = find_experiment(session, experiment)
            except ExperimentNotFound as exc:
                raise BadInput(str(exc)) from exc
            if import_file is not None:
                new, old = import_votes(session, exp.id, import_file)
                click.echo(f"imported {new} new votes ({old} already stored) into {exp.name}")
                return
            votes = load_votes(session, exp.id)
            name = exp.name
    finally:
        db.engine.dispose()
    if output is None:
        write_votes(name, votes, fmt, sys.stdout)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8", newline="") as fh:
            write_votes(name, votes, fmt, fh)
