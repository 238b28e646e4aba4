"""Every native kernel against a plain numpy reference (hypothesis).

Frames cover odd sizes, sizes below one SSIM window (8x8) and below the
Laplacian's 3x3, constant frames, row-strided views (as PyAV planes with
padding) and column-strided views (copied internally).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from reelbench.metrics import black_share, luma_stats, mad, mse, psnr, sharpness, ssim

Frame = NDArray[np.uint8]
C1 = round(0.01**2 * 255**2 * 64)
C2 = round(0.03**2 * 255**2 * 64 * 63)

# Modest example counts; no deadline (the first call may compile regexes, warm caches).
kernel_settings = settings(max_examples=60, deadline=None)


# --- numpy references ---------------------------------------------------------


def ref_ssim(a: Frame, b: Frame) -> float:
    """FFmpeg's ssim filter on one plane, written with numpy."""
    hb, wb = a.shape[0] // 4, a.shape[1] // 4
    if hb < 2 or wb < 2:
        return math.nan
    x = a[: hb * 4, : wb * 4].astype(np.int64)
    y = b[: hb * 4, : wb * 4].astype(np.int64)

    def blocks(v: NDArray[np.int64]) -> NDArray[np.int64]:
        return v.reshape(hb, 4, wb, 4).sum(axis=(1, 3))

    def windows(s: NDArray[np.int64]) -> NDArray[np.int64]:
        return s[:-1, :-1] + s[1:, :-1] + s[:-1, 1:] + s[1:, 1:]

    s1, s2 = windows(blocks(x)), windows(blocks(y))
    ss, s12 = windows(blocks(x * x + y * y)), windows(blocks(x * y))
    var = ss * 64 - s1 * s1 - s2 * s2
    covar = s12 * 64 - s1 * s2
    f32 = np.float32
    num = (2 * s1 * s2 + C1).astype(f32) * (2 * covar + C2).astype(f32)
    den = (s1 * s1 + s2 * s2 + C1).astype(f32) * (var + C2).astype(f32)
    return float(np.mean((num / den).astype(np.float64)))


def ref_mse(a: Frame, b: Frame) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def ref_sharpness(a: Frame) -> float:
    if a.shape[0] < 3 or a.shape[1] < 3:
        return math.nan
    x = a.astype(np.int64)
    lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4 * x[1:-1, 1:-1]
    return float(np.var(lap))


# --- strategies -----------------------------------------------------------------


@st.composite
def frame_pairs(draw: st.DrawFn, max_side: int = 40) -> tuple[Frame, Frame]:
    """Two frames of one shape; sometimes constant, related or strided views."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["random", "constant", "related", "strided", "col_strided"]))
    if kind == "constant":
        a = np.full((h, w), draw(st.integers(0, 255)), np.uint8)
        b = np.full((h, w), draw(st.integers(0, 255)), np.uint8)
        return a, b
    a = draw(hnp.arrays(np.uint8, (h, w)))
    if kind == "related":
        noise = draw(hnp.arrays(np.int16, (h, w), elements=st.integers(-6, 6)))
        return a, np.clip(a + noise, 0, 255).astype(np.uint8)
    b = draw(hnp.arrays(np.uint8, (h, w)))
    if kind == "strided":
        # Padded rows, as a PyAV plane viewed with its line_size.
        pad = draw(st.integers(1, 9))
        big_a = np.zeros((h, w + pad), np.uint8)
        big_b = np.full((h + 1, w + pad + 3), 7, np.uint8)
        big_a[:, :w], big_b[1:, 2 : w + 2] = a, b
        return big_a[:, :w], big_b[1:, 2 : w + 2]
    if kind == "col_strided":
        return np.repeat(a, 2, axis=1)[:, ::2], np.repeat(b, 2, axis=1)[:, ::2]
    return a, b


frames = frame_pairs().map(lambda p: p[0])


# --- properties ------------------------------------------------------------------


@kernel_settings
@given(frame_pairs())
def test_ssim_matches_ffmpeg_definition_in_numpy(pair: tuple[Frame, Frame]) -> None:
    a, b = pair
    expected = ref_ssim(a, b)
    got = ssim(a, b)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-6)


@kernel_settings
@given(frame_pairs())
def test_mse_mad_psnr_match_numpy(pair: tuple[Frame, Frame]) -> None:
    a, b = pair
    m = ref_mse(a, b)
    assert mse(a, b) == pytest.approx(m, rel=1e-12, abs=1e-12)
    assert mad(a, b) == pytest.approx(np.mean(np.abs(a.astype(np.int64) - b)), rel=1e-12)
    if m == 0:
        assert psnr(a, b) == math.inf
    else:
        assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / m), rel=1e-12)


@kernel_settings
@given(frames)
def test_luma_stats_match_numpy_mean_and_population_std(a: Frame) -> None:
    mean, std = luma_stats(a)
    assert mean == pytest.approx(float(np.mean(a)), rel=1e-12)
    assert std == pytest.approx(float(np.std(a.astype(np.float64))), rel=1e-9, abs=1e-9)


@kernel_settings
@given(frames)
def test_sharpness_is_laplacian_variance_over_interior(a: Frame) -> None:
    expected = ref_sharpness(a)
    got = sharpness(a)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("width", [18, 19, 33, 1281, 7680])
def test_sharpness_of_the_largest_laplacian_on_wide_rows(width: int) -> None:
    """A checkerboard: |lap| = 1020 everywhere, the most a row's sums can hold."""
    a = np.zeros((6, width), np.uint8)
    a[::2, ::2] = 255
    a[1::2, 1::2] = 255
    assert sharpness(a) == pytest.approx(ref_sharpness(a), rel=1e-12)


@kernel_settings
@given(frames, st.integers(0, 255))
def test_black_share_counts_pixels_strictly_below_threshold(a: Frame, threshold: int) -> None:
    assert black_share(a, threshold) == pytest.approx(float(np.mean(a < threshold)), rel=1e-12)


# --- fixed cases -----------------------------------------------------------------


def test_ssim_of_identical_frames_is_exactly_one() -> None:
    a = np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8)
    assert ssim(a, a) == 1.0
    assert psnr(a, a) == math.inf


def test_ssim_is_nan_below_one_8x8_window() -> None:
    a = np.zeros((7, 64), np.uint8)
    assert math.isnan(ssim(a, a))
    assert not math.isnan(ssim(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)))


def test_default_black_threshold_is_38() -> None:
    a = np.array([[37, 38]], np.uint8)
    assert black_share(a) == 0.5


def test_shape_mismatch_is_value_error_naming_both_shapes() -> None:
    a, b = np.zeros((10, 12), np.uint8), np.zeros((10, 14), np.uint8)
    for kernel in (ssim, psnr, mse, mad):
        with pytest.raises(ValueError, match=r"\(10, 12\) vs \(10, 14\)"):
            kernel(a, b)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), np.float32),
        np.zeros((8, 8), np.uint16),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros(64, np.uint8),
        [[0, 1], [2, 3]],
    ],
    ids=["float32", "uint16", "3-D", "1-D", "list"],
)
def test_wrong_dtype_or_dimensions_is_type_error(bad: object) -> None:
    good = np.zeros((8, 8), np.uint8)
    with pytest.raises(TypeError, match="2-D numpy array of uint8"):
        ssim(bad, good)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="2-D numpy array of uint8"):
        luma_stats(bad)  # type: ignore[arg-type]


def test_empty_frame_is_value_error() -> None:
    with pytest.raises(ValueError, match="empty frame"):
        luma_stats(np.zeros((0, 5), np.uint8))


def test_negative_row_stride_view_is_measured_like_a_copy() -> None:
    a = np.random.default_rng(1).integers(0, 256, (33, 41), dtype=np.uint8)
    b = np.random.default_rng(2).integers(0, 256, (33, 41), dtype=np.uint8)
    assert ssim(a[::-1], b[::-1]) == ssim(a[::-1].copy(), b[::-1].copy())
    assert sharpness(a.T) == sharpness(a.T.copy())


_ISA_PROBE = """
import json, numpy as np
from reelbench._native import KERNEL_ISA
from reelbench.metrics import black_share, luma_stats, mad, mse, sharpness, ssim
rng = np.random.default_rng(5)
a = rng.integers(0, 256, (75, 131), dtype=np.uint8)
b = np.clip(a + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
out = [ssim(a, b), ssim(a[1:, 3:], b[1:, 3:]), mse(a, b), mad(a, b), *luma_stats(a),
       sharpness(a), black_share(a, 100)]
print(json.dumps({"isa": KERNEL_ISA, "values": [float.hex(v) for v in out]}))
"""


def test_every_instruction_set_build_gives_bit_identical_results() -> None:
    """The baseline, AVX2 and AVX-512 builds of each kernel agree exactly."""
    results = {}
    for isa in ("baseline", "avx2", "avx512"):
        env = os.environ | {"REELBENCH_KERNEL_ISA": isa}
        proc = subprocess.run(
            [sys.executable, "-c", _ISA_PROBE], env=env, capture_output=True, text=True, check=True
        )
        doc = json.loads(proc.stdout)
        results[doc["isa"]] = doc["values"]
    assert "baseline" in results
    assert all(v == results["baseline"] for v in results.values())
