"""Built-in local providers (synthetic, command) and the provider registry."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from reelbench.errors import LeaseLost, RetryableError, TerminalError
from reelbench.identity import sha256_file
from reelbench.providers import (
    GenerationRequest,
    Provider,
    available_providers,
    get_provider,
    registry,
    validate_variant,
)
from reelbench.providers.synthetic import fault_draw

SMALL = {"width": 64, "height": 48, "fps": 12, "seconds": 1}


def _synthetic(tmp_path: Path, seed: int, name: str, **params: object) -> Path:
    provider = get_provider("synthetic")
    request = GenerationRequest("synthetic", "orbit", {**SMALL, **params}, "a red ball", seed)
    job = provider.submit(request)
    assert provider.poll(job, request).state == "succeeded"
    dest = tmp_path / name
    provider.fetch(job, request, dest)
    return dest


def _lumas(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def test_synthetic_same_request_gives_same_bytes(tmp_path: Path) -> None:
    first = _synthetic(tmp_path, 7, "a.mp4")
    second = _synthetic(tmp_path, 7, "b.mp4")
    assert sha256_file(first) == sha256_file(second)


def test_synthetic_other_seed_is_visibly_different(tmp_path: Path) -> None:
    a = _lumas(_synthetic(tmp_path, 7, "a.mp4"))
    b = _lumas(_synthetic(tmp_path, 8, "b.mp4"))
    assert a.shape == b.shape == (12, 48, 64)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5


def test_synthetic_video_has_the_requested_format(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, 1, "a.mp4", width=80, height=40, fps=10, seconds=0.5)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 80, 40)
        assert stream.average_rate == 10
    assert len(frames) == 5


def test_synthetic_texture_pan_and_flicker_move_as_documented(tmp_path: Path) -> None:
    import cv2

    size = {"width": 160, "height": 120, "fps": 12, "seconds": 1}
    still = _lumas(_synthetic(tmp_path, 3, "t.mp4", pattern="texture", **size)).astype(np.float64)
    pan = _lumas(_synthetic(tmp_path, 3, "p.mp4", pattern="pan", **size)).astype(np.float64)
    flicker = _lumas(_synthetic(tmp_path, 3, "f.mp4", pattern="flicker", **size))
    flicker = flicker.astype(np.float64)
    # The same texture: the pan starts where the still scene is.
    assert np.abs(pan[0] - still[0]).mean() < 2
    assert np.abs(np.diff(still, axis=0)).mean() < 1
    # The pan moves by one steady 1.5-3 px step per frame.
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def step(frames: np.ndarray, i: int) -> np.ndarray:
        a, b = (frames[j].clip(0, 255).astype(np.uint8) for j in (i, i + 1))
        flow = dis.calc(a, b, None)[16:-16, 16:-16]
        return np.median(flow.reshape(-1, 2), axis=0)

    steps = np.array([step(pan, i) for i in range(len(pan) - 1)])
    speeds = np.hypot(steps[:, 0], steps[:, 1])
    assert np.all((speeds > 1.3) & (speeds < 3.2)), speeds
    assert float(np.abs(steps - steps.mean(axis=0)).max()) < 0.3
    # The flicker stays in place but its brightness and fine detail change.
    assert float(np.std(flicker.mean(axis=(1, 2)))) > 2
    assert np.abs(np.diff(flicker, axis=0)).mean() > 5
    assert max(float(np.hypot(*step(flicker, i))) for i in range(5)) < 0.5


@pytest.mark.parametrize(
    "params, message",
    [
        ({"width": 63}, "even"),
        ({"fps": 0}, "fps"),
        ({"colour": "red"}, "unknown parameter"),
        ({"pattern": "spiral"}, "unknown pattern"),
        ({"fail_retryable": 2}, "fail_retryable"),
    ],
)
def test_synthetic_rejects_bad_params(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_variant("synthetic", None, params)


def test_fault_shares_are_drawn_per_seed_and_attempt() -> None:
    draws = [fault_draw(seed, 1, "retryable") for seed in range(2000)]
    assert 0.27 < float(np.mean(np.array(draws) < 0.3)) < 0.33
    assert fault_draw(5, 1, "retryable") == fault_draw(5, 1, "retryable")
    assert fault_draw(5, 1, "retryable") != fault_draw(5, 2, "retryable")


def test_synthetic_injected_faults_raise_their_class(tmp_path: Path) -> None:
    provider = get_provider("synthetic")
    retry = GenerationRequest("synthetic", None, {**SMALL, "fail_retryable": 1.0}, "p", 1)
    with pytest.raises(RetryableError, match="injected retryable"):
        provider.submit(retry)
    terminal = GenerationRequest("synthetic", None, {**SMALL, "fail_terminal": 1.0}, "p", 1)
    with pytest.raises(TerminalError, match="injected terminal"):
        provider.submit(terminal)


def test_synthetic_corrupt_output_is_not_a_video(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, 3, "bad.mp4", corrupt=1.0)
    with pytest.raises(av.error.InvalidDataError):
        av.open(str(path)).close()


def test_synthetic_latency_keeps_the_job_running() -> None:
    provider = get_provider("synthetic")
    request = GenerationRequest("synthetic", None, {**SMALL, "latency_seconds": 60}, "p", 1)
    status = provider.poll(provider.submit(request), request)
    assert status.state == "running"
    assert status.retry_after is not None and 0 < status.retry_after <= 60.01


# --- command -----------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import json, os, sys
    from reelbench.providers.base import GenerationRequest
    from reelbench.providers.synthetic import render_video
    request = json.load(sys.stdin)
    with open(os.environ["SEEN"], "w") as f:
        json.dump(request, f)
    render_video(
        GenerationRequest("synthetic", "orbit", {"width": 32, "height": 24, "seconds": 0.25},
                          request["prompt"], request["seed"]),
        __import__("pathlib").Path(os.environ["REELBENCH_OUTPUT"]),
    )
    """
)


def _command(tmp_path: Path, script: str, **params: object) -> GenerationRequest:
    path = tmp_path / "prog.py"
    path.write_text(script)
    return GenerationRequest(
        "command",
        None,
        {"command": [sys.executable, str(path)], **params},
        "a cat",
        99,
        item_id="cat-1",
        image="/abs/cat.png",
    )


def _fetch(request: GenerationRequest, dest: Path) -> None:
    provider = get_provider("command")
    job = provider.submit(request)
    assert provider.poll(job, request).state == "succeeded"
    provider.fetch(job, request, dest)


def test_command_gets_request_on_stdin_and_writes_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEN", str(tmp_path / "seen.json"))
    request = _command(tmp_path, WRITER, steps=20)
    _fetch(request, tmp_path / "out.mp4")
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {
        "prompt": "a cat",
        "seed": 99,
        "params": {"steps": 20},
        "item_id": "cat-1",
        "image": "/abs/cat.png",
        "model": None,
    }
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].width == 32


@pytest.mark.parametrize(
    "script, error, message",
    [
        ("import sys; sys.stderr.write('model weights missing'); sys.exit(3)", TerminalError,
         "exited with 3; stderr: model weights missing"),
        ("import sys; sys.stderr.write('GPU busy'); sys.exit(75)", RetryableError, "GPU busy"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", RetryableError, "SIGKILL"),
        ("pass", TerminalError, "wrote no video"),
        ("import time; time.sleep(30)", RetryableError, "timeout_seconds=0.5"),
    ],
)  # fmt: skip
def test_command_outcomes(
    tmp_path: Path, script: str, error: type[Exception], message: str
) -> None:
    request = _command(tmp_path, script, timeout_seconds=0.5)
    with pytest.raises(error, match=message):
        _fetch(request, tmp_path / "out.mp4")


def test_stopping_the_run_kills_a_running_program(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = (
        "import os, subprocess, sys, time\n"
        # A child in the same process group: it must die with the program.
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(marker)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    stop = threading.Event()
    request = replace(_command(tmp_path, script), stop=stop)
    threading.Timer(1.0, stop.set).start()
    with pytest.raises(LeaseLost, match="stopped"):
        _fetch(request, tmp_path / "out.mp4")
    child = int(marker.read_text())
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break  # killed, waiting to be reaped by init
        time.sleep(0.05)
    else:
        pytest.fail("the program's child survived the stop")


def test_command_not_found_is_terminal(tmp_path: Path) -> None:
    request = GenerationRequest("command", None, {"command": ["/nonexistent/gen"]}, "p", 1)
    with pytest.raises(TerminalError, match="cannot start '/nonexistent/gen'"):
        _fetch(request, tmp_path / "out.mp4")


@pytest.mark.parametrize("command", [None, "gen.py", [], ["ok", 3]])
def test_command_requires_an_argument_list(command: object) -> None:
    with pytest.raises(ValueError, match="list of strings"):
        validate_variant("command", None, {"command": command})


# --- registry ----------------------------------------------------------------


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown provider .sora.*synthetic"):
        validate_variant("sora", None, {})


def test_builtins_implement_the_protocol() -> None:
    for name in ("synthetic", "command", "replicate", "fal"):
        assert isinstance(get_provider(name), Provider)
        assert name in available_providers()


def test_entry_point_plugins_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myplugin.py").write_text(
        textwrap.dedent(
            """
            from reelbench.providers.synthetic import SyntheticProvider

            class EchoProvider(SyntheticProvider):
                name = "echo"
            """
        )
    )
    dist = tmp_path / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[reelbench.providers]\necho = myplugin:EchoProvider\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_instances", {})
    assert "echo" in available_providers()
    provider = get_provider("echo")
    assert provider.name == "echo"
    validate_variant("echo", None, {"width": 32})
