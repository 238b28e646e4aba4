"""The synthetic provider's pixels: procedural scenes encoded as H.264 MP4 with PyAV.

Imported by :func:`reelbench.providers.synthetic.render_video` when a video
is made, so that validating a spec does not load PyAV and numpy.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from reelbench.providers.base import GenerationRequest

__all__ = ["render"]

_TEXTURED = ("texture", "pan", "flicker")


def render(request: GenerationRequest, dest: Path, pattern: str) -> None:
    """Encode the procedural video of ``request`` as H.264 MP4 into ``dest``."""
    params = request.params
    width = int(params.get("width", 64))
    height = int(params.get("height", 64))
    fps = int(params.get("fps", 24))
    n_frames = max(1, round(float(params.get("seconds", 1)) * fps))
    # The prompt tints the scene; the seed places and moves it.
    tint = hashlib.sha256(request.prompt.encode()).digest()
    rng = np.random.default_rng([request.seed, int.from_bytes(tint[:4], "big")])
    scene = _Scene(width, height, n_frames, pattern, rng, tint)

    with av.open(str(dest), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.thread_count = 1
        stream.options = {"preset": "ultrafast", "crf": "20", "threads": "1"}
        for index in range(n_frames):
            frame = av.VideoFrame.from_ndarray(scene.frame(index), format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


class _Scene:
    """Pixel content of one synthetic video (I420 frames as one (H*3/2, W) array)."""

    def __init__(
        self,
        width: int,
        height: int,
        n_frames: int,
        pattern: str,
        rng: np.random.Generator,
        tint: bytes,
    ) -> None:
        self.w, self.h, self.n, self.pattern, self.rng = width, height, n_frames, pattern, rng
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.xx, self.yy = xx, yy
        angle = rng.uniform(0, 2 * math.pi)
        gradient = (xx * math.cos(angle) + yy * math.sin(angle)) / max(width, height)
        self.background = (60 + 60 * gradient).astype(np.float32)
        self.phase = rng.uniform(0, 2 * math.pi)
        self.speed = rng.uniform(0.5, 2.0) * rng.choice([-1.0, 1.0])
        self.radius = min(width, height) * rng.uniform(0.1, 0.2)
        self.orbit = min(width, height) * rng.uniform(0.15, 0.3)
        self.bar_period = max(4.0, width * rng.uniform(0.1, 0.3))
        self.disc_y = 150 + 90 * rng.random()
        self.u = np.full((height // 2, width // 2), 64 + tint[0] % 128, np.uint8)
        self.v = np.full((height // 2, width // 2), 64 + tint[1] % 128, np.uint8)
        if pattern in _TEXTURED:
            self._texture_setup(rng)

    def _texture_setup(self, rng: np.random.Generator) -> None:
        """A band-limited texture (a sum of plane waves, so any sub-pixel shift is exact).

        ``pan`` moves it steadily by 1.5-3 px per frame in a random direction;
        ``flicker`` keeps it still but changes its brightness and adds fresh
        fine noise on every frame (shimmer); ``texture`` keeps it still.
        """
        n_waves = 10
        freq = rng.uniform(1 / 40, 1 / 10, n_waves)
        angle = rng.uniform(0, 2 * math.pi, n_waves)
        self.waves = (
            (freq * np.cos(angle)).astype(np.float32),
            (freq * np.sin(angle)).astype(np.float32),
            rng.uniform(0, 2 * math.pi, n_waves).astype(np.float32),
        )
        heading = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(1.5, 3.0)
        self.pan = (speed * math.cos(heading), speed * math.sin(heading))
        self.shimmer = np.random.default_rng(rng.integers(2**63))

    def _texture(self, dx: float, dy: float) -> npt.NDArray[np.float32]:
        fx, fy, phase = self.waves
        acc = np.zeros((self.h, self.w), np.float32)
        for k in range(len(phase)):
            arg = 2 * math.pi * (fx[k] * (self.xx - dx) + fy[k] * (self.yy - dy)) + phase[k]
            acc += np.sin(arg, dtype=np.float32)
        out: npt.NDArray[np.float32] = 128 + (70 / math.sqrt(len(phase))) * acc
        return out

    def _luma(self, index: int) -> npt.NDArray[np.float32]:
        t = index / max(1, self.n)
        if self.pattern == "texture":
            return self._texture(0.0, 0.0)
        if self.pattern == "pan":
            return self._texture(self.pan[0] * index, self.pan[1] * index)
        if self.pattern == "flicker":
            gain = np.float32(self.shimmer.uniform(0.8, 1.2))
            offset = np.float32(self.shimmer.uniform(-12, 12))
            fine = self.shimmer.normal(0, 10, (self.h, self.w)).astype(np.float32)
            still = self._texture(0.0, 0.0)
            flickered: npt.NDArray[np.float32] = 128 + offset + gain * (still - 128) + fine
            return flickered
        if self.pattern == "noise":
            return self.rng.uniform(0, 255, (self.h, self.w)).astype(np.float32)
        if self.pattern == "bars":
            shift = self.speed * index * self.bar_period / 8
            stripes = np.sin(2 * math.pi * (self.xx + shift) / self.bar_period)
            bars: npt.NDArray[np.float32] = self.background + 70 * stripes.astype(np.float32)
            return bars
        moving = self.pattern != "still"
        theta = self.phase + (2 * math.pi * self.speed * t if moving else 0.0)
        cx = self.w / 2 + self.orbit * math.cos(theta)
        cy = self.h / 2 + self.orbit * math.sin(theta)
        disc = (self.xx - cx) ** 2 + (self.yy - cy) ** 2 <= self.radius**2
        luma = np.where(disc, np.float32(self.disc_y), self.background)
        if self.pattern == "fade":
            luma = luma * (1.0 - t)
        return luma

    def frame(self, index: int) -> npt.NDArray[np.uint8]:
        y = np.clip(self._luma(index), 0, 255).astype(np.uint8)
        planes = np.concatenate([y.ravel(), self.u.ravel(), self.v.ravel()])
        return planes.reshape(self.h * 3 // 2, self.w)
