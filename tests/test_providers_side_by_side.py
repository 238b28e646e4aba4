"""One spec, one variant each of Sora, Veo, Runway, Luma and a ComfyUI workflow, end to end.

Every provider's adapter runs against its loopback fake through ``reelbench
run``; the report sets the five side by side with their cost (from the price
table: none of these APIs reports one) and the seed check, which names the
APIs that take no seed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_comfyui import serve_comfyui, write_outputs
from fake_providers.checks import write_png
from fake_providers.google import serve_google
from fake_providers.openai import serve_openai
from hosted_fakes import LUMA_PREFIX, serve_luma, serve_runway

from reelbench.cli import main
from reelbench.providers.base import GenerationRequest
from reelbench.providers.pricing import estimate_usd
from reelbench.providers.synthetic import render_video

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEYS = {
    "OPENAI_API_KEY": "sk-proj-SideBySideKey_1",
    "GEMINI_API_KEY": "AIzaSideBySideKey_2",
    "RUNWAYML_API_SECRET": "key_SideBySide_3",
    "LUMAAI_API_KEY": "luma-SideBySide-4",
}


def test_five_direct_providers_side_by_side_with_cost_and_seed_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    video = tmp_path / "served.mp4"
    render_video(
        GenerationRequest("synthetic", "orbit", {"width": 64, "height": 48, "seconds": 1}, "x", 3),
        video,
    )
    shutil.copytree(EXAMPLES / "comfyui" / "workflows", tmp_path / "workflows")
    workflow = json.loads((tmp_path / "workflows" / "wan_t2v.json").read_text())
    with (
        serve_openai(video, KEYS["OPENAI_API_KEY"]) as sora,
        serve_google(video, KEYS["GEMINI_API_KEY"]) as veo,
        serve_runway(video) as runway,
        serve_luma(video) as luma,
        serve_comfyui() as comfy,
    ):
        comfy.known_classes = {node["class_type"] for node in workflow.values()}
        frames = {f"f_{i:05d}_.png": write_png(tmp_path / f"{i}.png") for i in range(6)}
        write_outputs(comfy, "9", "images", frames)
        spec = tmp_path / "spec.toml"
        spec.write_text(
            f"""
[experiment]
name = "direct"

[canonical]
width = 64
height = 48
fps = 8
max_seconds = 2.0

[metrics]
groups = ["frame", "temporal"]

[[items]]
id = "cat"
prompt = "a cat surfing"

[[variants]]
key = "sora"
provider = "openai"
model = "sora-2"
params = {{ base_url = "{sora.base_url}/v1", seconds = 4 }}

[[variants]]
key = "veo"
provider = "google"
model = "veo-3.0-generate-001"
params = {{ base_url = "{veo.base_url}", durationSeconds = 8 }}

[[variants]]
key = "gen4"
provider = "runway"
model = "gen4_turbo"
params = {{ base_url = "{runway.base_url}", ratio = "1280:720", duration = 5 }}

[[variants]]
key = "ray2"
provider = "luma"
model = "ray-2"
params = {{ base_url = "{luma.base_url}{LUMA_PREFIX}", resolution = "720p", duration = "5s" }}

[[variants]]
key = "wan"
provider = "comfyui"
params = {{ workflow = "workflows/wan_t2v.json", fps = 8, base_url = "{comfy.base_url}" }}
"""
        )
        db = f"sqlite:///{tmp_path / 'db.sqlite'}"
        args = ["--db", db, "--artifacts", str(tmp_path / "artifacts")]
        ran = CliRunner().invoke(main, ["run", str(spec), "--report", str(tmp_path / "r"), *args])
        assert ran.exit_code == 0, ran.output
        report = CliRunner().invoke(main, ["report", "direct", "--format", "json", "--db", db])
    doc = json.loads(report.output)
    variants = {v["key"]: v for v in doc["variants"]}
    assert set(variants) == {"sora", "veo", "gen4", "ray2", "wan"}
    assert all(v["status_counts"] == {"succeeded": 1} for v in variants.values())
    # Costs from the price table, recorded per call and summed per variant.
    expected = {
        "sora": estimate_usd("openai", "sora-2", {"seconds": 4}),
        "veo": estimate_usd("google", "veo-3.0-generate-001", {"durationSeconds": 8}),
        "gen4": estimate_usd("runway", "gen4_turbo", {"duration": 5}),
        "ray2": estimate_usd("luma", "ray-2", {"duration": "5s"}),
        "wan": 0.0,
    }
    for key, usd in expected.items():
        assert usd is not None
        assert variants[key]["cost_total"] == pytest.approx(usd), key
    assert doc["cost_total"] == pytest.approx(sum(u or 0 for u in expected.values()))
    # The seed check names the APIs that take no seed.
    verdicts = {v["variant"]: v["verdict"] for v in (v["seed_check"] for v in variants.values())}
    assert verdicts["sora"] == verdicts["ray2"] == verdicts["veo"] == "seed ignored"
    assert verdicts["gen4"] == verdicts["wan"] == "not tested"
    html = (tmp_path / "r" / "index.html").read_text()
    for key in variants:
        assert key in html
    assert sum(1 for r in doc["runs"] if r["canon_sha256"]) == 5
