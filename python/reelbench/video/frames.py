"""Frame access with PyAV: decoded frames ready for the native metrics, and a probe.

The native metrics read a decoded frame's planes in place (buffer protocol,
rows ``line_size`` bytes apart), without a copy: :func:`metrics_frame` only
converts frames whose layout they cannot read (10-bit, RGB, semi-planar
chroma when U and V are wanted) to 8-bit ``yuv420p``. :func:`y_plane` gives
the same Y plane as a numpy view, for callers that want an array.

numpy is imported only by :func:`y_plane`: ``reelbench metrics`` runs without it.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av

from reelbench.errors import ReelbenchError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "NoVideoStreamError",
    "VideoInfo",
    "decode_frames",
    "iter_frames",
    "iter_y_planes",
    "metrics_frame",
    "open_input",
    "open_video",
    "probe",
    "video_info",
    "y_plane",
]

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


# Planar 8-bit YUV: planes 1 and 2 are U and V, each its own plane.
_PLANAR_YUV8 = frozenset(
    {
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


def metrics_frame(frame: av.VideoFrame, *, chroma: bool = False) -> av.VideoFrame:
    """``frame`` in a layout the native metrics read in place (converted only if needed).

    Y only: any 8-bit format whose first plane is luma. With ``chroma``: planar
    8-bit YUV (U and V as planes 1 and 2); anything else becomes ``yuv420p``
    (BT.601, as FFmpeg's default conversion).
    """
    formats = _PLANAR_YUV8 if chroma else _Y8_FORMATS
    if frame.format.name in formats:
        return frame
    return frame.reformat(format="yuv420p")


def y_plane(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """The frame's 8-bit luma as a ``(height, width)`` uint8 array.

    For 8-bit YUV and gray frames this is a zero-copy, row-strided view of
    PyAV's plane (it keeps the frame alive); other formats are converted to
    ``yuv420p`` first (BT.601, as FFmpeg's default conversion).
    """
    import numpy as np

    frame = metrics_frame(frame)
    plane = frame.planes[0]
    rows: NDArray[np.uint8] = np.frombuffer(
        memoryview(plane), np.uint8, count=plane.line_size * plane.height
    ).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


#: Options for opening a file to decode it. FFmpeg's stream probe
#: (``avformat_find_stream_info``) decodes a stream's first frames only to learn
#: what most containers already state (size, rate); told to skip video frames,
#: it does not decode them. For an intra frame of a high-quality 1080p file
#: that is about 0.1 s saved, spent again when the frame is decoded for real.
_PROBE_WITHOUT_DECODING = {"skip_frame": "all"}


def open_input(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """``av.open(path)`` for reading, without decoding video frames to probe.

    Falls back to FFmpeg's usual probe when the container does not state the
    first video stream's size. Raises what ``av.open`` raises.
    """
    name = os.fspath(path)
    container = av.open(name, options=_PROBE_WITHOUT_DECODING)
    streams = container.streams.video
    if streams and not streams[0].codec_context.width:
        # A container that does not state the size: probe it the usual way.
        container.close()
        container = av.open(name)
    return container


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    name = os.fspath(path)
    container = open_input(name)
    if not container.streams.video:
        container.close()
        raise NoVideoStreamError(f"{name}: no video stream in this file")
    return container


def open_video(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open ``path`` for decoding its first video stream (close it when done).

    Raises FileNotFoundError for a missing file, ``av.error.FFmpegError`` for
    a file FFmpeg cannot read, NoVideoStreamError for a file without video.
    """
    return _open(path)


def video_info(container: av.container.InputContainer, path: str | os.PathLike[str]) -> VideoInfo:
    """What an open container says about its first video stream."""
    stream = container.streams.video[0]
    rate: Fraction | None = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        path=os.fspath(path),
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=float(rate) if rate else None,
        frames=stream.frames or None,
    )


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Width, height, frame rate and (when the container declares it) frame count.

    Raises FileNotFoundError for a missing file, ``av.error.FFmpegError`` for
    a file FFmpeg cannot read, NoVideoStreamError for a file without video.
    """
    with _open(path) as container:
        return video_info(container, path)


def decode_frames(
    container: av.container.InputContainer, *, chroma: bool = False, threads: int = 0
) -> Generator[av.VideoFrame, None, None]:
    """Decode an open container's first video stream, frames as :func:`metrics_frame` gives.

    ``threads``: decoder threads (0: FFmpeg's choice, frame threading that
    decodes ahead on other cores; 1: none, cheapest in CPU time when several
    files decode at once and already keep every core busy).
    """
    stream = container.streams.video[0]
    if threads == 1:
        stream.thread_type = "NONE"
    else:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
    for frame in container.decode(stream):
        yield metrics_frame(frame, chroma=chroma)


def iter_frames(
    path: str | os.PathLike[str], *, chroma: bool = False, threads: int = 0
) -> Generator[av.VideoFrame, None, None]:
    """Decode the first video stream of ``path`` (see :func:`decode_frames`)."""
    with _open(path) as container:
        yield from decode_frames(container, chroma=chroma, threads=threads)


def iter_y_planes(path: str | os.PathLike[str]) -> Generator[NDArray[np.uint8], None, None]:
    """Decode the first video stream and yield each frame's Y plane (see `y_plane`)."""
    for frame in iter_frames(path):
        yield y_plane(frame)
