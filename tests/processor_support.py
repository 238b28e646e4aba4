"""Real experiments in a real database for the processor tests.

``Lab`` submits specs through the spec loader and ``submit_spec``, claims runs
with the queue's claim SQL and builds their contexts, then runs the
processor and commits its rows with the fenced completion, the way a
worker does, without the worker loop.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelbench.call_cache import CallPolicy
from reelbench.context import RunContext, build_context
from reelbench.db import claim
from reelbench.db.engine import Database, open_database
from reelbench.orchestrator import WorkerOrchestrator, WorkerStats
from reelbench.processor import RunProcessor
from reelbench.spec import parse_spec
from reelbench.submit import submit_spec

__all__ = ["FAST", "SMALL_CANONICAL", "Lab", "calls", "counting_command", "work"]

FAST = CallPolicy(poll_initial=0.01, poll_max=0.05, wait_initial=0.01, wait_max=0.05)
SMALL_CANONICAL = {
    "width": 64,
    "height": 48,
    "fps": 12,
    "preset": "ultrafast",
    "max_seconds": 2,
}


def counting_command(tmp_path: Path, *, source: Path | None = None, sleep: float = 0) -> list[str]:
    """A ``command`` provider program that logs each call to ``calls.log``.

    It copies ``source`` to ``$REELBENCH_OUTPUT`` (or renders a synthetic video
    from the request), after sleeping ``sleep`` seconds; when ``fail.flag``
    exists next to it, it exits 1 instead.
    """
    script = tmp_path / "generate.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, shutil, sys, time
            from pathlib import Path
            request = json.load(sys.stdin)
            here = Path({str(tmp_path)!r})
            with open(here / "calls.log", "a") as log:
                log.write(json.dumps(request) + "\\n")
            time.sleep({sleep})
            if (here / "fail.flag").exists():
                sys.stderr.write("generator crashed: CUDA out of memory")
                sys.exit(1)
            source = {str(source) if source else None!r}
            out = Path(os.environ["REELBENCH_OUTPUT"])
            if source:
                shutil.copyfile(source, out)
            else:
                from reelbench.providers.base import GenerationRequest
                from reelbench.providers.synthetic import render_video
                render_video(
                    GenerationRequest("synthetic", "orbit",
                                      {{"width": 48, "height": 32, "fps": 12, "seconds": 0.5}},
                                      request["prompt"], request["seed"]),
                    out,
                )
            """
        )
    )
    return [sys.executable, str(script)]


def calls(tmp_path: Path) -> int:
    """How many times the counting command ran."""
    log = tmp_path / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


@dataclass
class Lab:
    """A database and an artifact root to run experiments in."""

    db: Database
    artifacts: Path

    @classmethod
    def open(cls, url: str, artifacts: Path) -> Lab:
        """Connect to a fresh database."""
        return cls(open_database(url), artifacts)

    def submit(
        self,
        name: str,
        variants: list[dict[str, Any]],
        items: list[dict[str, Any]] | None = None,
        canonical: dict[str, Any] | None = None,
        retry: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> int:
        """Submit a spec; return the experiment id."""
        spec = parse_spec(
            {
                "experiment": {"name": name},
                "canonical": canonical or SMALL_CANONICAL,
                "retry": retry or {},
                "metrics": metrics or {},
                "items": items or [{"id": "cat", "prompt": "a cat surfing"}],
                "variants": variants,
            }
        )
        return submit_spec(self.db.sessions, spec).experiment_id

    def claim(self, experiment_id: int, limit: int = 100) -> list[RunContext]:
        """Claim queued runs of the experiment and build their contexts."""
        with self.db.engine.begin() as conn:
            claimed = claim.claim_runs(
                conn, "test-worker", limit=limit, lease_seconds=300, experiment_id=experiment_id
            )
        with self.db.sessions() as session:
            return [
                build_context(
                    session, c.run_id, c.attempt, worker_id="test-worker",
                    artifact_root=self.artifacts,
                )
                for c in claimed
            ]  # fmt: skip

    def process(self, ctx: RunContext, processor: RunProcessor | None = None) -> tuple[str, str]:
        """Process one run and commit its rows with the fenced completion."""
        processor = processor or RunProcessor(policy=FAST)
        with self.db.sessions() as session:
            uri, sha = processor.process(ctx, session)
            assert claim.complete(session, ctx.run_id, ctx.attempt, uri, sha)
            session.commit()
        return uri, sha

    def process_all(self, contexts: Iterable[RunContext]) -> list[tuple[str, str]]:
        """Process runs one after the other."""
        return [self.process(ctx) for ctx in contexts]


def work(lab: Lab, experiment: str, *, concurrency: int = 2, use_cache: bool = True) -> WorkerStats:
    """Run a real worker over the experiment until every run is finished."""
    orchestrator = WorkerOrchestrator(
        lab.db.sessions,
        RunProcessor(policy=FAST),
        concurrency=concurrency,
        experiment=experiment,
        use_cache=use_cache,
        artifact_root=lab.artifacts,
        poll_seconds=0.05,
        lease_seconds=30,
    )
    return orchestrator.run_until_idle()
