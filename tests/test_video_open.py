"""Opening a video without FFmpeg's probe decode changes nothing a reader sees.

``open_input`` tells the stream probe to skip video frames (it decoded the
first frame only to learn what most containers state). The same files opened
the usual way must give the same stream description and the same frames.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import pytest
from videos import encode_video, moving_pattern

from reelbench.video.frames import decode_frames, open_input, video_info

CASES = [
    ("clip.mp4", "libx264", "yuv420p"),
    ("clip.mkv", "libx264", "yuv420p"),
    ("clip.webm", "libvpx-vp9", "yuv420p"),
    ("clip.avi", "mpeg4", "yuv420p"),
    ("clip.mov", "prores_ks", "yuv422p10le"),
]


def _frames_digest(container: av.container.InputContainer) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    for frame in decode_frames(container):
        plane = frame.planes[0]
        digest.update(bytes(plane))
        count += 1
    return count, digest.hexdigest()


@pytest.mark.parametrize(("name", "codec", "pix_fmt"), CASES)
def test_open_without_probe_decode_reads_the_same(
    tmp_path: Path, name: str, codec: str, pix_fmt: str
) -> None:
    path = tmp_path / name
    encode_video(path, moving_pattern(96, 64, 12, seed=3), fps=12, codec=codec, pix_fmt=pix_fmt)
    with av.open(str(path)) as usual:
        expected_info = video_info(usual, path)
        expected = _frames_digest(usual)
    with open_input(path) as fast:
        if codec == "libx264":
            # Nothing decoded yet: H.264's pixel format is known only from
            # a decoded frame (other codecs' headers state it).
            assert fast.streams.video[0].codec_context.format is None
        info = video_info(fast, path)
        got = _frames_digest(fast)
    assert info == expected_info
    assert got == expected
    assert got[0] == 12
