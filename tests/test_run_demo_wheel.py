"""The README's first command, as a new user meets it: the demo from an installed wheel.

Builds the wheel with maturin, installs it into a fresh virtual environment
(dependencies from the package index; pip's cache makes reruns quick), runs
``reelbench run examples/demo.toml`` in an empty folder and checks the report.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from reelbench.db.models import Metric

# Installing the dependencies into a new environment downloads them when
# pip's cache is cold: allow for a slow index.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo.toml"

#: Every metric the demo must report for every variant (the demo has a reference video).
DEMO_METRICS = {
    "ssim_ref", "psnr_ref", "mse_ref", "ssim_prev", "psnr_prev", "mad_prev",
    "temporal_flicker", "frozen_ratio", "scene_cuts", "sharpness", "luma_mean",
    "luma_std", "black", "black_ratio", "motion_mean", "motion_p95", "warp_error",
    "si", "ti", "dynamic_degree",
}  # fmt: skip


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin/`` of a fresh virtual environment with the reelbench wheel installed."""
    maturin = shutil.which("maturin") or str(Path(sys.executable).with_name("maturin"))
    if not Path(maturin).exists():
        pytest.fail("maturin is needed to build the wheel (pip install 'maturin>=1.9,<2')")
    dist = tmp_path_factory.mktemp("dist")
    built = _run([maturin, "build", "--release", "--quiet", "--out", str(dist)], cwd=ROOT)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("reelbench-*.whl")

    venv = tmp_path_factory.mktemp("venv")
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    pip = _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", str(wheel)],
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    return venv / "bin"


def test_demo_runs_from_a_wheel_and_reports_every_variant_and_metric(
    installed: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELBENCH_")}
    result = _run([str(installed / "reelbench"), "run", str(DEMO)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report_dir = tmp_path / ".reelbench" / "reports" / "demo"
    html, json_path = report_dir / "index.html", report_dir / "report.json"
    assert f"report: {html.relative_to(tmp_path)}" in result.stdout
    assert html.is_file() and json_path.is_file()

    doc = json.loads(json_path.read_text())
    assert [v["key"] for v in doc["variants"]] == ["pan-wide", "still-seeded", "flicker-flaky"]
    assert set(doc["metrics"]) >= DEMO_METRICS
    for variant in doc["variants"]:
        assert variant["status_counts"] == {"succeeded": 8}
        for name in DEMO_METRICS:
            if (variant["key"], name) == ("still-seeded", "psnr_prev"):
                continue  # identical frames: infinite PSNR, no finite value to average
            assert variant["metrics"][name]["n"] > 0, (variant["key"], name)
    # The motion numbers tell the pan, the still scene and the flicker apart.
    motion = {v["key"]: v["metrics"] for v in doc["variants"]}
    pan, still, flicker = motion["pan-wide"], motion["still-seeded"], motion["flicker-flaky"]
    assert still["psnr_prev_pooled"]["mean"] > 50
    assert pan["dynamic_degree"]["mean"] > 0.9
    assert still["dynamic_degree"]["mean"] < 0.1 and flicker["dynamic_degree"]["mean"] < 0.5
    assert pan["motion_mean"]["mean"] > 5 * max(still["motion_mean"]["mean"], 0.1)
    assert flicker["warp_error"]["mean"] > 3 * pan["warp_error"]["mean"]
    assert flicker["warp_error"]["mean"] > 3 * still["warp_error"]["mean"]
    seed = {v["key"]: v["seed_check"]["verdict"] for v in doc["variants"]}
    assert seed["still-seeded"] == "reproducible"
    # 24 runs, identical outputs share a file.
    assert 0 < len(list((report_dir / "videos").glob("*.mp4"))) <= 24 + 1

    # The exports of the installed package hold the database's numbers.
    exported = _run(
        [str(installed / "reelbench"), "report", "demo", "--format", "csv"], cwd=tmp_path, env=env
    )
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 24
    engine = create_engine(f"sqlite:///{tmp_path / '.reelbench' / 'reelbench.db'}")
    with Session(engine) as session:
        stored = {
            (m.run_id, f"{m.name}.{m.stat}"): m.value for m in session.scalars(select(Metric))
        }
    engine.dispose()
    compared = 0
    for row in rows:
        for column, text in row.items():
            key = (int(row["run_id"]), column)
            if key in stored:
                assert (float(text) if text else None) == stored[key], key
                compared += 1
    assert compared == len(stored)


def test_the_installed_wheel_holds_the_web_apps_scripts(installed: Path) -> None:
    # `reelbench serve` reads its scripts from the package: they must be in the wheel.
    code = (
        "from reelbench.serve.app import _static\n"
        "files = _static()\n"
        "print(','.join(sorted(n for n, (text, _) in files.items() if text.strip())))\n"
    )
    shown = _run([str(installed / "python"), "-c", code])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().split(",") == [
        "app.css", "compare.js", "judge.js", "live.js", "report.js"
    ]  # fmt: skip
