"""Report generation for a 10,000-run experiment: HTML and JSON, whole commands.

Setup (not timed): a SQLite database holding one finished experiment of
2,500 items x 4 variants (10,000 runs), each with its artifact rows (canonical
videos and per-frame files: 40 distinct real files, since cache hits share
them) and 60 metric rows (10 metrics x 6 statistics).

* candidates: ``reelbench report NAME --format json -o FILE`` and
  ``reelbench report NAME --format html -o DIR`` in a fresh process (imports,
  the queries, the report model, the page with its per-frame plots, the
  videos linked into the report folder);
* baseline: the floor of any report: the same rows read with the sqlite3
  module and written out with ``json.dump``, in a fresh process.

Goal: each report command <= 5 s.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from videos import encode_video, moving_pattern

from reelbench.db.engine import open_database
from reelbench.db.models import Artifact, Experiment, Item, Metric, Run, Variant
from reelbench.identity import sha256_file

ITEMS, VARIANTS = 2500, 4
RUNS = ITEMS * VARIANTS
METRICS = ("luma_mean", "luma_std", "sharpness", "black", "mad_prev", "ssim_prev", "psnr_prev",
           "ssim_ref", "psnr_ref", "mse_ref")  # fmt: skip
STATS = ("mean", "min", "max", "p05", "p50", "p95")
DISTINCT = 40

FLOOR = """
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
runs = conn.execute(
    "SELECT r.id, i.key, i.prompt, v.key, r.repeat, r.seed, r.status, r.canon_uri, "
    "r.canon_sha256 FROM runs r JOIN items i ON i.id = r.item_id "
    "JOIN variants v ON v.id = r.variant_id").fetchall()
metrics = {}
for run_id, name, stat, value in conn.execute("SELECT run_id, name, stat, value FROM metrics"):
    metrics.setdefault(run_id, {}).setdefault(name, {})[stat] = value
artifacts = {}
for run_id, kind, uri in conn.execute("SELECT run_id, kind, uri FROM artifacts"):
    artifacts.setdefault(run_id, {})[kind] = uri
with open(sys.argv[2], "w") as out:
    json.dump([{"run": r, "metrics": metrics.get(r[0]), "artifacts": artifacts.get(r[0])}
               for r in runs], out)
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("report-10k")
    files = []
    for n in range(DISTINCT):
        video = root / "art" / f"v{n}" / "canon.mp4"
        video.parent.mkdir(parents=True)
        encode_video(video, moving_pattern(64, 48, 24, seed=n), fps=24, crf=30)
        frames = video.with_name("frames.json")
        frames.write_text(json.dumps({"frames": [
            {"index": i, **{m: 0.5 + 0.01 * i for m in METRICS}} for i in range(24)]}))  # fmt: skip
        files.append((video, sha256_file(video), frames, sha256_file(frames)))
    url = f"sqlite:///{root / 'db.sqlite'}"
    db = open_database(url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with db.sessions() as session, session.begin():
        session.execute(
            insert(Experiment).values(
                id=1,
                name="big",
                spec_hash="0" * 64,
                spec={},
                spec_path=None,
                canonical={"width": 64, "height": 48, "fps": 24},
                created_at=now,
                updated_at=now,
            )
        )
        session.execute(
            insert(Item),
            [
                {
                    "id": i + 1,
                    "experiment_id": 1,
                    "key": f"item{i}",
                    "prompt": f"prompt {i}",
                    "extra": {},
                }
                for i in range(ITEMS)
            ],
        )
        session.execute(insert(Variant), [
            {"id": v + 1, "experiment_id": 1, "key": f"variant{v}", "provider": "synthetic",
             "model": "orbit", "params": {}, "repeats": 1, "cache": True}
            for v in range(VARIANTS)])  # fmt: skip
        runs, artifacts, metrics = [], [], []
        for n in range(RUNS):
            video, vsha, frames, fsha = files[n % DISTINCT]
            run_id = n + 1
            runs.append({"id": run_id, "experiment_id": 1, "item_id": n // VARIANTS + 1,
                         "variant_id": n % VARIANTS + 1, "repeat": 0, "seed": n,
                         "status": "succeeded", "attempt": 1, "max_attempts": 3, "priority": 0,
                         "canon_uri": video.as_uri(), "canon_sha256": vsha, "created_at": now,
                         "started_at": now, "finished_at": now})  # fmt: skip
            for kind, path, sha in (("canon", video, vsha), ("frames", frames, fsha)):
                artifacts.append({"run_id": run_id, "kind": kind, "uri": path.as_uri(),
                                  "sha256": sha, "bytes": path.stat().st_size,
                                  "created_at": now})  # fmt: skip
            for m, name in enumerate(METRICS):
                for s, stat in enumerate(STATS):
                    metrics.append({"run_id": run_id, "name": name, "stat": stat,
                                    "value": (n % 97) / 97 + m + s / 10})  # fmt: skip
        session.execute(insert(Run), runs)
        session.execute(insert(Artifact), artifacts)
        session.execute(insert(Metric), metrics)
    db.dispose()
    with sqlite3.connect(root / "db.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == RUNS
    return url, root


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.benchmark(group="report-10k")
def test_floor_sqlite3_and_json_dump(benchmark: Any, big: Any) -> None:
    _, root = big
    argv = [sys.executable, "-c", FLOOR, str(root / "db.sqlite"), str(root / "floor.json")]
    benchmark.pedantic(_run, args=(argv,), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(role="baseline", baseline="sqlite3 + json.dump of the same rows")


@pytest.mark.benchmark(group="report-10k")
def test_report_json(benchmark: Any, big: Any) -> None:
    url, root = big
    argv = [sys.executable, "-m", "reelbench", "report", "big", "--db", url, "--format", "json",
            "-o", str(root / "report.json")]  # fmt: skip
    benchmark.pedantic(_run, args=(argv,), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(role="candidate", target_seconds_max=5.0, runs=RUNS)
    doc = json.loads((root / "report.json").read_text())
    assert len(doc["runs"]) == RUNS


@pytest.mark.benchmark(group="report-10k")
def test_report_html(benchmark: Any, big: Any) -> None:
    url, root = big
    out = root / "html"

    def fresh() -> tuple[tuple[list[str]], dict[str, Any]]:
        shutil.rmtree(out, ignore_errors=True)
        argv = [sys.executable, "-m", "reelbench", "report", "big", "--db", url,
                "--artifacts", str(root / "art"), "--format", "html", "-o", str(out)]  # fmt: skip
        return (argv,), {}

    benchmark.pedantic(_run, setup=fresh, rounds=3)
    benchmark.extra_info.update(role="candidate", target_seconds_max=5.0, runs=RUNS)
    assert (out / "index.html").stat().st_size > 0
    assert len(list((out / "videos").glob("*.mp4"))) == DISTINCT
