"""``comfyui``: a local or remote ComfyUI server running an API-format workflow.

Checked against ComfyUI's ``server.py`` (commit 005f3ba4) and its history
records:

* an item image is uploaded first: ``POST {base}/upload/image`` (multipart
  ``image``, ``type=input``, ``overwrite=true``) -> ``{"name", "subfolder", "type"}``;
* the workflow, with the prompt, seed, image and params written into its node
  inputs, is queued: ``POST {base}/prompt`` ``{"prompt": workflow, "client_id"}``
  -> ``{"prompt_id", "number", "node_errors"}``; the ``prompt_id`` is the job id.
  HTTP 400 ``{"error", "node_errors"}`` (validation failed) is terminal and
  names each node's errors;
* ``GET {base}/history/{prompt_id}``: absent while queued or running (``GET
  {base}/queue`` tells a lost prompt from a waiting one); ``status.status_str``
  ``"success"`` -> succeeded, ``"error"`` -> failed with the node's exception
  from ``status.messages``;
* the output is downloaded with ``GET {base}/view?filename=&subfolder=&type=``:
  a video file (``videos``/``gifs`` entries, or an animated image), or an image
  sequence, assembled with PyAV into an MP4 at ``params.fps``.

The workflow names its inputs either by ``{{prompt}}``, ``{{seed}}`` and
``{{image}}`` placeholders in its strings, or through params naming
``"node_id.input_name"`` (``prompt_input``, ``seed_input``, ``image_input``,
``inputs``). No key is needed; ``COMFYUI_API_KEY``, if set, is sent as a
bearer token (for servers behind an authenticating proxy).
"""

from __future__ import annotations

import copy
import json
import mimetypes
import os
import tempfile
import uuid
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import av
import httpx
import numpy as np

from reelbench.errors import RetryableError, TerminalError
from reelbench.identity import sha256_file
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.http import DEFAULT_MAX_DOWNLOAD_BYTES, HttpApi
from reelbench.providers.params import check_known_keys, number_param

__all__ = ["ComfyUIProvider", "load_workflow", "prepare_workflow"]

DEFAULT_BASE_URL = "http://127.0.0.1:8188"
DEFAULT_FPS = 16.0
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PLACEHOLDERS = ("{{prompt}}", "{{seed}}", "{{image}}")
_MAPPINGS = ("prompt_input", "seed_input", "image_input")
_KNOWN = (
    "workflow",
    *_MAPPINGS,
    "inputs",
    "output_node",
    "fps",
    "base_url",
    "max_download_bytes",
    "workflow_sha256",
)
_MAX_MESSAGE = 1500


def load_workflow(path: Path) -> dict[str, Any]:
    """The API-format workflow in ``path``: ``{node_id: {"class_type", "inputs"}}``.

    Raises ``ValueError`` saying what is wrong with the file.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"workflow file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read workflow file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"workflow file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise ValueError(
            f"workflow file {path} is in ComfyUI's UI format; export it with "
            "'Export (API)' (Workflow menu) and point params.workflow at that file"
        )
    if not isinstance(data, dict) or not data:
        raise ValueError(f"workflow file {path} must be a JSON object of nodes (API format)")
    for node_id, node in data.items():
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs"), dict)
        ):
            raise ValueError(
                f"workflow file {path}: node {node_id!r} has no class_type and inputs "
                "(is this an API-format export?)"
            )
    return data


def _target(workflow: Mapping[str, Any], key: str, spec: Any, where: str) -> tuple[str, str]:
    """``"node.input"`` split and checked against the workflow."""
    if not isinstance(spec, str) or "." not in spec:
        raise ValueError(f"{key} must be 'node_id.input_name', e.g. '6.text'; got {spec!r}")
    node_id, name = spec.split(".", 1)
    node = workflow.get(node_id)
    if node is None:
        known = ", ".join(sorted(workflow, key=_node_order))
        raise ValueError(f"{key} = {spec!r}: {where} has no node {node_id!r} (nodes: {known})")
    if name not in node["inputs"]:
        known = ", ".join(sorted(node["inputs"])) or "none"
        raise ValueError(
            f"{key} = {spec!r}: node {node_id} ({node['class_type']}) has no input "
            f"{name!r} (inputs: {known})"
        )
    return node_id, name


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (2**62, node_id)


def _has_placeholder(value: Any, placeholder: str) -> bool:
    if isinstance(value, str):
        return placeholder in value
    if isinstance(value, list):
        return any(_has_placeholder(v, placeholder) for v in value)
    if isinstance(value, dict):
        return any(_has_placeholder(v, placeholder) for v in value.values())
    return False


def check_workflow(workflow: Mapping[str, Any], params: Mapping[str, Any], where: str) -> None:
    """Every node input the params name exists; the prompt has somewhere to go."""
    for key in _MAPPINGS:
        if params.get(key) is not None:
            _target(workflow, key, params[key], where)
    inputs = params.get("inputs") or {}
    for spec in inputs:
        _target(workflow, f"inputs[{spec!r}]", spec, where)
    output_node = params.get("output_node")
    if output_node is not None and str(output_node) not in workflow:
        raise ValueError(f"output_node = {output_node!r}: {where} has no such node")
    if params.get("prompt_input") is None and not _has_placeholder(workflow, "{{prompt}}"):
        raise ValueError(
            f"{where} has no '{{{{prompt}}}}' placeholder and params.prompt_input is not "
            "set: name the node input that takes the prompt, e.g. prompt_input = '6.text'"
        )


def _substitute(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if value in values:  # a whole-string placeholder keeps the value's type (the seed)
            return values[value]
        for placeholder, replacement in values.items():
            value = value.replace(placeholder, str(replacement))
        return value
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    return value


def prepare_workflow(
    workflow: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    prompt: str,
    seed: int,
    image: str | None,
) -> dict[str, Any]:
    """The workflow to queue: placeholders filled, mapped node inputs set."""
    values: dict[str, Any] = {"{{prompt}}": prompt, "{{seed}}": seed}
    if image is not None:
        values["{{image}}"] = image
    out: dict[str, Any] = _substitute(copy.deepcopy(dict(workflow)), values)
    settings: list[tuple[str, Any]] = [(str(k), v) for k, v in (params.get("inputs") or {}).items()]
    settings.append((str(params.get("prompt_input") or ""), prompt))
    settings.append((str(params.get("seed_input") or ""), seed))
    if image is not None:
        settings.append((str(params.get("image_input") or ""), image))
    for spec, value in settings:
        if spec:
            node_id, name = _target(out, spec, spec, "the workflow")
            out[node_id]["inputs"][name] = value
    return out


class _ComfyApi(HttpApi):
    """ComfyUI's HTTP API: no key needed, validation errors spelled out."""

    def auth_headers(self) -> dict[str, str]:
        """A bearer token only when ``COMFYUI_API_KEY`` is set (an authenticating proxy)."""
        key = os.environ.get(self.key_env, "").strip()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def raise_for_status(self, response: httpx.Response, what: str) -> None:
        """HTTP 400 from ``/prompt`` carries ComfyUI's node errors: name each of them."""
        if response.status_code == 400:
            response.read()
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and "node_errors" in body:
                raise TerminalError(self._redact(_describe_rejection(body)))
        super().raise_for_status(response, what)


def _describe_rejection(body: Mapping[str, Any]) -> str:
    """ComfyUI's ``{"error", "node_errors"}`` as one readable message."""
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, dict):
        text = str(error.get("message") or error.get("type") or "invalid prompt")
        if error.get("details"):
            text += f": {error['details']}"
        parts.append(text)
    elif error:
        parts.append(str(error))
    node_errors = body.get("node_errors")
    if isinstance(node_errors, dict):
        for node_id, info in node_errors.items():
            if not isinstance(info, dict):
                continue
            messages = []
            for err in info.get("errors") or []:
                if isinstance(err, dict):
                    text = str(err.get("message") or err.get("type") or "error")
                    if err.get("details"):
                        text += f" ({err['details']})"
                    messages.append(text)
            parts.append(
                f"node {node_id} ({info.get('class_type', '?')}): "
                + ("; ".join(messages) or "invalid")
            )
    message = "comfyui: the server rejected the workflow: " + (
        "; ".join(parts) or "no reason given"
    )
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    return message + " (fix the workflow or the variant's params)"


class ComfyUIProvider:
    """Workflows queued on a ComfyUI server; free (local hardware)."""

    name = "comfyui"
    key_env: tuple[str, ...] = ()
    #: Workflows take the seed through ``seed_input`` or a ``{{seed}}`` placeholder.
    honours_seed = True
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        "workflow": (None, "API-format workflow JSON, relative to the spec's folder"),
        "prompt_input": (None, "'node.input' receiving the prompt (or a {{prompt}} placeholder)"),
        "seed_input": (None, "'node.input' receiving the seed (or a {{seed}} placeholder)"),
        "image_input": (None, "'node.input' receiving the uploaded item image's name"),
        "inputs": ({}, "other node inputs to set: {'node.input' = value}"),
        "output_node": (None, "node whose output is the video (default: the first video)"),
        "fps": (DEFAULT_FPS, "frame rate of an image-sequence output"),
        "base_url": (DEFAULT_BASE_URL, "ComfyUI server (or COMFYUI_BASE_URL)"),
        "max_download_bytes": (DEFAULT_MAX_DOWNLOAD_BYTES, "cap on each downloaded file"),
        "workflow_sha256": (None, "set when the spec is loaded: the workflow's SHA-256"),
    }

    def __init__(self) -> None:
        self.api = _ComfyApi(
            self.name,
            key_env="COMFYUI_API_KEY",
            auth_scheme="Bearer",
            default_base_url=DEFAULT_BASE_URL,
            base_url_env="COMFYUI_BASE_URL",
        )

    # -- spec time ---------------------------------------------------------

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """Params have the right shapes (the workflow file is :meth:`validate_files`'s)."""
        check_known_keys(self.name, params, _KNOWN)
        workflow = params.get("workflow")
        if not isinstance(workflow, str) or not workflow:
            raise ValueError(
                "provider 'comfyui': params.workflow must name an API-format workflow "
                "file, e.g. workflow = 'workflows/wan.json'"
            )
        for key in _MAPPINGS:
            value = params.get(key)
            if value is not None and (not isinstance(value, str) or "." not in value):
                raise ValueError(
                    f"provider 'comfyui': {key} must be 'node_id.input_name', e.g. "
                    f"'6.text'; got {value!r}"
                )
        inputs = params.get("inputs", {})
        if not isinstance(inputs, Mapping) or not all(
            isinstance(k, str) and "." in k for k in inputs
        ):
            raise ValueError(
                "provider 'comfyui': inputs must be a table of 'node_id.input_name' = value, "
                "e.g. inputs = { '7.steps' = 20 }"
            )
        output_node = params.get("output_node")
        if output_node is not None and not isinstance(output_node, str | int):
            raise ValueError(
                f"provider 'comfyui': output_node must be a node id, got {output_node!r}"
            )
        number_param(self.name, params, "fps", DEFAULT_FPS, lo=0.01, hi=1000)
        number_param(
            self.name, params, "max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES, lo=1, hi=2**50
        )

    def validate_files(
        self, model: str | None, params: Mapping[str, Any], workdir: str | None
    ) -> None:
        """The workflow file parses and has every node input the params name.

        Without the spec's folder a relative path cannot be resolved; it is
        then checked when the run starts.
        """
        if not Path(str(params["workflow"])).expanduser().is_absolute() and not workdir:
            return
        path = self._workflow_path(params, workdir)
        try:
            check_workflow(load_workflow(path), params, f"workflow {path}")
        except ValueError as exc:
            raise ValueError(f"provider 'comfyui': {exc}") from None

    def pin_params(
        self, model: str | None, params: Mapping[str, Any], workdir: str | None
    ) -> dict[str, Any]:
        """The params plus ``workflow_sha256``, the workflow file's content hash.

        Pinned when the spec is loaded: an edited workflow is another variant
        (and another cache key), and a run refuses a file edited since.
        """
        out = dict(params)
        if not Path(str(params["workflow"])).expanduser().is_absolute() and not workdir:
            return out
        path = self._workflow_path(params, workdir)
        digest = sha256_file(path)
        given = params.get("workflow_sha256")
        if given is not None and given != digest:
            raise ValueError(
                f"provider 'comfyui': workflow {path} does not match workflow_sha256 "
                f"(file {digest[:12]}..., spec {str(given)[:12]}...)"
            )
        out["workflow_sha256"] = digest
        return out

    @staticmethod
    def _workflow_path(params: Mapping[str, Any], workdir: str | None) -> Path:
        path = Path(str(params["workflow"])).expanduser()
        if not path.is_absolute() and workdir:
            path = Path(workdir) / path
        return path

    # -- the job -----------------------------------------------------------

    def _workflow(self, request: GenerationRequest) -> dict[str, Any]:
        path = self._workflow_path(request.params, request.workdir)
        pinned = request.params.get("workflow_sha256")
        if pinned is not None and path.is_file() and sha256_file(path) != pinned:
            raise TerminalError(
                f"comfyui: workflow {path} was edited after the experiment was submitted; "
                "its runs would not match the spec. Give the variant a new key (or restore "
                "the file) and submit again"
            )
        try:
            workflow = load_workflow(path)
            check_workflow(workflow, request.params, f"workflow {path}")
        except ValueError as exc:
            raise TerminalError(f"comfyui: {exc}") from None
        return workflow

    def _upload(self, request: GenerationRequest, base: str) -> str:
        """Upload the item image; return the name a LoadImage node takes."""
        source = Path(str(request.image))
        # Named by content: re-uploads of the same image overwrite themselves harmlessly.
        name = f"reelbench-{sha256_file(source)[:16]}{source.suffix.lower()}"
        mime = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        data = self.api.request_json(
            "POST",
            f"{base}/upload/image",
            what="uploading the item image",
            data={"type": "input", "overwrite": "true"},
            files={"image": (name, source.read_bytes(), mime)},
        )
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise TerminalError(f"comfyui: the image upload returned no file name ({base})")
        subfolder = data.get("subfolder") or ""
        return f"{subfolder}/{data['name']}" if subfolder else str(data["name"])

    def submit(self, request: GenerationRequest) -> str:
        """Upload the image, fill the workflow in and queue it; ``prompt_id`` is the job id."""
        base = self.api.base_url(request.params)
        workflow = self._workflow(request)
        image = self._upload(request, base) if request.image else None
        prompt = prepare_workflow(
            workflow, request.params, prompt=request.prompt, seed=request.seed, image=image
        )
        data = self.api.request_json(
            "POST",
            f"{base}/prompt",
            json_body={"prompt": prompt, "client_id": f"reelbench-{uuid.uuid4().hex}"},
            what="queueing the workflow",
        )
        job_id = data.get("prompt_id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise TerminalError(f"comfyui: the /prompt response has no prompt_id ({base})")
        return job_id

    def _history(self, job_id: str, request: GenerationRequest) -> dict[str, Any] | None:
        base = self.api.base_url(request.params)
        data = self.api.request_json(
            "GET", f"{base}/history/{job_id}", what=f"reading the history of prompt {job_id}"
        )
        if not isinstance(data, dict):
            raise RetryableError(f"comfyui: unexpected history body for prompt {job_id}")
        entry = data.get(job_id)
        return entry if isinstance(entry, dict) else None

    def _queued(self, job_id: str, request: GenerationRequest) -> bool:
        base = self.api.base_url(request.params)
        data = self.api.request_json("GET", f"{base}/queue", what="reading the queue")
        if not isinstance(data, dict):
            return True  # cannot tell: keep waiting
        for key in ("queue_running", "queue_pending"):
            for entry in data.get(key) or []:
                if isinstance(entry, list | tuple) and len(entry) > 1 and entry[1] == job_id:
                    return True
        return False

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Running while queued; the history entry's status once it has one."""
        entry = self._history(job_id, request)
        if entry is None:
            if self._queued(job_id, request):
                return JobStatus("running")
            entry = self._history(job_id, request)  # it may have finished meanwhile
            if entry is None:
                return JobStatus(
                    "failed",
                    error=f"the ComfyUI server no longer knows prompt {job_id} "
                    "(restarted, or the queue was cleared)",
                    retryable=True,
                )
        raw_status = entry.get("status")
        status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
        state = status.get("status_str")
        if state == "error":
            return JobStatus("failed", error=_execution_error(status))
        if state == "success" or (status.get("completed") and entry.get("outputs")):
            return JobStatus("succeeded")
        if not status and entry.get("outputs"):  # servers older than the status record
            return JobStatus("succeeded")
        return JobStatus("running")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Download the video output, or assemble an image sequence into an MP4."""
        entry = self._history(job_id, request)
        if entry is None:
            raise RetryableError(f"comfyui: prompt {job_id} is not in the server's history")
        raw_outputs = entry.get("outputs")
        outputs: dict[str, Any] = raw_outputs if isinstance(raw_outputs, dict) else {}
        kind, files = pick_output(outputs, request.params.get("output_node"))
        if kind == "none":
            wanted = request.params.get("output_node")
            where = f"node {wanted}" if wanted is not None else "any node"
            raise TerminalError(
                f"comfyui: prompt {job_id} produced no video and no image sequence in {where} "
                "(add a video save node, or set output_node)"
            )
        base = self.api.base_url(request.params)
        max_bytes = int(request.params.get("max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES))
        if kind == "video":
            sha, size = self.api.download(
                _view_url(base, files[0]), dest, max_bytes=max_bytes, base_url=base,
                stop=request.stop,
            )  # fmt: skip
            return FetchResult(sha, size, info={"output": files[0].get("filename"), "frames": None})
        fps = float(request.params.get("fps", DEFAULT_FPS))
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".comfyui-") as folder:
            frames = []
            for index, info in enumerate(files):
                path = Path(folder) / f"{index:06d}{Path(str(info['filename'])).suffix}"
                self.api.download(
                    _view_url(base, info), path, max_bytes=max_bytes, base_url=base,
                    stop=request.stop,
                )  # fmt: skip
                frames.append(path)
            encode_images(frames, dest, fps)
        return FetchResult(
            sha256_file(dest), dest.stat().st_size, info={"frames": len(files), "fps": fps}
        )


def _execution_error(status: Mapping[str, Any]) -> str:
    """The failing node and its exception, from the history's status messages."""
    for message in status.get("messages") or []:
        if not isinstance(message, list | tuple) or len(message) != 2:
            continue
        event, data = message
        if event == "execution_error" and isinstance(data, dict):
            text = (
                f"node {data.get('node_id', '?')} ({data.get('node_type', '?')}) raised "
                f"{data.get('exception_type', 'an exception')}: {data.get('exception_message', '')}"
            ).strip()
            return text[:_MAX_MESSAGE]
        if event == "execution_interrupted":
            return "the workflow was interrupted on the ComfyUI server"
    return "the workflow failed on the ComfyUI server (no error message in its history)"


def _files(node: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    return [f for f in node.get(key) or [] if isinstance(f, dict) and f.get("filename")]


def _suffix(info: Mapping[str, Any]) -> str:
    return Path(str(info["filename"])).suffix.lower()


def pick_output(
    outputs: Mapping[str, Any], output_node: Any = None
) -> tuple[str, list[dict[str, Any]]]:
    """``("video", [file])``, ``("images", files)`` or ``("none", [])``.

    A video file (``videos``/``gifs`` entries, a video suffix among images, an
    animated image) of the first node that has one wins; else the longest
    sequence of saved (``type = "output"``) images, else of any images.
    """
    nodes = [
        (node_id, node)
        for node_id, node in sorted(outputs.items(), key=lambda kv: _node_order(str(kv[0])))
        if isinstance(node, dict) and (output_node is None or str(node_id) == str(output_node))
    ]
    for _, node in nodes:
        for key in ("videos", "gifs", "images"):
            videos = [f for f in _files(node, key) if _suffix(f) in VIDEO_SUFFIXES]
            if videos:
                return "video", videos[:1]
        animated = node.get("animated")
        images = _files(node, "images")
        if images and isinstance(animated, list | tuple) and any(animated):
            return "video", images[:1]
    best: list[dict[str, Any]] = []
    for saved_only in (True, False):
        for _, node in nodes:
            images = [
                f
                for f in _files(node, "images")
                if _suffix(f) in IMAGE_SUFFIXES
                and (not saved_only or f.get("type", "output") == "output")
            ]
            if len(images) > len(best):
                best = images
        if best:
            break
    return ("images", best) if best else ("none", [])


def _view_url(base: str, info: Mapping[str, Any]) -> str:
    query = {
        "filename": str(info["filename"]),
        "subfolder": str(info.get("subfolder") or ""),
        "type": str(info.get("type") or "output"),
    }
    return f"{base}/view?{urlencode(query)}"


def encode_images(frames: list[Path], dest: Path, fps: float) -> None:
    """Encode image files, in order, as an H.264 MP4 at ``fps`` (near-lossless)."""
    rate = Fraction(fps).limit_denominator(1001)
    first = _read_rgb(frames[0])
    # yuv420p needs even sizes: drop a last odd row/column rather than resample.
    height, width = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
    if width == 0 or height == 0:
        raise TerminalError(f"comfyui: output image {frames[0].name} is too small to encode")
    with av.open(str(dest), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate
        stream.options = {"preset": "veryfast", "crf": "12"}
        for index, path in enumerate(frames):
            rgb = first if index == 0 else _read_rgb(path)
            if rgb.shape[0] < height or rgb.shape[1] < width:
                raise TerminalError(
                    f"comfyui: output image {index + 1} is {rgb.shape[1]}x{rgb.shape[0]}, "
                    f"smaller than the first ({width}x{height}); cannot make one video"
                )
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(rgb[:height, :width]), format="rgb24"
            )
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _read_rgb(path: Path) -> np.ndarray[Any, np.dtype[np.uint8]]:
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    except av.FFmpegError as exc:
        raise TerminalError(f"comfyui: cannot decode output image {path.name}: {exc}") from exc
    raise TerminalError(f"comfyui: output image {path.name} holds no picture")
