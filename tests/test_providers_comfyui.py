"""The ``comfyui`` adapter against a local server speaking ComfyUI's API."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from click.testing import CliRunner
from fake_comfyui import FakeComfy, serve_comfyui, write_outputs
from processor_support import FAST, Lab
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import Session

from reelbench.cli import main
from reelbench.db.models import Base, Metric, ProviderCall, Run
from reelbench.errors import RetryableError, TerminalError
from reelbench.identity import sha256_file
from reelbench.processor import RunProcessor
from reelbench.providers import GenerationRequest, get_provider
from reelbench.providers.comfyui import ComfyUIProvider
from reelbench.providers.synthetic import render_video
from reelbench.spec import SpecError, load_spec
from reelbench.storage import path_from_uri

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PLACEHOLDER_WORKFLOW: dict[str, Any] = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}, cinematic", "clip": []}},
    "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": 20}},
    "9": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "out"}},
}
MAPPED_WORKFLOW: dict[str, Any] = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": []}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 0, "steps": 20}},
    "12": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out"}},
}


@pytest.fixture
def comfy() -> Iterator[FakeComfy]:
    with serve_comfyui() as server:
        yield server


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "served.mp4"
    params = {"width": 32, "height": 24, "seconds": 0.25, "fps": 8}
    render_video(GenerationRequest("synthetic", "orbit", params, "x", 1), path)
    return path


def write_png(path: Path, value: int, width: int = 34, height: int = 26) -> Path:
    """A real PNG file of one flat colour, encoded by PyAV."""
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        pixels = np.full((height, width, 3), value, dtype=np.uint8)
        container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def workflow_file(folder: Path, workflow: dict[str, Any], name: str = "wf.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(workflow))
    return path


def request(comfy: FakeComfy, folder: Path, **params: Any) -> GenerationRequest:
    return GenerationRequest(
        "comfyui",
        None,
        {"base_url": comfy.base_url, "workflow": "wf.json", **params},
        "a cat",
        42,
        workdir=str(folder),
    )


def run_job(req: GenerationRequest, dest: Path) -> str:
    provider = get_provider("comfyui")
    provider.validate(req.model, req.params)
    job = provider.submit(req)
    for _ in range(10):
        status = provider.poll(job, req)
        if status.state != "running":
            break
    assert status.state == "succeeded", status
    provider.fetch(job, req, dest)
    return job


def test_placeholders_receive_prompt_and_seed_and_the_video_output_is_downloaded(
    comfy: FakeComfy, tmp_path: Path, video: Path
) -> None:
    workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
    write_outputs(comfy, "9", "videos", {"clip_00001.mp4": video})
    comfy.queued_polls = 2  # absent from the history (queued) for two polls
    dest = tmp_path / "raw.mp4"

    job = run_job(request(comfy, tmp_path), dest)

    assert job == "prompt-1"
    sent = comfy.prompts[0]
    assert sent["client_id"]
    assert sent["prompt"]["6"]["inputs"]["text"] == "a cat, cinematic"
    assert sent["prompt"]["3"]["inputs"]["seed"] == 42  # a number, not "42"
    assert sha256_file(dest) == sha256_file(video)
    assert comfy.uploads == []


def test_node_inputs_are_set_and_the_item_image_is_uploaded_first(
    comfy: FakeComfy, tmp_path: Path, video: Path
) -> None:
    workflow_file(tmp_path, MAPPED_WORKFLOW)
    write_outputs(comfy, "9", "gifs", {"anim.webm": video})
    image = write_png(tmp_path / "start.png", 200)
    req = request(
        comfy,
        tmp_path,
        prompt_input="6.text",
        seed_input="3.seed",
        image_input="12.image",
        inputs={"3.steps": 7},
    )
    req = GenerationRequest(**{**req.__dict__, "image": str(image)})

    run_job(req, tmp_path / "raw.webm")

    ((name, data, fields),) = comfy.uploads
    assert data == image.read_bytes()
    assert fields["type"] == "input"
    assert name.endswith(".png")
    inputs = {k: v["inputs"] for k, v in comfy.prompts[0]["prompt"].items()}
    assert inputs["6"]["text"] == "a cat"
    assert inputs["3"] == {"seed": 42, "steps": 7}
    assert inputs["12"]["image"] == name
    assert comfy.requests.index(("POST", "/upload/image")) < comfy.requests.index(
        ("POST", "/prompt")
    )


def test_an_image_sequence_becomes_an_mp4_at_the_given_fps(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    workflow_file(tmp_path, MAPPED_WORKFLOW)
    # Odd sizes: H.264 4:2:0 needs even ones, the last row and column are dropped.
    frames = {
        f"f_{i:05d}.png": write_png(tmp_path / f"{i}.png", 40 * i, width=35, height=27)
        for i in range(5)
    }
    write_outputs(comfy, "9", "images", frames)
    dest = tmp_path / "raw.mp4"

    run_job(request(comfy, tmp_path, prompt_input="6.text", fps=8), dest)

    with av.open(str(dest)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(8)
        decoded = [f.to_ndarray(format="gray") for f in container.decode(stream)]
    assert len(decoded) == 5
    assert decoded[0].shape == (26, 34)
    means = [float(d.mean()) for d in decoded]
    assert means == sorted(means) and means[-1] - means[0] > 100  # frames kept in order


def test_a_workflow_failing_validation_is_terminal_with_the_node_errors(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    workflow = {**PLACEHOLDER_WORKFLOW, "5": {"class_type": "WanVideoSampler", "inputs": {}}}
    workflow_file(tmp_path, workflow)
    with pytest.raises(TerminalError) as caught:
        get_provider("comfyui").submit(request(comfy, tmp_path))
    message = str(caught.value)
    assert "Prompt outputs failed validation" in message
    assert "node 5 (WanVideoSampler)" in message
    assert "Node class WanVideoSampler not found" in message
    assert comfy.prompts == []


def test_an_execution_error_fails_the_job_with_the_node_exception(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
    comfy.fail_with = ("3", "KSampler", "CUDA out of memory")
    req = request(comfy, tmp_path)
    provider = get_provider("comfyui")
    status = provider.poll(provider.submit(req), req)
    assert status.state == "failed" and not status.retryable
    assert status.error == "node 3 (KSampler) raised RuntimeError: CUDA out of memory"


def test_a_prompt_the_server_no_longer_knows_fails_retryably(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    status = get_provider("comfyui").poll("prompt-77", request(comfy, tmp_path))
    assert status.state == "failed" and status.retryable
    assert "no longer knows prompt prompt-77" in (status.error or "")


def test_a_finished_prompt_without_video_output_is_terminal(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
    comfy.outputs = {"9": {"text": ["hello"]}}
    req = request(comfy, tmp_path)
    provider = get_provider("comfyui")
    job = provider.submit(req)
    assert provider.poll(job, req).state == "succeeded"
    with pytest.raises(TerminalError, match="produced no video and no image sequence"):
        provider.fetch(job, req, tmp_path / "raw.mp4")


def test_no_key_is_needed_and_a_set_key_goes_as_bearer_token_only_to_the_server(
    comfy: FakeComfy, tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
    write_outputs(comfy, "9", "videos", {"clip.mp4": video})
    monkeypatch.delenv("COMFYUI_API_KEY", raising=False)
    run_job(request(comfy, tmp_path), tmp_path / "a.mp4")
    assert set(comfy.auth) == {None}

    comfy.auth.clear()
    monkeypatch.setenv("COMFYUI_API_KEY", "comfy-proxy-secret-9")
    run_job(request(comfy, tmp_path), tmp_path / "b.mp4")
    assert set(comfy.auth) == {"Bearer comfy-proxy-secret-9"}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable_with_retry_after(
    comfy: FakeComfy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
    monkeypatch.setenv("COMFYUI_API_KEY", "comfy-proxy-secret-9")
    comfy.scripted.append((status, {"Retry-After": "7"}, {"error": "comfy-proxy-secret-9"}))
    with pytest.raises(RetryableError) as caught:
        get_provider("comfyui").submit(request(comfy, tmp_path))
    assert caught.value.retry_after == 7
    assert "comfy-proxy-secret-9" not in str(caught.value)
    assert comfy.prompts == []


def test_providers_command_describes_comfyui_as_free_keyless_and_seeded() -> None:
    result = CliRunner().invoke(main, ["providers", "comfyui", "--json"])
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)["providers"]
    assert doc["key_env"] == [] and doc["key_ready"] is True
    assert doc["honours_seed"] is True and doc["accepts_idempotency_key"] is False
    assert doc["params"]["base_url"]["default"] == "http://127.0.0.1:8188"
    assert {"workflow", "prompt_input", "seed_input", "image_input", "inputs", "fps"} <= set(
        doc["params"]
    )
    assert [(p["model"], p["usd_per_second"]) for p in doc["prices"]] == [(None, 0.0)]


SPEC = """
[experiment]
name = "comfy"

[canonical]
width = 32
height = 24
fps = 8
crf = 30
preset = "ultrafast"

[[items]]
id = "a"
prompt = "a cat"

[[items]]
id = "b"
prompt = "a dog"

[[variants]]
key = "wan"
provider = "comfyui"
model = "wan-test"
params = {params}
"""


def write_spec(folder: Path, params: str) -> Path:
    path = folder / "spec.toml"
    path.write_text(SPEC.format(params=params))
    return path


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ('{ workflow = "missing.json" }', "workflow file not found"),
        ('{ workflow = "flows/wf.json", prompt_input = "66.text" }', "has no node '66'"),
        ('{ workflow = "flows/wf.json", prompt_input = "6.txt" }', "has no input 'txt'"),
        ('{ workflow = "flows/wf.json", inputs = { "3.stepz" = 5 } }', "has no input 'stepz'"),
        ('{ workflow = "flows/wf.json" }', "no '{{prompt}}' placeholder"),
        ('{ workflow = "flows/ui.json" }', "UI format"),
        ('{ workflow = "flows/bad.json" }', "not valid JSON"),
        ('{ workflow = "flows/wf.json", prompt_input = "6" }', "must be 'node_id.input_name'"),
        ('{ workflow = "flows/wf.json", promt_input = "6.text" }', "unknown parameter"),
    ],
)
def test_a_spec_with_a_bad_workflow_is_refused_naming_the_problem(
    tmp_path: Path, params: str, problem: str
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    workflow_file(flows, MAPPED_WORKFLOW)
    (flows / "ui.json").write_text(json.dumps({"nodes": [], "links": []}))
    (flows / "bad.json").write_text("{")
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(tmp_path, params))
    assert problem in str(caught.value)


def test_the_spec_pins_the_workflow_content_so_an_edit_is_a_new_variant(tmp_path: Path) -> None:
    workflow = workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
    spec = write_spec(tmp_path, '{ workflow = "wf.json" }')
    first = load_spec(spec)
    (variant,) = first.variants
    assert variant.params["workflow_sha256"] == sha256_file(workflow)

    edited = {**PLACEHOLDER_WORKFLOW, "3": {"class_type": "KSampler", "inputs": {"seed": 1}}}
    workflow_file(tmp_path, edited)
    second = load_spec(spec)
    assert second.variants[0].params["workflow_sha256"] == sha256_file(workflow)
    assert second.hash() != first.hash()


def test_a_run_refuses_a_workflow_edited_after_submission(comfy: FakeComfy, tmp_path: Path) -> None:
    workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
    pinned = ComfyUIProvider().pin_params(None, {"workflow": "wf.json"}, str(tmp_path))
    workflow_file(tmp_path, {**PLACEHOLDER_WORKFLOW, "7": PLACEHOLDER_WORKFLOW["6"]})
    req = request(comfy, tmp_path, workflow_sha256=pinned["workflow_sha256"])
    with pytest.raises(TerminalError, match="was edited after the experiment was submitted"):
        get_provider("comfyui").submit(req)
    assert comfy.prompts == []


def test_the_example_spec_and_its_workflow_are_valid() -> None:
    assert load_spec(EXAMPLES / "comfyui" / "wan.toml").run_count() == 4


def _invoke(args: list[str], cwd: Path) -> tuple[int, str]:
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.output


def test_an_experiment_runs_through_the_worker_and_a_rerun_queues_nothing(
    comfy: FakeComfy, sqlite_url: str, tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLES / "comfyui" / "workflows", tmp_path / "workflows")
    workflow = json.loads((tmp_path / "workflows" / "wan_t2v.json").read_text())
    comfy.known_classes = {node["class_type"] for node in workflow.values()}
    frames = {f"wan_{i:05d}_.png": write_png(tmp_path / f"{i}.png", 30 * i) for i in range(6)}
    write_outputs(comfy, "9", "images", frames)
    params = (
        f'{{ workflow = "workflows/wan_t2v.json", fps = 8, base_url = "{comfy.base_url}", '
        'inputs = { "3.steps" = 4 } }'
    )
    spec = write_spec(tmp_path, params)
    args = ["run", str(spec), "--db", sqlite_url, "--artifacts", str(tmp_path / "art")]

    code, out = _invoke(args, tmp_path)
    assert code == 0, out
    assert len(comfy.prompts) == 2
    sent = {p["prompt"]["6"]["inputs"]["text"] for p in comfy.prompts}
    assert sent == {"a cat", "a dog"}
    assert {p["prompt"]["3"]["inputs"]["steps"] for p in comfy.prompts} == {4}

    engine = create_engine(sqlite_url)
    try:
        with Session(engine) as session:
            runs = session.scalars(select(Run)).all()
            assert [r.status for r in runs] == ["succeeded", "succeeded"]
            assert all(r.canon_uri for r in runs)
            assert session.scalar(select(func.count()).select_from(Metric)) > 0
            calls = session.scalars(select(ProviderCall)).all()
            assert sorted(c.job_id or "" for c in calls) == ["prompt-1", "prompt-2"]
            assert all(c.request["params"]["workflow_sha256"] for c in calls)
        for run in runs:
            canon = path_from_uri(str(run.canon_uri))
            with av.open(str(canon)) as container:
                assert container.streams.video[0].average_rate == Fraction(8)

        code, out = _invoke(args, tmp_path)
        assert code == 0, out
        assert len(comfy.prompts) == 2, "the re-run queued no new prompt"
    finally:
        engine.dispose()


WORKER = """
import sys
from pathlib import Path
from reelbench.call_cache import CallPolicy
from reelbench.context import build_context
from reelbench.db.engine import open_database
from reelbench.processor import RunProcessor

url, run_id, attempt, artifacts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
db = open_database(url)
with db.sessions() as session:
    ctx = build_context(session, run_id, attempt, worker_id="doomed", artifact_root=Path(artifacts))
with db.sessions() as session:
    RunProcessor(policy=CallPolicy(poll_initial=0.05, poll_max=0.05)).process(ctx, session)
"""


def _wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_worker_killed_while_polling_is_followed_by_one_polling_the_same_prompt(
    comfy: FakeComfy, database_url: str, tmp_path: Path, video: Path
) -> None:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    try:
        workflow = workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
        write_outputs(comfy, "9", "videos", {"clip.mp4": video})
        comfy.release.clear()  # the prompt stays queued until released
        params = {"base_url": comfy.base_url, "workflow": str(workflow)}
        variant = {"key": "wan", "provider": "comfyui", "params": params}
        (ctx,) = lab.claim(lab.submit("e", [variant]))
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        doomed = subprocess.Popen(
            [sys.executable, str(script), lab.db.url, str(ctx.run_id), str(ctx.attempt),
             str(lab.artifacts)],
            stderr=subprocess.PIPE,
        )  # fmt: skip

        def polled() -> bool:
            assert doomed.poll() is None, doomed.stderr.read() if doomed.stderr else ""
            return any(path.startswith("/history/") for _, path in comfy.requests)

        _wait_for(polled)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        if doomed.stderr:
            doomed.stderr.close()
        with lab.db.sessions() as session:
            session.execute(
                update(Run).where(Run.id == ctx.run_id).values(lease_expires_at=Run.created_at)
            )
            session.commit()
        (again,) = lab.claim(ctx.experiment_id)
        assert again.attempt == ctx.attempt + 1
        comfy.release.set()
        lab.process(again)

        assert len(comfy.prompts) == 1, "the stored prompt was polled, not queued again"
        with lab.db.sessions() as session:
            call = session.scalars(select(ProviderCall)).one()
            assert (call.status, call.job_id) == ("succeeded", "prompt-1")
    finally:
        lab.db.dispose()


def test_the_optional_key_reaches_no_table_artifact_log_or_error(
    comfy: FakeComfy,
    sqlite_url: str,
    tmp_path: Path,
    video: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "comfy-proxy-key-5e1f"
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("COMFYUI_API_KEY", secret)
    lab = Lab.open(sqlite_url, tmp_path / "artifacts")
    try:
        workflow = workflow_file(tmp_path, PLACEHOLDER_WORKFLOW)
        write_outputs(comfy, "9", "videos", {"clip.mp4": video})
        # The refused prompt's error echoes the key, as a proxy in front might.
        rejection = {"error": f"token {secret} refused", "node_errors": {}}
        comfy.scripted.append((400, {}, rejection))
        params = {"base_url": comfy.base_url, "workflow": str(workflow)}
        variants = [
            {"key": "refused", "provider": "comfyui", "params": params},
            {"key": "fine", "provider": "comfyui", "params": {**params, "fps": 12}},
        ]
        contexts = sorted(lab.claim(lab.submit("secrets", variants)), key=lambda c: c.run_id)
        with lab.db.sessions() as session, pytest.raises(TerminalError) as info:
            RunProcessor(policy=FAST).process(contexts[0], session)
        lab.process(contexts[1])

        assert set(comfy.auth) == {f"Bearer {secret}"}
        assert "[redacted] refused" in str(info.value)
        stored: list[str] = []
        with lab.db.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                stored.extend(repr(tuple(row)) for row in conn.execute(table.select()))
        for path in lab.artifacts.rglob("*"):
            if path.is_file():
                stored.append(path.read_bytes().decode("latin-1"))
        everything = "\n".join(stored)
        assert "[redacted] refused" in everything, "the refusal was recorded, key removed"
        logged = "\n".join(r.getMessage() for r in caplog.records)
        for text in (everything, logged, str(info.value)):
            assert secret not in text
    finally:
        lab.db.dispose()
