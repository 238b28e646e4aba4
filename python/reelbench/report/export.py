"""Machine-readable exports: the whole report as JSON, the runs as CSV.

Numbers are written as the database holds them (Python's shortest exact float
repr), so a CSV or JSON export reads back to the very same values. Undefined
values (a +inf PSNR, a missing metric) are JSON ``null`` and empty CSV fields.

CSV cells are safe to open in a spreadsheet: a text cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return (a prompt, a provider's
error body) would be run as a formula, so it gets a leading ``'`` (OWASP's
rule for CSV injection). Numbers are never touched. ``raw=True`` (the CLI's
``--csv-raw``) writes text exactly as stored. JSON is always exact.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from typing import IO, Any

from reelbench.report.model import METRIC_DESCRIPTIONS, Report
from reelbench.results import RunRecord

__all__ = [
    "REPORT_FORMAT_VERSION",
    "csv_columns",
    "report_to_dict",
    "spreadsheet_safe",
    "write_csv",
    "write_json",
]

#: Bumped when the JSON document changes incompatibly.
REPORT_FORMAT_VERSION = 1

RUN_COLUMNS = (
    "run_id",
    "experiment",
    "item_key",
    "prompt",
    "variant_key",
    "provider",
    "model",
    "repeat",
    "seed",
    "status",
    "attempt",
    "error_class",
    "error_message",
    "wait_reason",
    "cost",
    "latency_seconds",
    "provider_call_id",
    "request_hash",
    "raw_sha256",
    "canon_uri",
    "canon_sha256",
    "frames_uri",
    "started_at",
    "finished_at",
)


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null (strict JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as one JSON-ready document (``format``/``version`` identify it)."""
    return _clean(_document(report))  # type: ignore[no-any-return]


def _document(report: Report) -> dict[str, Any]:
    """The document, possibly holding non-finite floats (see :func:`report_to_dict`)."""
    exp = report.experiment
    seed_by_variant = {v.variant: v for v in report.seed_verdicts}
    variants = []
    for v in report.variants:
        verdict = seed_by_variant.get(v.key)
        variants.append(
            {
                "key": v.key,
                "provider": v.provider,
                "model": v.model,
                "runs": v.runs,
                "status_counts": v.status_counts,
                "failures_by_class": v.failures_by_class,
                "provider_calls": v.provider_calls,
                "cost_total": v.cost_total,
                "latency_mean_seconds": v.latency_mean,
                "latency_max_seconds": v.latency_max,
                "metrics": {name: asdict(spread) for name, spread in v.metrics.items()},
                "seed_check": asdict(verdict) if verdict else None,
            }
        )
    baseline: dict[str, Any] | None = None
    if report.baseline is not None:
        comparisons: dict[str, dict[str, Any]] = {}
        for c in report.comparisons:
            comparisons.setdefault(c.variant, {})[c.metric] = {
                "baseline": c.baseline,
                "value": c.value,
                "difference": c.difference,
                "ratio": c.ratio,
            }
        baseline = {"variant": report.baseline, "comparisons": comparisons}
    doc = {
        "format": "reelbench-report",
        "version": REPORT_FORMAT_VERSION,
        "generated_at": report.generated_at.isoformat(),
        "experiment": {
            "id": exp.id,
            "name": exp.name,
            "description": exp.description,
            "spec_hash": exp.spec_hash,
            "spec_path": exp.spec_path,
            "canonical": dict(exp.canonical),
            "created_at": exp.created_at.isoformat(),
            "updated_at": exp.updated_at.isoformat(),
            "max_usd": exp.max_usd,
        },
        "status_counts": report.status_counts,
        "cost_total": report.cost_total,
        "waiting": report.waiting,
        "metrics": {name: METRIC_DESCRIPTIONS.get(name, "") for name in report.metric_names},
        "items": [asdict(i) for i in report.items],
        "variants": variants,
        "baseline": baseline,
        "seed_checks": [{**asdict(c), "matched": c.matched} for c in report.seed_checks],
        "runs": [r.as_dict() for r in report.runs],
        # Metrics that failed on succeeded runs (metric plugins); the message is
        # in the run's frames.json under metric_plugins.
        "metric_errors": [
            {"run_id": r.run_id, "item": r.item_key, "variant": r.variant_key, "metric": m}
            for r, m in report.metric_errors
        ],
        "judging": None,
    }
    if report.judging is not None:
        from reelbench.report.human import judging_to_dict

        doc["judging"] = judging_to_dict(report.judging)
    return doc


#: Reports with more runs than this are written compact: indenting forces
#: Python's pure-Python JSON encoder, many times slower than the C one.
INDENT_MAX_RUNS = 1000


def write_json(report: Report, out: IO[str]) -> None:
    """Write :func:`report_to_dict` as strict JSON (indented unless the report is large)."""
    indent = 2 if len(report.runs) <= INDENT_MAX_RUNS else None
    doc = _document(report)
    try:
        # Fast path: nothing non-finite in it (the database stores +inf as NULL).
        text = json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_clean(doc), indent=indent, ensure_ascii=False, allow_nan=False)
    out.write(text)
    out.write("\n")


def csv_columns(report: Report) -> list[str]:
    """Header of the runs CSV: run fields, then ``metric.stat`` for every stored statistic."""
    stats: dict[str, set[str]] = {}
    for r in report.runs:
        for name, values in r.metrics.items():
            stats.setdefault(name, set()).update(values)
    order = ("value", "mean", "min", "max", "p05", "p50", "p95")
    metric_cols = [
        f"{name}.{stat}"
        for name in report.metric_names
        for stat in sorted(
            stats.get(name, ()), key=lambda s: (order.index(s) if s in order else 99, s)
        )
    ]
    human = list(HUMAN_COLUMNS) if report.judging is not None else []
    return [*RUN_COLUMNS, *human, *metric_cols]


#: The run's variant's human rating and interval, when the experiment has votes.
HUMAN_COLUMNS = ("human_rating", "human_rating_low", "human_rating_high")


#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a spreadsheet shows it, never runs it: a leading ``'`` before a formula."""
    return f"'{text}" if text.startswith(FORMULA_TRIGGERS) else text


def _csv_value(value: Any, raw: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, int):
        return str(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value) if raw else spreadsheet_safe(str(value))


def _run_row(
    record: RunRecord, columns: list[str], raw: bool, report: Report | None = None
) -> list[str]:
    row = []
    rating = None
    if report is not None and report.judging is not None:
        rating = report.judging.ratings.rating(record.variant_key)
    for col in columns:
        if col in HUMAN_COLUMNS:
            value = None
            if rating is not None and rating.votes:
                value = {"human_rating": rating.rating, "human_rating_low": rating.ci_low,
                         "human_rating_high": rating.ci_high}[col]  # fmt: skip
            row.append(_csv_value(value, raw))
        elif col in RUN_COLUMNS:
            row.append(_csv_value(getattr(record, col), raw))
        else:
            name, _, stat = col.rpartition(".")
            row.append(_csv_value(record.metrics.get(name, {}).get(stat), raw))
    return row


def write_csv(report: Report, out: IO[str], *, raw: bool = False) -> None:
    """One row per run: identity, status, errors, cost, latency and every metric statistic.

    Text cells are made :func:`spreadsheet_safe` unless ``raw``.
    """
    columns = csv_columns(report)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in report.runs:
        writer.writerow(_run_row(record, columns, raw, report))
