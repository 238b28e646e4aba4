"""Worker-side pieces of the fleet tests, importable by ``reelbench worker`` subprocesses.

- ``fast_processor``: reelbench's RunProcessor with short poll intervals;
- ``IdempotentReplicate``: a Replicate-shaped provider that sends the
  call's idempotency key (``Idempotency-Key``) and says it accepts one;
  registered as provider ``idem`` through an entry point that
  :func:`plugin_path` writes (a ``.dist-info`` folder to put on PYTHONPATH).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelbench.call_cache import CallPolicy
from reelbench.errors import TerminalError
from reelbench.processor import RunProcessor
from reelbench.providers.base import GenerationRequest
from reelbench.providers.replicate import ReplicateProvider

fast_processor = RunProcessor(
    policy=CallPolicy(poll_initial=0.05, poll_factor=1.2, poll_max=0.2, wait_max=0.2)
)


class IdempotentReplicate(ReplicateProvider):
    """Replicate's API plus an idempotency key on every create."""

    name = "idem"
    accepts_idempotency_key = True

    def submit(self, request: GenerationRequest) -> str:
        url = f"{self.api.base_url(request.params)}/v1/models/{request.model}/predictions"
        headers = {"Idempotency-Key": request.idempotency_key or ""}
        body: dict[str, Any] = {"input": self.model_input(request)}
        data = self.api.request_json(
            "POST", url, json_body=body, what="creating a prediction", headers=headers
        )
        job_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise TerminalError(f"idem: the prediction response has no id ({url})")
        return job_id


def plugin_path(root: Path) -> Path:
    """A folder holding an installed-distribution record that registers ``idem``."""
    info = root / "reelbench_fleet_test-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: reelbench-fleet-test\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[reelbench.providers]\nidem = fleet_support:IdempotentReplicate\n"
    )
    return root
