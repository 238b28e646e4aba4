"""The report in the terminal: rich tables for variants, metrics and failures.

User strings (variant keys, prompts, error messages) go in as ``Text`` objects,
never as markup, so a ``[bold]`` in a prompt prints as typed.
"""

from __future__ import annotations

import math

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from reelbench.report.model import Report

__all__ = ["fmt_number", "render_table"]

#: Failures listed in full in the terminal; the rest are counted (HTML and JSON have all).
MAX_FAILURES_SHOWN = 20


def fmt_number(value: float | None, digits: int = 4) -> str:
    """A compact human number: 4 significant digits, '-' for missing, 'inf' kept."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if abs(value) >= 10**digits or abs(value) < 10**-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _variants_table(report: Report) -> Table:
    table = Table(title="Variants", title_justify="left", expand=False)
    for header, justify in [
        ("variant", "left"),
        ("provider / model", "left"),
        ("ok", "right"),
        ("failed", "right"),
        ("pending", "right"),
        ("calls", "right"),
        ("cost", "right"),
        ("latency mean", "right"),
        ("seed check", "left"),
    ]:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    verdicts = {v.variant: v.verdict for v in report.seed_verdicts}
    for v in report.variants:
        failed = str(v.failed)
        if v.failures_by_class:
            failed += " (" + ", ".join(f"{k} {n}" for k, n in v.failures_by_class.items()) + ")"
        table.add_row(
            Text(v.key, style="bold"),
            Text(v.provider + (f" / {v.model}" if v.model else "")),
            str(v.succeeded),
            Text(failed, style="red" if v.failed else ""),
            str(v.pending),
            str(v.provider_calls),
            _money(v.cost_total),
            _seconds(v.latency_mean),
            Text(verdicts.get(v.key, "")),
        )
    return table


def _metrics_table(report: Report) -> Table:
    title = "Metrics: mean ± std over items and repeats"
    if report.baseline:
        title += f"; Δ and ratio against {report.baseline}"
    table = Table(title=Text(title), title_justify="left")
    table.add_column("metric")
    for v in report.variants:
        header = v.key + (" (baseline)" if v.key == report.baseline else "")
        table.add_column(Text(header), justify="right")
    for name in report.shown_metric_names:
        cells: list[RenderableType] = [Text(name)]
        for v in report.variants:
            spread = v.metrics[name]
            text = Text(fmt_number(spread.mean))
            if spread.n > 1:
                text.append(f" ± {fmt_number(spread.std, 2)}", style="dim")
            if spread.errors:
                text.append(f" ({spread.errors} failed)", style="red")
            comparison = report.comparison(v.key, name)
            if comparison is not None and comparison.difference is not None:
                ratio = (
                    ""
                    if comparison.ratio is None
                    else f" \N{MULTIPLICATION SIGN}{comparison.ratio:.3f}"
                )
                sign = "+" if comparison.difference >= 0 else ""
                text.append(
                    f"\nΔ {sign}{fmt_number(comparison.difference, 3)}{ratio}", style="cyan"
                )
            cells.append(text)
        table.add_row(*cells)
    return table


def _metric_errors_table(report: Report) -> Table:
    errors = report.metric_errors
    table = Table(title=f"Metric errors ({len(errors)})", title_justify="left")
    for header in ("item", "variant", "repeat", "metric"):
        table.add_column(header, overflow="fold")
    for r, metric in errors[:MAX_FAILURES_SHOWN]:
        table.add_row(Text(r.item_key), Text(r.variant_key), str(r.repeat),
                      Text(metric, style="red"))  # fmt: skip
    table.caption = "messages: the run's frames.json (metric_plugins) and the HTML report"
    if len(errors) > MAX_FAILURES_SHOWN:
        table.caption += f"; {len(errors) - MAX_FAILURES_SHOWN} more in the JSON or HTML report"
    return table


def _failures_table(report: Report) -> Table:
    failures = report.failures
    table = Table(title=f"Failures ({len(failures)})", title_justify="left")
    for header in ("item", "variant", "repeat", "class", "attempts", "message"):
        table.add_column(header, overflow="fold")
    for r in failures[:MAX_FAILURES_SHOWN]:
        message = (r.error_message or r.status).strip().splitlines()
        table.add_row(
            Text(r.item_key),
            Text(r.variant_key),
            str(r.repeat),
            Text(r.error_class or r.status, style="red"),
            str(r.attempt),
            Text(message[0] if message else ""),
        )
    if len(failures) > MAX_FAILURES_SHOWN:
        table.caption = f"{len(failures) - MAX_FAILURES_SHOWN} more in the JSON or HTML report"
    return table


#: Items listed in the --cells grid in the terminal (HTML and JSON have all).
MAX_CELL_ROWS = 200


def _cells_table(report: Report, metric: str | None) -> Table:
    """Item x variant: runs that succeeded of those made, and the metric's mean."""
    name = metric or (report.shown_metric_names[0] if report.shown_metric_names else None)
    title = "Cells: runs ok/total" + (f", mean {name}" if name else "")
    table = Table(title=Text(title), title_justify="left")
    table.add_column("item")
    for v in report.variants:
        table.add_column(Text(v.key), justify="right")
    for item in report.items[:MAX_CELL_ROWS]:
        row: list[RenderableType] = [Text(item.key)]
        for v in report.variants:
            runs = report.cell(item.key, v.key)
            ok = [r for r in runs if r.status == "succeeded"]
            text = Text(f"{len(ok)}/{len(runs)}", style="" if len(ok) == len(runs) else "red")
            values = [x for x in (r.metric(name) for r in ok) if x is not None] if name else []
            if values:
                text.append(f"  {fmt_number(math.fsum(values) / len(values))}")
            row.append(text)
        table.add_row(*row)
    if len(report.items) > MAX_CELL_ROWS:
        table.caption = f"{len(report.items) - MAX_CELL_ROWS} more items in the JSON or HTML report"
    return table


def render_table(
    report: Report, console: Console, *, cells: bool = False, cell_metric: str | None = None
) -> None:
    """Print the report: header line, variants, metrics, failures (if any).

    ``cells``: also the item x variant grid, showing ``cell_metric`` (default:
    the first metric shown).
    """
    exp = report.experiment
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.status_counts.items()))
    parts: list[RenderableType] = [
        Text.assemble(
            ("experiment ", "dim"),
            (exp.name, "bold"),
            ("  ", ""),
            (f"{len(report.items)} items x {len(report.variants)} variants, ", ""),
            (counts or "no runs", ""),
        )
    ]
    spend = report.spend_line()
    if spend:
        parts.append(Text(spend, style="dim"))
    parts.extend(Text(line, style="yellow") for line in report.waiting_lines())
    if report.variants:
        parts.append(_variants_table(report))
    if report.shown_metric_names:
        parts.append(_metrics_table(report))
    if cells and report.items:
        parts.append(_cells_table(report, cell_metric))
    if report.judging is not None:
        from reelbench.report.human import judging_tables

        parts.extend(judging_tables(report.judging))
    if report.failures:
        parts.append(_failures_table(report))
    if report.metric_errors:
        parts.append(_metric_errors_table(report))
    console.print(Group(*parts))
