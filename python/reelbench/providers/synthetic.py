"""``synthetic``: deterministic procedural videos, with optional fault injection.

The same request (prompt, seed, params) always gives the same bytes: frames
are computed from a generator seeded by the request, and the encoder runs
single-threaded with fixed settings. Another seed moves, colours and phases
everything differently, so repeats of a variant are visibly different.

Fault injection draws a number in [0, 1) from SHA-256(seed, attempt, kind):
deterministic for a given attempt, different on the next one, so a share of
0.3 retryable faults means roughly 30% of attempts fail and retries recover.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reelbench.errors import RetryableError, TerminalError
from reelbench.identity import canonical_json, sha256_file
from reelbench.providers.base import FetchResult, GenerationRequest, JobStatus
from reelbench.providers.params import check_known_keys, number_param

__all__ = ["PATTERNS", "SyntheticProvider", "fault_draw"]

PATTERNS = ("orbit", "bars", "noise", "still", "fade", "texture", "pan", "flicker")
_KNOWN = (
    "seconds",
    "width",
    "height",
    "fps",
    "pattern",
    "seed",
    "fail_retryable",
    "fail_terminal",
    "corrupt",
    "latency_seconds",
)


def fault_draw(seed: int, attempt: int, kind: str) -> float:
    """A number in [0, 1) fixed by (seed, attempt, kind): the fault-injection dice."""
    digest = hashlib.sha256(f"reelbench-fault\0{seed}\0{attempt}\0{kind}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SyntheticProvider:
    """Procedural video generator; free, local, reproducible."""

    name = "synthetic"
    key_env: tuple[str, ...] = ()
    honours_seed = True
    accepts_idempotency_key = False
    param_docs: Mapping[str, tuple[Any, str]] = {
        "seconds": (1, "duration (0.05-120)"),
        "width": (64, "frame width, even (16-3840)"),
        "height": (64, "frame height, even (16-3840)"),
        "fps": (24, "frame rate (1-120)"),
        "pattern": (
            "orbit",
            "orbit | bars | noise | still | fade | texture | pan | flicker (default: the model)",
        ),
        "seed": (None, "an explicit seed for every repeat (default: the run's seed)"),
        "fail_retryable": (0, "share of attempts failing retryably at submit"),
        "fail_terminal": (0, "share of attempts failing terminally at submit"),
        "corrupt": (0, "share of attempts whose output is garbage bytes"),
        "latency_seconds": (0, "seconds the job reports running"),
    }

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """Check sizes, durations, pattern and fault shares."""
        check_known_keys(self.name, params, _KNOWN)
        for key in ("width", "height"):
            value = number_param(self.name, params, key, 64, lo=16, hi=3840, integer=True)
            if int(value) % 2:
                raise ValueError(f"provider 'synthetic': {key} must be even, got {int(value)}")
        number_param(self.name, params, "fps", 24, lo=1, hi=120, integer=True)
        number_param(self.name, params, "seconds", 1, lo=0.05, hi=120)
        for key in ("fail_retryable", "fail_terminal", "corrupt"):
            number_param(self.name, params, key, 0, lo=0, hi=1)
        number_param(self.name, params, "latency_seconds", 0, lo=0, hi=3600)
        pattern = self._pattern(model, params)
        if pattern not in PATTERNS:
            raise ValueError(
                f"provider 'synthetic': unknown pattern {pattern!r}; choose one of "
                f"{', '.join(PATTERNS)} (as model or params.pattern)"
            )

    @staticmethod
    def _pattern(model: str | None, params: Mapping[str, Any]) -> str:
        return str(params.get("pattern") or model or "orbit")

    def submit(self, request: GenerationRequest) -> str:
        """Roll the fault dice, then return a job id that encodes when it is ready."""
        params = request.params
        share = float(params.get("fail_terminal", 0))
        if share and fault_draw(request.seed, request.attempt, "terminal") < share:
            raise TerminalError(
                f"synthetic: injected terminal fault (fail_terminal={share:g}, "
                f"seed {request.seed}, attempt {request.attempt})"
            )
        share = float(params.get("fail_retryable", 0))
        if share and fault_draw(request.seed, request.attempt, "retryable") < share:
            raise RetryableError(
                f"synthetic: injected retryable fault (fail_retryable={share:g}, "
                f"seed {request.seed}, attempt {request.attempt})",
                retry_after=0.0,
            )
        latency = float(params.get("latency_seconds", 0))
        ready_at = time.time() + latency if latency else 0.0
        key = hashlib.sha256(canonical_json(_identity(request)).encode()).hexdigest()[:16]
        # Stateless job: the id carries its ready time, so polling needs no memory.
        return f"synthetic-{key}-{ready_at:.3f}"

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Running until the simulated latency has passed."""
        try:
            ready_at = float(job_id.rsplit("-", 1)[1])
        except (IndexError, ValueError) as exc:
            raise TerminalError(f"synthetic: malformed job id {job_id!r}") from exc
        remaining = ready_at - time.time()
        if remaining > 0:
            return JobStatus("running", retry_after=remaining)
        return JobStatus("succeeded")

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Render and encode the video into ``dest`` (or garbage, when corrupt fires)."""
        import numpy as np

        share = float(request.params.get("corrupt", 0))
        if share and fault_draw(request.seed, request.attempt, "corrupt") < share:
            rng = np.random.default_rng(request.seed)
            dest.write_bytes(b"not a video\n" + rng.bytes(4096))
        else:
            render_video(request, dest)
        return FetchResult(sha256=sha256_file(dest), bytes=dest.stat().st_size, cost=0.0)


def _identity(request: GenerationRequest) -> dict[str, Any]:
    return {
        "prompt": request.prompt,
        "seed": request.seed,
        "model": request.model,
        "params": dict(request.params),
    }


def render_video(request: GenerationRequest, dest: Path) -> None:
    """Encode the procedural video of ``request`` as H.264 MP4 into ``dest``.

    The rendering lives in :mod:`reelbench.providers.synthetic_video` with
    PyAV and numpy, imported here when a video is made: validating a spec's
    variants (every submit) does not need them.
    """
    from reelbench.providers.synthetic_video import render

    render(request, dest, SyntheticProvider._pattern(request.model, request.params))
