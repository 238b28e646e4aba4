"""The shipped examples stay valid: specs load, the command-provider example runs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reelbench.cli import main
from reelbench.spec import load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("spec", "runs"),
    [("demo.toml", 24), ("command/command.toml", 8), ("replicate.toml", 4)],
)
def test_example_specs_are_valid(spec: str, runs: int) -> None:
    assert load_spec(EXAMPLES / spec).run_count() == runs


def test_demo_has_three_variants_two_repeats_and_a_reference() -> None:
    spec = load_spec(EXAMPLES / "demo.toml")
    assert len(spec.variants) == 3
    assert {v.repeats for v in spec.variants} == {2}
    assert len(spec.items) >= 3
    references = [i.reference for i in spec.items if i.reference]
    assert len(references) == 1 and references[0].is_file()


def test_command_example_runs_the_script_as_a_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "command"
    shutil.copytree(EXAMPLES / "command", folder)
    # `python` in the spec must be an interpreter with PyAV: this one.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with contextlib.chdir(folder):
        result = CliRunner().invoke(main, ["run", "command.toml", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status_counts"] == {"succeeded": 8}
    report = json.loads(Path(doc["report"]["json"]).read_text())
    shas = {(r["item_key"], r["variant_key"]): set() for r in report["runs"]}
    for r in report["runs"]:
        shas[r["item_key"], r["variant_key"]].add(r["canon_sha256"])
    # Repeats use different seeds, so the script draws different videos.
    assert all(len(s) == 2 for s in shas.values())
