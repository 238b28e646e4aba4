"""``synthetic``: deterministic procedural videos, with optional fault injection.

The same request (prompt, seed, params) always gives the same bytes: frames
are computed from a generator seeded by the request, and the encoder runs
single-threaded with fixed settings. Another seed moves, colours and phases
everything differently, so repeats of a variant are visibly different.

Fault injection draws a number in [0, 1) from SHA-256(seed, attempt, kind):
deterministic for a given attempt, different on the next one, so a share of
0.3 retryable faults means roughly 30% of attempts fail and retries recover.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelbench.errors import RetryableError, TerminalError
from reelbench.identity import canonical_json, sha256_file
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.params import check_known_keys, number_param

if TYPE_CHECKING:
    # PyAV and numpy are imported when a video is made: validating a spec's
    # variants (every submit) does not need them.
    import numpy as np
    import numpy.typing as npt

__all__ = ["PATTERNS", "SyntheticProvider", "fault_draw"]

PATTERNS = ("orbit", "bars", "noise", "still", "fade", "texture", "pan", "flicker")
_KNOWN = (
    "seconds",
    "width",
    "height",
    "fps",
    "pattern",
    "seed",
    "fail_retryable",
    "fail_terminal",
    "corrupt",
    "latency_seconds",
)


_TEXTURED = ("texture", "pan", "flicker")


def fault_draw(seed: int, attempt: int, kind: str) -> float:
    """A number in [0, 1) fixed by (seed, attempt, kind): the fault-injection dice."""
    digest = hashlib.sha256(f"reelbench-fault\0{seed}\0{attempt}\0{kind}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SyntheticProvider:
    """Procedural video generator; free, local, reproducible."""

    name = "synthetic"
    key_env: tuple[str, ...] = ()
    honours_seed = True
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        "seconds": (1, "duration (0.05-120)"),
        "width": (64, "frame width, even (16-3840)"),
        "height": (64, "frame height, even (16-3840)"),
        "fps": (24, "frame rate (1-120)"),
        "pattern": (
            "orbit",
            "orbit | bars | noise | still | fade | texture | pan | flicker (default: the model)",
        ),
        "seed": (None, "an explicit seed for every repeat (default: the run's seed)"),
        "fail_retryable": (0, "share of attempts failing retryably at submit"),
        "fail_terminal": (0, "share of attempts failing terminally at submit"),
        "corrupt": (0, "share of attempts whose output is garbage bytes"),
        "latency_seconds": (0, "seconds the job reports running"),
    }

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """Check sizes, durations, pattern and fault shares."""
        check_known_keys(self.name, params, _KNOWN)
        for key in ("width", "height"):
            value = number_param(self.name, params, key, 64, lo=16, hi=3840, integer=True)
            if int(value) % 2:
                raise ValueError(f"provider 'synthetic': {key} must be even, got {int(value)}")
        number_param(self.name, params, "fps", 24, lo=1, hi=120, integer=True)
        number_param(self.name, params, "seconds", 1, lo=0.05, hi=120)
        for key in ("fail_retryable", "fail_terminal", "corrupt"):
            number_param(self.name, params, key, 0, lo=0, hi=1)
        number_param(self.name, params, "latency_seconds", 0, lo=0, hi=3600)
        pattern = self._pattern(model, params)
        if pattern not in PATTERNS:
            raise ValueError(
                f"provider 'synthetic': unknown pattern {pattern!r}; choose one of "
                f"{', '.join(PATTERNS)} (as model or params.pattern)"
            )

    @staticmethod
    def _pattern(model: str | None, params: Mapping[str, Any]) -> str:
        return str(params.get("pattern") or model or "orbit")

    def submit(self, request: GenerationRequest) -> str:
        """Roll the fault dice, then return a job id that encodes when it is ready."""
        params = request.params
        share = float(params.get("fail_terminal", 0))
        if share and fault_draw(request.seed, request.attempt, "terminal") < share:
            raise TerminalError(
                f"synthetic: injected terminal fault (fail_terminal={share:g}, "
                f"seed {request.seed}, attempt {request.attempt})"
            )
        share = float(params.get("fail_retryable", 0))
        if share and fault_draw(request.seed, request.attempt, "retryable") < share:
            raise RetryableError(
                f"synthetic: injected retryable fault (fail_retryable={share:g}, "
                f"seed {request.seed}, attempt {request.attempt})",
                retry_after=0.0,
            )
        latency = float(params.get("latency_seconds", 0))
        ready_at = time.time() + latency if latency else 0.0
        key = hashlib.sha256(canonical_json(_identity(request)).encode()).hexdigest()[:16]
        # Stateless job: the id carries its ready time, so polling needs no memory.
        return f"synthetic-{key}-{ready_at:.3f}"

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Running until the simulated latency has passed."""
        try:
            ready_at = float(job_id.rsplit("-", 1)[1])
        except (IndexError, ValueError) as exc:
            raise TerminalError(f"synthetic: malformed job id {job_id!r}") from exc
        remaining = ready_at - time.time()
        if remaining > 0:
            return JobStatus("running", retry_after=remaining)
        return JobStatus("succeeded")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        import numpy as np

        """Render and encode the video into ``dest`` (or garbage, when corrupt fires)."""
        share = float(request.params.get("corrupt", 0))
        if share and fault_draw(request.seed, request.attempt, "corrupt") < share:
            rng = np.random.default_rng(request.seed)
            dest.write_bytes(b"not a video\n" + rng.bytes(4096))
        else:
            render_video(request, dest)
        return FetchResult(sha256=sha256_file(dest), bytes=dest.stat().st_size, cost=0.0)


def _identity(request: GenerationRequest) -> dict[str, Any]:
    return {
        "prompt": request.prompt,
        "seed": request.seed,
        "model": request.model,
        "params": dict(request.params),
    }


def render_video(request: GenerationRequest, dest: Path) -> None:
    import av
    import numpy as np

    """Encode the procedural video of ``request`` as H.264 MP4 into ``dest``."""
    params = request.params
    width = int(params.get("width", 64))
    height = int(params.get("height", 64))
    fps = int(params.get("fps", 24))
    n_frames = max(1, round(float(params.get("seconds", 1)) * fps))
    pattern = SyntheticProvider._pattern(request.model, params)
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
        import numpy as np

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
        import numpy as np

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
        import numpy as np

        y = np.clip(self._luma(index), 0, 255).astype(np.uint8)
        planes = np.concatenate([y.ravel(), self.u.ravel(), self.v.ravel()])
        return planes.reshape(self.h * 3 // 2, self.w)
