"""The ``reelbench`` command line.

Every command that touches the database takes ``--db`` (env
``REELBENCH_DATABASE_URL``) and ``--artifacts`` (env ``REELBENCH_ARTIFACTS``);
commands that print data take ``--json``. Exit codes: 0 success, 1 failures
(some runs failed, a worker error), 2 bad input (bad spec, missing file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from reelbench import __version__
from reelbench.db.engine import DEFAULT_DATABASE_URL
from reelbench.storage import DEFAULT_ARTIFACT_ROOT

F = TypeVar("F", bound=Callable[..., Any])


def db_option(func: F) -> F:
    """``--db URL``: where the runs live."""
    return click.option(
        "--db",
        "db_url",
        envvar="REELBENCH_DATABASE_URL",
        default=DEFAULT_DATABASE_URL,
        show_default=True,
        metavar="URL",
        help="Database URL: sqlite:///path.db or postgresql+psycopg://user@host/db "
        "(env REELBENCH_DATABASE_URL).",
    )(func)


def artifacts_option(func: F) -> F:
    """``--artifacts DIR``: where videos and per-frame metrics are written."""
    return click.option(
        "--artifacts",
        "artifacts_dir",
        envvar="REELBENCH_ARTIFACTS",
        default=str(DEFAULT_ARTIFACT_ROOT),
        show_default=True,
        metavar="DIR",
        type=click.Path(file_okay=False),
        help="Artifact root directory (env REELBENCH_ARTIFACTS).",
    )(func)


def no_cache_option(func: F) -> F:
    """``--no-cache``: pay for every generation, even one made before."""
    return click.option(
        "--no-cache", is_flag=True, help="Call providers even when a cached result exists."
    )(func)


def json_option(func: F) -> F:
    """``--json``: machine-readable output on stdout."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document instead of a table."
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reelbench")
def main() -> None:
    """reelbench: run video-generation experiments and measure the videos.

    \b
    Typical use:
      reelbench run experiment.toml          submit, work and report in one go
      reelbench submit experiment.toml       queue the runs (for a fleet)
      reelbench worker --concurrency 4       work queued runs
      reelbench status                       counts per state, rate, ETA
      reelbench report NAME --format html    compare the variants
      reelbench metrics video.mp4            frame metrics of any video
    """


class _MetricsInputError(click.ClickException):
    """A bad input file for ``reelbench metrics``: one line on stderr, exit code 2."""

    exit_code = 2


def _fmt(value: float | int | None, digits: int = 6) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


@main.command("metrics")
@click.argument("video", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--reference",
    "-r",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="A reference video of the same size: adds ssim_ref, psnr_ref and mse_ref "
    "(frames are paired by position).",
)
@json_option
def metrics_command(video: str, reference: str | None, as_json: bool) -> None:
    """Frame metrics of VIDEO, decoded with PyAV (Y plane, native code).

    Per frame: luma mean/std, sharpness, black share, and against the previous
    frame mad/ssim/psnr; with --reference also ssim/psnr/mse against it. The
    summary gives mean, min, max and percentiles per metric, temporal flicker,
    frozen and black ratios, scene cuts and pooled PSNR. With --json, one JSON
    object (null where a value does not apply or PSNR is infinite).
    """
    import json
    import sys

    import av
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from reelbench.metrics import MeasuredVideo, ReferenceMismatchError, measure_video
    from reelbench.video.frames import NoVideoStreamError, probe

    def bad_input(path: str, exc: BaseException) -> _MetricsInputError:
        reason = getattr(exc, "strerror", None) or str(exc).replace(f"'{path}'", "").strip(": ")
        return _MetricsInputError(f"cannot read {path}: {reason}")

    for path in [video] + ([reference] if reference else []):
        try:
            probe(path)
        except NoVideoStreamError as exc:
            raise _MetricsInputError(f"{path}: no video stream in this file") from exc
        except (OSError, av.error.FFmpegError) as exc:
            raise bad_input(path, exc) from exc

    stderr = Console(stderr=True)
    measured: MeasuredVideo
    try:
        if stderr.is_terminal:
            # Progress goes to stderr, and only to a terminal: stdout stays clean for --json.
            with Progress(console=stderr, transient=True) as progress:
                task = progress.add_task(f"measuring {video}", total=probe(video).frames)
                measured = measure_video(
                    video, reference, on_frame=lambda n: progress.update(task, completed=n)
                )
        else:
            measured = measure_video(video, reference)
    except ReferenceMismatchError as exc:
        raise _MetricsInputError(str(exc)) from exc
    except ValueError as exc:
        # A size change inside a stream: the native accumulator names both shapes.
        raise _MetricsInputError(f"{video}: {exc}") from exc
    except av.error.FFmpegError as exc:
        raise click.ClickException(f"decoding failed: {exc}") from exc

    doc = measured.to_json()
    if as_json:
        click.echo(json.dumps(doc, allow_nan=False))
        return

    info = doc["video"]
    # Tables in pipes and files keep every column readable.
    out = Console() if Console().is_terminal else Console(width=120)
    fps = f"{info['fps']:.3f} fps" if info["fps"] else "unknown fps"
    title = f"{video}: {info['width']}x{info['height']}, {fps}, {info['frames']} frames"
    if reference:
        title += f"\nreference: {reference}"
    table = Table(title=title, title_justify="left")
    table.add_column("metric", no_wrap=True)
    for col in ("mean", "min", "p05", "p50", "p95", "max"):
        table.add_column(col, justify="right")
    summary: dict[str, Any] = doc["summary"]
    for name, stats in summary.items():
        if isinstance(stats, dict):
            table.add_row(
                name, *(_fmt(stats[c]) for c in ("mean", "min", "p05", "p50", "p95", "max"))
            )
    out.print(table)
    for key in (
        "temporal_flicker",
        "frozen_ratio",
        "black_ratio",
        "scene_cuts",
        "psnr_prev_pooled",
        "psnr_ref_pooled",
    ):
        value = summary[key]
        if value is None and key.endswith("_pooled") and key.removesuffix("_pooled") in summary:
            shown = "inf (identical frames)"
        else:
            shown = _fmt(value)
        out.print(f"{key:>17}: {shown}")
    sys.stdout.flush()


# The queue commands (submit, worker, status, retry, cancel, db upgrade) live in
# their own module; importing it registers them on `main`.
from reelbench import cli_queue as _cli_queue  # noqa: E402, F401
from reelbench import cli_report as _cli_report  # noqa: E402, F401
