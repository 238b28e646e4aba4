"""SSIM and PSNR agree with FFmpeg's ``ssim`` and ``psnr`` filters, frame by frame.

FFmpeg (the binary of the imageio-ffmpeg wheel) is the oracle: it compares
the same PyAV-encoded videos, and its per-frame values (Y; U, V and the
plane-weighted All/avg for the chroma group) must match ours within
|Δ SSIM| <= 1e-4 and |Δ PSNR| <= 0.01 dB.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path
from typing import Any

import av
import imageio_ffmpeg
import numpy as np
import pytest
from videos import encode_video, moving_pattern, noisy_copy

from reelbench.metrics import FrameMetrics, measure_video, psnr, ssim
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


def ffmpeg_plane_values(distorted: Path, reference: Path, tmp: Path) -> dict[str, list[float]]:
    """Per-frame SSIM (Y, U, V, All) and PSNR (y, u, v, avg) as FFmpeg's filters report them."""
    ssim_file, psnr_file = tmp / "ssim-planes.txt", tmp / "psnr-planes.txt"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
         "-i", str(distorted), "-i", str(reference), "-lavfi",
         f"[0:v][1:v]ssim=stats_file={ssim_file};"
         f"[0:v][1:v]psnr,metadata=mode=print:file={psnr_file}",
         "-f", "null", "-"],
        check=True,
    )  # fmt: skip
    ssim_text, psnr_text = ssim_file.read_text(), psnr_file.read_text()
    values: dict[str, list[float]] = {}
    for key, ours in (("Y", "ssim_ref"), ("U", "ssim_u"), ("V", "ssim_v"), ("All", "ssim_all")):
        values[ours] = [float(m) for m in re.findall(rf"\b{key}:(\S+)", ssim_text)]
    for key, ours in (("psnr.y", "psnr_ref"), ("psnr.u", "psnr_u"), ("psnr.v", "psnr_v"),
                      ("psnr_avg", "psnr_avg")):  # fmt: skip
        values[ours] = [float(m) for m in re.findall(rf"lavfi\.psnr\.{key}=(\S+)", psnr_text)]
    return values


def yuv_frames(width: int, height: int, n: int, seed: int, chroma_noise: int = 0) -> list[Any]:
    """(Y, U, V) planes of ``n`` 4:2:0 frames; U disturbed by noise of +-``chroma_noise``.

    The planes are drawn the same way whatever ``chroma_noise`` is (the noise
    has a generator of its own), so Y and V match between two calls.
    """
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng(seed + 1000)
    cw, ch = (width + 1) // 2, (height + 1) // 2
    frames = []
    for i in range(n):
        y = np.clip(rng.normal(120, 40, (height, width)), 16, 235).astype(np.uint8)
        u = np.clip(rng.normal(128, 20, (ch, cw)) + i, 16, 240)
        v = np.clip(rng.normal(128, 20, (ch, cw)) - i, 16, 240).astype(np.uint8)
        if chroma_noise:
            u = u + noise.integers(-chroma_noise, chroma_noise + 1, u.shape)
        frames.append((y, np.clip(u, 0, 255).astype(np.uint8), v))
    return frames


def encode_yuv(path: Path, frames: list[Any], *, crf: int) -> None:
    with av.open(str(path), "w") as container:
        height, width = frames[0][0].shape
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for y, u, v in frames:
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane, data in zip(frame.planes, (y, u, v), strict=True):
                rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, -1)
                rows[:, : plane.width] = data
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize(("width", "height", "crf"), [(160, 96, 0), (174, 142, 0), (128, 72, 30)])
def test_chroma_and_combined_values_match_ffmpeg(
    tmp_path: Path, width: int, height: int, crf: int
) -> None:
    """U, V, All and avg agree with FFmpeg: a chroma-only distortion (lossless), a lossy pair."""
    pristine, distorted = tmp_path / "pristine.mp4", tmp_path / "distorted.mp4"
    encode_yuv(pristine, yuv_frames(width, height, 5, seed=2), crf=0)
    encode_yuv(distorted, yuv_frames(width, height, 5, seed=2, chroma_noise=25), crf=crf)
    theirs = ffmpeg_plane_values(distorted, pristine, tmp_path)
    measured = measure_video(distorted, pristine, groups=["chroma"])
    records = measured.metrics.frames()
    for name, ff in theirs.items():
        ours = [math.inf if r[name] is None else float(r[name]) for r in records]
        assert_agree(ours, ff, SSIM_TOL if name.startswith("ssim") else PSNR_TOL)
    # The distortion is really there, and only in chroma when the encode is lossless.
    assert max(theirs["ssim_u"]) < 0.99
    if crf == 0:
        assert theirs["ssim_ref"] == [1.0] * 5 and all(math.isinf(p) for p in theirs["psnr_ref"])
        assert all(math.isfinite(p) for p in theirs["psnr_avg"])
