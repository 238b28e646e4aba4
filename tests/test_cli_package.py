"""The CLI package: light commands stay light, commands register without import cycles."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from videos import encode_video, moving_pattern

import reelbench
from reelbench.cli import COMMANDS, main

PACKAGE = Path(reelbench.__file__).parent
HEAVY = ("sqlalchemy", "alembic")


def _modules_after(args: list[str]) -> set[str]:
    """Top-level packages imported by ``reelbench ARGS`` in a fresh interpreter."""
    code = (
        "import sys, json\n"
        "from reelbench.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "sys.stdout.flush()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_imports_no_database_layer() -> None:
    loaded = _modules_after(["--help"])
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    assert "reelbench" in loaded


def test_metrics_imports_no_database_layer(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    encode_video(video, moving_pattern(64, 48, 4, seed=3))
    loaded = _modules_after(["metrics", str(video), "--json"])
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_summary_is_the_commands_own(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    assert COMMANDS[name][2] == command.get_short_help_str(limit=200)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports when it is imported itself.

    Imports inside functions and under ``if TYPE_CHECKING`` run later or never,
    so they cannot close a cycle at import time.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    this = _module_name(path)
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                break
            names: list[str] = []
            if isinstance(sub, ast.Import):
                names = [a.name for a in sub.names]
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                names = [sub.module] + [f"{sub.module}.{a.name}" for a in sub.names]
            for name in names:
                # Importing a submodule imports its parent packages first.
                parts = name.split(".")
                for i in range(1, len(parts) + 1):
                    candidate = ".".join(parts[:i])
                    if candidate in known and candidate != this:
                        found.add(candidate)
    return found


def test_no_import_cycles_in_the_package() -> None:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    known = set(files)
    graph = {name: _top_level_imports(path, known) for name, path in files.items()}
    # A package importing its own children (registration) is the one allowed
    # direction; a child never needs its parent package's contents.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".")}

    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_command_modules_never_import_the_group() -> None:
    for path in (PACKAGE / "cli").glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "reelbench.cli":
                pytest.fail(f"{path.name} imports from reelbench.cli (the group)")


def test_rerun_of_a_finished_experiment_imports_no_migration_or_worker(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[experiment]\nname = "again"\n\n[canonical]\nwidth = 64\nheight = 48\nfps = 12\n\n'
        '[[items]]\nid = "a"\nprompt = "p"\n\n[[variants]]\nkey = "orbit"\n'
        'provider = "synthetic"\nmodel = "orbit"\n'
        "params = { seconds = 1, width = 64, height = 48, fps = 12 }\n"
    )
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    args = ["run", str(spec), "--db", db, "--artifacts", str(tmp_path / "artifacts"),
            "--report", str(tmp_path / "report")]  # fmt: skip
    first = _modules_after(args)
    assert {"alembic", "numpy", "av"} <= first  # migrated, worked, measured
    (tmp_path / "report" / "index.html").unlink()
    # Nothing left to do: the schema is current and nothing is queued, so
    # neither Alembic nor the worker's video stack is loaded; the report is
    # written again all the same.
    again = _modules_after(args)
    assert not again & {"alembic", "numpy", "av"}, again & {"alembic", "numpy", "av"}
    assert (tmp_path / "report" / "index.html").is_file()
