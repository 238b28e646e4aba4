"""``reelbench providers`` and the submit-time API key check."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from reelbench.cli import main
from reelbench.providers import registry

KEY_VARS = (
    "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "REPLICATE_API_TOKEN", "FAL_KEY",
    "ECHO_TOKEN",
)  # fmt: skip
OPENAI_KEY = "sk-proj-CliSecretValue_55e1"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed plugin provider ``echo`` that needs ``ECHO_TOKEN``."""
    (tmp_path / "echoplugin.py").write_text(
        textwrap.dedent(
            """
            from reelbench.providers.synthetic import SyntheticProvider

            class EchoProvider(SyntheticProvider):
                '''Echoes synthetic videos, with a key.'''
                name = "echo"
                key_env = ("ECHO_TOKEN",)
                honours_seed = False
                param_docs = {"loud": (False, "shout")}
            """
        )
    )
    dist = tmp_path / "echoplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echoplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[reelbench.providers]\necho = echoplugin:EchoProvider\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_instances", {})
    return "echo"


def _providers_json(*args: str) -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(main, ["providers", *args, "--json"])
    assert result.exit_code == 0, result.output
    assert OPENAI_KEY not in result.output
    return {p["name"]: p for p in json.loads(result.stdout)["providers"]}


def test_json_lists_every_provider_with_key_set_flags(
    plugin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", "gm-key")
    monkeypatch.setenv("FAL_KEY", "   ")  # blank counts as not set
    doc = _providers_json()
    assert set(doc) == {
        "synthetic", "command", "replicate", "fal", "openai", "google", "runway", "luma",
        "comfyui", "echo",
    }  # fmt: skip
    flags = {name: [(k["name"], k["set"]) for k in p["key_env"]] for name, p in doc.items()}
    assert flags == {
        "synthetic": [],
        "command": [],
        "replicate": [("REPLICATE_API_TOKEN", False)],
        "fal": [("FAL_KEY", False)],
        "openai": [("OPENAI_API_KEY", True)],
        "google": [("GOOGLE_API_KEY", False), ("GEMINI_API_KEY", True)],
        "runway": [("RUNWAYML_API_SECRET", False)],
        "luma": [("LUMAAI_API_KEY", False)],
        "comfyui": [],
        "echo": [("ECHO_TOKEN", False)],
    }
    ready = {name: p["key_ready"] for name, p in doc.items()}
    assert ready == {"synthetic": True, "command": True, "replicate": False, "fal": False,
                     "openai": True, "google": True, "runway": False, "luma": False,
                     "comfyui": True, "echo": False}  # fmt: skip
    assert doc["echo"]["builtin"] is False and doc["openai"]["builtin"] is True
    assert doc["echo"]["params"] == {"loud": {"default": False, "description": "shout"}}
    seeds = {name: p["honours_seed"] for name, p in doc.items()}
    assert seeds["synthetic"] and not seeds["openai"] and not seeds["google"]
    assert seeds["runway"] and not seeds["luma"] and seeds["comfyui"]
    assert not seeds["echo"]


def test_json_of_one_provider_has_params_defaults_and_prices() -> None:
    doc = _providers_json("openai")
    assert list(doc) == ["openai"]
    openai = doc["openai"]
    assert openai["params"]["base_url"]["default"] == "https://api.openai.com/v1"  # type: ignore[index]
    prices = {p["model"]: p for p in openai["prices"]}  # type: ignore[attr-defined]
    assert prices["sora-2"]["usd_per_second"] == 0.10
    assert prices["sora-2-pro"]["read_on"]
    assert openai["accepts_idempotency_key"] is False


def test_text_output_says_which_key_is_set_never_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    result = CliRunner().invoke(main, ["providers"])
    assert result.exit_code == 0, result.output
    assert OPENAI_KEY not in result.output
    assert "OPENAI_API_KEY (set)" in result.output
    assert "REPLICATE_API_TOKEN (not set)" in result.output
    assert "sora-2-pro" in result.output and "veo-3.0-generate-001" in result.output


def test_unknown_provider_is_bad_input() -> None:
    result = CliRunner().invoke(main, ["providers", "sora"])
    assert result.exit_code == 2
    assert "unknown provider 'sora'" in result.output and "openai" in result.output


def test_providers_imports_no_database_layer() -> None:
    code = (
        "import sys, json\n"
        "from reelbench.cli import main\n"
        "try:\n"
        "    main(['providers', '--json'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "sys.stdout.flush()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert not loaded & {"sqlalchemy", "alembic"}


def _spec(tmp_path: Path, provider: str, model: str) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        textwrap.dedent(
            f"""
            [experiment]
            name = "keys"

            [[items]]
            id = "cat"
            prompt = "a cat surfing"

            [[variants]]
            key = "local"
            provider = "synthetic"
            model = "orbit"

            [[variants]]
            key = "hosted"
            provider = "{provider}"
            model = "{model}"
            """
        )
    )
    return spec


@pytest.mark.parametrize("command", ["submit", "run"])
@pytest.mark.parametrize(
    ("provider", "model", "variable"),
    [("openai", "sora-2", "OPENAI_API_KEY"),
     ("google", "veo-3.0-generate-001", "GOOGLE_API_KEY or GEMINI_API_KEY"),
     ("replicate", "acme/video", "REPLICATE_API_TOKEN")],
)  # fmt: skip
def test_missing_key_fails_before_anything_is_queued(
    tmp_path: Path, command: str, provider: str, model: str, variable: str
) -> None:
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        main,
        [command, str(_spec(tmp_path, provider, model)), "--db", f"sqlite:///{db}",
         *(["--artifacts", str(tmp_path / "a")] if command == "run" else [])],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert variable in result.output
    assert "hosted" in result.output and "reelbench providers" in result.output
    assert not db.exists(), "nothing was written: no database, no queued run"


def test_a_set_key_passes_and_skip_key_check_queues_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path, "google", "veo-3.0-generate-001")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    skipped = CliRunner().invoke(main, ["submit", str(spec), "--db", url, "--skip-key-check",
                                        "--json"])  # fmt: skip
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.stdout)["runs_created"] == 2
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    again = CliRunner().invoke(main, ["submit", str(spec), "--db", url, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["runs_total"] == 2
