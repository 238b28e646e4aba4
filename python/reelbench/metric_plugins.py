"""Metric plugins: metrics from other packages, fed by the run's single decode pass.

A package adds a metric by exposing a :class:`MetricPlugin` under the entry
point group ``reelbench.metrics``::

    [project.entry-points."reelbench.metrics"]
    colorfulness = "reelbench_colorfulness:plugin"

The plugin says which frames it wants (Y plane or RGB, the canonical size or
another, every n-th frame) and which numbers it produces: per-frame outputs
(summarized per run like the native ones: mean, min, max, p05, p50, p95) and
per-run outputs (one value each). For each run, :attr:`MetricPlugin.start`
gets the run's prompt, input image and canonical format and returns a
:class:`FrameMeasurer` that is handed the frames while the canonical video
is written: there is no second decode.

A plugin that cannot be loaded or raises fails only its own outputs for that
run: they are recorded with the stat ``error`` (value 1.0) and the message
goes into ``frames.json``; the run and the other metrics go on. Interface
and a worked example: docs/metrics.md, "Plugins".
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import re
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from reelbench.errors import ReelbenchError

if TYPE_CHECKING:
    # numpy is imported where frames are measured: reports read this module's
    # names without paying for it.
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "ENTRY_POINT_GROUP",
    "ERROR_STAT",
    "FrameMeasurer",
    "MeasuringSink",
    "MetricPlugin",
    "PluginError",
    "PluginRun",
    "PluginRunner",
    "available_plugins",
    "load_plugin",
    "register_plugin",
    "unregister_plugin",
]

#: The entry-point group plugins are found under.
ENTRY_POINT_GROUP = "reelbench.metrics"

#: The stat recorded (value 1.0) for each output of a plugin that failed on a run.
ERROR_STAT = "error"

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_OUTPUT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

#: Names the native metrics use: a plugin output may not take one.
_NATIVE_NAMES = frozenset(
    [
        "luma_mean",
        "luma_std",
        "sharpness",
        "black",
        "black_ratio",
        "mad_prev",
        "ssim_prev",
        "psnr_prev",
        "mse_prev",
        "temporal_flicker",
        "frozen_ratio",
        "scene_cuts",
        "psnr_prev_pooled",
        "ssim_ref",
        "psnr_ref",
        "mse_ref",
        "psnr_ref_pooled",
        "ssim_u",
        "ssim_v",
        "ssim_all",
        "psnr_u",
        "psnr_v",
        "psnr_avg",
        "psnr_avg_pooled",
        "motion_mean",
        "motion_p95",
        "warp_error",
        "si",
        "ti",
        "dynamic_degree",
        "index",
    ]
)


class PluginError(ReelbenchError):
    """A metric plugin is unknown, cannot be loaded, or declares itself wrongly."""


@dataclass(frozen=True)
class PluginRun:
    """What a plugin knows about the run it measures."""

    run_id: int
    item_id: str
    variant_key: str
    prompt: str
    #: The item's input image (image-to-video), absolute, or None.
    image: Path | None
    #: The canonical frame size and rate of the run's frames.
    width: int
    height: int
    fps: int


class FrameMeasurer(Protocol):
    """One run's measuring state, made by :attr:`MetricPlugin.start`."""

    def frame(self, index: int, pixels: NDArray[np.uint8]) -> Mapping[str, float | None] | None:
        """Measure frame ``index`` (0-based canonical frame number).

        ``pixels``: ``(h, w)`` uint8 for ``"y"``, ``(h, w, 3)`` uint8 for ``"rgb"``,
        at the plugin's size; valid only during the call. Returns values of
        the per-frame outputs (None or a missing key: no value for this frame).
        """
        ...

    def finish(self) -> Mapping[str, float | None]:
        """The per-run outputs, after the last frame."""
        ...


@dataclass(frozen=True)
class MetricPlugin:
    """A metric a package adds; what the entry point names.

    ``name``: lowercase letters, digits and ``_`` (at most 40); every output
    is named ``name`` or ``name_<something>``, so plugins never collide with
    each other or with the native metrics. ``frame_format``: ``"y"`` (the
    luma plane, what the native metrics see) or ``"rgb"``. ``size``:
    ``(width, height)`` to scale frames to, or None for the canonical size.
    ``every``: measure every n-th frame (frames 0, n, 2n, ...).
    """

    name: str
    start: Callable[[PluginRun], FrameMeasurer]
    frame_outputs: tuple[str, ...] = ()
    run_outputs: tuple[str, ...] = ()
    frame_format: Literal["y", "rgb"] = "y"
    size: tuple[int, int] | None = None
    every: int = 1
    #: Goes into the reuse key of canonical outputs: change it when numbers change.
    #: Empty: the installed distribution's version.
    version: str = ""
    #: One-line meaning per output, shown by reports.
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.match(self.name):
            problems.append("name must be lowercase letters, digits and '_' (at most 40)")
        outputs = [*self.frame_outputs, *self.run_outputs]
        if not outputs:
            problems.append("it declares no frame_outputs or run_outputs")
        if len(set(outputs)) != len(outputs):
            problems.append("an output is declared twice")
        for out in outputs:
            if not _OUTPUT.match(out) or not (out == self.name or out.startswith(self.name + "_")):
                problems.append(f"output {out!r} must be {self.name!r} or {self.name + '_...'!r}")
            elif out in _NATIVE_NAMES:
                problems.append(f"output {out!r} is a native metric's name")
        if self.frame_format not in ("y", "rgb"):
            problems.append(f"frame_format must be 'y' or 'rgb', not {self.frame_format!r}")
        if self.every < 1:
            problems.append("every must be at least 1")
        if self.size is not None and (
            len(self.size) != 2 or min(self.size) < 2 or any(s % 2 for s in self.size)
        ):
            problems.append("size must be (width, height), even numbers of at least 2")
        if problems:
            raise PluginError(f"metric plugin {self.name!r}: " + "; ".join(problems))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every output, per-frame ones first."""
        return (*self.frame_outputs, *self.run_outputs)


_registered: dict[str, MetricPlugin] = {}
_loaded: dict[str, MetricPlugin] = {}
_lock = threading.Lock()


def register_plugin(plugin: MetricPlugin) -> None:
    """Make ``plugin`` available in this process without an installed package.

    Registered plugins take precedence over entry points of the same name.
    """
    with _lock:
        _registered[plugin.name] = plugin


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin` (and forget a cached entry-point load)."""
    with _lock:
        _registered.pop(name, None)
        _loaded.pop(name, None)


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def available_plugins() -> list[str]:
    """Names of the plugins this process can load, sorted."""
    with _lock:
        names = set(_registered)
    return sorted(names | set(_entry_points()))


def load_plugin(name: str) -> MetricPlugin:
    """The plugin called ``name``: registered, or loaded once from its entry point.

    Raises :class:`PluginError` saying what to install when it is not found,
    and what went wrong when its entry point does not give a MetricPlugin.
    """
    with _lock:
        plugin = _registered.get(name) or _loaded.get(name)
    if plugin is not None:
        return plugin
    ep = _entry_points().get(name)
    if ep is None:
        known = ", ".join(available_plugins()) or "none"
        raise PluginError(
            f"no metric plugin {name!r} is installed (installed: {known}); install the "
            f"package that provides it (it declares a {ENTRY_POINT_GROUP!r} entry point)"
        )
    try:
        obj = ep.load()
        if callable(obj) and not isinstance(obj, MetricPlugin):
            obj = obj()
    except Exception as exc:
        raise PluginError(f"metric plugin {name!r} ({ep.value}) failed to load: {exc}") from exc
    if not isinstance(obj, MetricPlugin):
        raise PluginError(
            f"metric plugin {name!r} ({ep.value}) is a {type(obj).__name__}, not a "
            "reelbench.metric_plugins.MetricPlugin"
        )
    if obj.name != name:
        raise PluginError(f"entry point {name!r} ({ep.value}) gives a plugin named {obj.name!r}")
    if not obj.version:
        version = ep.dist.version if ep.dist is not None else "0"
        obj = dataclasses.replace(obj, version=version)
    with _lock:
        _loaded[name] = obj
    return obj


def _stats(values: list[float]) -> dict[str, float]:
    """mean, min, max, p05, p50, p95 as the native summary computes them (NaN left out)."""
    import numpy as np

    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return {}
    p05, p50, p95 = (float(x) for x in np.percentile(arr, [5, 50, 95]))
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(arr))
    return {"mean": mean, "min": float(arr.min()), "max": float(arr.max()),
            "p05": p05, "p50": p50, "p95": p95}  # fmt: skip


class _Active:
    """One plugin's state on one run."""

    def __init__(self, name: str, plugin: MetricPlugin | None, error: str | None) -> None:
        self.name, self.plugin, self.error = name, plugin, error
        self.measurer: FrameMeasurer | None = None
        self.values: dict[str, list[tuple[int, float]]] = {}
        self.run_values: dict[str, float | None] = {}

    def fail(self, stage: str, exc: BaseException) -> None:
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
        self.error = f"{stage}: {type(exc).__name__}: {exc}{where}"
        self.measurer = None
        self.values.clear()


class PluginRunner:
    """Feeds one run's canonical frames to its plugins and collects their numbers.

    ``names``: the spec's plugin names, loaded at once; one that cannot be is
    failed (its outputs recorded as errors). :meth:`start`, then :meth:`push`
    per frame, then :meth:`finish`. Plugin exceptions are caught and recorded
    on that plugin only.
    """

    def __init__(self, names: Sequence[str], run: PluginRun) -> None:
        self.run = run
        self.active: list[_Active] = []
        for name in names:
            try:
                plugin = load_plugin(name)
            except PluginError as exc:
                self.active.append(_Active(name, None, f"load: {exc}"))
                continue
            self.active.append(_Active(name, plugin, None))
        self.index = 0

    def versions(self) -> list[tuple[str, str]]:
        """(name, version) per plugin, for the reuse key ("" for one that did not load)."""
        return [(a.name, a.plugin.version if a.plugin else "") for a in self.active]

    def start(self) -> None:
        """Start every loaded plugin on the run (called once, before the first frame)."""
        for entry in self.active:
            if entry.plugin is None or entry.error is not None:
                continue
            try:
                entry.measurer = entry.plugin.start(self.run)
            except Exception as exc:
                entry.fail("start", exc)

    @property
    def failed(self) -> bool:
        """Whether any plugin failed on this run."""
        return any(a.error is not None for a in self.active)

    def push(self, frame: Any) -> None:
        """Hand one canonical frame (an ``av.VideoFrame``) to the plugins that want it."""
        index = self.index
        self.index += 1
        converted: dict[tuple[str, tuple[int, int] | None], NDArray[np.uint8]] = {}
        for entry in self.active:
            plugin, measurer = entry.plugin, entry.measurer
            if plugin is None or measurer is None or index % plugin.every:
                continue
            key = (plugin.frame_format, plugin.size)
            try:
                pixels = converted.get(key)
                if pixels is None:
                    pixels = converted[key] = _pixels(frame, plugin.frame_format, plugin.size)
                out = measurer.frame(index, pixels)
                for name, value in (out or {}).items():
                    if name not in plugin.frame_outputs:
                        raise PluginError(f"frame() returned {name!r}, not a declared frame output")
                    if value is not None:
                        entry.values.setdefault(name, []).append((index, float(value)))
            except Exception as exc:
                entry.fail(f"frame {index}", exc)

    def finish(self) -> None:
        """Ask every plugin still going for its per-run outputs."""
        for entry in self.active:
            if entry.plugin is None or entry.measurer is None:
                continue
            try:
                out = dict(entry.measurer.finish() or {})
                unknown = [k for k in out if k not in entry.plugin.run_outputs]
                if unknown:
                    raise PluginError(f"finish() returned undeclared output(s) {unknown}")
                entry.run_values = {k: None if v is None else float(v) for k, v in out.items()}
            except Exception as exc:
                entry.fail("finish", exc)

    def summary(self) -> dict[str, Any]:
        """Summary entries: per-frame outputs' stats, per-run values, errors."""
        out: dict[str, Any] = {}
        for entry in self.active:
            if entry.error is not None or entry.plugin is None:
                outputs = entry.plugin.outputs if entry.plugin is not None else (entry.name,)
                for name in outputs:
                    out[name] = {ERROR_STAT: 1.0}
                continue
            for name in entry.plugin.frame_outputs:
                stats = _stats([v for _, v in entry.values.get(name, [])])
                if stats:
                    out[name] = stats
            for name in entry.plugin.run_outputs:
                if name in entry.run_values:
                    out[name] = entry.run_values[name]
        return out

    def add_to_frames(self, records: list[dict[str, Any]]) -> None:
        """Put per-frame plugin values into the native per-frame records (by index)."""
        for entry in self.active:
            if entry.error is not None or entry.plugin is None:
                continue
            for name in entry.plugin.frame_outputs:
                for index, value in entry.values.get(name, []):
                    if index < len(records):
                        records[index][name] = value

    def describe(self) -> dict[str, Any]:
        """For frames.json: per plugin its version, outputs, frame format and error."""
        doc: dict[str, Any] = {}
        for entry in self.active:
            p = entry.plugin
            doc[entry.name] = {
                "version": p.version if p else None,
                "frame_outputs": list(p.frame_outputs) if p else [],
                "run_outputs": list(p.run_outputs) if p else [],
                "frame_format": p.frame_format if p else None,
                "size": list(p.size) if p and p.size else None,
                "every": p.every if p else None,
                "error": entry.error,
            }
        return doc


def _pixels(frame: Any, fmt: str, size: tuple[int, int] | None) -> NDArray[np.uint8]:
    """The frame as the plugin asked: Y plane or RGB, at ``size`` or its own size."""
    import numpy as np

    if fmt == "y" and size is None:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        return rows[:, : plane.width]
    width, height = size if size is not None else (frame.width, frame.height)
    array: NDArray[np.uint8] = frame.to_ndarray(
        format="gray" if fmt == "y" else "rgb24", width=width, height=height
    )
    return array


class MeasuringSink:
    """The frame sink of a run: the native accumulator, then the plugins, per frame."""

    def __init__(self, native: Any, plugins: PluginRunner) -> None:
        self.native, self.plugins = native, plugins

    def push_frame(self, frame: Any, reference: Any | None = None) -> None:
        """Measure one canonical frame with the native metrics and every plugin."""
        self.native.push_frame(frame, reference=reference)
        self.plugins.push(frame)
