"""Normalization + metrics + hashing against the FFmpeg command line.

The clip: 10 s of 1080p at 24 fps (a panning textured scene with noise,
H.264), normalized to the default canonical format at 720p (pad, 24 fps,
libx264 CRF 18, preset veryfast, ``+faststart``).

* candidate: reelbench's whole per-run video work: ``normalize_video`` (one
  PyAV decode -> filter graph -> libx264) with the native FrameMetrics on
  every canonical frame, then SHA-256 of the output;
* baseline "FFmpeg": ``ffmpeg`` (imageio-ffmpeg's binary) doing the same
  transcode with the same filter chain, codec, CRF, preset and thread
  counts, no metrics, no hashing. Target: at most 1.3x its time;
* the same path with the motion group on (flow, warp error, SI/TI) as a
  second candidate against the same baseline (issue goal: at most 1.3x);
* "metrics on top": the same normalization without metrics (hash included)
  as the baseline of the candidate. Target: at most 1.15x.

Both sides use ``THREADS`` decoder and encoder threads.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from reelbench.identity import sha256_file
from reelbench.metrics import FrameMetrics
from reelbench.video.canonical import CanonicalFormat
from reelbench.video.normalize import filter_chain, normalize_video

THREADS = 2
SECONDS, FPS, W, H = 10, 24, 1920, 1080
CANON = CanonicalFormat(width=1280, height=720, fps=24, crf=18, preset="veryfast")
ROUNDS = 5


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("normalize") / "clip1080p.mp4"
    rng = np.random.default_rng(0)
    coarse = rng.integers(16, 235, (H // 8 + 2, (W + 8 * SECONDS * FPS) // 8 + 2), np.uint8)
    scene = np.repeat(np.repeat(coarse, 8, 0), 8, 1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        chroma = np.full((H // 2, W), 128, np.uint8)
        for i in range(SECONDS * FPS):
            y = scene[:H, 8 * i : 8 * i + W]
            noise = rng.integers(0, 8, (H, W), np.uint8)
            frame = av.VideoFrame.from_ndarray(np.vstack([y + noise, chroma]), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    yield path
    path.unlink()


def _ffmpeg(src: Path, dest: Path) -> None:
    graph = ",".join(f"{name}={args}" if args else name for name, args in filter_chain(CANON))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-threads", str(THREADS), "-i", str(src), "-an", "-vf", graph]
    cmd += ["-frames:v", str(round(CANON.max_seconds * CANON.fps))]
    cmd += ["-c:v", "libx264", "-crf", str(CANON.crf), "-preset", CANON.preset]
    cmd += ["-threads", str(THREADS), "-movflags", "+faststart", str(dest)]
    subprocess.run(cmd, check=True)


def _reelbench(src: Path, dest: Path, *, with_metrics: bool, motion: bool = False) -> str:
    groups = ["frame", "temporal", "motion"] if motion else None
    metrics = FrameMetrics(groups=groups) if with_metrics else None
    result = normalize_video(src, dest, CANON, metrics=metrics, threads=THREADS)
    assert result.frames == SECONDS * FPS
    if metrics is not None:
        metrics.summary()
    return sha256_file(dest)


@pytest.mark.benchmark(group="normalize 10 s 1080p -> 720p vs FFmpeg")
def test_normalize_with_metrics_and_hash(
    benchmark: BenchmarkFixture, clip: Path, tmp_path: Path
) -> None:
    benchmark.extra_info.update(role="candidate", target_max=1.3, frames=SECONDS * FPS)
    benchmark.pedantic(
        _reelbench, args=(clip, tmp_path / "canon.mp4"), kwargs={"with_metrics": True},
        rounds=ROUNDS, warmup_rounds=1,
    )  # fmt: skip


@pytest.mark.benchmark(group="normalize 10 s 1080p -> 720p vs FFmpeg")
def test_normalize_with_motion_metrics_and_hash(
    benchmark: BenchmarkFixture, clip: Path, tmp_path: Path
) -> None:
    """The same path with the motion group on (optical flow, warp error, SI/TI)."""
    benchmark.extra_info.update(role="candidate", target_max=1.3, frames=SECONDS * FPS)
    benchmark.pedantic(
        _reelbench, args=(clip, tmp_path / "canon.mp4"),
        kwargs={"with_metrics": True, "motion": True}, rounds=ROUNDS, warmup_rounds=1,
    )  # fmt: skip


@pytest.mark.benchmark(group="normalize 10 s 1080p -> 720p vs FFmpeg")
def test_ffmpeg_cli_transcode(benchmark: BenchmarkFixture, clip: Path, tmp_path: Path) -> None:
    benchmark.extra_info.update(role="baseline", baseline="FFmpeg CLI", frames=SECONDS * FPS)
    benchmark.pedantic(
        _ffmpeg, args=(clip, tmp_path / "ffmpeg.mp4"), rounds=ROUNDS, warmup_rounds=1
    )


@pytest.mark.benchmark(group="metrics on top of normalization (10 s 1080p -> 720p)")
def test_normalize_with_metrics(benchmark: BenchmarkFixture, clip: Path, tmp_path: Path) -> None:
    benchmark.extra_info.update(role="candidate", target_max=1.15)
    benchmark.pedantic(
        _reelbench, args=(clip, tmp_path / "canon.mp4"), kwargs={"with_metrics": True},
        rounds=ROUNDS, warmup_rounds=1,
    )  # fmt: skip


@pytest.mark.benchmark(group="metrics on top of normalization (10 s 1080p -> 720p)")
def test_normalize_without_metrics(benchmark: BenchmarkFixture, clip: Path, tmp_path: Path) -> None:
    benchmark.extra_info.update(role="baseline", baseline="normalization without metrics")
    benchmark.pedantic(
        _reelbench, args=(clip, tmp_path / "canon.mp4"), kwargs={"with_metrics": False},
        rounds=ROUNDS, warmup_rounds=1,
    )  # fmt: skip


def test_ffmpeg_baseline_makes_the_same_video(clip: Path, tmp_path: Path) -> None:
    """The baseline does the same job: same size, rate, codec and frame count."""
    _ffmpeg(clip, tmp_path / "ffmpeg.mp4")
    _reelbench(clip, tmp_path / "canon.mp4", with_metrics=False)
    described = []
    for name in ("ffmpeg.mp4", "canon.mp4"):
        with av.open(str(tmp_path / name)) as container:
            s = container.streams.video[0]
            described.append((s.codec_context.name, s.width, s.height, s.average_rate, s.frames))
    assert described[0] == described[1]
