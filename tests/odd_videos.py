"""Real, tiny videos of the kinds providers return when they misbehave.

Each maker writes a file with PyAV (a few frames at small sizes) and returns
its path; the broken ones (zero bytes, cut before the first frame, text) are
made from real files too.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["ODD_INPUTS", "make_video"]


def make_video(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 12,
    fps: int = 12,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    rotation: int | None = None,
    vfr_ms: list[int] | None = None,
    audio: bool = False,
    video: bool = True,
    faststart: bool = False,
) -> Path:
    """Encode a small test video: a white block in the top-left corner on a ramp.

    ``vfr_ms``: frame durations in milliseconds, cycled (variable frame rate).
    ``rotation``: display-matrix rotation (degrees counter-clockwise).
    """
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        vstream = None
        tb = Fraction(1, fps)
        if video:
            vstream = container.add_stream(codec, rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, pix_fmt
            tb = Fraction(1, 1000) if vfr_ms else Fraction(1, fps)
            vstream.time_base = tb
            vstream.codec_context.time_base = tb
            if rotation is not None:
                vstream.set_display_rotation(rotation)
        astream = None
        if audio:
            astream = container.add_stream("aac", rate=48000)
            astream.layout = "stereo"
        pts = 0
        for i in range(frames if vstream is not None else 0):
            rgb = np.empty((height, width, 3), np.uint8)
            rgb[:] = np.linspace(30, 200, width, dtype=np.uint8)[None, :, None]
            rgb[: height // 4, : width // 4] = 255
            rgb[..., 1] = (rgb[..., 1].astype(int) + 9 * i) % 256
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = pts
            frame.time_base = tb  # not vstream.time_base: the muxer rewrites it
            pts += vfr_ms[i % len(vfr_ms)] if vfr_ms else 1
            container.mux(vstream.encode(frame))  # type: ignore[union-attr]
        if vstream is not None:
            container.mux(vstream.encode(None))
        if astream is not None:
            seconds = frames / fps
            for k in range(int(seconds * 48000 / 1024)):
                samples = np.zeros((2, 1024), np.float32)
                samples[:, ::50] = 0.2
                aframe = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                aframe.sample_rate = 48000
                aframe.pts = k * 1024
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))
    return path


def _truncated(path: Path) -> Path:
    # moov first (faststart), then cut inside the first frame's data: the
    # container opens, no frame decodes.
    make_video(path.with_suffix(".full.mp4"), faststart=True)
    data = path.with_suffix(".full.mp4").read_bytes()
    mdat = data.index(b"mdat")
    path.write_bytes(data[: mdat + 8 + 10])
    return path


#: name -> (maker, expected outcome: "ok" or the TerminalError message fragment)
ODD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "vfr": (lambda p: make_video(p, vfr_ms=[40, 120, 60], frames=15), "ok"),
    "rotated": (lambda p: make_video(p, rotation=90), "ok"),
    "odd_size": (lambda p: make_video(p, width=63, height=47, pix_fmt="yuv444p"), "ok"),
    "10bit": (lambda p: make_video(p, pix_fmt="yuv420p10le"), "ok"),
    "yuv444p": (lambda p: make_video(p, pix_fmt="yuv444p"), "ok"),
    "with_audio": (lambda p: make_video(p, audio=True), "ok"),
    "audio_only": (lambda p: make_video(p, video=False, audio=True), "no video stream"),
    "zero_byte": (lambda p: (p.write_bytes(b""), p)[1], r"is empty \(0 bytes\)"),
    "truncated": (_truncated, "no decodable frame"),
    "text": (lambda p: (p.write_text("this is not a video\n" * 20), p)[1], "not a readable"),
}
