"""Frame access with PyAV: zero-copy views of decoded Y planes, and a probe.

The Y plane of an 8-bit YUV (or gray) frame is handed to the native metrics
as a numpy view of PyAV's buffer, rows ``line_size`` bytes apart, without a
copy. Other pixel formats are converted to 8-bit YUV first.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from numpy.typing import NDArray

from reelbench.errors import ReelbenchError

__all__ = ["NoVideoStreamError", "VideoInfo", "iter_y_planes", "probe", "y_plane"]

# Pixel formats whose first plane is 8-bit luma, one byte per pixel.
_Y8_FORMATS = frozenset(
    {
        "gray",
        "yuv410p",
        "yuv411p",
        "yuv420p",
        "yuv422p",
        "yuv440p",
        "yuv444p",
        "yuvj411p",
        "yuvj420p",
        "yuvj422p",
        "yuvj440p",
        "yuvj444p",
        "yuva420p",
        "yuva422p",
        "yuva444p",
        "nv12",
        "nv21",
        "nv16",
        "nv24",
    }
)


class NoVideoStreamError(ReelbenchError, ValueError):
    """The file opened, but holds no video stream."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the container says about its first video stream."""

    path: str
    width: int
    height: int
    fps: float | None
    frames: int | None


def y_plane(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """The frame's 8-bit luma as a ``(height, width)`` uint8 array.

    For 8-bit YUV and gray frames this is a zero-copy, row-strided view of
    PyAV's plane (it keeps the frame alive); other formats are converted to
    ``yuv420p`` first (BT.601, as FFmpeg's default conversion).
    """
    if frame.format.name not in _Y8_FORMATS:
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    rows: NDArray[np.uint8] = np.frombuffer(
        memoryview(plane), np.uint8, count=plane.line_size * plane.height
    ).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    container = av.open(os.fspath(path))
    if not container.streams.video:
        container.close()
        raise NoVideoStreamError(f"{os.fspath(path)}: no video stream in this file")
    return container


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Width, height, frame rate and (when the container declares it) frame count.

    Raises FileNotFoundError for a missing file, ``av.error.FFmpegError`` for
    a file FFmpeg cannot read, NoVideoStreamError for a file without video.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        rate: Fraction | None = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            path=os.fspath(path),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else None,
            frames=stream.frames or None,
        )


def iter_y_planes(path: str | os.PathLike[str]) -> Generator[NDArray[np.uint8], None, None]:
    """Decode the first video stream and yield each frame's Y plane (see `y_plane`)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        # Frame threading decodes ahead on other cores while we measure.
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield y_plane(frame)
