"""Frame metrics: the Python face of the native kernels and accumulator.

The kernels (``ssim``, ``psnr``, ``mse``, ``mad``, ``luma_stats``,
``sharpness``, ``black_share``) take 2-D uint8 arrays, C-contiguous or
row-strided, and release the GIL. ``FrameMetrics`` accumulates per-frame
records and the whole-video summary one frame at a time. Definitions and
thresholds: docs/metrics.md.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reelbench._native import (
    FrameMetrics,
    black_share,
    luma_stats,
    mad,
    mse,
    psnr,
    sharpness,
    ssim,
)
from reelbench.errors import ReelbenchError
from reelbench.video.frames import VideoInfo, iter_y_planes, probe

__all__ = [
    "FrameMetrics",
    "MeasuredVideo",
    "ReferenceMismatchError",
    "black_share",
    "luma_stats",
    "mad",
    "measure_video",
    "mse",
    "psnr",
    "sharpness",
    "ssim",
]


class ReferenceMismatchError(ReelbenchError, ValueError):
    """The reference video's frames do not have the measured video's size."""


@dataclass(frozen=True, slots=True)
class MeasuredVideo:
    """A video's metrics, with what the containers said about both inputs."""

    video: VideoInfo
    reference: VideoInfo | None
    metrics: FrameMetrics

    def to_json(self) -> dict[str, Any]:
        """The ``reelbench metrics --json`` document (None for n/a and +inf)."""
        video = asdict(self.video) | {"frames": self.metrics.frame_count}
        return {
            "video": video,
            "reference": asdict(self.reference) if self.reference else None,
            "frames": self.metrics.frames(),
            "summary": self.metrics.summary(),
        }


def _no_planes() -> Generator[NDArray[np.uint8], None, None]:
    """An empty plane generator (no reference)."""
    yield from ()


def measure_video(
    path: str | os.PathLike[str],
    reference: str | os.PathLike[str] | None = None,
    *,
    metrics: FrameMetrics | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> MeasuredVideo:
    """Decode ``path`` (and ``reference``) and push every Y plane into FrameMetrics.

    Frames are paired with the reference by position; once either video ends
    the remaining frames of ``path`` are measured without reference. Raises
    ReferenceMismatchError when the two videos differ in size, and the
    errors of `probe` for unreadable inputs. ``on_frame(n)`` is called after
    each frame (for progress display).
    """
    info = probe(path)
    ref_info = probe(reference) if reference is not None else None
    if ref_info is not None and (ref_info.width, ref_info.height) != (info.width, info.height):
        raise ReferenceMismatchError(
            f"{ref_info.path}: reference is {ref_info.width}x{ref_info.height}, "
            f"but {info.path} is {info.width}x{info.height}; "
            "the reference must have the same size"
        )
    fm = metrics if metrics is not None else FrameMetrics()
    planes = iter_y_planes(path)
    ref_planes = iter_y_planes(reference) if reference is not None else _no_planes()
    # Close both decoders as soon as we are done, even when one video is longer.
    with contextlib.closing(planes), contextlib.closing(ref_planes):
        for n, (y, ref) in enumerate(itertools.zip_longest(planes, ref_planes), 1):
            if y is None:
                break
            fm.push(y, ref)
            if on_frame is not None:
                on_frame(n)
    return MeasuredVideo(video=info, reference=ref_info, metrics=fm)
