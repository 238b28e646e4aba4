"""SSIM and PSNR agree with FFmpeg's ``ssim`` and ``psnr`` filters, frame by frame.

FFmpeg (the binary of the imageio-ffmpeg wheel) is the oracle: it compares
the same PyAV-encoded videos, and its per-frame Y-plane values must match ours
within |Δ SSIM| <= 1e-4 and |Δ PSNR| <= 0.01 dB.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from videos import encode_video, moving_pattern, noisy_copy

from reelbench.metrics import FrameMetrics, psnr, ssim
from reelbench.video.frames import iter_y_planes

SSIM_TOL = 1e-4
PSNR_TOL = 0.01


def ffmpeg_y_values(distorted: Path, reference: Path, tmp: Path) -> tuple[list[float], list[float]]:
    """Per-frame Y-plane SSIM (stats file) and PSNR (frame metadata, full precision)."""
    ssim_file, psnr_file = tmp / "ssim.txt", tmp / "psnr.txt"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(distorted),
            "-i",
            str(reference),
            "-lavfi",
            # The psnr stats file rounds to 0.01 dB; the frame metadata keeps 6 decimals.
            f"[0:v][1:v]ssim=stats_file={ssim_file};"
            f"[0:v][1:v]psnr,metadata=mode=print:file={psnr_file}",
            "-f",
            "null",
            "-",
        ],
        check=True,
    )
    ssim_y = [float(m) for m in re.findall(r"\bY:(\S+)", ssim_file.read_text())]
    psnr_y = [float(m) for m in re.findall(r"lavfi\.psnr\.psnr\.y=(\S+)", psnr_file.read_text())]
    return ssim_y, psnr_y


def our_y_values(distorted: Path, reference: Path) -> tuple[list[float], list[float]]:
    pairs = list(zip(iter_y_planes(distorted), iter_y_planes(reference), strict=True))
    return [ssim(a, b) for a, b in pairs], [psnr(a, b) for a, b in pairs]


def assert_agree(ours: list[float], theirs: list[float], tol: float) -> None:
    assert len(ours) == len(theirs) > 0
    for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        if math.isinf(t):
            assert math.isinf(o), f"frame {i}: ours {o}, FFmpeg inf"
        else:
            assert abs(o - t) <= tol, f"frame {i}: ours {o}, FFmpeg {t}"


@pytest.mark.parametrize(
    ("width", "height"),
    [(176, 144), (174, 142)],  # 174x142: the last 2 columns/rows are outside every 4x4 block
)
def test_ssim_and_psnr_match_ffmpeg_on_distorted_pristine_pair(
    tmp_path: Path, width: int, height: int
) -> None:
    pristine, distorted = tmp_path / "pristine.mp4", tmp_path / "distorted.mp4"
    encode_video(pristine, moving_pattern(width, height, 8, seed=3), crf=12)
    encode_video(distorted, noisy_copy(moving_pattern(width, height, 8, seed=3), 6.0), crf=38)
    ff_ssim, ff_psnr = ffmpeg_y_values(distorted, pristine, tmp_path)
    our_ssim, our_psnr = our_y_values(distorted, pristine)
    assert_agree(our_ssim, ff_ssim, SSIM_TOL)
    assert_agree(our_psnr, ff_psnr, PSNR_TOL)
    # The pair is far from identical, so the comparison is not vacuous.
    assert max(ff_ssim) < 0.99
    assert max(ff_psnr) < 40


def test_ssim_and_psnr_match_ffmpeg_across_qualities(tmp_path: Path) -> None:
    """One source at three quality levels; each pair agrees with FFmpeg."""
    frames = list(moving_pattern(128, 96, 6, seed=11))
    paths = {}
    for crf in (8, 28, 45):
        paths[crf] = tmp_path / f"crf{crf}.mp4"
        encode_video(paths[crf], frames, crf=crf)
    for crf in (28, 45):
        ff_ssim, ff_psnr = ffmpeg_y_values(paths[crf], paths[8], tmp_path)
        our_ssim, our_psnr = our_y_values(paths[crf], paths[8])
        assert_agree(our_ssim, ff_ssim, SSIM_TOL)
        assert_agree(our_psnr, ff_psnr, PSNR_TOL)


def test_identical_videos_give_ssim_one_and_infinite_psnr_like_ffmpeg(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    encode_video(video, moving_pattern(96, 64, 3, seed=5))
    ff_ssim, ff_psnr = ffmpeg_y_values(video, video, tmp_path)
    our_ssim, our_psnr = our_y_values(video, video)
    assert ff_ssim == [1.0] * 3 and all(math.isinf(p) for p in ff_psnr)
    assert our_ssim == [1.0] * 3 and all(math.isinf(p) for p in our_psnr)


def test_frame_metrics_reference_values_match_ffmpeg(tmp_path: Path) -> None:
    pristine, distorted = tmp_path / "pristine.mp4", tmp_path / "distorted.mp4"
    encode_video(pristine, moving_pattern(160, 120, 5, seed=8), crf=10)
    encode_video(distorted, moving_pattern(160, 120, 5, seed=8), crf=42)
    ff_ssim, ff_psnr = ffmpeg_y_values(distorted, pristine, tmp_path)
    fm = FrameMetrics()
    for y, ref in zip(iter_y_planes(distorted), iter_y_planes(pristine), strict=True):
        fm.push(y, ref)
    records = fm.frames()
    assert_agree([float(r["ssim_ref"] or np.nan) for r in records], ff_ssim, SSIM_TOL)
    assert_agree([float(r["psnr_ref"] or np.nan) for r in records], ff_psnr, PSNR_TOL)
