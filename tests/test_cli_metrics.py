"""``reelbench metrics``: the JSON document, the table, and bad-input errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from click.testing import CliRunner
from videos import encode_video, moving_pattern

from reelbench.cli import main

FRAME_KEYS = {
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


@pytest.fixture
def videos(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "video": tmp_path / "video.mp4",
        "reference": tmp_path / "reference.mp4",
        "small": tmp_path / "small.mp4",
    }
    encode_video(paths["video"], moving_pattern(64, 48, 4, seed=1), crf=35)
    encode_video(paths["reference"], moving_pattern(64, 48, 4, seed=1), crf=5)
    encode_video(paths["small"], moving_pattern(32, 32, 2))
    return paths


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["metrics", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_document_has_the_documented_shape(videos: dict[str, Path]) -> None:
    code, out, _ = run(str(videos["video"]), "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"video", "reference", "frames", "summary"}
    assert doc["video"] == {
        "path": str(videos["video"]),
        "width": 64,
        "height": 48,
        "fps": 24.0,
        "frames": 4,
    }
    assert doc["reference"] is None
    assert [f["index"] for f in doc["frames"]] == [0, 1, 2, 3]
    assert all(set(f) == FRAME_KEYS for f in doc["frames"])
    assert all(f["ssim_ref"] is None and f["psnr_ref"] is None for f in doc["frames"])
    summary = doc["summary"]
    assert set(summary["ssim_prev"]) == {"mean", "min", "max", "p05", "p50", "p95"}
    assert "ssim_ref" not in summary
    for key in ("temporal_flicker", "frozen_ratio", "black_ratio", "scene_cuts"):
        assert key in summary
    assert summary["psnr_ref_pooled"] is None


def test_json_with_reference_fills_reference_metrics(videos: dict[str, Path]) -> None:
    code, out, _ = run(str(videos["video"]), "--reference", str(videos["reference"]), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["reference"]["path"] == str(videos["reference"])
    assert all(0 < f["ssim_ref"] < 1 and f["psnr_ref"] > 20 for f in doc["frames"])
    assert doc["summary"]["psnr_ref_pooled"] > 20


def test_infinite_psnr_is_json_null(videos: dict[str, Path]) -> None:
    code, out, _ = run(str(videos["video"]), "-r", str(videos["video"]), "--json")
    assert code == 0
    assert "Infinity" not in out and "NaN" not in out
    doc = json.loads(out)
    assert all(f["psnr_ref"] is None and f["ssim_ref"] == 1.0 for f in doc["frames"])
    assert doc["summary"]["psnr_ref_pooled"] is None


def test_table_lists_every_metric(videos: dict[str, Path]) -> None:
    code, out, _ = run(str(videos["video"]), "-r", str(videos["reference"]))
    assert code == 0
    for name in ("luma_mean", "sharpness", "ssim_prev", "psnr_ref", "temporal_flicker"):
        assert name in out
    assert "64x48" in out


def test_missing_file_is_a_one_line_error_with_exit_code_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    code, _, err = run(str(missing))
    assert code == 2
    assert err.strip().splitlines() == [f"Error: cannot read {missing}: No such file or directory"]


def test_missing_reference_is_an_error_naming_it(videos: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run(str(videos["video"]), "-r", str(tmp_path / "ref.mp4"))
    assert code == 2
    assert "ref.mp4" in err and len(err.strip().splitlines()) == 1


def test_file_without_video_stream_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 80), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    code, _, err = run(str(path))
    assert code == 2
    assert err.strip().splitlines() == [f"Error: {path}: no video stream in this file"]


def test_not_a_video_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_text("not a video\n" * 100)
    code, _, err = run(str(path))
    assert code == 2
    assert f"cannot read {path}" in err and len(err.strip().splitlines()) == 1


def test_reference_of_another_size_exits_2(videos: dict[str, Path]) -> None:
    code, _, err = run(str(videos["video"]), "-r", str(videos["small"]), "--json")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert str(videos["small"]) in lines[0] and "32x32" in lines[0] and "64x48" in lines[0]


def _frames_of(video: Path, reference: Path | None, groups: list[str] | None = None) -> list[Any]:
    """FrameMetrics fed directly, frame by frame, with PyAV frames (the oracle)."""
    from reelbench.metrics import FrameMetrics
    from reelbench.video.frames import iter_frames

    chroma = bool(groups and "chroma" in groups)
    fm = FrameMetrics(groups=groups)
    refs = list(iter_frames(reference, chroma=chroma)) if reference else []
    for i, frame in enumerate(iter_frames(video, chroma=chroma)):
        fm.push_frame(frame, refs[i] if i < len(refs) else None)
    return fm.frames()


def test_json_and_csv_per_frame_output_equal_frame_metrics(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    expected = _frames_of(videos["video"], videos["reference"], ["chroma", "frame"])
    code, out, _ = run(str(videos["video"]), "-r", str(videos["reference"]),
                       "--metrics", "chroma,frame", "--json")  # fmt: skip
    assert code == 0
    assert json.loads(out)["frames"] == expected

    csv_path = tmp_path / "frames.csv"
    code, out, _ = run(str(videos["video"]), "-r", str(videos["reference"]),
                       "-m", "chroma", "-m", "frame", "-f", "csv", "-o", str(csv_path))  # fmt: skip
    assert code == 0 and "ssim_all" in out, "the summary still goes to the terminal"
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [set(r) - {"video"} for r in rows] == [set(e) for e in expected]
    for row, frame in zip(rows, expected, strict=True):
        assert row["video"] == str(videos["video"])
        for key, value in frame.items():
            assert (None if row[key] == "" else float(row[key])) == value


def test_several_videos_give_the_numbers_of_one_call_each(videos: dict[str, Path]) -> None:
    other = videos["video"].with_name("other.mp4")
    encode_video(other, moving_pattern(64, 48, 6, seed=1), crf=45)
    code, out, _ = run(str(videos["video"]), str(other), "-r", str(videos["reference"]), "--json")
    assert code == 0
    together = json.loads(out)
    assert [d["video"]["path"] for d in together] == [str(videos["video"]), str(other)]
    for doc, path in zip(together, (videos["video"], other), strict=True):
        code, single, _ = run(str(path), "-r", str(videos["reference"]), "--json")
        assert json.loads(single) == doc
    # The second video is longer than the reference: its extra frames have no reference.
    assert together[1]["frames"][-1]["ssim_ref"] is None


def test_chroma_without_a_reference_is_a_clear_error(videos: dict[str, Path]) -> None:
    code, _, err = run(str(videos["video"]), "--metrics", "chroma")
    assert code == 2 and "--metrics chroma compares with a reference" in err
    code, _, err = run(str(videos["video"]), "--metrics", "colour")
    assert code == 2 and "choose from frame, temporal, reference, chroma" in err


def test_motion_group_gives_flow_siti_and_dynamic_degree(tmp_path: Path) -> None:
    from reelbench._native import FrameMetrics

    pan = tmp_path / "pan.mp4"
    encode_video(pan, moving_pattern(160, 120, 8, seed=4, step=3), crf=12)
    code, out, _ = run(str(pan), "--metrics", "motion", "--json")
    assert code == 0
    doc = json.loads(out)
    frames = doc["frames"]
    assert {"si", "ti", "motion_mean", "motion_p95", "warp_error"} <= set(frames[1])
    assert "luma_mean" not in frames[1]  # only the groups asked for
    assert frames[0]["ti"] is None and frames[1]["ti"] > 0
    assert doc["summary"]["dynamic_degree"] == 1.0
    assert all(abs(f["motion_mean"] - 3.0) < 0.75 for f in frames[1:])
    # The command's numbers are FrameMetrics' on the same decoded frames.
    acc = FrameMetrics(groups=["motion"])
    with av.open(str(pan)) as container:
        for frame in container.decode(video=0):
            acc.push_frame(frame)
    assert [f["si"] for f in frames] == pytest.approx([r["si"] for r in acc.frames()])
    code, out, _ = run(str(pan), "-m", "motion")
    assert code == 0 and "dynamic_degree" in out and "motion_mean" in out


def test_the_executable_writes_everything_before_its_quick_exit(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    # The real process (which skips the interpreter's teardown after `metrics`)
    # prints and writes what the in-process command does, and exits 0.
    args = [str(videos["video"]), "-r", str(videos["reference"])]
    code, expected, _ = run(*args, "--json")
    assert code == 0
    proc = subprocess.run(
        [sys.executable, "-m", "reelbench", "metrics", *args, "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(expected)

    out = tmp_path / "frames.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "reelbench", "metrics", *args, "--format", "csv", "-o", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    code, table, _ = run(*args, "--format", "csv")
    assert out.read_text() == table
    assert "ssim_ref" in proc.stdout  # the summary still reaches the terminal

    # A failure keeps its usual exit code and message.
    proc = subprocess.run(
        [sys.executable, "-m", "reelbench", "metrics", str(tmp_path / "missing.mp4")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "missing.mp4" in proc.stderr
