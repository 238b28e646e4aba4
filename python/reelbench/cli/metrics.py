"""``reelbench metrics``: frame metrics of any video files, no database needed.

Kept light: no SQLAlchemy, no numpy; rich is imported only to draw a table
or a progress bar on a terminal.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any

import click

from reelbench.cli.options import BadInput
from reelbench.cli.quick_exit import exit_quickly

if TYPE_CHECKING:
    from reelbench.metrics import MeasuredVideo

__all__ = ["metrics_command"]

_GROUPS = ("frame", "temporal", "reference", "chroma", "motion")
_DEFAULT = ("frame", "temporal", "reference")
_SCALARS = (
    "temporal_flicker",
    "frozen_ratio",
    "black_ratio",
    "scene_cuts",
    "psnr_prev_pooled",
    "psnr_ref_pooled",
    "psnr_avg_pooled",
    "dynamic_degree",
)


def _fmt(value: float | int | None, digits: int = 6) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def _groups(values: tuple[str, ...]) -> list[str]:
    """``--metrics`` values (repeatable, comma-separated) -> group names."""
    chosen: list[str] = []
    for value in values:
        for name in filter(None, (v.strip().lower() for v in value.split(","))):
            if name == "default":
                names: tuple[str, ...] = _DEFAULT
            elif name == "all":
                names = _GROUPS
            elif name in _GROUPS:
                names = (name,)
            else:
                raise BadInput(
                    f"--metrics {name!r}: choose from {', '.join(_GROUPS)}, default or all"
                )
            chosen += [n for n in names if n not in chosen]
    return chosen or list(_DEFAULT)


def _write_csv(results: list[MeasuredVideo], out: IO[str]) -> None:
    import csv

    columns = ["index", *_frame_columns(results)]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["video", *columns])
    for measured in results:
        for frame in measured.frames():
            row = [measured.video.path]
            for col in columns:
                value = frame.get(col)
                row.append("" if value is None else repr(value))
            writer.writerow(row)


def _frame_columns(results: list[MeasuredVideo]) -> list[str]:
    # A plugin that measures every n-th frame has no key on the others.
    columns: dict[str, None] = {}
    for measured in results:
        for frame in measured.frames():
            columns.update(dict.fromkeys(k for k in frame if k != "index"))
    return list(columns)


def _print_summaries(results: list[MeasuredVideo], file: IO[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(file=file) if file is not None else Console()
    if not out.is_terminal:
        # Tables in pipes and files keep every column readable.
        out = Console(file=file, width=120)
    for measured in results:
        doc = measured.to_json()
        info = doc["video"]
        fps = f"{info['fps']:.3f} fps" if info["fps"] else "unknown fps"
        title = f"{info['path']}: {info['width']}x{info['height']}, {fps}, {info['frames']} frames"
        if doc["reference"]:
            title += f"\nreference: {doc['reference']['path']}"
        table = Table(title=title, title_justify="left")
        table.add_column("metric", no_wrap=True)
        for col in ("mean", "min", "p05", "p50", "p95", "max"):
            table.add_column(col, justify="right")
        summary: dict[str, Any] = doc["summary"]
        failed: list[str] = []
        for name, stats in summary.items():
            if isinstance(stats, dict) and "error" in stats:
                failed.append(name)
            elif isinstance(stats, dict):
                table.add_row(
                    name, *(_fmt(stats[c]) for c in ("mean", "min", "p05", "p50", "p95", "max"))
                )
        out.print(table)
        for plugin, info in (doc.get("metric_plugins") or {}).items():
            if info["error"]:
                out.print(f"metric plugin {plugin} failed ({', '.join(failed)}): {info['error']}",
                          style="red", markup=False, highlight=False)  # fmt: skip
        extra = [k for k, v in summary.items() if not isinstance(v, dict) and k not in _SCALARS]
        for key in _SCALARS:
            if key not in summary:
                continue
            value = summary[key]
            base = key.removesuffix("_pooled")
            if value is None and key.endswith("_pooled") and base in summary:
                shown = "inf (identical frames)"
            else:
                shown = _fmt(value)
            out.print(f"{key:>17}: {shown}")
        for key in extra:  # metric plugins' per-run outputs
            out.print(f"{key:>17}: {_fmt(summary[key])}", markup=False, highlight=False)


@click.command("metrics")
@click.argument("videos", metavar="VIDEO...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=str))  # fmt: skip
@click.option(
    "--reference", "-r", type=click.Path(dir_okay=False, path_type=str), default=None,
    help="A reference video of the same size: adds ssim_ref, psnr_ref and mse_ref "
    "(frames are paired by position). Decoded once for all VIDEOs.",
)  # fmt: skip
@click.option(
    "--metrics", "-m", "metric_groups", metavar="GROUPS", multiple=True,
    help="Metric groups, comma-separated or repeated: frame (luma mean/std, sharpness, "
    "black), temporal (against the previous frame), reference (Y against --reference), "
    "chroma (SSIM/PSNR of U, V and all planes against --reference, as FFmpeg's ssim and "
    "psnr filters print them; implies reference), motion (optical flow motion_mean/p95, "
    "warp_error, si/ti as FFmpeg's siti filter, dynamic_degree; slower), default "
    "(frame,temporal,reference), all.  [default: default]",
)  # fmt: skip
@click.option(
    "--plugin", "-p", "plugins", metavar="NAME", multiple=True,
    help="A metric plugin (entry point in 'reelbench.metrics') fed the same frames; "
    "repeatable. A plugin that fails is reported, the other metrics are kept.",
)  # fmt: skip
@click.option(
    "--prompt", default="", metavar="TEXT",
    help="The prompt plugins are told (for text-video metrics).",
)  # fmt: skip
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
    show_default=True,
    help="table: summary per video; json: per-frame values and summary; csv: one row "
    "per video and frame.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--output", "-o", metavar="FILE", type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Write the output here; with json or csv the summary table still goes to the "
    "terminal.",
)  # fmt: skip
@click.option(
    "--progress/--no-progress", default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)  # fmt: skip
def metrics_command(
    videos: tuple[str, ...],
    reference: str | None,
    metric_groups: tuple[str, ...],
    fmt: str,
    as_json: bool,
    output: str | None,
    progress: bool | None,
    plugins: tuple[str, ...],
    prompt: str,
) -> None:
    """Frame metrics of VIDEO, decoded with PyAV (Y plane, native code).

    Per frame: luma mean/std, sharpness, black share, and against the previous
    frame mad/ssim/psnr; with --reference also ssim/psnr/mse against it, and
    with --metrics chroma the U, V and combined SSIM/PSNR as FFmpeg's filters
    print them; with --metrics motion the optical-flow motion, warp error,
    SI/TI and dynamic degree (docs/metrics.md); with --plugin the numbers of
    installed metric plugins. The summary gives mean, min,
    max and percentiles per metric, temporal flicker, frozen and black ratios,
    scene cuts and pooled PSNR.

    Several VIDEOs are measured in one call against one --reference, which is
    decoded once; every file decodes on its own thread. With --json (or
    --format json): one JSON object per video (an array when there are
    several), null where a value does not apply or PSNR is infinite.
    """
    import json

    import av

    from reelbench.metrics import (
        ReferenceMismatchError,
        UnreadableVideoError,
        measure_videos,
    )

    if as_json:
        fmt = "json"
    groups = _groups(metric_groups)
    if "chroma" in groups and reference is None:
        raise BadInput("--metrics chroma compares with a reference: pass --reference REF")
    paths = list(videos)

    show_progress = sys.stderr.isatty() if progress is None else progress
    try:
        if plugins:
            _check_plugins(plugins)
        if show_progress:
            results = _measure_with_progress(paths, reference, groups, plugins, prompt)
        else:
            results = measure_videos(
                paths, reference, groups=groups, plugins=plugins, prompt=prompt
            )
    except UnreadableVideoError as exc:
        if exc.reason == "no video stream in this file":
            raise BadInput(f"{exc.path}: {exc.reason}") from exc
        raise BadInput(str(exc)) from exc
    except ReferenceMismatchError as exc:
        raise BadInput(str(exc)) from exc
    except ValueError as exc:
        # A size change inside a stream: the native accumulator names both shapes.
        raise BadInput(f"{', '.join(paths)}: {exc}") from exc
    except av.error.FFmpegError as exc:
        raise click.ClickException(f"decoding failed: {exc}") from exc

    target: IO[str] = sys.stdout
    handle = None
    if output is not None:
        handle = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115
        target = handle
    try:
        if fmt == "json":
            docs = [r.to_json() for r in results]
            target.write(json.dumps(docs[0] if len(docs) == 1 else docs, allow_nan=False))
            target.write("\n")
        elif fmt == "csv":
            _write_csv(results, target)
        else:
            _print_summaries(results, handle)
    finally:
        if handle is not None:
            handle.close()
    if output is not None and fmt != "table":
        _print_summaries(results)
    sys.stdout.flush()
    if not plugins:
        # Everything is written; a plugin's own clean-up (if any) still runs.
        exit_quickly()


def _check_plugins(names: tuple[str, ...]) -> None:
    """Every --plugin is installed (a typo is bad input, not a failed metric)."""
    from reelbench.metric_plugins import ENTRY_POINT_GROUP, available_plugins

    installed = available_plugins()
    missing = [n for n in names if n not in installed]
    if missing:
        raise BadInput(
            f"--plugin {', '.join(missing)}: not installed (installed: "
            f"{', '.join(installed) or 'none'}); install the package that provides it "
            f"(a {ENTRY_POINT_GROUP!r} entry point)"
        )


def _measure_with_progress(
    paths: list[str],
    reference: str | None,
    groups: list[str],
    plugins: tuple[str, ...] = (),
    prompt: str = "",
) -> list[MeasuredVideo]:
    from rich.console import Console
    from rich.progress import Progress

    from reelbench.metrics import measure_videos

    label = paths[0] if len(paths) == 1 else f"{len(paths)} videos"
    # Progress goes to stderr: stdout stays clean for --json and csv.
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"measuring {label}", total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        return measure_videos(
            paths, reference, groups=groups, on_frame=advance, plugins=plugins, prompt=prompt
        )
