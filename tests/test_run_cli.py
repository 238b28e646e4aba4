"""``reelbench run`` and ``reelbench report`` end to end, in process, on both databases."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from reelbench.cli import main
from reelbench.db.models import Metric, ProviderCall, Run

SPEC = """
[experiment]
name = "tiny"

[canonical]
width = 64
height = 48
fps = 8
crf = 30
preset = "ultrafast"

[retry]
max_attempts = 2
backoff_seconds = 0

[[items]]
id = "a"
prompt = "first <script>alert(1)</script>"

[[items]]
id = "b"
prompt = "second"

[[variants]]
key = "good"
provider = "synthetic"
model = "orbit"
repeats = 2
params = {{ seconds = 0.5, width = 64, height = 48, fps = 8 }}

[[variants]]
key = "other"
provider = "synthetic"
model = "bars"
params = {{ seconds = 0.5, width = 48, height = 48, fps = 8{extra} }}
"""


def write_spec(folder: Path, extra: str = "") -> Path:
    path = folder / "tiny.toml"
    path.write_text(SPEC.format(extra=extra))
    return path


def invoke(args: list[str], cwd: Path) -> tuple[int, str, str]:
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_completes_and_writes_html_and_json_report(database_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    report_dir = tmp_path / "out"
    code, out, err = invoke(
        ["run", str(spec), "--db", database_url, "--artifacts", str(tmp_path / "art"),
         "--report", str(report_dir), "--workers", "2"],
        tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "6 succeeded" in out
    assert f"report: {report_dir / 'index.html'}" in out
    doc = json.loads((report_dir / "report.json").read_text())
    assert [v["key"] for v in doc["variants"]] == ["good", "other"]
    assert all(v["status_counts"] == {"succeeded": v["runs"]} for v in doc["variants"])
    for name in ("ssim_prev", "psnr_prev", "mad_prev", "sharpness", "luma_mean", "black"):
        assert name in doc["metrics"]
        assert all(v["metrics"][name]["n"] > 0 for v in doc["variants"])
    page = (report_dir / "index.html").read_text()
    assert "first &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(list((report_dir / "videos").glob("*.mp4"))) == 6


def test_run_again_does_no_work_twice(database_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    args = ["run", str(spec), "--db", database_url, "--artifacts", str(tmp_path / "art"),
            "--report", str(tmp_path / "out")]  # fmt: skip
    assert invoke(args, tmp_path)[0] == 0
    engine = create_engine(database_url)
    with Session(engine) as session:
        before = session.execute(select(Run.id, Run.attempt, Run.canon_sha256)).all()
        calls = session.scalar(select(func.count()).select_from(ProviderCall))
    code, out, _ = invoke(args, tmp_path)
    with Session(engine) as session:
        after = session.execute(select(Run.id, Run.attempt, Run.canon_sha256)).all()
        assert session.scalar(select(func.count()).select_from(ProviderCall)) == calls
    engine.dispose()
    assert code == 0
    assert sorted(after) == sorted(before)
    assert "6 succeeded" in out


def test_failed_runs_exit_1_and_the_summary_says_which_and_why(
    database_url: str, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, extra=", fail_terminal = 1")
    code, out, err = invoke(
        ["run", str(spec), "--db", database_url, "--artifacts", str(tmp_path / "art"),
         "--report", str(tmp_path / "out")],
        tmp_path,
    )  # fmt: skip
    assert code == 1
    assert "4 succeeded" in out and "2 failed" in out
    assert "Failures (2)" in out
    assert "injected terminal fault" in out
    assert "other" in out and "terminal 2" in out
    assert "2 run(s) failed" in err and "reelbench retry tiny" in err


def test_run_json_output_lists_failures(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, extra=", fail_terminal = 1")
    code, out, _ = invoke(
        ["run", str(spec), "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--artifacts",
         str(tmp_path / "art"), "--report", str(tmp_path / "out.html"), "--json"],
        tmp_path,
    )  # fmt: skip
    assert code == 1
    doc = json.loads(out)
    assert doc["status_counts"] == {"succeeded": 4, "failed": 2}
    assert {(f["item"], f["variant"], f["error_class"]) for f in doc["failures"]} == {
        ("a", "other", "terminal"),
        ("b", "other", "terminal"),
    }
    assert doc["report"]["html"] == str(tmp_path / "out.html")
    assert (tmp_path / "out.json").is_file()


def test_bad_spec_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.format(extra="").replace("repeats = 2", "repeat = 2"))
    code, _, err = invoke(["run", str(spec), "--db", f"sqlite:///{tmp_path / 'x.db'}"], tmp_path)
    assert code == 2
    assert "bad.toml" in err and "repeat" in err
    assert not (tmp_path / "x.db").exists()  # checked before the database is touched


def test_missing_spec_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke(["run", str(tmp_path / "nope.toml")], tmp_path)
    assert code == 2
    assert "nope.toml" in err


@pytest.fixture
def finished(tmp_path: Path) -> tuple[str, Path]:
    """A finished 'tiny' experiment in SQLite; its URL and artifact root."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code, _, err = invoke(
        ["run", str(write_spec(tmp_path)), "--db", url, "--artifacts", str(tmp_path / "art"),
         "--report", str(tmp_path / "first")],
        tmp_path,
    )  # fmt: skip
    assert code == 0, err
    return url, tmp_path / "art"


def test_report_formats(finished: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = finished
    code, out, _ = invoke(["report", "tiny", "--db", url], tmp_path)
    assert code == 0 and "good" in out and "sharpness" in out

    code, out, _ = invoke(["report", "tiny", "--db", url, "--format", "csv"], tmp_path)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 6

    engine = create_engine(url)
    with Session(engine) as session:
        stored = {
            (m.run_id, f"{m.name}.{m.stat}"): m.value for m in session.scalars(select(Metric))
        }
    engine.dispose()
    for row in rows:
        for column, text in row.items():
            key = (int(row["run_id"]), column)
            if key in stored:
                assert (float(text) if text else None) == stored[key]

    code, out, _ = invoke(["report", "tiny", "--db", url, "--json", "--baseline", "good"], tmp_path)
    doc = json.loads(out)
    assert code == 0 and doc["baseline"]["variant"] == "good"
    assert set(doc["baseline"]["comparisons"]) == {"other"}

    page = tmp_path / "html" / "r.html"
    code, out, _ = invoke(["report", "tiny", "--db", url, "-f", "html", "-o", str(page)], tmp_path)
    assert code == 0 and page.is_file() and str(page) in out
    assert len(list((page.parent / "videos").glob("*.mp4"))) == 6

    out_csv = tmp_path / "runs.csv"
    code, _, _ = invoke(["report", "tiny", "--db", url, "-f", "csv", "-o", str(out_csv)], tmp_path)
    assert code == 0 and out_csv.read_text().startswith("run_id,")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "nope"], "no experiment 'nope'"),
        (["report", "tiny", "--baseline", "nope"], "baseline 'nope' is not a variant"),
    ],
)
def test_report_bad_input_exits_2(
    finished: tuple[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    url, _ = finished
    code, _, err = invoke([*args, "--db", url], tmp_path)
    assert code == 2
    assert message in err


def test_report_without_database_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    code, _, err = invoke(["report", "tiny"], tmp_path)
    assert code == 2
    assert "no database at" in err
    assert not list(tmp_path.rglob("reelbench.db"))


SEEDED = """
[experiment]
name = "seeded"

[canonical]
width = 64
height = 48
fps = 8
crf = 30

[[items]]
id = "a"
prompt = "same request twice"

[[variants]]
key = "fixed"
provider = "synthetic"
repeats = 2
params = { seconds = 0.5, width = 64, height = 48, fps = 8, seed = 5 }
"""


@pytest.mark.parametrize(
    ("flags", "calls", "verdict"),
    [([], 1, "cached"), (["--no-cache"], 2, "reproducible")],
)
def test_no_cache_makes_repeated_requests_real_calls_for_the_seed_check(
    tmp_path: Path, flags: list[str], calls: int, verdict: str
) -> None:
    spec = tmp_path / "seeded.toml"
    spec.write_text(SEEDED)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code, _, err = invoke(
        ["run", str(spec), "--db", url, "--artifacts", str(tmp_path / "art"), "--json",
         "--report", str(tmp_path / "out"), *flags],
        tmp_path,
    )  # fmt: skip
    assert code == 0, err
    engine = create_engine(url)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(ProviderCall)) == calls
    engine.dispose()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (variant,) = report["variants"]
    assert variant["seed_check"]["verdict"] == verdict
