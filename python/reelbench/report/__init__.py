"""Reports: compare an experiment's variants in the terminal, as CSV/JSON, or as a static page.

``build_report`` computes everything once (:mod:`reelbench.report.model`);
``render_table``, ``write_csv``/``write_json`` and ``write_html`` format it.
``load_report`` reads an experiment from a database URL and builds its report.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.orm import Session

from reelbench.report.export import report_to_dict, spreadsheet_safe, write_csv, write_json
from reelbench.report.html import render_html, write_html
from reelbench.report.model import (
    BaselineComparison,
    MetricSpread,
    Report,
    ReportError,
    SeedCheck,
    SeedVerdict,
    VariantSummary,
    build_report,
)
from reelbench.report.table import render_table
from reelbench.results import _open_engine, query_results, resolve_db_url

__all__ = [
    "BaselineComparison",
    "MetricSpread",
    "Report",
    "ReportError",
    "SeedCheck",
    "SeedVerdict",
    "VariantSummary",
    "build_report",
    "default_report_dir",
    "load_report",
    "render_html",
    "render_table",
    "report_paths",
    "report_to_dict",
    "spreadsheet_safe",
    "write_csv",
    "write_html",
    "write_json",
    "write_report_files",
]


#: Where reports go by default: under the current folder.
REPORT_ROOT = Path(".reelbench/reports")


def default_report_dir(experiment: str) -> Path:
    """``.reelbench/reports/<experiment>/`` under the current folder."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return REPORT_ROOT / safe


def load_report(
    experiment: str | int, db: str | None = None, *, baseline: str | None = None
) -> Report:
    """Read ``experiment`` from the database at ``db`` (a URL; None: the default) and report it."""
    # Judging (numpy) only where a report may hold votes.
    from reelbench.judging.storage import load_votes

    engine = _open_engine(resolve_db_url(db))
    try:
        with Session(engine) as session:
            info, records = query_results(session, experiment)
            votes = load_votes(session, info.id)
    finally:
        engine.dispose()
    return build_report(info, records, baseline=baseline, votes=votes)


def report_paths(target: Path) -> tuple[Path, Path]:
    """Where the HTML page and the JSON document go for a ``--report`` target.

    A target ending in ``.html`` is the page itself, the JSON goes beside it
    with the ``.json`` suffix; any other target is a folder holding
    ``index.html`` and ``report.json`` (and ``videos/``).
    """
    target = Path(target)
    if target.suffix.lower() in (".html", ".htm"):
        return target, target.with_suffix(".json")
    return target / "index.html", target / "report.json"


def write_report_files(
    report: Report, target: Path, *, artifact_root: Path | str | None = None
) -> tuple[Path, Path]:
    """Write the HTML page (with its videos) and the JSON document; return both paths."""
    html_path, json_path = report_paths(target)
    write_html(report, html_path, artifact_root=artifact_root)
    tmp = json_path.with_name(f".{json_path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        write_json(report, out)
    tmp.replace(json_path)
    return html_path, json_path
