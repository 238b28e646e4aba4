"""The static HTML report: one self-contained page plus a ``videos/`` folder beside it.

The page works offline and from ``file://``: no CDN, no fetch, styles and the
small sorting/playback script inline, per-frame plots as inline SVG. Videos are
referenced by relative path (``videos/<sha256 prefix>.mp4``, content-addressed
so identical outputs are stored once); they are hard-linked from the artifact
store when it is on the same filesystem, else copied, so the report folder can
be moved, zipped or served as it is, and survives cleaning the artifacts.

Every user-supplied string (prompts, keys, error messages, paths) is escaped
with :func:`html.escape`; a Content-Security-Policy admits only the page's own
script, by hash, as a second line of defence.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from reelbench.identity import sha256_file
from reelbench.report.model import METRIC_DESCRIPTIONS, Report
from reelbench.report.svg import PALETTE, Series, line_chart
from reelbench.report.table import fmt_number
from reelbench.results import RunRecord

__all__ = [
    "REPORT_CSS",
    "REPORT_JS",
    "VIDEO_DIR",
    "artifact_path",
    "load_frames",
    "render_body",
    "render_html",
    "write_html",
]

VIDEO_DIR = "videos"

#: Per-frame plots are drawn for this many items (the page must stay loadable).
MAX_PLOTTED_ITEMS = 50
#: Points per plotted series; longer videos are sampled every n-th frame.
MAX_PLOT_POINTS = 240
#: Above this many players, videos load on play instead of fetching metadata up front.
MAX_PRELOADED_VIDEOS = 300

#: Per-frame metrics plotted for each item, in this order, when present.
PLOTTED_FRAME_METRICS = (
    "ssim_ref",
    "psnr_ref",
    "ssim_prev",
    "mad_prev",
    "sharpness",
    "luma_mean",
    "black",
)

_CSS = """
:root { --fg:#1d232a; --muted:#5b6570; --line:#d8dde3; --bg:#fff; --soft:#f4f6f8;
        --bad:#b3261e; --good:#1e7a34; --accent:#0b5cad; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0 auto; padding: 20px 24px 60px;
       max-width: 1800px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 32px 0 8px; }
h3 { font-size: 14px; margin: 18px 0 6px; }
.muted, .meta { color: var(--muted); } .meta { margin: 0 0 8px; }
nav a { margin-right: 14px; color: var(--accent); }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
th { background: var(--soft); text-align: left; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.sortable th { cursor: pointer; user-select: none; }
.sortable th::after { content: " \\2195"; color: #aab; font-size: 11px; }
.sortable th[aria-sort=ascending]::after { content: " \\2191"; color: var(--fg); }
.sortable th[aria-sort=descending]::after { content: " \\2193"; color: var(--fg); }
.std { color: var(--muted); font-size: 12px; }
.bad { color: var(--bad); } .good { color: var(--good); }
.scroll { overflow-x: auto; }
table.grid td { width: 256px; }
table.grid td.item { min-width: 180px; max-width: 280px; }
.prompt { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; }
.run { margin: 0 0 8px; }
.run video { display: block; width: 240px; max-width: 100%; background: #000; }
.caption { font-size: 12px; color: var(--muted); }
.failed { border-left: 3px solid var(--bad); padding: 4px 6px; background: #fdf1f0;
          max-width: 320px; }
.failed pre, td pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 2px 0 0;
                      font-size: 12px; max-height: 12em; overflow: auto; }
.pending { color: var(--muted); font-style: italic; }
button { font: inherit; font-size: 12px; cursor: pointer; }
.charts { display: flex; flex-wrap: wrap; gap: 10px; }
.chart-title { font-size: 11px; font-weight: 600; fill: var(--fg); }
.chart-axis, .chart-empty { font-size: 10px; fill: var(--muted); }
.chart-frame { fill: none; stroke: var(--line); }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.swatch { display: inline-block; width: 18px; height: 3px; vertical-align: middle;
          margin-right: 4px; }
"""

# Sorting: numbers compare as numbers, missing values always sort last.
_JS = """
(function () {
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute('data-sort');
          var y = b.cells[col].getAttribute('data-sort');
          if (x === '' || y === '') { return (x === '') - (y === ''); }
          var nx = Number(x), ny = Number(y);
          var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll('button.play-row').forEach(function (button) {
    button.addEventListener('click', function () {
      var videos = button.closest('tr').querySelectorAll('video');
      var playing = Array.prototype.some.call(videos, function (v) { return !v.paused; });
      videos.forEach(function (v) {
        if (playing) { v.pause(); return; }
        v.currentTime = 0;
        var p = v.play();
        if (p && p.catch) { p.catch(function () {}); }
      });
    });
  });
})();
"""


def _e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return escape("" if value is None else str(value), quote=True)


def artifact_path(
    uri: str | None, artifact_root: Path | str | None, sha256: str | None = None
) -> Path | None:
    """The local file behind an artifact URI: ``file://`` URIs, absolute or root-relative paths.

    ``s3://`` objects are downloaded (into the scratch folder, SHA-256 checked
    when known); None when they cannot be fetched.
    """
    if not uri:
        return None
    if uri.startswith("s3://"):
        return _fetched_object(uri, artifact_root, sha256)
    if uri.startswith("file:///"):
        # What the store writes (no host, no query): skip urlparse, 2,000 times a report.
        rest = uri[7:]
        if "?" not in rest and "#" not in rest:
            return Path(unquote(rest))
    if uri.startswith("file:"):
        parsed = urlparse(uri)
        return Path(unquote(parsed.path))
    if "://" in uri:
        return None  # remote store: not on this machine
    path = Path(uri)
    if not path.is_absolute() and isinstance(artifact_root, Path):
        path = artifact_root / path
    return path


def _fetched_object(uri: str, artifact_root: Path | str | None, sha256: str | None) -> Path | None:
    from reelbench.errors import RetryableError
    from reelbench.object_store import parse_s3_uri
    from reelbench.storage import open_store

    bucket = parse_s3_uri(uri).bucket
    root = artifact_root if isinstance(artifact_root, str) else None
    if root is None or parse_s3_uri(root).bucket != bucket:
        root = f"s3://{bucket}"
    try:
        return open_store(root).local_path(uri, sha256)
    except (OSError, ValueError, RetryableError):
        return None


def load_frames(path: Path) -> list[dict[str, Any]]:
    """Per-frame records from a ``frames.json`` (a list, or an object with ``frames``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("frames", [])
    return [f for f in data if isinstance(f, dict)] if isinstance(data, list) else []


def _place_video(src: Path, videos: Path, sha256: str | None, prefix: str = "") -> str:
    """Link (or copy) a video into the report's video folder; return its relative path."""
    digest = sha256 or sha256_file(src)
    name = f"{prefix}{digest[:16]}.mp4"
    dst = videos / name
    if not dst.exists():
        videos.mkdir(parents=True, exist_ok=True)
        tmp = videos / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:  # other filesystem, or links not allowed: copy instead
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return f"{VIDEO_DIR}/{name}"


def _num_cell(
    value: float | None,
    *,
    digits: int = 4,
    extra: str = "",
    fmt: Callable[[float], str] | None = None,
    title: str = "",
) -> str:
    sort = "" if value is None else repr(value)
    text = fmt_number(value, digits) if fmt is None or value is None else fmt(value)
    tip = f' title="{_e(title)}"' if title else ""
    return f'<td class="num" data-sort="{sort}"{tip}>{_e(text)}{extra}</td>'


def _text_cell(value: object) -> str:
    return f'<td data-sort="{_e(value)}">{_e(value)}</td>'


class _Page:
    """Builds the page's sections; holds where files go and which videos are placed."""

    def __init__(
        self,
        report: Report,
        out_dir: Path | None,
        artifact_root: Path | str | None,
        video_link: Callable[[str], str | None] | None = None,
    ) -> None:
        self.report = report
        self.video_link = video_link
        self.items_by_key = {item.key: item for item in report.items}
        self.out_dir = out_dir
        self.artifact_root = artifact_root
        self.colors = {v.key: PALETTE[i % len(PALETTE)] for i, v in enumerate(report.variants)}
        players = sum(1 for r in report.runs if r.status == "succeeded")
        self.preload = "metadata" if players <= MAX_PRELOADED_VIDEOS else "none"

    # -- videos -------------------------------------------------------------
    def video_src(self, uri: str | None, sha256: str | None, prefix: str = "") -> str | None:
        """Relative path of a placed video, or None when the file is not available."""
        if self.video_link is not None:  # served: a URL by artifact id, never a path
            return self.video_link(uri) if uri else None
        src = artifact_path(uri, self.artifact_root, sha256)
        if src is None or not src.is_file():
            return None
        if self.out_dir is None:  # rendering without writing: point at the file itself
            return src.resolve().as_uri()
        return _place_video(src, self.out_dir / VIDEO_DIR, sha256, prefix)

    # -- sections -----------------------------------------------------------
    def header(self) -> str:
        r = self.report
        exp = r.experiment
        counts = ", ".join(f"{n} {s}" for s, n in sorted(r.status_counts.items())) or "no runs"
        canon = exp.canonical
        canon_text = (
            f"canonical {canon.get('width', '?')}x{canon.get('height', '?')} "
            f"@ {canon.get('fps', '?')} fps"
            if canon
            else ""
        )
        desc = f'<p class="prompt">{_e(exp.description)}</p>' if exp.description else ""
        spend = r.spend_line()
        waiting = "".join(f'<p class="meta waiting">{_e(line)}</p>' for line in r.waiting_lines())
        return (
            f"<header><h1>{_e(exp.name)}</h1>{desc}"
            f'<p class="meta">{len(r.items)} items &times; {len(r.variants)} variants &middot; '
            f"{_e(counts)} &middot; {_e(canon_text)} &middot; spec {_e(exp.spec_hash[:12])} "
            f"&middot; generated {_e(r.generated_at.strftime('%Y-%m-%d %H:%M UTC'))}"
            f"{f' &middot; {_e(spend)}' if spend else ''}</p>{waiting}"
            '<nav><a href="#summary">Summary</a><a href="#grid">Videos</a>'
            '<a href="#frames">Per-frame metrics</a><a href="#failures">Failures</a></nav>'
            "</header>"
        )

    def summary(self) -> str:
        r = self.report
        verdicts = {v.variant: v for v in r.seed_verdicts}
        heads = [
            "variant",
            "provider",
            "model",
            "ok",
            "failed",
            "pending",
            "cost",
            "latency (mean)",
            "seed check",
        ]
        head_html = "".join(f"<th>{_e(h)}</th>" for h in heads)
        head_html += "".join(
            f'<th title="{_e(METRIC_DESCRIPTIONS.get(m, ""))}">{_e(m)}</th>'
            for m in r.shown_metric_names
        )
        rows = []
        for v in r.variants:
            failed = ", ".join(f"{k} {n}" for k, n in v.failures_by_class.items())
            verdict = verdicts.get(v.key)
            cells = [
                f'<td data-sort="{_e(v.key)}"><span class="swatch" '
                f'style="background:{self.colors[v.key]}"></span><b>{_e(v.key)}</b>'
                + (" <span class=muted>(baseline)</span>" if v.key == r.baseline else "")
                + "</td>",
                _text_cell(v.provider),
                _text_cell(v.model or ""),
                _num_cell(float(v.succeeded)),
                f'<td class="num{" bad" if v.failed else ""}" data-sort="{v.failed}" '
                f'title="{_e(failed)}">{v.failed}'
                + (f' <span class="std">({_e(failed)})</span>' if failed else "")
                + "</td>",
                _num_cell(float(v.pending)),
                _num_cell(v.cost_total, fmt=lambda x: f"${x:.4f}"),
                _num_cell(v.latency_mean, fmt=lambda x: f"{x:.2f}s"),
                f'<td data-sort="{_e(verdict.verdict if verdict else "")}" '
                f'title="{_e(verdict.explanation if verdict else "")}">'
                f"{_e(verdict.verdict if verdict else '')}</td>",
            ]
            for m in r.shown_metric_names:
                spread = v.metrics[m]
                std = (
                    f' <span class="std">&plusmn;&nbsp;{_e(fmt_number(spread.std, 2))}</span>'
                    if spread.n > 1
                    else ""
                )
                tip = (
                    f"n={spread.n}, min={fmt_number(spread.min)}, max={fmt_number(spread.max)}"
                    + (f", {spread.missing} undefined" if spread.missing else "")
                    + (f", failed on {spread.errors} runs" if spread.errors else "")
                )
                if spread.errors:
                    std += f' <span class="bad">({spread.errors} failed)</span>'
                cells.append(_num_cell(spread.mean, extra=std, title=tip))
            rows.append(f"<tr>{''.join(cells)}</tr>")
        out = (
            '<section id="summary"><h2>Summary</h2>'
            '<p class="muted">Metric cells: mean &plusmn; standard deviation of each run\'s value '
            "over items and repeats (succeeded runs). Click a column to sort.</p>"
            f'<div class="scroll"><table class="sortable" id="summary-table"><thead><tr>{head_html}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        )
        if r.baseline:
            out += self.baseline_table()
        if r.seed_checks:
            out += self.seed_table()
        return out + "</section>"

    def baseline_table(self) -> str:
        r = self.report
        head = "".join(f"<th>{_e(m)}</th>" for m in r.shown_metric_names)
        rows = []
        for v in r.variants:
            if v.key == r.baseline:
                continue
            cells = [_text_cell(v.key)]
            for m in r.shown_metric_names:
                c = r.comparison(v.key, m)
                if c is None or c.difference is None:
                    cells.append('<td class="num" data-sort="">-</td>')
                    continue
                ratio = "" if c.ratio is None else f" <span class=std>&times;{c.ratio:.3f}</span>"
                sign = "+" if c.difference >= 0 else ""
                cells.append(
                    f'<td class="num" data-sort="{c.difference!r}">'
                    f"{sign}{_e(fmt_number(c.difference, 3))}{ratio}</td>"
                )
            rows.append(f"<tr>{''.join(cells)}</tr>")
        return (
            f"<h3>Against the baseline {_e(r.baseline)}</h3>"
            '<p class="muted">Difference of the means (variant &minus; baseline) and their '
            "ratio.</p>"
            f'<div class="scroll"><table class="sortable" id="baseline-table"><thead><tr>'
            f"<th>variant</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        )

    def seed_table(self) -> str:
        rows = []
        for c in self.report.seed_checks:
            status = (
                '<span class="good">match</span>'
                if c.matched
                else '<span class="bad">differ</span>'
            )
            if not c.independent:
                status += ' <span class="muted">(one cached call)</span>'
            hashes = ", ".join(sorted({h[:12] for h in c.sha256s}))
            rows.append(
                f"<tr><td>{_e(c.variant)}</td><td>{_e(c.item)}</td><td class=num>{c.seed}</td>"
                f"<td class=num>{len(c.run_ids)}</td><td>{status}</td>"
                f"<td><code>{_e(hashes)}</code></td></tr>"
            )
        return (
            "<h3>Seed check</h3>"
            '<p class="muted">Runs that sent the provider the same request (same item, same '
            "seed): does it return the same bytes?</p>"
            "<table><thead><tr><th>variant</th><th>item</th><th>seed</th><th>runs</th>"
            f"<th>outputs</th><th>sha256</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )

    def run_block(self, run: RunRecord) -> str:
        caption = f"repeat {run.repeat} &middot; seed {run.seed}"
        if run.status == "succeeded":
            src = self.video_src(run.canon_uri, run.canon_sha256)
            if src is None:
                where = "" if self.video_link else f": <code>{_e(run.canon_uri)}</code>"
                return (
                    f'<div class="run failed">{caption}<br>canonical video not found{where}</div>'
                )
            headline = [
                f"{m} {fmt_number(run.metric(m), 3)}"
                for m in ("ssim_ref", "ssim_prev", "sharpness")
                if run.metric(m) is not None
            ][:2]
            extra = f" &middot; {_e(' · '.join(headline))}" if headline else ""
            return (
                f'<div class="run" data-run="{run.run_id}"><video src="{_e(src)}" controls muted '
                f'loop playsinline preload="{self.preload}"></video>'
                f'<div class="caption">{caption}{extra}</div></div>'
            )
        if run.status in ("failed", "cancelled"):
            return (
                f'<div class="run failed" data-run="{run.run_id}">{caption} &middot; '
                f"<b class=bad>{_e(run.error_class or run.status)}</b> after {run.attempt} "
                f"attempt{'s' if run.attempt != 1 else ''}<pre>{_e(run.error_message or '')}</pre>"
                "</div>"
            )
        return f'<div class="run pending">{caption} &middot; {_e(run.status)}</div>'

    def reference_src(self, item_key: str, runs: Iterable[RunRecord]) -> str | None:
        for run in runs:
            if run.reference_uri:
                src = self.video_src(run.reference_uri, None, prefix="ref-")
                if src:
                    return src
        item = self.items_by_key.get(item_key)
        if item is not None and item.reference:
            return self.video_src(item.reference, None, prefix="ref-")
        return None

    def grid(self) -> str:
        r = self.report
        head = "<th>item</th>" + "".join(
            f'<th><span class="swatch" style="background:{self.colors[v.key]}"></span>'
            f"{_e(v.key)}</th>"
            for v in r.variants
        )
        rows = []
        for item in r.items:
            cells_runs = {v.key: r.cell(item.key, v.key) for v in r.variants}
            ref = self.reference_src(item.key, (x for rs in cells_runs.values() for x in rs))
            ref_html = (
                f'<div class="run"><video src="{_e(ref)}" controls muted loop playsinline '
                f'preload="{self.preload}"></video><div class="caption">reference</div></div>'
                if ref
                else ""
            )
            shown_image = Path(item.image).name if self.video_link and item.image else item.image
            image = (
                f'<div class="caption">image: <code>{_e(shown_image)}</code></div>'
                if item.image
                else ""
            )
            cells = [
                f'<td class="item"><b>{_e(item.key)}</b><div class="prompt">{_e(item.prompt)}</div>'
                f'{image}{ref_html}<button class="play-row" type="button">play / pause row'
                "</button></td>"
            ]
            for v in r.variants:
                blocks = "".join(self.run_block(run) for run in cells_runs[v.key])
                cells.append(f"<td>{blocks or '<span class=pending>no runs</span>'}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
        return (
            '<section id="grid"><h2>Videos</h2><p class="muted">Canonical videos, items &times; '
            "variants; one player per repeat.</p>"
            f'<div class="scroll"><table class="grid"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div></section>"
        )

    def frame_series(self, run: RunRecord) -> list[dict[str, Any]] | None:
        path = artifact_path(run.frames_uri, self.artifact_root)
        if path is None or not path.is_file():
            return None
        try:
            return load_frames(path)
        except (OSError, ValueError):
            return None  # an unreadable file is left out of the plots, not fatal

    def frames(self) -> str:
        r = self.report
        sections = []
        legend = (
            '<p class="legend">'
            + "".join(
                f'<span><span class="swatch" style="background:{self.colors[v.key]}"></span>'
                f"{_e(v.key)}</span>"
                for v in r.variants
            )
            + '<span class="muted">dashed: repeats after the first</span></p>'
        )
        for item in r.items[:MAX_PLOTTED_ITEMS]:
            per_run: list[tuple[RunRecord, list[dict[str, Any]]]] = []
            for v in r.variants:
                for run in r.cell(item.key, v.key):
                    if run.status == "succeeded":
                        frames = self.frame_series(run)
                        if frames:
                            per_run.append((run, frames))
            if not per_run:
                continue
            charts = []
            longest = max(len(frames) for _, frames in per_run)
            # Every n-th frame of long videos (the same n for all runs, so the
            # x positions line up): the page stays small, the curves keep their
            # shape, and frames.json still has every frame.
            stride = max(1, -(-longest // MAX_PLOT_POINTS))
            for metric in PLOTTED_FRAME_METRICS:
                series = [
                    Series(
                        label=f"{run.variant_key} repeat {run.repeat}",
                        color=self.colors[run.variant_key],
                        values=[_as_float(f.get(metric)) for f in frames[::stride]],
                        dashed=run.repeat > 0,
                    )
                    for run, frames in per_run
                ]
                if any(v is not None for s in series for v in s.values):
                    charts.append(line_chart(metric, series, last_frame=longest - 1))
            sections.append(f'<h3>{_e(item.key)}</h3><div class="charts">{"".join(charts)}</div>')
        body = "".join(sections) or '<p class="muted">No per-frame metrics available.</p>'
        if len(r.items) > MAX_PLOTTED_ITEMS:
            body += (
                f'<p class="muted">Plots for the first {MAX_PLOTTED_ITEMS} of {len(r.items)} '
                "items; every run's per-frame values are in its frames.json.</p>"
            )
        return f'<section id="frames"><h2>Per-frame metrics</h2>{legend}{body}</section>'

    def metric_errors(self) -> str:
        """Metrics that failed on succeeded runs (plugins), with the message from frames.json."""
        errors = self.report.metric_errors
        if not errors:
            return ""
        rows = "".join(
            f"<tr><td>{_e(run.item_key)}</td><td>{_e(run.variant_key)}</td>"
            f"<td class=num>{run.repeat}</td><td class=bad>{_e(metric)}</td>"
            f"<td><pre>{_e(self.metric_error_message(run, metric))}</pre></td></tr>"
            for run, metric in errors
        )
        return (
            f'<section id="metric-errors"><h2>Metric errors ({len(errors)})</h2>'
            '<p class="muted">Metrics that failed on runs that otherwise succeeded.</p>'
            '<table id="metric-errors-table"><thead><tr><th>item</th><th>variant</th>'
            "<th>repeat</th><th>metric</th><th>message</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>"
        )

    def metric_error_message(self, run: RunRecord, metric: str) -> str:
        path = artifact_path(run.frames_uri, self.artifact_root)
        try:
            doc = json.loads(path.read_text(encoding="utf-8")) if path else None
        except (OSError, ValueError):
            doc = None
        plugins = doc.get("metric_plugins") if isinstance(doc, dict) else None
        for name, info in (plugins or {}).items():
            if not isinstance(info, dict) or not info.get("error"):
                continue
            outputs = [*info.get("frame_outputs", []), *info.get("run_outputs", [])]
            if metric == name or metric in outputs:
                return str(info["error"])
        return "(no message: the run's frames.json is not readable)"

    def failures(self) -> str:
        failures = self.report.failures
        if not failures:
            return '<section id="failures"><h2>Failures</h2><p class="good">None.</p></section>'
        rows = "".join(
            f"<tr><td>{_e(f.item_key)}</td><td>{_e(f.variant_key)}</td><td class=num>{f.repeat}"
            f"</td><td class=num>{f.seed}</td><td class=bad>{_e(f.error_class or f.status)}</td>"
            f"<td class=num>{f.attempt}</td><td><pre>{_e(f.error_message or '')}</pre></td></tr>"
            for f in failures
        )
        return (
            f'<section id="failures"><h2>Failures ({len(failures)})</h2>'
            '<table id="failures-table"><thead><tr><th>item</th><th>variant</th><th>repeat</th>'
            "<th>seed</th><th>class</th><th>attempts</th><th>message</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>"
        )


def _as_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


#: The page's styles and its sorting/playback script, for pages that embed the report body.
REPORT_CSS = _CSS
REPORT_JS = _JS


def render_body(
    report: Report,
    *,
    out_dir: Path | None = None,
    artifact_root: Path | str | None = None,
    video_link: Callable[[str], str | None] | None = None,
) -> str:
    """The report's sections (header, summary, human ratings, videos, plots, failures).

    ``video_link`` maps an artifact URI to the URL a page shows for it (the
    web app links videos by artifact id); without it videos are placed under
    ``out_dir/videos`` or, with no ``out_dir``, linked as ``file://`` URIs.
    """
    page = _Page(report, out_dir, artifact_root, video_link)
    human = ""
    if report.judging is not None:
        from reelbench.report.human import judging_html

        human = judging_html(report.judging)
    return "".join(
        [
            page.header(),
            page.summary(),
            human,
            page.grid(),
            page.frames(),
            page.failures(),
            page.metric_errors(),
        ]
    )


def render_html(
    report: Report, *, out_dir: Path | None = None, artifact_root: Path | str | None = None
) -> str:
    """The page as a string; with ``out_dir`` its videos are placed under ``out_dir/videos``."""
    body = render_body(report, out_dir=out_dir, artifact_root=artifact_root)
    script_hash = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="script-src \'sha256-{script_hash}\'">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(report.experiment.name)} &middot; reelbench report</title>"
        f"<style>{_CSS}</style></head><body>{body}<script>{_JS}</script></body></html>\n"
    )


def write_html(report: Report, path: Path, *, artifact_root: Path | str | None = None) -> Path:
    """Write the page to ``path`` and its videos to ``path.parent/videos``; return ``path``.

    The page is written atomically (temporary name, then rename), so a browser
    never sees half a report.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(report, out_dir=path.parent, artifact_root=artifact_root)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
