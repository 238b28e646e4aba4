"""``command``: run a local program (a local model, a script) as a provider.

The program is started from an argument list, never through a shell. It gets
the request as JSON on stdin::

    {"prompt": "...", "seed": 123, "params": {...}, "item_id": "cat-surf",
     "image": "/abs/path.png" or null, "model": "..." or null}

and writes its video to the path in the environment variable
``REELBENCH_OUTPUT``. Outcomes:

===============================================  ===========
exit 0 and a non-empty file at REELBENCH_OUTPUT  succeeded
exit 75 (EX_TEMPFAIL)                            retryable
killed by a signal (OOM killer, ...)             retryable
over ``timeout_seconds`` (the process group      retryable
is killed)
program not found / not executable               terminal
any other non-zero exit                          terminal
exit 0 without output, or an empty file          terminal
===============================================  ===========

Error messages carry the last lines of the program's stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reelbench.errors import LeaseLost, RetryableError, TerminalError
from reelbench.identity import canonical_json, sha256_file
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.params import check_known_keys, number_param

__all__ = ["EX_TEMPFAIL", "OUTPUT_ENV", "CommandProvider"]

OUTPUT_ENV = "REELBENCH_OUTPUT"
EX_TEMPFAIL = 75
STDERR_TAIL = 2000
DEFAULT_TIMEOUT = 600.0
# Params the provider itself reads; the rest are passed to the program in the JSON.
_OWN = ("command", "timeout_seconds")


class CommandProvider:
    """Runs ``params.command`` once per request; free and synchronous."""

    name = "command"
    key_env: tuple[str, ...] = ()
    #: The seed is handed to the program; whether it uses it is the program's affair.
    honours_seed = True
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        "command": (None, "the program and its arguments, a list (no shell)"),
        "timeout_seconds": (DEFAULT_TIMEOUT, "kill the program after this long (retryable)"),
    }

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """``command`` must be a non-empty list of strings; ``timeout_seconds`` positive."""
        command = params.get("command")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(arg, str) and arg for arg in command)
        ):
            raise ValueError(
                "provider 'command': params.command must be a non-empty list of strings, "
                'e.g. command = ["python", "generate.py"] (no shell is used)'
            )
        number_param(self.name, params, "timeout_seconds", DEFAULT_TIMEOUT, lo=0.001, hi=86400)
        # Any other key is for the program; nothing to check here.
        check_known_keys(self.name, {k: v for k, v in params.items() if k in _OWN}, _OWN)

    def submit(self, request: GenerationRequest) -> str:
        """Nothing to start yet: the program runs in ``fetch``."""
        digest = hashlib.sha256(canonical_json(request.payload()).encode()).hexdigest()
        return f"command-{digest[:16]}"

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Always ready: the work happens in ``fetch``."""
        return JobStatus("succeeded")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Run the program with the request on stdin and its output path in the env."""
        self.validate(request.model, request.params)
        argv: list[str] = list(request.params["command"])
        timeout = float(request.params.get("timeout_seconds", DEFAULT_TIMEOUT))
        program_params = {k: v for k, v in request.params.items() if k not in _OWN}
        payload = {**request.payload(), "params": program_params}
        env = {**os.environ, OUTPUT_ENV: str(dest)}
        dest.unlink(missing_ok=True)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                # Relative paths in the argument list are the spec's, like every
                # other path in it; a worker without that folder runs in its own.
                cwd=request.workdir if request.workdir and os.path.isdir(request.workdir) else None,
                # Own process group: a timeout kills the program and its children.
                start_new_session=True,
            )
        except OSError as exc:
            raise TerminalError(
                f"command provider: cannot start {argv[0]!r}: {exc.strerror or exc}; "
                "check params.command"
            ) from exc
        stderr = self._wait(proc, json.dumps(payload).encode(), timeout, argv[0], request)
        code = proc.returncode
        if code < 0:
            raise RetryableError(
                f"command provider: {argv[0]!r} was killed by signal "
                f"{signal.Signals(-code).name}{_tail(stderr)}"
            )
        if code == EX_TEMPFAIL:
            raise RetryableError(
                f"command provider: {argv[0]!r} asked for a retry (exit {code}){_tail(stderr)}"
            )
        if code != 0:
            raise TerminalError(f"command provider: {argv[0]!r} exited with {code}{_tail(stderr)}")
        if not dest.is_file() or dest.stat().st_size == 0:
            raise TerminalError(
                f"command provider: {argv[0]!r} exited 0 but wrote no video to "
                f"${OUTPUT_ENV} ({dest}){_tail(stderr)}"
            )
        return FetchResult(sha256=sha256_file(dest), bytes=dest.stat().st_size)

    @staticmethod
    def _wait(
        proc: subprocess.Popen[bytes],
        stdin: bytes,
        timeout: float,
        program: str,
        request: GenerationRequest,
    ) -> bytes:
        """Feed stdin, wait for the exit; kill the group on timeout or when the run stops."""
        deadline = time.monotonic() + timeout
        data: bytes | None = stdin
        while True:
            remaining = deadline - time.monotonic()
            try:
                # Short slices so a cancelled run or a lost lease stops the program soon.
                _, stderr = proc.communicate(data, timeout=max(0.01, min(0.5, remaining)))
                return stderr or b""
            except subprocess.TimeoutExpired:
                data = None  # communicate keeps feeding what it started with
            except BrokenPipeError:
                # The program exited without reading stdin; its exit status decides.
                proc.wait()
                return proc.stderr.read() if proc.stderr else b""
            if request.stop is not None and request.stop.is_set():
                _kill(proc)
                raise LeaseLost(f"command provider: {program!r} stopped: the run must stop")
            if time.monotonic() >= deadline:
                stderr = _kill(proc)
                raise RetryableError(
                    f"command provider: {program!r} ran longer than timeout_seconds="
                    f"{timeout:g} and was killed{_tail(stderr)}"
                )


def _kill(proc: subprocess.Popen[bytes]) -> bytes:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()[1] or b""


def _tail(stderr: bytes | None) -> str:
    text = (stderr or b"").decode("utf-8", "replace").strip()
    if not text:
        return ""
    if len(text) > STDERR_TAIL:
        text = "..." + text[-STDERR_TAIL:]
    return f"; stderr: {text}"
