"""Motion group: reelbench's optical flow against OpenCV's DIS, SI/TI against FFmpeg.

Every group pairs the native candidate with its baselines in the same run
(ratios: benches/conftest.py, written to .benchmarks/ratios.json).

* Flow per frame pair at 320x240, 640x360 and 1280x720 (one thread on both
  sides: ``cv2.setNumThreads(1)``; the native flow is single-threaded per
  pair), on a textured frame and its copy moved by a known sub-pixel shift,
  against DIS ULTRAFAST and FAST on the same frames. ``optical_flow``
  computes at the input size, like OpenCV (the motion group of
  ``FrameMetrics`` computes at its working scale, long side <= 512 px); the
  larger groups also time ULTRAFAST on frames shrunk to that working scale
  first (``cv2.resize``, INTER_AREA, included in the time). Each benchmark
  records its mean endpoint error in ``extra_info["epe_px"]``.
* SI/TI of a PyAV-encoded H.264 640x360 pan, 96 frames: PyAV decode +
  ``FrameMetrics(groups=["motion"], flow=False)`` (SI/TI alone) against
  ``ffmpeg -threads 1 -filter_threads 1 -i clip -vf siti -f null -`` (decode +
  siti); the whole motion group (flow and SI/TI) and the decode alone are
  timed too, to show where the time goes.
* Every metric group that needs no reference (frame, temporal, motion with
  flow) on a 1280x720 H.264 pan of 24 frames: PyAV decode + ``FrameMetrics``
  per frame pair, one thread (``units``: pairs, for pairs per second),
  against the decode alone.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage

from reelbench._native import KERNEL_ISA, FrameMetrics, optical_flow

Frame = NDArray[np.uint8]
SHIFT = (3.5, -2.0)
PAIRS = 8  # distinct frame pairs per round
SITI_FRAMES = 96

PRESETS = {
    "DIS ULTRAFAST": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "DIS FAST": cv2.DISOPTICAL_FLOW_PRESET_FAST,
}


def _pair(width: int, height: int, seed: int) -> tuple[Frame, Frame]:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.uniform(0, 255, (height, width)), 2.0) * 3.0 - 255.0
    moved = ndimage.shift(base, (SHIFT[1], SHIFT[0]), order=3, mode="reflect")

    def u8(a: NDArray[np.float64]) -> Frame:
        return np.clip(np.rint(a + 128.0), 0, 255).astype(np.uint8)

    return u8(base), u8(moved)


def _epe(flow: NDArray[np.float32], border: int) -> float:
    inner = flow[border:-border, border:-border]
    return float(np.mean(np.hypot(inner[..., 0] - SHIFT[0], inner[..., 1] - SHIFT[1])))


@pytest.fixture(
    scope="module",
    params=[(320, 240), (640, 360), (1280, 720)],
    ids=["320x240", "640x360", "1280x720"],
)
def frames(request: pytest.FixtureRequest) -> tuple[int, int, list[tuple[Frame, Frame]]]:
    width, height = request.param
    cv2.setNumThreads(1)
    return width, height, [_pair(width, height, seed) for seed in range(PAIRS)]


@pytest.mark.parametrize("impl", ["reelbench", *PRESETS, "DIS ULTRAFAST at working scale"])
def test_flow_per_pair(
    benchmark: Any, frames: tuple[int, int, list[tuple[Frame, Frame]]], impl: str
) -> None:
    width, height, pairs = frames
    if impl == "DIS ULTRAFAST at working scale" and width <= 512:
        pytest.skip("320x240 is its own working scale")
    benchmark.group = f"optical flow {width}x{height}, one pair, one thread"
    if impl == "reelbench":
        benchmark.extra_info.update(
            role="candidate", isa=KERNEL_ISA, units={"pairs": PAIRS}, target=1.5
        )

        def run() -> NDArray[np.float32]:
            for a, b in pairs:
                flow = optical_flow(a, b)
            return flow

    elif impl in PRESETS:
        benchmark.extra_info.update(role="baseline", baseline=f"OpenCV {impl}")
        dis = cv2.DISOpticalFlow_create(PRESETS[impl])

        def run() -> NDArray[np.float32]:
            for a, b in pairs:
                flow: NDArray[np.float32] = dis.calc(a, b, None)
            return flow

    else:
        benchmark.extra_info.update(role="baseline", baseline=f"OpenCV {impl}")
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        factor = -(-max(width, height) // 512)
        size = (width // factor, height // factor)

        def run() -> NDArray[np.float32]:
            for a, b in pairs:
                small = dis.calc(
                    cv2.resize(a, size, interpolation=cv2.INTER_AREA),
                    cv2.resize(b, size, interpolation=cv2.INTER_AREA),
                    None,
                )
                flow: NDArray[np.float32] = cv2.resize(small, (width, height)) * factor
            return flow

    flow = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    benchmark.extra_info["epe_px"] = _epe(flow, border=max(24, width // 13))
    benchmark.extra_info["ms_per_pair"] = benchmark.stats.stats.median * 1000 / PAIRS


def _encode_gray(path: Path, lumas: Iterable[np.ndarray]) -> None:
    """Encode 8-bit gray frames as H.264 yuv420p at 24 fps (CRF 20, veryfast)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        stream.time_base = Fraction(1, 24)
        for i, y in enumerate(lumas):
            if i == 0:
                stream.height, stream.width = y.shape
            rgb = np.repeat(np.ascontiguousarray(y)[..., None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def pan_clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An H.264 640x360 pan over smooth noise with a moving bright disc, yuv420p."""
    path = tmp_path_factory.mktemp("siti") / "pan.mp4"
    rng = np.random.default_rng(3)
    scene = ndimage.gaussian_filter(rng.uniform(0, 255, (360, 640 + 3 * SITI_FRAMES)), 1.5)
    scene = np.clip((scene - scene.mean()) * 4 + 128, 0, 255)
    yy, xx = np.mgrid[0:360, 0:640]

    def luma(i: int) -> np.ndarray:
        y = scene[:, 3 * i : 3 * i + 640].copy()
        y[(xx - 100 - 4 * i) ** 2 + (yy - 180) ** 2 < 40**2] = 235
        return y.astype(np.uint8)

    _encode_gray(path, (luma(i) for i in range(SITI_FRAMES)))
    yield path
    path.unlink()


def _decode_and_measure(path: Path, groups: list[str] | None, flow: bool = True) -> int:
    acc = FrameMetrics(groups=groups, flow=flow) if groups is not None else None
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.codec_context.thread_count = "SLICE", 1
        for frame in container.decode(stream):
            if acc is not None:
                acc.push_frame(frame)
            n += 1
    return n


def _ffmpeg_siti(path: Path) -> None:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-threads", "1",
         "-filter_threads", "1", "-i", str(path), "-vf", "siti", "-f", "null", "-"],
        check=True,
    )  # fmt: skip


@pytest.mark.benchmark(group="SI/TI 640x360 H.264, 96 frames, one thread")
@pytest.mark.parametrize("impl", ["SI/TI alone", "motion group", "decode only", "ffmpeg"])
def test_siti_clip(benchmark: Any, pan_clip: Path, impl: str) -> None:
    if impl == "ffmpeg":
        benchmark.extra_info.update(role="baseline", baseline="FFmpeg siti filter")
        benchmark.pedantic(_ffmpeg_siti, args=(pan_clip,), rounds=3, warmup_rounds=1)
        return
    benchmark.extra_info.update(role="candidate", isa=KERNEL_ISA, units={"frames": SITI_FRAMES})
    groups = None if impl == "decode only" else ["motion"]
    n = benchmark.pedantic(
        _decode_and_measure,
        args=(pan_clip, groups, impl == "motion group"),
        rounds=3,
        warmup_rounds=1,
    )
    assert n == SITI_FRAMES


HD_FRAMES = 24


@pytest.fixture(scope="module")
def hd_clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An H.264 1280x720 pan over smooth noise, yuv420p, 24 frames."""
    path = tmp_path_factory.mktemp("hd") / "pan720.mp4"
    rng = np.random.default_rng(5)
    scene = ndimage.gaussian_filter(rng.uniform(0, 255, (720, 1280 + 6 * HD_FRAMES)), 2.0)
    scene = np.clip((scene - scene.mean()) * 4 + 128, 0, 255).astype(np.uint8)
    _encode_gray(path, (scene[:, 6 * i : 6 * i + 1280] for i in range(HD_FRAMES)))
    yield path
    path.unlink()


HD_GROUP = "frame, temporal, motion groups, 1280x720 H.264, 24 frames, one thread"


@pytest.mark.benchmark(group=HD_GROUP)
@pytest.mark.parametrize("impl", ["metrics", "decode only"])
def test_all_metrics_hd_clip(benchmark: Any, hd_clip: Path, impl: str) -> None:
    groups = ["frame", "temporal", "motion"] if impl == "metrics" else None
    role = "candidate" if groups else "baseline"
    benchmark.extra_info.update(role=role, isa=KERNEL_ISA, units={"pairs": HD_FRAMES - 1})
    if not groups:
        benchmark.extra_info["baseline"] = "PyAV decode alone"
    n = benchmark.pedantic(_decode_and_measure, args=(hd_clip, groups), rounds=3, warmup_rounds=1)
    assert n == HD_FRAMES
