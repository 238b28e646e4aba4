"""Hasler-Suesstrunk colorfulness as a reelbench metric plugin."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from reelbench.metric_plugins import MetricPlugin, PluginRun

__all__ = ["colorfulness", "plugin"]


def colorfulness(rgb: NDArray[np.uint8]) -> float:
    """Hasler and Suesstrunk's colorfulness M of an ``(h, w, 3)`` uint8 RGB image."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    spread = np.hypot(rg.std(), yb.std())
    centre = np.hypot(rg.mean(), yb.mean())
    return float(spread + 0.3 * centre)


class _Colorfulness:
    """One run: each frame's colorfulness, and the first and last for the drift."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None

    def frame(self, index: int, pixels: NDArray[np.uint8]) -> Mapping[str, float | None]:
        value = colorfulness(pixels)
        if self.first is None:
            self.first = value
        self.last = value
        return {"colorfulness": value}

    def finish(self) -> Mapping[str, float | None]:
        if self.first is None or self.last is None:
            return {"colorfulness_drift": None}
        return {"colorfulness_drift": abs(self.last - self.first)}


def _start(run: PluginRun) -> _Colorfulness:
    return _Colorfulness()


plugin = MetricPlugin(
    name="colorfulness",
    start=_start,
    frame_outputs=("colorfulness",),
    run_outputs=("colorfulness_drift",),
    frame_format="rgb",
    descriptions={
        "colorfulness": "Hasler-Suesstrunk colorfulness of the frame (0 = grey)",
        "colorfulness_drift": "|last - first| frame colorfulness",
    },
)
