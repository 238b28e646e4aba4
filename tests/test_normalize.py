"""Normalization with PyAV: odd inputs become the canonical MP4, or fail clearly."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np
import pytest
from odd_videos import ODD_INPUTS, make_video

from reelbench.errors import LeaseLost, TerminalError
from reelbench.metrics import FrameMetrics
from reelbench.video.canonical import CanonicalFormat
from reelbench.video.normalize import normalize_video

FMT = CanonicalFormat(width=64, height=48, fps=24, max_seconds=2, preset="ultrafast")


def _describe(path: Path) -> dict[str, object]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="gray") for f in container.decode(stream)]
        return {
            "codec": stream.codec_context.name,
            "size": (stream.width, stream.height),
            "pix_fmt": stream.codec_context.pix_fmt,
            "fps": stream.average_rate,
            "frames": len(frames),
            "audio": [a.codec_context.name for a in container.streams.audio],
            "lumas": np.stack(frames),
        }


@pytest.mark.parametrize("name", sorted(ODD_INPUTS))
def test_odd_inputs_normalize_or_fail_terminal_naming_the_file(tmp_path: Path, name: str) -> None:
    maker, expected = ODD_INPUTS[name]
    src = maker(tmp_path / f"{name}.mp4")
    dest = tmp_path / "canon.mp4"
    if expected != "ok":
        with pytest.raises(TerminalError, match=expected) as info:
            normalize_video(src, dest, FMT)
        assert str(src) in str(info.value)
        assert src.exists(), "the raw file stays for inspection"
        return
    result = normalize_video(src, dest, FMT)
    got = _describe(dest)
    assert (got["codec"], got["size"], got["pix_fmt"], got["fps"]) == (
        "h264",
        (64, 48),
        "yuv420p",
        24,
    )
    assert got["frames"] == result.frames > 0
    assert got["audio"] == [], "audio is dropped unless keep_audio"


def test_canonical_file_is_faststart(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4")
    normalize_video(src, tmp_path / "canon.mp4", FMT)
    data = (tmp_path / "canon.mp4").read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "moov first: browsers can stream it"


def test_vfr_becomes_constant_rate_with_the_same_duration(tmp_path: Path) -> None:
    src = make_video(tmp_path / "vfr.mp4", vfr_ms=[40, 120, 60], frames=15)  # 1.1 s
    result = normalize_video(src, tmp_path / "canon.mp4", FMT)
    assert result.frames == pytest.approx(1.1 * 24, abs=1.5)


def test_longer_inputs_are_cut_at_max_seconds(tmp_path: Path) -> None:
    src = make_video(tmp_path / "long.mp4", frames=60, fps=12)  # 5 s
    result = normalize_video(src, tmp_path / "canon.mp4", FMT)
    assert result.frames == 48
    assert result.truncated
    assert _describe(tmp_path / "canon.mp4")["frames"] == 48


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    # The white block sits top-left in the stored picture; a 90 degree
    # counter-clockwise display rotation shows it bottom-left (as players do).
    src = make_video(tmp_path / "rot.mp4", rotation=90, width=64, height=48)
    normalize_video(src, tmp_path / "canon.mp4", FMT)
    frame = _describe(tmp_path / "canon.mp4")["lumas"][0]  # type: ignore[index]
    # Portrait 48x64 content letterboxed into 64x48: 36 px wide, centred.
    assert frame[:, :10].max() < 40 and frame[:, -10:].max() < 40, "pad bars are black"
    content = frame[:, 14:50]
    bottom_left = content[36:, :9].mean()
    top_left = content[:12, :9].mean()
    assert bottom_left > 200 > top_left


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
def test_every_fit_gives_the_canonical_size(tmp_path: Path, fit: str) -> None:
    src = make_video(tmp_path / "wide.mp4", width=96, height=32)
    fmt = FMT.model_copy(update={"fit": fit})
    normalize_video(src, tmp_path / "canon.mp4", fmt)
    got = _describe(tmp_path / "canon.mp4")
    assert got["size"] == (64, 48)
    top_rows = got["lumas"][0][:4]  # type: ignore[index]
    if fit == "pad":
        assert top_rows.max() < 40, "letterbox bars above the wide picture"
    else:
        assert top_rows.mean() > 40, "crop and stretch fill the frame"


def test_keep_audio_keeps_the_first_audio_track(tmp_path: Path) -> None:
    src = make_video(tmp_path / "av.mp4", audio=True)
    normalize_video(src, tmp_path / "canon.mp4", FMT.model_copy(update={"keep_audio": True}))
    assert _describe(tmp_path / "canon.mp4")["audio"] == ["aac"]


def test_metrics_see_every_encoded_frame(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=12, fps=12)
    metrics = FrameMetrics()
    result = normalize_video(src, tmp_path / "canon.mp4", FMT, metrics=metrics)
    assert metrics.frame_count == result.frames == 24
    assert all(f["ssim_ref"] is None for f in metrics.frames())


def test_reference_is_compared_frame_by_frame(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=12, fps=12)
    metrics = FrameMetrics()
    result = normalize_video(src, tmp_path / "canon.mp4", FMT, metrics=metrics, reference=src)
    assert result.reference_frames == 24
    frames = metrics.frames()
    # The same video normalized the same way: identical canonical frames.
    assert all(f["ssim_ref"] == pytest.approx(1.0) for f in frames)
    assert all(f["mse_ref"] == 0 for f in frames)


def test_shorter_reference_leaves_later_frames_without_reference(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=12, fps=12)  # 24 canonical frames
    ref = make_video(tmp_path / "ref.mp4", frames=6, fps=12)  # 12 canonical frames
    metrics = FrameMetrics()
    result = normalize_video(src, tmp_path / "canon.mp4", FMT, metrics=metrics, reference=ref)
    assert result.reference_frames == 12
    refs = [f["ssim_ref"] for f in metrics.frames()]
    assert all(r is not None for r in refs[:12])
    assert all(r is None for r in refs[12:])


def test_broken_reference_fails_terminal_naming_it(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4")
    ref = tmp_path / "ref.mp4"
    ref.write_text("no video here")
    with pytest.raises(TerminalError, match=r"reference video .*ref\.mp4"):
        normalize_video(src, tmp_path / "canon.mp4", FMT, metrics=FrameMetrics(), reference=ref)


def test_stop_event_interrupts_normalization(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4")
    stop = threading.Event()
    stop.set()
    with pytest.raises(LeaseLost):
        normalize_video(src, tmp_path / "canon.mp4", FMT, stop=stop)
