"""Small PyAV helpers that encode real test videos (shared by the test suites).

Videos are tiny (a few frames, small sizes) so tests stay fast, but they go
through a real encoder and container, like the videos reelbench measures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import av
import numpy as np
from numpy.typing import NDArray

__all__ = ["encode_video", "moving_pattern", "noisy_copy"]


def moving_pattern(
    width: int, height: int, n: int, seed: int = 0, *, step: int = 2
) -> Iterator[NDArray[np.uint8]]:
    """``n`` RGB frames (height, width, 3) of a textured scene panning ``step`` px per frame.

    The texture is smooth random noise plus a gradient, so codecs neither
    drop it to flat blocks nor reproduce it exactly: SSIM/PSNR are non-trivial.
    """
    rng = np.random.default_rng(seed)
    big_w = width + step * n + 8
    coarse = rng.integers(0, 256, (height // 4 + 2, big_w // 4 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)[:height, :big_w].astype(np.int16)
    texture += rng.integers(-20, 21, texture.shape, dtype=np.int16)
    ramp = np.linspace(0, 60, height, dtype=np.float32)[:, None, None].astype(np.int16)
    scene = np.clip(texture // 2 + 40 + ramp, 0, 255).astype(np.uint8)
    for i in range(n):
        yield np.ascontiguousarray(scene[:, i * step : i * step + width])


def noisy_copy(
    frames: Iterable[NDArray[np.uint8]], sigma: float, seed: int = 1
) -> Iterator[NDArray[np.uint8]]:
    """The same frames with Gaussian noise of standard deviation ``sigma`` added."""
    rng = np.random.default_rng(seed)
    for f in frames:
        noisy = f.astype(np.float32) + rng.normal(0.0, sigma, f.shape).astype(np.float32)
        yield np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def encode_video(
    path: str | os.PathLike[str],
    frames: Iterable[NDArray[np.uint8]],
    fps: int = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    crf: int | None = 18,
    preset: str = "ultrafast",
    input_format: str | None = None,
) -> int:
    """Encode ``frames`` into ``path`` (container from the suffix); return the frame count.

    Frames are (height, width, 3) uint8 RGB arrays, or (height, width) gray
    arrays; ``input_format`` overrides the guess ("rgb24" / "gray").
    """
    count = 0
    with av.open(os.fspath(path), mode="w") as container:
        stream: av.VideoStream | None = None
        for frame_array in frames:
            fmt = input_format or ("gray" if frame_array.ndim == 2 else "rgb24")
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps))
                stream.height, stream.width = frame_array.shape[:2]
                stream.pix_fmt = pix_fmt
                options: dict[str, str] = {}
                if codec in ("libx264", "libx265"):
                    options["preset"] = preset
                    if crf is not None:
                        options["crf"] = str(crf)
                stream.options = options
            frame = av.VideoFrame.from_ndarray(frame_array, format=fmt)
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode(None):
                container.mux(packet)
    return count
