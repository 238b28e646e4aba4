"""Shared benchmark plumbing: every figure is a ratio against a named baseline.

Mark each benchmark with ``benchmark.extra_info``:

* ``role``: ``"baseline"`` or ``"candidate"``;
* ``baseline``: the baseline's name (``"hashlib"``, ``"numpy"``, ``"FFmpeg"``...),
  on the baseline itself;
* ``target``: on a candidate, the ratio it must reach (baseline time / candidate
  time for speed-ups; for "at most N times the baseline", set ``target_max``);
* ``units``: optional throughput units (``{"frames": 100}``) to report rates.

Benchmarks in the same ``group`` are compared. At the end of the session the
ratios are printed and written to ``.benchmarks/ratios.json`` for BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def _ratios(config: pytest.Config) -> list[dict[str, Any]]:
    bs = getattr(config, "_benchmarksession", None)
    if bs is None:
        return []
    groups: dict[str, list[Any]] = {}
    for bench in bs.benchmarks:
        if bench.stats is None or not bench.stats.rounds:
            continue
        groups.setdefault(bench.group or bench.name, []).append(bench)
    rows = []
    for group, benches in sorted(groups.items()):
        baselines = [b for b in benches if b.extra_info.get("role") == "baseline"]
        for cand in benches:
            if cand.extra_info.get("role") != "candidate":
                continue
            for base in baselines:
                ratio = base.stats.median / cand.stats.median
                row: dict[str, Any] = {
                    "group": group,
                    "candidate": cand.name,
                    "baseline": base.extra_info.get("baseline", base.name),
                    "candidate_median_s": cand.stats.median,
                    "baseline_median_s": base.stats.median,
                    "speedup": ratio,
                }
                if "target" in cand.extra_info:
                    row["target_speedup"] = cand.extra_info["target"]
                    row["met"] = ratio >= cand.extra_info["target"]
                if "target_max" in cand.extra_info:
                    row["time_ratio"] = 1 / ratio
                    row["target_time_ratio_max"] = cand.extra_info["target_max"]
                    row["met"] = 1 / ratio <= cand.extra_info["target_max"]
                rows.append(row)
    return rows


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = _ratios(config)
    if not rows:
        return
    tr = terminalreporter
    tr.section("ratios against baselines")
    for r in rows:
        extra = ""
        if "target_speedup" in r:
            extra = f"  target >= {r['target_speedup']}x  {'MET' if r['met'] else 'NOT MET'}"
        if "target_time_ratio_max" in r:
            extra = (
                f"  time ratio {r['time_ratio']:.2f} (target <= {r['target_time_ratio_max']})"
                f"  {'MET' if r['met'] else 'NOT MET'}"
            )
        tr.write_line(
            f"{r['group']}: {r['candidate']} vs {r['baseline']}: {r['speedup']:.2f}x{extra}"
        )
    out = Path(".benchmarks")
    out.mkdir(exist_ok=True)
    path = out / "ratios.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    for r in rows:
        previous[f"{r['group']}::{r['candidate']}::{r['baseline']}"] = r
    previous["_machine"] = _machine()
    path.write_text(json.dumps(previous, indent=2, sort_keys=True))
