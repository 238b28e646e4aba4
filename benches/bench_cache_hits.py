"""Cache hits at queue speed: an experiment whose every run is a provider-call cache hit.

Setup (not timed): experiment ``first``, 2,000 runs of 64x48, 1 s synthetic
videos (1,000 items x 2 variants), worked to the end on SQLite. Then:

* candidate: experiment ``second``, the same grid under another name, so every
  request is a cache hit of ``first``; a worker (4 threads, in process) works
  it: each run checks the stored raw video's SHA-256, reuses its canonical
  video and metrics (their SHA-256 checked too) and records its rows;
* baseline: the same worker with a no-op processor draining 2,000 fresh runs
  (claim, context, fenced completion and nothing else): the queue's own cost;
* a re-run of the finished 2,000-run experiment with ``reelbench run SPEC``
  (submit finds nothing new, the report is rewritten): goal <= 2 s; its
  baseline, in the same run, is a fresh interpreter that imports SQLAlchemy
  and reads the same runs, metrics and artifacts with ``sqlite3``.

Goal: >= 300 cache-hit runs/s (2 cores, SQLite).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from queue_workers import NoopProcessor  # noqa: E402

from reelbench.db.engine import Database, open_database  # noqa: E402
from reelbench.orchestrator import WorkerOrchestrator  # noqa: E402
from reelbench.processor import RunProcessor  # noqa: E402
from reelbench.spec import parse_spec  # noqa: E402
from reelbench.submit import submit_spec  # noqa: E402

ITEMS = int(__import__("os").environ.get("REELBENCH_BENCH_CACHE_ITEMS", "1000"))
RUNS = 2 * ITEMS
CONCURRENCY = int(__import__("os").environ.get("REELBENCH_BENCH_CACHE_CONCURRENCY", "4"))


def _spec(name: str) -> Any:
    return parse_spec({
        "experiment": {"name": name},
        "canonical": {"width": 64, "height": 48, "fps": 24, "preset": "ultrafast"},
        "items": [{"id": f"i{n}", "prompt": f"prompt {n}"} for n in range(ITEMS)],
        "variants": [
            {"key": key, "provider": "synthetic", "model": pattern,
             "params": {"seconds": 1, "width": 64, "height": 48, "fps": 24}}
            for key, pattern in (("orbit", "orbit"), ("bars", "bars"))
        ],
    })  # fmt: skip


def _work(db: Database, experiment: str, processor: Any, artifacts: Path) -> float:
    worker = WorkerOrchestrator(
        db.sessions, processor, concurrency=CONCURRENCY, experiment=experiment, drain=True,
        artifact_root=artifacts, poll_seconds=0.05,
    )  # fmt: skip
    began = time.perf_counter()
    stats = worker.run()
    elapsed = time.perf_counter() - began
    assert stats.succeeded == RUNS, stats
    return elapsed


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("cache-hits")
    db = open_database(f"sqlite:///{root / 'db.sqlite'}")
    submit_spec(db.sessions, _spec("first"))
    _work(db, "first", RunProcessor(), root / "artifacts")
    yield db, root
    db.dispose()


def _rate(benchmark: Any, seconds: float, **info: Any) -> None:
    benchmark.extra_info.update(info)
    benchmark.extra_info["seconds"] = seconds
    benchmark.extra_info["runs_per_second"] = RUNS / seconds
    print(f"\n{benchmark.name}: {RUNS / seconds:.0f} runs/s ({seconds:.2f} s)")


@pytest.mark.benchmark(group="cache-hits")
def test_noop_queue_drain(benchmark: Any, lab: Any) -> None:
    db, root = lab
    names = iter(f"noop{n}" for n in range(100))
    seconds: list[float] = []

    def setup() -> tuple[tuple[str], dict[str, Any]]:
        name = next(names)
        submit_spec(db.sessions, _spec(name))
        return (name,), {}

    def drain(name: str) -> None:
        seconds.append(_work(db, name, NoopProcessor(), root / "artifacts"))

    benchmark.pedantic(drain, setup=setup, rounds=1, iterations=1)
    _rate(benchmark, seconds[-1], role="baseline", baseline="no-op processor, same worker")


@pytest.mark.benchmark(group="cache-hits")
def test_cache_hit_experiment(benchmark: Any, lab: Any) -> None:
    db, root = lab
    names = iter(f"hits{n}" for n in range(100))
    seconds: list[float] = []

    def setup() -> tuple[tuple[str], dict[str, Any]]:
        name = next(names)
        submit_spec(db.sessions, _spec(name))
        return (name,), {}

    def work(name: str) -> None:
        seconds.append(_work(db, name, RunProcessor(), root / "artifacts"))

    benchmark.pedantic(work, setup=setup, rounds=1, iterations=1)
    _rate(benchmark, seconds[-1], role="candidate", target_runs_per_second=300)


_RAW_READ = """
import sqlite3, sys
import sqlalchemy  # noqa: F401
db = sqlite3.connect(sys.argv[1])
(exp,) = db.execute("SELECT id FROM experiments WHERE name = 'first'").fetchone()
for sql in (
    "SELECT r.*, i.key, i.prompt, v.key, v.provider FROM runs r JOIN items i ON i.id = r.item_id"
    " JOIN variants v ON v.id = r.variant_id WHERE r.experiment_id = ?",
    "SELECT m.run_id, m.name, m.stat, m.value, m.version FROM metrics m"
    " JOIN runs r ON r.id = m.run_id WHERE r.experiment_id = ?",
    "SELECT a.run_id, a.kind, a.uri FROM artifacts a JOIN runs r ON r.id = a.run_id"
    " WHERE r.experiment_id = ?",
):
    db.execute(sql, (exp,)).fetchall()
"""


@pytest.mark.benchmark(group="cache-hits-rerun")
def test_rerun_baseline_sqlalchemy_import_and_raw_read(benchmark: Any, lab: Any) -> None:
    _db, root = lab
    argv = [sys.executable, "-c", _RAW_READ, str(root / "db.sqlite")]

    def read() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    benchmark.pedantic(read, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(
        role="baseline", baseline="python -c 'import sqlalchemy' + sqlite3 read of the rows"
    )


@pytest.mark.benchmark(group="cache-hits-rerun")
def test_rerun_of_a_finished_experiment(benchmark: Any, lab: Any) -> None:
    db, root = lab
    spec = root / "first.toml"
    lines = [
        "[experiment]",
        'name = "first"',
        "",
        "[canonical]",
        "width = 64",
        "height = 48",
        "fps = 24",
        'preset = "ultrafast"',
        "",
    ]
    for n in range(ITEMS):
        lines += ["[[items]]", f'id = "i{n}"', f'prompt = "prompt {n}"', ""]
    for key in ("orbit", "bars"):
        lines += ["[[variants]]", f'key = "{key}"', 'provider = "synthetic"', f'model = "{key}"',
                  "params = { seconds = 1, width = 64, height = 48, fps = 24 }", ""]  # fmt: skip
    spec.write_text("\n".join(lines))
    argv = [sys.executable, "-m", "reelbench", "run", str(spec), "--db", db.url,
            "--artifacts", str(root / "artifacts"), "--report", str(root / "report")]  # fmt: skip

    def rerun() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    benchmark.pedantic(rerun, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(role="candidate", target_seconds_max=2.0, runs=RUNS)
    if benchmark.stats:
        print(f"\n{benchmark.name}: median {benchmark.stats.stats.median:.2f} s (goal <= 2 s)")
