"""``reelbench cache list|show|forget`` on a real experiment."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from reelbench.cli import main
from reelbench.db.engine import open_database
from reelbench.db.models import Artifact, ProviderCall
from reelbench.storage import path_from_uri

SPEC = """
[experiment]
name = "{name}"

[canonical]
width = 64
height = 48
fps = 8
preset = "ultrafast"

[retry]
max_attempts = 1

[[items]]
id = "a"
prompt = "a cat"

[[items]]
id = "b"
prompt = "a dog"

[[variants]]
key = "good"
provider = "synthetic"
params = {{ seconds = 0.25, width = 64, height = 48, fps = 8 }}

[[variants]]
key = "garbage"
provider = "synthetic"
params = {{ seconds = 0.25, width = 64, height = 48, fps = 8, corrupt = 1.0 }}
"""


def invoke(args: list[str], cwd: Path) -> tuple[int, str, str]:
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_spec(tmp_path: Path, name: str, url: str) -> None:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(SPEC.format(name=name))
    code, _, err = invoke(["run", str(spec), "--db", url], tmp_path)
    assert code == 1, err  # the garbage variant fails terminal


def test_list_show_and_forget(database_url: str, tmp_path: Path) -> None:
    run_spec(tmp_path, "first", database_url)
    code, out, _ = invoke(["cache", "list", "-e", "first", "--db", database_url, "--json"],
                          tmp_path)  # fmt: skip
    assert code == 0
    calls = json.loads(out)["calls"]
    assert sorted(c["status"] for c in calls) == ["failed", "failed", "succeeded", "succeeded"]
    # A failed call's run did not use its output: it counts no run, but is listed.
    assert sorted((c["status"], c["runs"]) for c in calls) == [
        ("failed", 0), ("failed", 0), ("succeeded", 1), ("succeeded", 1)]  # fmt: skip
    code, out, _ = invoke(["cache", "list", "-e", "first", "-v", "good", "--db", database_url,
                           "--json"], tmp_path)  # fmt: skip
    good = json.loads(out)["calls"]
    assert [c["status"] for c in good] == ["succeeded", "succeeded"]

    prefix = good[0]["request_hash"][:8]
    code, out, _ = invoke(["cache", "show", prefix, "--db", database_url, "--json"], tmp_path)
    (doc,) = json.loads(out)["calls"]
    assert code == 0 and doc["request"]["prompt"] in ("a cat", "a dog")
    assert len(doc["runs"]) == 1
    code, _, err = invoke(["cache", "show", "abc", "--db", database_url], tmp_path)
    assert code == 2 and "at least 6 hex digits" in err

    db = open_database(database_url)
    try:
        with db.sessions() as session:
            garbage = session.scalars(select(ProviderCall).where(ProviderCall.status == "failed"))
            garbage_files = [path_from_uri(c.raw_artifact_uri) for c in garbage
                             if c.raw_artifact_uri]  # fmt: skip
            kept = [path_from_uri(a.uri) for a in session.scalars(
                select(Artifact).where(Artifact.kind == "raw"))]  # fmt: skip
        assert garbage_files and all(p.is_file() for p in garbage_files)

        code, out, _ = invoke(["cache", "forget", "-e", "first", "--db", database_url, "--json"],
                              tmp_path)  # fmt: skip
        result = json.loads(out)
        assert code == 0 and len(result["forgotten"]) == 4
        # Files no run points at are gone; the ones runs' artifacts use stay.
        assert not any(p.exists() for p in garbage_files)
        assert kept and all(p.is_file() for p in kept)
        assert len(result["kept_files"]) == 2

        # The same requests are now paid for again.
        run_spec(tmp_path, "second", database_url)
        with db.sessions() as session:
            statuses = dict(
                session.execute(
                    select(ProviderCall.status, func.count()).group_by(ProviderCall.status)
                ).all()
            )
        assert statuses == {"forgotten": 4, "succeeded": 2, "failed": 2}
    finally:
        db.dispose()


def test_forget_needs_a_selection(sqlite_url: str, tmp_path: Path) -> None:
    code, _, err = invoke(["cache", "forget", "--db", sqlite_url], tmp_path)
    assert code == 2 and "name the calls" in err
