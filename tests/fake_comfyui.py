"""A local HTTP server speaking ComfyUI's API (``server.py``), for adapter tests.

It implements ``POST /prompt`` (validating that every node has a known
class, answering 400 with ComfyUI's ``{"error", "node_errors"}`` otherwise),
``GET /history/{id}``, ``GET /queue``, ``POST /upload/image`` (multipart) and
``GET /view``. Tests script what a finished prompt produced (a video file,
an image sequence) or that it failed, and inspect what was received.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeComfy", "serve_comfyui"]


@dataclass
class FakeComfy:
    """State of the fake server: script it before, inspect it after."""

    base_url: str = ""
    #: Output files by name (served by /view with type=output).
    files: dict[str, bytes] = field(default_factory=dict)
    #: What a finished prompt's history lists as outputs: {node_id: {...}}.
    outputs: dict[str, Any] = field(default_factory=dict)
    #: Node classes the server knows; others fail validation.
    known_classes: set[str] = field(
        default_factory=lambda: {
            "CLIPTextEncode",
            "KSampler",
            "LoadImage",
            "SaveImage",
            "SaveVideo",
            "EmptyLatentImage",
        }
    )
    #: Polls of /history a prompt stays absent (queued) before it finishes.
    queued_polls: int = 0
    #: The prompt fails executing: (node_id, node_type, exception message).
    fail_with: tuple[str, str, str] | None = None
    prompts: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: The Authorization header of each request (None when absent).
    auth: list[str | None] = field(default_factory=list)
    #: Responses to give first, whatever the request: (status, headers, body).
    scripted: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    #: Prompts stay queued until this is set (for kill-while-polling tests).
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.release.set()

    def finished(self, prompt_id: str) -> bool:
        """Count a history read; True once the prompt is done."""
        with self.lock:
            self.polls[prompt_id] = self.polls.get(prompt_id, 0) + 1
            return self.release.is_set() and self.polls[prompt_id] > self.queued_polls

    def in_queue(self, prompt_id: str) -> bool:
        """The prompt was queued and has not finished yet."""
        with self.lock:
            done = self.release.is_set() and self.polls.get(prompt_id, 0) > self.queued_polls
        return not done


class _Handler(BaseHTTPRequestHandler):
    comfy: FakeComfy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _note(self, method: str, path: str) -> bool:
        """Record the request; True when a scripted response was sent instead."""
        with self.comfy.lock:
            self.comfy.requests.append((method, path))
            self.comfy.auth.append(self.headers.get("Authorization"))
            if not self.comfy.scripted:
                return False
            status, headers, body = self.comfy.scripted.pop(0)
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if self._note("POST", url.path):
            return
        if url.path == "/prompt":
            self._prompt(json.loads(body))
        elif url.path == "/upload/image":
            self._upload(body)
        else:
            self._send(404, {"error": "not found"})

    def _prompt(self, data: dict[str, Any]) -> None:
        prompt = data.get("prompt")
        if not isinstance(prompt, dict):
            self._send(400, {"error": "no prompt", "node_errors": []})
            return
        node_errors: dict[str, Any] = {}
        for node_id, node in prompt.items():
            if node.get("class_type") not in self.comfy.known_classes:
                node_errors[node_id] = {
                    "errors": [
                        {
                            "type": "invalid_class",
                            "message": "Cannot execute because node class is missing",
                            "details": f"Node class {node.get('class_type')} not found",
                            "extra_info": {},
                        }
                    ],
                    "dependent_outputs": [],
                    "class_type": node.get("class_type"),
                }
        if node_errors:
            error = {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "",
                "extra_info": {},
            }
            self._send(400, {"error": error, "node_errors": node_errors})
            return
        with self.comfy.lock:
            self.comfy.prompts.append(data)
            number = len(self.comfy.prompts)
        self._send(200, {"prompt_id": f"prompt-{number}", "number": number, "node_errors": {}})

    def _upload(self, body: bytes) -> None:
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields: dict[str, str] = {}
        name, data = "", b""
        for part in message.iter_parts():
            field_name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if field_name == "image":
                name, data = str(part.get_filename()), bytes(payload)
            else:
                fields[str(field_name)] = bytes(payload).decode()
        if not data:
            self._send(400, {"error": "no image"})
            return
        with self.comfy.lock:
            self.comfy.uploads.append((name, data, fields))
        self._send(200, {"name": name, "subfolder": fields.get("subfolder", ""), "type": "input"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self._note("GET", url.path):
            return
        if url.path.startswith("/history/"):
            self._history(url.path.rsplit("/", 1)[-1])
        elif url.path == "/queue":
            self._queue()
        elif url.path == "/view":
            query = parse_qs(url.query)
            name = query.get("filename", [""])[0]
            if query.get("type", ["output"])[0] != "output" or name not in self.comfy.files:
                self._send(404, b"", "text/plain")
                return
            self._send(200, self.comfy.files[name], "application/octet-stream")
        else:
            self._send(404, {"error": "not found"})

    def _known(self, prompt_id: str) -> bool:
        with self.comfy.lock:
            return any(f"prompt-{n}" == prompt_id for n in range(1, len(self.comfy.prompts) + 1))

    def _history(self, prompt_id: str) -> None:
        if not self._known(prompt_id) or not self.comfy.finished(prompt_id):
            self._send(200, {})
            return
        if self.comfy.fail_with:
            node_id, node_type, text = self.comfy.fail_with
            status = {
                "status_str": "error",
                "completed": False,
                "messages": [
                    ["execution_start", {"prompt_id": prompt_id, "timestamp": 1}],
                    [
                        "execution_error",
                        {
                            "prompt_id": prompt_id,
                            "node_id": node_id,
                            "node_type": node_type,
                            "executed": [],
                            "exception_message": text,
                            "exception_type": "RuntimeError",
                            "traceback": ["..."],
                        },
                    ],
                ],
            }
            outputs: dict[str, Any] = {}
        else:
            status = {
                "status_str": "success",
                "completed": True,
                "messages": [["execution_success", {"prompt_id": prompt_id, "timestamp": 2}]],
            }
            outputs = self.comfy.outputs
        entry = {"prompt": [], "outputs": outputs, "status": status, "meta": {}}
        self._send(200, {prompt_id: entry})

    def _queue(self) -> None:
        with self.comfy.lock:
            count = len(self.comfy.prompts)
        ids = [f"prompt-{n}" for n in range(1, count + 1)]
        pending = [[n, i, {}, {}, []] for n, i in enumerate(ids, 1) if self.comfy.in_queue(i)]
        self._send(200, {"queue_running": [], "queue_pending": pending})


@contextmanager
def serve_comfyui() -> Iterator[FakeComfy]:
    """A fake ComfyUI server on a loopback port, shut down on exit."""
    comfy = FakeComfy()
    cls = type("_Comfy", (_Handler,), {"comfy": comfy})
    server = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    comfy.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield comfy
    finally:
        comfy.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def output_file(name: str) -> dict[str, str]:
    """A history output entry for a saved file."""
    return {"filename": name, "subfolder": "", "type": "output"}


def write_outputs(comfy: FakeComfy, node_id: str, key: str, files: dict[str, Path]) -> None:
    """Serve ``files`` and list them under ``outputs[node_id][key]``."""
    for name, path in files.items():
        comfy.files[name] = path.read_bytes()
    comfy.outputs[node_id] = {key: [output_file(name) for name in files]}
