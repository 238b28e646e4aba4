"""``reelbench metrics``: frame metrics of any video file, no database needed."""

from __future__ import annotations

from typing import Any

import click

from reelbench.cli.options import BadInput, json_option

__all__ = ["metrics_command"]


def _fmt(value: float | int | None, digits: int = 6) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


@click.command("metrics")
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

    def bad_input(path: str, exc: BaseException) -> BadInput:
        reason = getattr(exc, "strerror", None) or str(exc).replace(f"'{path}'", "").strip(": ")
        return BadInput(f"cannot read {path}: {reason}")

    for path in [video] + ([reference] if reference else []):
        try:
            probe(path)
        except NoVideoStreamError as exc:
            raise BadInput(f"{path}: no video stream in this file") from exc
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
        raise BadInput(str(exc)) from exc
    except ValueError as exc:
        # A size change inside a stream: the native accumulator names both shapes.
        raise BadInput(f"{video}: {exc}") from exc
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
