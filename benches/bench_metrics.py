"""Frame metrics on 1080p luma: native kernels against FFmpeg, scikit-image and numpy.

Every group pairs the native candidate with its baseline in the same run
(ratios: benches/conftest.py, written to .benchmarks/ratios.json).

* SSIM vs FFmpeg's ``ssim`` filter, single-threaded (``-threads 1
  -filter_threads 1``), on the same raw gray frames read from the same files.
  Both sides read every frame pair from disk (page cache) and compare it, so
  the figure includes FFmpeg's demuxing and frame sync, and our read; a
  second candidate measures the kernel alone on frames already in memory.
  1000 frame pairs make FFmpeg's process start-up (about 50 ms) a few percent.
* SSIM vs ``skimage.metrics.structural_similarity`` on one frame pair.
* psnr, mad, luma_stats, sharpness vs the plain numpy expression.
* FrameMetrics with every metric (reference included): frames/s on one
  thread, and two videos on two threads vs the same two videos one after the
  other on one thread.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from numpy.typing import NDArray
from skimage.metrics import structural_similarity

from reelbench._native import KERNEL_ISA
from reelbench.metrics import FrameMetrics, luma_stats, mad, psnr, sharpness, ssim

Frame = NDArray[np.uint8]
W, H = 1920, 1080
POOL = 10  # distinct frame pairs
LOOPS = 100  # FFmpeg/native SSIM passes over the pool: 1000 frame pairs
FM_FRAMES = 120  # frames per FrameMetrics run


def _frames(seed: int) -> tuple[list[Frame], list[Frame]]:
    """A panning textured scene and a noisy copy: realistic statistics, exact sizes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (H // 8 + 2, (W + 4 * POOL) // 8 + 2), dtype=np.uint8)
    scene = np.repeat(np.repeat(coarse, 8, 0), 8, 1).astype(np.int16)
    scene += rng.integers(-12, 13, scene.shape, dtype=np.int16)
    frames = [np.clip(scene[:H, 4 * i : 4 * i + W], 0, 255).astype(np.uint8) for i in range(POOL)]
    noisy = [
        np.clip(f + rng.integers(-6, 7, f.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        for f in frames
    ]
    return frames, noisy


@pytest.fixture(scope="module")
def pairs() -> tuple[list[Frame], list[Frame]]:
    return _frames(0)


@pytest.fixture(scope="module")
def raw_files(
    tmp_path_factory: pytest.TempPathFactory, pairs: tuple[list[Frame], list[Frame]]
) -> Iterator[tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("raw")
    a, b = d / "a.gray", d / "b.gray"
    a.write_bytes(b"".join(f.tobytes() for f in pairs[0]))
    b.write_bytes(b"".join(f.tobytes() for f in pairs[1]))
    yield a, b
    a.unlink()
    b.unlink()


def _ffmpeg_ssim(a: Path, b: Path, loops: int) -> None:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error"]
    cmd += ["-threads", "1", "-filter_threads", "1"]
    for path in (a, b):
        cmd += ["-stream_loop", str(loops - 1), "-f", "rawvideo", "-pix_fmt", "gray"]
        cmd += ["-s", f"{W}x{H}", "-i", str(path)]
    cmd += ["-lavfi", "[0:v][1:v]ssim", "-f", "null", "-"]
    subprocess.run(cmd, check=True)


def _native_ssim_from_files(a: Path, b: Path, loops: int) -> float:
    fa, fb = np.empty((H, W), np.uint8), np.empty((H, W), np.uint8)
    total = 0.0
    with a.open("rb", buffering=0) as ra, b.open("rb", buffering=0) as rb:
        for _ in range(loops):
            ra.seek(0)
            rb.seek(0)
            for _ in range(POOL):
                ra.readinto(memoryview(fa).cast("B"))
                rb.readinto(memoryview(fb).cast("B"))
                total += ssim(fa, fb)
    return total


@pytest.mark.benchmark(group="ssim 1080p x1000 vs FFmpeg")
def test_ssim_native_from_raw_files(benchmark: Any, raw_files: tuple[Path, Path]) -> None:
    benchmark.extra_info.update(role="candidate", target=1.0, isa=KERNEL_ISA, frames=POOL * LOOPS)
    total = benchmark.pedantic(
        _native_ssim_from_files, args=(*raw_files, LOOPS), rounds=3, warmup_rounds=1
    )
    assert 0.5 < total / (POOL * LOOPS) < 1.0


@pytest.mark.benchmark(group="ssim 1080p x1000 vs FFmpeg")
def test_ssim_native_in_memory(benchmark: Any, pairs: tuple[list[Frame], list[Frame]]) -> None:
    benchmark.extra_info.update(role="candidate", target=1.0, isa=KERNEL_ISA, frames=POOL * LOOPS)
    frames, noisy = pairs

    def run() -> None:
        for _ in range(LOOPS):
            for a, b in zip(frames, noisy, strict=True):
                ssim(a, b)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="ssim 1080p x1000 vs FFmpeg")
def test_ssim_ffmpeg_filter(benchmark: Any, raw_files: tuple[Path, Path]) -> None:
    benchmark.extra_info.update(
        role="baseline", baseline="FFmpeg ssim filter, 1 thread", frames=POOL * LOOPS
    )
    benchmark.pedantic(_ffmpeg_ssim, args=(*raw_files, LOOPS), rounds=3, warmup_rounds=1)
    # FFmpeg's fixed cost (start-up, probing), for the record: one pass over the pool.
    starts = []
    for _ in range(3):
        t = time.perf_counter()
        _ffmpeg_ssim(*raw_files, 1)
        starts.append(time.perf_counter() - t)
    benchmark.extra_info["one_pass_of_10_frames_s"] = min(starts)


@pytest.mark.benchmark(group="ssim 1080p vs scikit-image")
def test_ssim_native_one_pair(benchmark: Any, pairs: tuple[list[Frame], list[Frame]]) -> None:
    benchmark.extra_info.update(role="candidate", target=100.0, isa=KERNEL_ISA)
    benchmark(ssim, pairs[0][0], pairs[1][0])


@pytest.mark.benchmark(group="ssim 1080p vs scikit-image")
def test_ssim_skimage_one_pair(benchmark: Any, pairs: tuple[list[Frame], list[Frame]]) -> None:
    benchmark.extra_info.update(role="baseline", baseline="skimage.metrics.structural_similarity")
    benchmark.pedantic(
        structural_similarity,
        args=(pairs[0][0], pairs[1][0]),
        kwargs={"data_range": 255},
        rounds=3,
        warmup_rounds=1,
    )


# --- numpy equivalents: the expression one would write without reelbench --------


def _np_psnr(a: Frame, b: Frame) -> float:
    d = a.astype(np.int32) - b
    mse = float(np.mean(d * d))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _np_mad(a: Frame, b: Frame) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b)))


def _np_luma_stats(a: Frame, _b: Frame) -> tuple[float, float]:
    return float(a.mean()), float(a.std())


def _np_sharpness(a: Frame, _b: Frame) -> float:
    x = a.astype(np.int32)
    lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4 * x[1:-1, 1:-1]
    return float(lap.var())


KERNELS: dict[str, tuple[Callable[..., Any], Callable[[Frame, Frame], Any], bool]] = {
    "psnr": (psnr, _np_psnr, True),
    "mad": (mad, _np_mad, True),
    "luma_stats": (luma_stats, _np_luma_stats, False),
    "sharpness": (sharpness, _np_sharpness, False),
}


@pytest.mark.parametrize("name", list(KERNELS))
@pytest.mark.parametrize("impl", ["native", "numpy"])
def test_kernel_vs_numpy(
    benchmark: Any, pairs: tuple[list[Frame], list[Frame]], name: str, impl: str
) -> None:
    native, reference, two_frames = KERNELS[name]
    benchmark.group = f"{name} 1080p vs numpy"
    a, b = pairs[0][0], pairs[1][0]
    if impl == "native":
        benchmark.extra_info.update(role="candidate", target=2.0, isa=KERNEL_ISA)
        result = benchmark(native, a, b) if two_frames else benchmark(native, a)
        expected = reference(a, b)
        assert np.allclose(result, expected, rtol=1e-9)
    else:
        benchmark.extra_info.update(role="baseline", baseline="numpy")
        benchmark(reference, a, b)


# --- FrameMetrics: all metrics, with a reference -----------------------------------


def _measure_video(frames: list[Frame], refs: list[Frame]) -> FrameMetrics:
    fm = FrameMetrics()
    for i in range(FM_FRAMES):
        fm.push(frames[i % POOL], refs[i % POOL])
    return fm


@pytest.fixture(scope="module")
def two_videos(pairs: tuple[list[Frame], list[Frame]]) -> list[tuple[list[Frame], list[Frame]]]:
    return [pairs, _frames(1)]


@pytest.mark.benchmark(group="FrameMetrics 1080p: two videos")
def test_frame_metrics_two_videos_two_threads(
    benchmark: Any, two_videos: list[tuple[list[Frame], list[Frame]]]
) -> None:
    benchmark.extra_info.update(role="candidate", target=1.7, frames=2 * FM_FRAMES)
    with ThreadPoolExecutor(2) as pool:
        benchmark.pedantic(
            lambda: list(pool.map(lambda v: _measure_video(*v), two_videos)),
            rounds=5,
            warmup_rounds=1,
        )
    if benchmark.stats:
        benchmark.extra_info["frames_per_s"] = 2 * FM_FRAMES / benchmark.stats.stats.median


@pytest.mark.benchmark(group="FrameMetrics 1080p: two videos")
def test_frame_metrics_two_videos_one_thread(
    benchmark: Any, two_videos: list[tuple[list[Frame], list[Frame]]]
) -> None:
    benchmark.extra_info.update(
        role="baseline", baseline="FrameMetrics, one thread", frames=2 * FM_FRAMES
    )
    benchmark.pedantic(lambda: [_measure_video(*v) for v in two_videos], rounds=5, warmup_rounds=1)
    if benchmark.stats:
        fps = 2 * FM_FRAMES / benchmark.stats.stats.median
        benchmark.extra_info["frames_per_s"] = fps
        print(f"\nFrameMetrics, all metrics, 1080p, one thread: {fps:.0f} frames/s (target 400)")
