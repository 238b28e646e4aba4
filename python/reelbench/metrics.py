"""Frame metrics: the Python face of the native kernels and accumulator.

The kernels (``ssim``, ``psnr``, ``mse``, ``mad``, ``luma_stats``,
``sharpness``, ``black_share``) take 2-D uint8 arrays, C-contiguous or
row-strided, and release the GIL. ``FrameMetrics`` accumulates per-frame
records and the whole-video summary one frame at a time, for the metric
groups it was made with (``frame``, ``temporal``, ``reference``, ``chroma``).
:func:`measure_videos` decodes files on threads and feeds them in.
Definitions and thresholds: docs/metrics.md.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reelbench._native import (
    METRIC_GROUPS,
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
from reelbench.video.frames import (
    NoVideoStreamError,
    VideoInfo,
    decode_frames,
    open_video,
    video_info,
)

__all__ = [
    "DEFAULT_GROUPS",
    "METRICS_VERSION",
    "METRIC_GROUPS",
    "FrameMetrics",
    "MeasuredVideo",
    "ReferenceMismatchError",
    "UnreadableVideoError",
    "black_share",
    "luma_stats",
    "mad",
    "measure_video",
    "measure_videos",
    "mse",
    "psnr",
    "sharpness",
    "ssim",
]


#: What FrameMetrics computes unless told otherwise: every Y-plane metric.
DEFAULT_GROUPS = ("frame", "temporal", "reference")

#: The version of the metric definitions (docs/metrics.md). Bumped whenever a
#: number could change for the same frames; recorded with every run's metrics,
#: and part of the key under which canonical outputs are reused.
METRICS_VERSION = 5


class ReferenceMismatchError(ReelbenchError, ValueError):
    """The reference video's frames do not have the measured video's size."""


@dataclass(frozen=True, slots=True)
class MeasuredVideo:
    """A video's metrics, with what the containers said about both inputs."""

    video: VideoInfo
    reference: VideoInfo | None
    metrics: FrameMetrics
    #: The metric plugins' results (a ``reelbench.metric_plugins.PluginRunner``), if any.
    plugins: Any = None

    def frames(self) -> list[dict[str, Any]]:
        """Per-frame records: the native metrics, then the plugins' per-frame outputs."""
        records = self.metrics.frames()
        if self.plugins is not None:
            self.plugins.add_to_frames(records)
        return records

    def summary(self) -> dict[str, Any]:
        """The native summary, then the plugins' outputs (``{"error": 1.0}`` where one failed)."""
        summary = self.metrics.summary()
        if self.plugins is not None:
            summary.update(self.plugins.summary())
        return summary

    def to_json(self) -> dict[str, Any]:
        """The ``reelbench metrics --json`` document (None for n/a and +inf)."""
        video = asdict(self.video) | {"frames": self.metrics.frame_count}
        doc = {
            "video": video,
            "reference": asdict(self.reference) if self.reference else None,
            "frames": self.frames(),
            "summary": self.summary(),
        }
        if self.plugins is not None:
            doc["metric_plugins"] = self.plugins.describe()
        return doc


#: Decoded frames a decoding thread may run ahead of the measuring thread.
_READ_AHEAD = 8
_END = object()


class UnreadableVideoError(ReelbenchError, ValueError):
    """An input that cannot be measured: missing, unreadable, or without video."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path, self.reason = path, reason


def _reason(path: str, exc: BaseException) -> str:
    if isinstance(exc, NoVideoStreamError):
        return "no video stream in this file"
    text = getattr(exc, "strerror", None) or str(exc).replace(f"'{path}'", "")
    return str(text).strip(": ")


class _Decoder(threading.Thread):
    """Opens and decodes one file on its own thread into a short queue.

    FFmpeg releases the GIL while it decodes, so files decode side by side
    while the native accumulators measure. The container is opened once:
    :attr:`info` (or :attr:`error`) is ready when :attr:`opened` is set.
    """

    def __init__(self, path: str | os.PathLike[str], chroma: bool, threads: int) -> None:
        super().__init__(name=f"decode-{os.fspath(path)}", daemon=True)
        self.path, self.chroma, self.threads = os.fspath(path), chroma, threads
        self.frames: queue.Queue[Any] = queue.Queue(_READ_AHEAD)
        self.opened = threading.Event()
        self.info: VideoInfo | None = None
        self.error: BaseException | None = None
        self._closed = threading.Event()

    def run(self) -> None:
        try:
            container = open_video(self.path)
            self.info = video_info(container, self.path)
        except BaseException as exc:
            self.error = exc
            return
        finally:
            self.opened.set()
        try:
            with container:
                for frame in decode_frames(container, chroma=self.chroma, threads=self.threads):
                    if not self._put(frame):
                        return
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)
            return
        self._put(_END)

    def opened_info(self) -> VideoInfo:
        """The input's description once open; UnreadableVideoError if it could not be."""
        self.opened.wait()
        if self.info is None:
            error = self.error or RuntimeError("decoder did not start")
            raise UnreadableVideoError(self.path, _reason(self.path, error)) from error
        return self.info

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.frames.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop decoding (the reader is done early or failed)."""
        self._closed.set()
        self.join(timeout=5)


def measure_videos(
    paths: Sequence[str | os.PathLike[str]],
    reference: str | os.PathLike[str] | None = None,
    *,
    groups: Sequence[str] | None = None,
    on_frame: Callable[[int, int | None], None] | None = None,
    plugins: Sequence[str] = (),
    prompt: str = "",
    runners: Sequence[Any] | None = None,
    dynamic_threshold: float | None = None,
) -> list[MeasuredVideo]:
    """Measure each of ``paths``, against one ``reference`` decoded once for all.

    Every file is opened once and decoded on its own thread while the native
    accumulators measure (GIL released), so two videos take about the time of
    the slower decode on two cores. Frames pair with the reference by
    position; once the reference ends, the remaining frames are measured
    without it. ``groups``: the metric groups (default :data:`DEFAULT_GROUPS`).
    Raises UnreadableVideoError for an input that is missing, unreadable or
    has no video, ReferenceMismatchError when a video and the reference
    differ in size. ``on_frame(done, total)`` is called after each frame
    index, with the longest declared frame count (None when unknown).
    ``plugins``: metric plugins (docs/metrics.md, "Plugins") fed the same
    frames, told ``prompt``; one that fails fails only its own outputs.
    ``runners``: ready (unstarted) plugin runners, one per path, instead of
    ``plugins`` (a run's remeasure gives them the run's prompt and image).
    ``dynamic_threshold``: the motion group's threshold (default: the native one).
    """
    chosen = list(groups) if groups is not None else list(DEFAULT_GROUPS)
    options: dict[str, Any] = {}
    if dynamic_threshold is not None and "motion" in chosen:
        options["dynamic_threshold"] = dynamic_threshold
    accumulators = [FrameMetrics(groups=chosen, **options) for _ in paths]
    chroma = "chroma" in chosen and reference is not None
    # Each decoder gets its share of the cores: frame threading costs CPU
    # time in hand-offs, which pays only when cores would otherwise idle.
    files = len(paths) + (reference is not None)
    threads = max(1, (os.cpu_count() or 1) // files) if files > 1 else 0
    decoders = [_Decoder(p, chroma, threads) for p in paths]
    ref_decoder = _Decoder(reference, chroma, threads) if reference is not None else None
    every = [*decoders, *([ref_decoder] if ref_decoder else [])]
    for decoder in every:
        decoder.start()
    try:
        infos = [d.opened_info() for d in decoders]
        ref_info = ref_decoder.opened_info() if ref_decoder else None
        for info in infos:
            if ref_info is not None and (ref_info.width, ref_info.height) != (
                info.width,
                info.height,
            ):
                raise ReferenceMismatchError(
                    f"{ref_info.path}: reference is {ref_info.width}x{ref_info.height}, "
                    f"but {info.path} is {info.width}x{info.height}; "
                    "the reference must have the same size"
                )
        if runners is not None:
            for runner in runners:
                runner.start()
            runners = list(runners)
        else:
            runners = _plugin_runners(plugins, infos, prompt) if plugins else None
        total = max((i.frames or 0) for i in infos) or None
        streams: list[Iterator[Any] | None] = [iter(d) for d in decoders]
        ref_stream: Iterator[Any] | None = iter(ref_decoder) if ref_decoder else None
        n = 0
        while any(s is not None for s in streams):
            ref_frame = next(ref_stream, None) if ref_stream is not None else None
            if ref_frame is None:
                ref_stream = None
            pushed = False
            for i, stream in enumerate(streams):
                if stream is None:
                    continue
                frame = next(stream, None)
                if frame is None:
                    streams[i] = None
                    continue
                accumulators[i].push_frame(frame, ref_frame)
                if runners is not None:
                    runners[i].push(frame)
                pushed = True
            if pushed:
                n += 1
                if on_frame is not None:
                    on_frame(n, total)
    finally:
        for decoder in every:
            decoder.close()
    if runners is not None:
        for runner in runners:
            runner.finish()
    return [
        MeasuredVideo(
            video=info, reference=ref_info, metrics=fm, plugins=runners[i] if runners else None
        )
        for i, (info, fm) in enumerate(zip(infos, accumulators, strict=True))
    ]


def _plugin_runners(names: Sequence[str], infos: Sequence[VideoInfo], prompt: str) -> list[Any]:
    """One started PluginRunner per video (imported here: it needs numpy)."""
    from reelbench.metric_plugins import PluginRun, PluginRunner

    runners = []
    for info in infos:
        run = PluginRun(
            run_id=0, item_id=info.path, variant_key="", prompt=prompt, image=None,
            width=info.width, height=info.height, fps=round(info.fps or 0),
        )  # fmt: skip
        runner = PluginRunner(names, run)
        runner.start()
        runners.append(runner)
    return runners


def measure_video(
    path: str | os.PathLike[str],
    reference: str | os.PathLike[str] | None = None,
    *,
    groups: Sequence[str] | None = None,
    on_frame: Callable[[int, int | None], None] | None = None,
    plugins: Sequence[str] = (),
    prompt: str = "",
) -> MeasuredVideo:
    """Measure one video (see :func:`measure_videos`)."""
    return measure_videos(
        [path], reference, groups=groups, on_frame=on_frame, plugins=plugins, prompt=prompt
    )[0]
