"""``reelbench metrics`` against ffmpeg-quality-metrics, whole commands side by side.

Each round runs the complete command in a fresh process (interpreter start,
imports, decoding both files, metrics, JSON on stdout), as a user would:

* baseline: ``ffmpeg-quality-metrics DIST REF -m ssim psnr`` (SSIM and PSNR of
  Y, U, V and their combination, computed by FFmpeg's filters; the FFmpeg
  binary is imageio-ffmpeg's);
* ``reelbench metrics DIST -r REF --metrics chroma --json``: the same work
  (SSIM and PSNR of Y, U, V and All/avg against the reference);
* ``reelbench metrics DIST -r REF --json``: the default Y-plane set (luma
  statistics, sharpness, black share, consecutive-frame SSIM/PSNR/MAD and the
  reference SSIM/PSNR/MSE).

Target: each reelbench command at most 0.6x the baseline's wall time, on a
1280x720 and a 1920x1080 pair of 132 frames (a textured pan, reference at
CRF 12, distorted at CRF 32). ``reelbench --help`` is timed against a bare
interpreter start (goal: at most 0.15 s).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from videos import encode_video, moving_pattern

FRAMES = 132
ROUNDS = 5
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def _bin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed next to {sys.executable} (the test extra)")
    return found


@pytest.fixture(scope="module", params=sorted(SIZES))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    width, height = SIZES[request.param]
    folder = tmp_path_factory.mktemp(f"pair-{request.param}")
    ref, dist = folder / "ref.mp4", folder / "dist.mp4"
    encode_video(ref, moving_pattern(width, height, FRAMES, seed=1), crf=12, preset="veryfast")
    encode_video(dist, moving_pattern(width, height, FRAMES, seed=1), crf=32, preset="veryfast")
    return request.param, dist, ref


def _command(argv: list[str]) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return run


def _bench(benchmark: Any, group: str, argv: list[str], **info: Any) -> None:
    benchmark.group = group
    benchmark.extra_info.update(info)
    benchmark.pedantic(_command(argv), rounds=ROUNDS, warmup_rounds=1)


def test_ffmpeg_quality_metrics(benchmark: Any, pair: Any) -> None:
    size, dist, ref = pair
    argv = [_bin("ffmpeg-quality-metrics"), str(dist), str(ref), "-m", "ssim", "psnr"]
    argv += ["--ffmpeg-path", imageio_ffmpeg.get_ffmpeg_exe()]
    _bench(benchmark, f"metrics-cli-{size}", argv, role="baseline",
           baseline="ffmpeg-quality-metrics")  # fmt: skip


def test_reelbench_metrics_same_work(benchmark: Any, pair: Any) -> None:
    size, dist, ref = pair
    argv = [_bin("reelbench"), "metrics", str(dist), "-r", str(ref), "--metrics", "chroma"]
    _bench(benchmark, f"metrics-cli-{size}", [*argv, "--json"], role="candidate", target_max=0.6)


def test_reelbench_metrics_default_set(benchmark: Any, pair: Any) -> None:
    size, dist, ref = pair
    argv = [_bin("reelbench"), "metrics", str(dist), "-r", str(ref), "--json"]
    _bench(benchmark, f"metrics-cli-{size}", argv, role="candidate", target_max=0.6)


def test_interpreter_start(benchmark: Any) -> None:
    _bench(benchmark, "cli-help", [sys.executable, "-c", "pass"], role="baseline",
           baseline="python -c pass")  # fmt: skip


def test_reelbench_help(benchmark: Any) -> None:
    _bench(benchmark, "cli-help", [_bin("reelbench"), "--help"], role="candidate")
