"""The native motion group: SI/TI against FFmpeg's ``siti`` filter, optical
flow against known translations and OpenCV's DIS, dynamic degree on a pan.

FFmpeg (imageio-ffmpeg's binary) and OpenCV (``opencv-python-headless``) are
the oracles; videos are PyAV-encoded, test images are generated here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage
from videos import encode_video, moving_pattern

from reelbench._native import FrameMetrics, optical_flow

SITI_TOL = 0.01  # FFmpeg prints the values with 6 decimals


def _ffmpeg_siti(video: Path, tmp: Path) -> tuple[list[float], list[float]]:
    out = tmp / "siti.txt"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
         "-i", str(video), "-vf", f"siti,metadata=mode=print:file={out}", "-f", "null", "-"],
        check=True,
    )  # fmt: skip
    text = out.read_text()
    si = [float(v) for v in re.findall(r"lavfi\.siti\.si=(\S+)", text)]
    ti = [float(v) for v in re.findall(r"lavfi\.siti\.ti=(\S+)", text)]
    return si, ti


def _motion_records(video: Path) -> tuple[list[dict[str, float | int | None]], dict[str, object]]:
    acc = FrameMetrics(groups=["motion"])
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            acc.push_frame(frame)
    return acc.frames(), acc.summary()


@pytest.mark.parametrize(("width", "height"), [(176, 144), (174, 142)])
def test_si_ti_equal_ffmpeg_siti_filter(tmp_path: Path, width: int, height: int) -> None:
    video = tmp_path / "pan.mp4"
    encode_video(video, moving_pattern(width, height, 10, seed=5, step=3), crf=20)
    theirs_si, theirs_ti = _ffmpeg_siti(video, tmp_path)
    frames, _ = _motion_records(video)
    assert len(frames) == len(theirs_si) == len(theirs_ti) == 10
    for i, (rec, si, ti) in enumerate(zip(frames, theirs_si, theirs_ti, strict=True)):
        assert rec["si"] is not None and abs(float(rec["si"]) - si) <= SITI_TOL, (i, rec["si"], si)
        if i == 0:
            assert rec["ti"] is None  # FFmpeg prints 0 for the first frame: no previous one
        else:
            assert rec["ti"] is not None and abs(float(rec["ti"]) - ti) <= SITI_TOL, (i, rec, ti)
    assert max(theirs_ti) > 1.0  # the pan moves: TI is not trivially zero


def test_si_ti_alone_equal_the_motion_groups_and_skip_the_flow(tmp_path: Path) -> None:
    video = tmp_path / "pan.mp4"
    encode_video(video, moving_pattern(176, 144, 6, seed=5, step=3), crf=20)
    runs = []
    for flow in (True, False):
        acc = FrameMetrics(groups=["motion"], flow=flow)
        with av.open(str(video)) as container:
            for frame in container.decode(video=0):
                acc.push_frame(frame)
        runs.append((acc.frames(), acc.summary()))
    (full, full_summary), (alone, alone_summary) = runs
    assert [(r["si"], r["ti"]) for r in alone] == [(r["si"], r["ti"]) for r in full]
    assert all(r.get("motion_mean") is None and r.get("warp_error") is None for r in alone)
    assert any(r["motion_mean"] is not None for r in full)
    assert alone_summary.get("dynamic_degree") is None
    assert full_summary["dynamic_degree"] is not None


def _texture(height: int, width: int, seed: int) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height, width))
    return ndimage.gaussian_filter(noise, 2.0) * 3.0 - 255.0


def _shifted_pair(
    dx: float, dy: float, seed: int = 7
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Frame 0 and frame 1 = frame 0 moved by (dx, dy): the true flow is (dx, dy) everywhere."""
    base = _texture(240, 320, seed)
    moved = ndimage.shift(base, (dy, dx), order=3, mode="reflect")
    to_u8 = lambda a: np.clip(np.rint(a + 128.0), 0, 255).astype(np.uint8)  # noqa: E731
    return to_u8(base), to_u8(moved)


def _epe(flow: NDArray[np.float32], dx: float, dy: float, border: int = 24) -> float:
    inner = flow[border:-border, border:-border]
    return float(np.mean(np.hypot(inner[..., 0] - dx, inner[..., 1] - dy)))


@pytest.mark.parametrize(("dx", "dy"), [(0.5, 0.0), (3.5, -2.0), (-6.25, 4.75)])
def test_flow_recovers_translation_no_worse_than_opencv_dis(dx: float, dy: float) -> None:
    a, b = _shifted_pair(dx, dy)
    ours = optical_flow(a, b)
    assert ours.shape == (240, 320, 2) and ours.dtype == np.float32
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    theirs = dis.calc(a, b, None)
    ours_epe, theirs_epe = _epe(ours, dx, dy), _epe(theirs, dx, dy)
    assert ours_epe < 0.25, f"endpoint error {ours_epe:.3f} px for a ({dx}, {dy}) px shift"
    assert ours_epe <= theirs_epe * 1.1 + 0.02, (ours_epe, theirs_epe)


def test_identical_frames_have_zero_flow() -> None:
    a, _ = _shifted_pair(0.0, 0.0)
    assert float(np.abs(optical_flow(a, a)).max()) < 1e-3


def test_pan_is_dynamic_and_still_scene_is_not(tmp_path: Path) -> None:
    pan, still = tmp_path / "pan.mp4", tmp_path / "still.mp4"
    encode_video(pan, moving_pattern(320, 240, 12, seed=2, step=4), crf=12)
    first = next(moving_pattern(320, 240, 1, seed=2))
    encode_video(still, (first for _ in range(12)), crf=12)
    pan_frames, pan_summary = _motion_records(pan)
    still_frames, still_summary = _motion_records(still)
    assert pan_summary["dynamic_degree"] == 1.0
    assert still_summary["dynamic_degree"] == 0.0
    moving = [float(r["motion_mean"]) for r in pan_frames[1:] if r["motion_mean"] is not None]
    assert len(moving) == 11
    assert all(abs(m - 4.0) < 0.75 for m in moving), moving
    resting = [float(r["motion_mean"]) for r in still_frames[1:] if r["motion_mean"] is not None]
    assert resting and max(resting) < 0.2, resting


def _u8(a: NDArray[np.float64]) -> NDArray[np.uint8]:
    return np.clip(np.rint(a + 128.0), 0, 255).astype(np.uint8)


def _warped_pair(
    inverse: Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[Any, Any]],
    forward: Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[Any, Any]],
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.float64]]:
    """Frame 1 samples frame 0 at ``inverse(x, y)``; the true flow at p is ``forward(p) - p``."""
    base = _texture(240, 320, 7)
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float64)
    sx, sy = inverse(xx, yy)
    moved = ndimage.map_coordinates(base, [sy, sx], order=3, mode="reflect")
    fx, fy = forward(xx, yy)
    return _u8(base), _u8(moved), np.stack([fx - xx, fy - yy], axis=-1)


CX, CY = (320 - 1) / 2, (240 - 1) / 2


def _rotation(degrees: float) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.float64]]:
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    return _warped_pair(
        lambda x, y: (c * (x - CX) + s * (y - CY) + CX, -s * (x - CX) + c * (y - CY) + CY),
        lambda x, y: (c * (x - CX) - s * (y - CY) + CX, s * (x - CX) + c * (y - CY) + CY),
    )


def _zoom(factor: float) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.float64]]:
    return _warped_pair(
        lambda x, y: (CX + (x - CX) / factor, CY + (y - CY) / factor),
        lambda x, y: (CX + (x - CX) * factor, CY + (y - CY) * factor),
    )


def _field_epe(
    flow: NDArray[Any], truth: NDArray[np.float64], mask: NDArray[np.bool_] | None = None
) -> float:
    err = np.hypot(flow[..., 0] - truth[..., 0], flow[..., 1] - truth[..., 1])
    keep = np.zeros(err.shape, dtype=bool)
    keep[24:-24, 24:-24] = True  # the same 24 px border as the translations
    if mask is not None:
        keep &= mask
    return float(err[keep].mean())


def _ultrafast(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.float32]:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    flow: NDArray[np.float32] = dis.calc(a, b, None)
    return flow


#: Mean endpoint error bounds (px), docs/metrics.md; measured values are about half.
ROTATION_BOUNDS = {2.0: 0.15, 5.0: 0.30}
ZOOM_BOUNDS = {1.03: 0.12, 0.95: 0.20, 1.08: 0.25}


@pytest.mark.parametrize("degrees", sorted(ROTATION_BOUNDS))
def test_flow_recovers_rotation_no_worse_than_opencv_dis(degrees: float) -> None:
    a, b, truth = _rotation(degrees)
    assert np.hypot(truth[..., 0], truth[..., 1]).max() > 2 * degrees  # corners move px
    ours, theirs = _field_epe(optical_flow(a, b), truth), _field_epe(_ultrafast(a, b), truth)
    assert ours < ROTATION_BOUNDS[degrees], f"endpoint error {ours:.3f} px, {degrees} deg"
    assert ours <= theirs * 1.1 + 0.02, (ours, theirs)


@pytest.mark.parametrize("factor", sorted(ZOOM_BOUNDS))
def test_flow_recovers_zoom_no_worse_than_opencv_dis(factor: float) -> None:
    a, b, truth = _zoom(factor)
    ours, theirs = _field_epe(optical_flow(a, b), truth), _field_epe(_ultrafast(a, b), truth)
    assert ours < ZOOM_BOUNDS[factor], f"endpoint error {ours:.3f} px, zoom x{factor}"
    assert ours <= theirs * 1.1 + 0.02, (ours, theirs)


OBJECT_BOUNDS = {(5.0, 3.0): 0.20, (12.0, -4.0): 0.40}


@pytest.mark.parametrize(("dx", "dy"), sorted(OBJECT_BOUNDS))
def test_flow_separates_moving_object_from_static_background(dx: float, dy: float) -> None:
    """A 72 px textured square moves by (dx, dy) over a different, static texture."""
    background, thing = _texture(240, 320, 7), _texture(240, 320, 11)
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float64)
    x0, y0, size = 110, 80, 72

    def frame(ox: float, oy: float) -> NDArray[np.uint8]:
        inside = (xx >= x0 + ox) & (xx < x0 + ox + size) & (yy >= y0 + oy) & (yy < y0 + oy + size)
        moved = ndimage.shift(thing, (oy, ox), order=3, mode="reflect")
        return _u8(np.where(inside, moved, background))

    a, b = frame(0, 0), frame(dx, dy)
    on_object = (xx >= x0) & (xx < x0 + size) & (yy >= y0) & (yy < y0 + size)
    truth = np.zeros((240, 320, 2))
    truth[on_object] = (dx, dy)
    # Interior and far background, away from the edges where pixels are (dis)occluded.
    interior = ndimage.binary_erosion(on_object, iterations=6)
    far = ~ndimage.binary_dilation(on_object, iterations=6 + int(max(abs(dx), abs(dy))))
    ours_flow, theirs_flow = optical_flow(a, b), _ultrafast(a, b)
    ours, theirs = _field_epe(ours_flow, truth), _field_epe(theirs_flow, truth)
    assert ours < OBJECT_BOUNDS[(dx, dy)], f"endpoint error {ours:.3f} px overall"
    assert ours <= theirs * 1.1 + 0.02, (ours, theirs)
    assert _field_epe(ours_flow, truth, interior) < 0.05
    assert _field_epe(ours_flow, truth, far) < 0.05


def test_warp_error_is_larger_on_a_flickering_clip() -> None:
    """Same pan, once clean and once with every other frame brightened (shimmer)."""
    base = _texture(240, 320 + 60, 3)
    clean = [_u8(base[:, 3 * i : 3 * i + 320]) for i in range(10)]
    flicker = [
        np.clip(f.astype(np.int16) + (12 if i % 2 else 0), 0, 255).astype(np.uint8)
        for i, f in enumerate(clean)
    ]
    summaries = []
    for frames in (clean, flicker):
        acc = FrameMetrics(groups=["motion"])
        for f in frames:
            acc.push(np.ascontiguousarray(f))
        summaries.append(acc.summary())
    clean_sum, flicker_sum = summaries
    assert flicker_sum["warp_error"]["mean"] > 3 * clean_sum["warp_error"]["mean"] + 1.0
    assert clean_sum["dynamic_degree"] == flicker_sum["dynamic_degree"] == 1.0  # both move
