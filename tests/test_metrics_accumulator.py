"""FrameMetrics records and summary, Y-plane views of PyAV frames, measure_video."""

from __future__ import annotations

import itertools
import math
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from numpy.typing import NDArray
from videos import encode_video, moving_pattern

from reelbench.metrics import (
    FrameMetrics,
    ReferenceMismatchError,
    mad,
    measure_video,
    mse,
    psnr,
    sharpness,
    ssim,
)
from reelbench.video.frames import NoVideoStreamError, iter_y_planes, probe, y_plane

KEYS = {
    "index",
    "luma_mean",
    "luma_std",
    "sharpness",
    "black",
    "mad_prev",
    "ssim_prev",
    "psnr_prev",
    "ssim_ref",
    "psnr_ref",
    "mse_ref",
}
STAT_KEYS = {"mean", "min", "max", "p05", "p50", "p95"}


def gray_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[NDArray[np.uint8]]:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (h, w)).astype(np.int16)
    return [np.clip(base + rng.integers(-8, 9, (h, w)), 0, 255).astype(np.uint8) for _ in range(n)]


def test_records_hold_every_key_with_none_where_not_applicable() -> None:
    fm = FrameMetrics()
    a, b = gray_frames(2)
    fm.push(a)
    fm.push(b)
    first, second = fm.frames()
    assert set(first) == set(second) == KEYS
    assert first["index"] == 0 and second["index"] == 1
    assert first["mad_prev"] is None and first["ssim_prev"] is None and first["psnr_prev"] is None
    assert all(r[k] is None for r in (first, second) for k in ("ssim_ref", "psnr_ref", "mse_ref"))
    assert len(fm) == fm.frame_count == 2


def test_records_equal_the_kernels() -> None:
    frames, refs = gray_frames(3, seed=1), gray_frames(3, seed=2)
    fm = FrameMetrics()
    for y, r in zip(frames, refs, strict=True):
        fm.push(y, r)
    rec = fm.frames()[2]
    prev, cur, ref = frames[1], frames[2], refs[2]
    assert rec["mad_prev"] == mad(prev, cur)
    assert rec["ssim_prev"] == ssim(prev, cur)
    assert rec["psnr_prev"] == psnr(prev, cur)
    assert rec["ssim_ref"] == ssim(cur, ref)
    assert rec["mse_ref"] == mse(cur, ref)
    assert rec["psnr_ref"] == psnr(cur, ref)
    assert rec["sharpness"] == sharpness(cur)
    assert rec["luma_mean"] == pytest.approx(float(cur.mean()))


def test_previous_frame_is_kept_even_if_the_caller_reuses_its_buffer() -> None:
    buf = np.zeros((16, 16), np.uint8)
    fm = FrameMetrics()
    fm.push(buf)
    buf[:] = 100  # a decoder reusing its frame buffer
    fm.push(buf)
    assert fm.frames()[1]["mad_prev"] == 100.0


def test_summary_stats_use_numpy_percentiles() -> None:
    frames = [np.full((16, 16), v, np.uint8) for v in (10, 50, 20, 90, 70, 30, 60)]
    fm = FrameMetrics()
    for f in frames:
        fm.push(f)
    stats = fm.summary()["luma_mean"]
    values = np.array([10, 50, 20, 90, 70, 30, 60], float)
    assert set(stats) == STAT_KEYS
    assert stats["mean"] == pytest.approx(values.mean())
    assert stats["min"] == 10 and stats["max"] == 90
    for q in (5, 50, 95):
        assert stats[f"p{q:02d}"] == pytest.approx(np.percentile(values, q))


def test_summary_flicker_and_pooled_psnr_follow_their_definitions() -> None:
    frames, refs = gray_frames(5, seed=3), gray_frames(5, seed=4)
    fm = FrameMetrics()
    for y, r in zip(frames, refs, strict=True):
        fm.push(y, r)
    s, recs = fm.summary(), fm.frames()
    mads = [float(r["mad_prev"]) for r in recs[1:]]  # type: ignore[arg-type]
    assert s["temporal_flicker"] == pytest.approx((255 - np.mean(mads)) / 255)
    mean_mse = np.mean([mse(y, r) for y, r in zip(frames, refs, strict=True)])
    assert s["psnr_ref_pooled"] == pytest.approx(10 * math.log10(255**2 / mean_mse))
    prev_mse = np.mean([mse(a, b) for a, b in itertools.pairwise(frames)])
    assert s["psnr_prev_pooled"] == pytest.approx(10 * math.log10(255**2 / prev_mse))
    assert {"mad_prev", "ssim_prev", "psnr_prev", "ssim_ref", "psnr_ref", "mse_ref"} <= set(s)


def test_frozen_and_black_frames_and_scene_cuts_are_counted() -> None:
    rng = np.random.default_rng(7)
    scene_a = rng.integers(60, 200, (64, 64), dtype=np.uint8)
    scene_b = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    black = np.full((64, 64), 16, np.uint8)
    # pairs: a->a frozen, a->a frozen, a->b cut, b->black cut, black->black frozen
    sequence = [scene_a, scene_a, scene_a, scene_b, black, black]
    fm = FrameMetrics()
    for f in sequence:
        fm.push(f)
    s = fm.summary()
    assert s["frozen_ratio"] == pytest.approx(3 / 5)
    assert s["black_ratio"] == pytest.approx(2 / 6)
    assert s["scene_cuts"] == 2
    # Identical consecutive frames: PSNR is +inf, reported as None.
    assert fm.frames()[1]["psnr_prev"] is None
    assert fm.frames()[1]["ssim_prev"] == 1.0


def test_thresholds_are_configurable() -> None:
    frames = [np.full((16, 16), v, np.uint8) for v in (10, 11)]
    strict = FrameMetrics(black_threshold=5, frozen_mad=0.9)
    loose = FrameMetrics(black_threshold=200, frozen_mad=2.0)
    for fm in (strict, loose):
        for f in frames:
            fm.push(f)
    assert strict.summary()["black_ratio"] == 0.0 and loose.summary()["black_ratio"] == 1.0
    assert strict.summary()["frozen_ratio"] == 0.0 and loose.summary()["frozen_ratio"] == 1.0
    assert loose.black_threshold == 200


def test_defaults_are_the_documented_ones() -> None:
    fm = FrameMetrics()
    assert (fm.black_threshold, fm.black_frame_share, fm.frozen_mad) == (38, 0.98, 0.5)
    assert (fm.scene_cut_ssim, fm.scene_cut_mad) == (0.35, 20.0)


def test_out_of_range_thresholds_are_value_errors() -> None:
    with pytest.raises(ValueError, match="black_frame_share"):
        FrameMetrics(black_frame_share=1.5)
    with pytest.raises(ValueError, match="frozen_mad"):
        FrameMetrics(frozen_mad=-1)


def test_empty_accumulator_summary_has_no_metric_stats() -> None:
    s = FrameMetrics().summary()
    assert s == {
        "temporal_flicker": None,
        "frozen_ratio": None,
        "black_ratio": None,
        "scene_cuts": 0,
        "psnr_prev_pooled": None,
        "psnr_ref_pooled": None,
    }


def test_frame_of_another_shape_is_refused_and_accumulator_unchanged() -> None:
    fm = FrameMetrics()
    fm.push(np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match=r"\(10, 12\) vs \(10, 14\)"):
        fm.push(np.zeros((10, 14), np.uint8))
    with pytest.raises(ValueError, match=r"\(10, 12\) vs \(12, 10\)"):
        fm.push(np.zeros((10, 12), np.uint8), np.zeros((12, 10), np.uint8))
    assert len(fm) == 1


def test_two_accumulators_on_two_threads_match_sequential_results() -> None:
    videos = [gray_frames(6, 96, 128, seed=s) for s in (10, 11)]
    sequential = []
    for frames in videos:
        fm = FrameMetrics()
        for f in frames:
            fm.push(f)
        sequential.append(fm.frames())
    threaded: list[list[dict[str, float | int | None]]] = [[], []]

    def work(i: int) -> None:
        fm = FrameMetrics()
        for f in videos[i]:
            fm.push(f)
        threaded[i] = fm.frames()

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert threaded == sequential


# --- PyAV frames ---------------------------------------------------------------------


def test_y_plane_is_a_zero_copy_view_of_the_decoded_plane(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    encode_video(path, moving_pattern(90, 50, 2))  # width 90: line_size is padded
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        plane = frame.planes[0]
        y = y_plane(frame)
        assert y.shape == (50, 90)
        assert y.strides == (plane.line_size, 1) and plane.line_size > 90
        assert y.__array_interface__["data"][0] == plane.buffer_ptr
        packed = np.frombuffer(bytes(plane), np.uint8).reshape(50, plane.line_size)[:, :90]
        np.testing.assert_array_equal(y, packed)


def test_y_plane_of_rgb_frame_is_its_bt601_luma() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    y = y_plane(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    assert y.shape == (8, 8) and y.dtype == np.uint8
    assert int(y[0, 0]) == pytest.approx(16 + 65.481, abs=1.5)  # limited-range red


def test_probe_and_iter_y_planes_read_the_video(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    encode_video(path, moving_pattern(64, 48, 5), fps=25)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.frames) == (64, 48, 25.0, 5)
    planes = list(iter_y_planes(path))
    assert len(planes) == 5 and all(p.shape == (48, 64) for p in planes)


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_file_without_video_stream_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    _audio_only(path)
    with pytest.raises(NoVideoStreamError, match=r"sound\.wav: no video stream"):
        probe(path)


def test_measure_video_pairs_reference_frames_by_position(tmp_path: Path) -> None:
    video, ref = tmp_path / "v.mp4", tmp_path / "r.mp4"
    encode_video(video, moving_pattern(64, 48, 4), crf=35)
    encode_video(ref, moving_pattern(64, 48, 3), crf=5)
    measured = measure_video(video, ref)
    recs = measured.metrics.frames()
    assert len(recs) == 4
    assert all(r["ssim_ref"] is not None for r in recs[:3]) and recs[3]["ssim_ref"] is None
    doc = measured.to_json()
    assert doc["video"]["frames"] == 4 and doc["reference"]["width"] == 64


def test_measure_video_refuses_reference_of_another_size(tmp_path: Path) -> None:
    video, ref = tmp_path / "v.mp4", tmp_path / "r.mp4"
    encode_video(video, moving_pattern(64, 48, 2))
    encode_video(ref, moving_pattern(64, 32, 2))
    with pytest.raises(ReferenceMismatchError, match=r"r\.mp4: reference is 64x32"):
        measure_video(video, ref)
