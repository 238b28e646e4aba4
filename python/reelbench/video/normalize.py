"""Normalization: any decodable video -> the canonical MP4, metrics on the way.

One decode feeds everything. Each decoded frame goes through a filter graph
(rotation from the display matrix, ``fps`` to a constant rate, ``scale``
keeping the aspect ratio, ``pad``/``crop`` to the canonical size, ``format``
to 8-bit yuv420p); every canonical frame is then both encoded (libx264, CRF,
preset, ``+faststart``) and handed, as its Y plane, to a metrics sink.

Inputs that have no decodable video frame (zero bytes, not a container,
audio only, cut before the first frame) raise :class:`TerminalError` naming
the file and what was wrong; the caller keeps the raw file for inspection.

Reference videos go through the same graph (without encoding) and are
compared frame by frame: canonical frame ``i`` against reference frame ``i``.
When the reference is shorter, the frames after its end get no reference
(``ssim_ref`` etc. are null there and left out of the summary); when it is
longer, its extra frames are ignored. The canonical reference frames can be
kept as a lossless copy (``reference_copy``: H.264 with QP 0, exact for
8-bit 4:2:0), which later normalizations read instead
(``reference_canonical``): no second scaling of the same reference.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import av.error
import av.filter

from reelbench.errors import LeaseLost, TerminalError
from reelbench.video.canonical import CanonicalFormat
from reelbench.video.frames import open_input

__all__ = [
    "FrameSink",
    "LosslessCopy",
    "NormalizeResult",
    "UnusableVideo",
    "canonical_frames",
    "filter_chain",
    "normalize_video",
]


class FrameSink(Protocol):
    """Where canonical frames go (``reelbench.metrics.FrameMetrics`` fits)."""

    def push_frame(self, frame: Any, reference: Any | None = None) -> None:
        """Take one canonical frame (and the matching canonical reference frame, if any)."""
        ...


@dataclass(frozen=True)
class NormalizeResult:
    """What normalization did: frames written and what the source looked like."""

    frames: int
    #: True when the input was longer than ``max_seconds`` and was cut.
    truncated: bool
    #: Source properties (codec, size, pixel format, rotation, rates, audio).
    source: dict[str, Any] = field(default_factory=dict)
    #: Frames that had a reference frame to compare with (None: no reference).
    reference_frames: int | None = None
    #: Frames written to the reference's lossless copy (None: no copy asked for).
    reference_copy_frames: int | None = None


def _rotation_filters(rotation: float) -> list[tuple[str, str]]:
    # frame.rotation is the display matrix angle, counter-clockwise in degrees,
    # as FFmpeg reports it; the player turns the picture by that much, so do we.
    quarter = round(rotation / 90) % 4
    if quarter == 1:
        return [("transpose", "cclock")]
    if quarter == 2:
        return [("hflip", ""), ("vflip", "")]
    if quarter == 3:
        return [("transpose", "clock")]
    return []


def filter_chain(fmt: CanonicalFormat, rotation: float = 0.0) -> list[tuple[str, str]]:
    """The (filter, arguments) chain from a decoded frame to a canonical frame."""
    w, h = fmt.width, fmt.height
    chain = _rotation_filters(rotation)
    # fps first: dropping surplus frames before scaling saves work; it also
    # turns variable frame rate into constant by duplicating/dropping on pts.
    chain.append(("fps", f"fps={fmt.fps}"))
    if fmt.fit == "pad":
        chain.append(("scale", f"w={w}:h={h}:force_original_aspect_ratio=decrease"))
        chain.append(("pad", f"w={w}:h={h}:x=(ow-iw)/2:y=(oh-ih)/2:color=black"))
    elif fmt.fit == "crop":
        chain.append(("scale", f"w={w}:h={h}:force_original_aspect_ratio=increase"))
        chain.append(("crop", f"w={w}:h={h}"))
    else:
        chain.append(("scale", f"w={w}:h={h}"))
    chain.append(("setsar", "1"))
    chain.append(("format", "yuv420p"))
    return chain


class UnusableVideo(TerminalError):
    """An input with no usable video: missing, empty, not media, no decodable frame.

    ``role`` says which input (``"raw"``: the provider's output, or
    ``"reference"``), so the caller can tell a bad generation from a bad spec.
    """

    def __init__(self, role: str, message: str) -> None:
        super().__init__(message)
        self.role = role


class _Decoder:
    """Opens a video, decodes its first video stream, runs frames through the graph."""

    def __init__(
        self, path: Path, fmt: CanonicalFormat, threads: int, role: str, passthrough: bool = False
    ) -> None:
        self.path, self.fmt, self.role = path, fmt, role
        #: The file is a canonical copy already: frames go out as decoded.
        self.passthrough = passthrough
        if not path.is_file():
            raise UnusableVideo(role, f"{role} video {path} does not exist")
        if path.stat().st_size == 0:
            raise UnusableVideo(
                role, f"{role} video {path} is empty (0 bytes); nothing to normalize"
            )
        try:
            self.container = open_input(path)
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise UnusableVideo(
                role, f"{role} video {path} is not a readable media file ({_reason(exc)})"
            ) from exc
        if not self.container.streams.video:
            kinds: list[str] = sorted({s.type for s in self.container.streams}) or ["no streams"]
            self.container.close()
            raise UnusableVideo(
                role, f"{role} video {path} has no video stream (found: {', '.join(kinds)})"
            )
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stream.codec_context.thread_count = threads
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        self.graph: av.filter.Graph | None = None
        self.rotation = 0.0
        self.source: dict[str, Any] = {}
        self.decode_error: str | None = None
        self.decoded = 0

    def close(self) -> None:
        self.container.close()

    def _build_graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        self.rotation = float(frame.rotation or 0)
        self.source = {
            "codec": self.stream.codec_context.name,
            "width": frame.width,
            "height": frame.height,
            "pix_fmt": frame.format.name,
            "rotation": self.rotation,
            "average_rate": float(self.stream.average_rate) if self.stream.average_rate else None,
            "duration_seconds": (
                float(self.stream.duration * self.stream.time_base)
                if self.stream.duration and self.stream.time_base
                else None
            ),
            "audio": self.audio.codec_context.name if self.audio else None,
        }
        graph = av.filter.Graph()
        time_base = frame.time_base or self.stream.time_base or Fraction(1, 1000)
        node = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format, time_base=time_base
        )
        nodes = [node]
        for name, args in filter_chain(self.fmt, self.rotation):
            nodes.append(graph.add(name, args) if args else graph.add(name))
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes).configure()
        return graph

    def packets(self, with_audio: bool) -> Iterator[av.Packet[Any]]:
        streams = [self.stream, self.audio] if with_audio and self.audio else [self.stream]
        try:
            yield from self.container.demux(*streams)
        except av.error.FFmpegError as exc:
            self.decode_error = _reason(exc)

    def filter(self, frame: av.VideoFrame | None) -> Iterator[av.VideoFrame]:
        """Push a decoded frame (None: end of stream) and yield canonical frames."""
        if self.passthrough:
            if frame is None:
                return
            shape = (frame.width, frame.height, frame.format.name)
            if shape != (self.fmt.width, self.fmt.height, "yuv420p"):
                raise UnusableVideo(
                    self.role,
                    f"{self.role} video {self.path} is not in the canonical format "
                    f"({shape[0]}x{shape[1]} {shape[2]}, expected "
                    f"{self.fmt.width}x{self.fmt.height} yuv420p)",
                )
            self.decoded += 1
            yield frame
            return
        if frame is not None:
            if self.graph is None:
                self.graph = self._build_graph(frame)
            if frame.pts is None:
                frame.pts = self.decoded
            self.decoded += 1
        elif self.graph is None:
            return
        self.graph.push(frame)
        while True:
            try:
                out = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            assert isinstance(out, av.VideoFrame)
            yield out

    def decode(self, packet: av.Packet[Any]) -> list[av.VideoFrame]:
        try:
            return [f for f in packet.decode() if isinstance(f, av.VideoFrame)]
        except av.error.FFmpegError as exc:
            # A broken packet mid-stream: keep what decoded so far, note why it ended.
            self.decode_error = _reason(exc)
            return []

    def no_frame_error(self) -> TerminalError:
        detail = f": {self.decode_error}" if self.decode_error else ""
        return UnusableVideo(
            self.role,
            f"{self.role} video {self.path} has a video stream but no decodable frame "
            f"(truncated or corrupt{detail})",
        )


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(": '")[0]


def canonical_frames(
    path: Path,
    fmt: CanonicalFormat,
    *,
    threads: int = 0,
    role: str = "reference",
    already_canonical: bool = False,
) -> Iterator[av.VideoFrame]:
    """Yield ``path``'s frames in the canonical format (at most ``max_seconds`` worth).

    ``already_canonical``: the file is a canonical copy (see
    :class:`LosslessCopy`); its frames are decoded and passed on as they are.
    """
    decoder = _Decoder(path, fmt, threads, role, passthrough=already_canonical)
    limit = max(1, round(fmt.max_seconds * fmt.fps))
    produced = 0
    try:
        for packet in decoder.packets(with_audio=False):
            for frame in decoder.decode(packet) if packet.size else []:
                for out in decoder.filter(frame):
                    yield out
                    produced += 1
                    if produced >= limit:
                        return
        for frame in _flush(decoder):
            for out in decoder.filter(frame):
                yield out
                produced += 1
                if produced >= limit:
                    return
        for out in decoder.filter(None):
            yield out
            produced += 1
            if produced >= limit:
                return
        if decoder.decoded == 0:
            raise decoder.no_frame_error()
    finally:
        decoder.close()


def _flush(decoder: _Decoder) -> list[av.VideoFrame]:
    try:
        return [f for f in decoder.stream.decode(None) if isinstance(f, av.VideoFrame)]
    except av.error.FFmpegError as exc:
        decoder.decode_error = _reason(exc)
        return []


class LosslessCopy:
    """Writes canonical frames to an exact copy: H.264 at QP 0 (lossless for 8-bit 4:2:0).

    x264's ``ultrafast`` preset keeps both the encode and the later decodes
    cheap; the container is MP4 at the canonical frame rate.
    """

    def __init__(self, dest: Path, fmt: CanonicalFormat, threads: int = 0) -> None:
        self.container = av.open(str(dest), "w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=fmt.fps)
        self.stream.width, self.stream.height = fmt.width, fmt.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.thread_count = threads
        self.stream.options = {"qp": "0", "preset": "ultrafast"}
        self.time_base = Fraction(1, fmt.fps)
        self.frames = 0

    def write(self, frame: av.VideoFrame) -> None:
        """Append one canonical frame."""
        frame.pts = self.frames
        frame.time_base = self.time_base
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> int:
        """Flush and close; the number of frames written."""
        self.container.mux(self.stream.encode(None))
        self.container.close()
        return self.frames


class _AudioTrack:
    """Re-encodes the first audio track to AAC, cut at ``max_seconds``."""

    def __init__(self, out: av.container.OutputContainer, source: av.AudioStream, limit: float):
        rate = source.codec_context.sample_rate or 48000
        layout = source.codec_context.layout.name if source.codec_context.layout else "stereo"
        self.stream = out.add_stream("aac", rate=rate)
        self.stream.layout = layout
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self.rate, self.limit, self.samples = rate, limit, 0
        self.out = out

    def push_packet(self, packet: av.Packet[Any]) -> None:
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            return  # a damaged audio packet costs a gap in the sound, not the run
        for frame in frames:
            if isinstance(frame, av.AudioFrame):
                self.push(frame)

    def push(self, frame: av.AudioFrame | None) -> None:
        frames = self.resampler.resample(frame)
        for resampled in frames:
            if self.samples >= self.limit * self.rate:
                return
            resampled.pts = self.samples
            resampled.time_base = Fraction(1, self.rate)
            self.samples += resampled.samples
            self.out.mux(self.stream.encode(resampled))

    def close(self) -> None:
        self.push(None)
        self.out.mux(self.stream.encode(None))


def normalize_video(
    src: Path,
    dest: Path,
    fmt: CanonicalFormat,
    *,
    metrics: FrameSink | None = None,
    reference: Path | None = None,
    reference_canonical: bool = False,
    reference_copy: Path | None = None,
    threads: int = 0,
    stop: threading.Event | None = None,
) -> NormalizeResult:
    """Transcode ``src`` to the canonical MP4 ``dest``, feeding ``metrics`` on the way.

    ``reference``: a video normalized the same way and passed frame by frame
    as ``reference=`` to ``metrics`` (``reference_canonical``: it is a
    canonical copy already, read without scaling). ``reference_copy``: also
    write every canonical reference frame (all of them, not only those paired
    with a frame of ``src``) to this lossless copy. ``threads``: decoder and encoder threads
    (0: automatic). ``stop``: checked between frames; when set,
    :class:`LeaseLost` is raised and ``dest`` is left incomplete (callers write
    to a temporary name). Raises :class:`TerminalError` when ``src`` (or the
    reference) has no decodable video frame.
    """
    decoder = _Decoder(src, fmt, threads, "raw")
    ref_iter = (
        canonical_frames(
            reference, fmt, threads=threads, role="reference", already_canonical=reference_canonical
        )
        if reference
        else None
    )
    copy = LosslessCopy(reference_copy, fmt, threads) if ref_iter and reference_copy else None
    copy_frames: int | None = None
    limit = max(1, round(fmt.max_seconds * fmt.fps))
    produced = 0
    ref_count = 0
    truncated = False
    try:
        with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            vstream = out.add_stream("libx264", rate=fmt.fps)
            vstream.width, vstream.height, vstream.pix_fmt = fmt.width, fmt.height, "yuv420p"
            frame_time_base = Fraction(1, fmt.fps)
            vstream.time_base = frame_time_base
            vstream.codec_context.thread_count = threads
            vstream.options = {"crf": str(fmt.crf), "preset": fmt.preset}
            audio = (
                _AudioTrack(out, decoder.audio, limit / fmt.fps)
                if fmt.keep_audio and decoder.audio
                else None
            )

            def emit(frame: av.VideoFrame) -> bool:
                """Encode + measure one canonical frame; False once the limit is reached."""
                nonlocal produced, ref_count
                if stop is not None and stop.is_set():
                    raise LeaseLost(f"stopped while normalizing {src}")
                if metrics is not None:
                    ref_frame = None
                    if ref_iter is not None:
                        ref_frame = next(ref_iter, None)
                        if ref_frame is not None:
                            ref_count += 1
                            if copy is not None:
                                copy.write(ref_frame)
                    metrics.push_frame(frame, reference=ref_frame)
                frame.pts = produced
                # Not vstream.time_base: the muxer changes that once the header is written.
                frame.time_base = frame_time_base
                out.mux(vstream.encode(frame))
                produced += 1
                return produced < limit

            going = True
            for packet in decoder.packets(with_audio=audio is not None):
                if packet.stream.type == "audio":
                    if audio is not None and packet.size:
                        audio.push_packet(packet)
                    continue
                for frame in decoder.decode(packet) if packet.size else []:
                    for canon in decoder.filter(frame):
                        going = emit(canon)
                        if not going:
                            break
                    if not going:
                        break
                if not going:
                    truncated = True
                    break
            if going:
                tail: list[av.VideoFrame | None] = [*_flush(decoder), None]
                for last in tail:
                    for canon in decoder.filter(last):
                        if not emit(canon):
                            going = False
                            break
                    if not going:
                        break
            if decoder.decoded == 0:
                raise decoder.no_frame_error()
            out.mux(vstream.encode(None))
            if audio is not None:
                audio.close()
        if copy is not None and ref_iter is not None:
            # The copy serves runs whose videos may be longer than this one.
            for ref_frame in ref_iter:
                copy.write(ref_frame)
            copy_frames = copy.close()
            copy = None
    finally:
        decoder.close()
        if ref_iter is not None:
            ref_iter.close()  # type: ignore[attr-defined]
        if copy is not None:  # failed half-way: close what was written (the caller drops it)
            with contextlib.suppress(Exception):
                copy.close()
    source = dict(decoder.source)
    if decoder.decode_error:
        source["decode_error"] = decoder.decode_error
    return NormalizeResult(
        frames=produced,
        truncated=truncated,
        source=source,
        reference_frames=ref_count if reference is not None else None,
        reference_copy_frames=copy_frames,
    )
