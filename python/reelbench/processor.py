"""RunProcessor: provider -> raw video -> canonical video + frame metrics -> rows.

``process(ctx, session)`` does one run's work and returns ``(canon_uri,
canon_sha256)``; it never touches the run's status (the orchestrator does).

1. the provider's raw video, through the provider-call cache (cache hit,
   single flight, resume: :mod:`reelbench.call_cache`), written atomically to
   ``{run_id}/raw/raw.mp4``; bookkeeping committed in short transactions;
2. one decode of it normalized to ``{run_id}/canon/canon.mp4`` while the
   native :class:`~reelbench.metrics.FrameMetrics` measures the same frames
   (and the item's reference video, normalized the same way, when given);
3. ``{run_id}/metrics/frames.json`` (per-frame values, summary, source info);
4. Artifact and Metric rows and the run's provider-call link, added to the
   session **uncommitted**: the orchestrator commits them together with the
   fenced status update, so a run's results appear all at once or not at all.

``ctx.stop`` is checked between stages (and between frames while
normalizing); when set, :class:`LeaseLost` is raised. Before each rename onto
a final artifact name the fencing token is checked, so a worker that lost the
run does not replace the new owner's files (see :mod:`reelbench.storage` for
the window that remains).

A cache hit reuses the earlier call's raw file: the run's ``raw`` artifact
row then points at that file (under the run that made the call) instead of
copying it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from reelbench.call_cache import (
    CallPolicy,
    ProviderCallCache,
    RawOutput,
    forget_unusable_output,
)
from reelbench.context import RunContext
from reelbench.db.claim import link_provider_call, still_owner
from reelbench.db.models import Artifact, Metric
from reelbench.errors import LeaseLost, TerminalError
from reelbench.identity import sha256_file
from reelbench.metrics import FrameMetrics
from reelbench.providers import GenerationRequest, get_provider
from reelbench.storage import ArtifactStore, StoredFile, path_from_uri
from reelbench.video.normalize import NormalizeResult, UnusableVideo, normalize_video

__all__ = ["RunProcessor", "metric_rows"]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def metric_rows(run_id: int, summary: Mapping[str, Any]) -> list[Metric]:
    """Metric rows of a FrameMetrics summary: one per (metric, stat); scalars as ``value``.

    Non-finite values (identical frames give PSNR +inf) are stored as NULL.
    """
    rows: list[Metric] = []
    for name, stats in summary.items():
        if isinstance(stats, Mapping):
            for stat, value in stats.items():
                rows.append(Metric(run_id=run_id, name=name, stat=stat, value=_finite(value)))
        else:
            value = None if stats is None else _finite(float(stats))
            rows.append(Metric(run_id=run_id, name=name, stat="value", value=value))
    return rows


class RunProcessor:
    """Turns a claimed run into its canonical video, metrics and rows."""

    def __init__(
        self,
        *,
        policy: CallPolicy | None = None,
        threads: int = 0,
        metrics_factory: Callable[[], FrameMetrics] = FrameMetrics,
    ) -> None:
        self.policy = policy or CallPolicy()
        self.threads = threads
        self.metrics_factory = metrics_factory

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        """Do the run's work; return (canon_uri, canon_sha256). See the module docs."""
        store = ArtifactStore(ctx.artifact_root)
        run_id, attempt = ctx.run_id, ctx.attempt

        def fence() -> None:
            owned = still_owner(session, run_id, attempt)
            session.commit()  # end the read: no transaction outlives a check
            if not owned:
                raise LeaseLost(f"run {run_id} attempt {attempt} no longer owns the run")

        self._check_stop(ctx, "starting")
        raw = self._raw(ctx, session, store, fence)
        self._check_stop(ctx, "normalizing")

        canon_path = store.path_for(run_id, "canon")
        temp = store.temp_path(canon_path)
        metrics = self.metrics_factory()
        reference = Path(ctx.reference_path) if ctx.reference_path else None
        try:
            result = normalize_video(
                path_from_uri(raw.uri),
                temp,
                ctx.canonical,
                metrics=metrics,
                reference=reference,
                threads=self.threads,
                stop=ctx.stop,
            )
        except UnusableVideo as exc:
            temp.unlink(missing_ok=True)
            if exc.role == "raw":
                # Garbage from the provider is a failed call: never serve it again.
                forget_unusable_output(session, raw.call_id, raw.sha256, str(exc))
            raise
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        canon = store.commit(temp, canon_path, before_rename=fence)
        self._check_stop(ctx, "writing metrics")

        summary = _finite(metrics.summary())
        frames_doc = self._frames_document(ctx, raw, canon, result, summary, metrics)
        frames = store.write_bytes(
            store.path_for(run_id, "frames"),
            json.dumps(frames_doc, indent=1, allow_nan=False).encode(),
            before_rename=fence,
        )

        # Results: added, not committed (the orchestrator commits them with the status).
        fence()
        now = datetime.now(UTC)
        session.execute(delete(Artifact).where(Artifact.run_id == run_id))
        session.execute(delete(Metric).where(Metric.run_id == run_id))
        artifacts = [
            Artifact(run_id=run_id, kind="raw", uri=raw.uri, sha256=raw.sha256, bytes=raw.bytes,
                     created_at=now),
            Artifact(run_id=run_id, kind="canon", uri=canon.uri, sha256=canon.sha256,
                     bytes=canon.bytes, created_at=now),
            Artifact(run_id=run_id, kind="frames", uri=frames.uri, sha256=frames.sha256,
                     bytes=frames.bytes, created_at=now),
        ]  # fmt: skip
        if reference is not None:
            artifacts.append(
                Artifact(
                    run_id=run_id,
                    kind="reference",
                    uri=reference.resolve().as_uri(),
                    sha256=sha256_file(reference),
                    bytes=reference.stat().st_size,
                    created_at=now,
                )
            )
        session.add_all(artifacts)
        session.add_all(metric_rows(run_id, summary))
        link_provider_call(session, run_id, attempt, raw.call_id)
        return canon.uri, canon.sha256

    def _raw(
        self,
        ctx: RunContext,
        session: Session,
        store: ArtifactStore,
        fence: Callable[[], None],
    ) -> RawOutput:
        provider = get_provider(ctx.provider)
        gen = ctx.gen_input
        image = gen.get("image")
        image_sha = None
        if image:
            if not Path(image).is_file():
                raise TerminalError(f"run {ctx.run_id}: the item's input image {image} is missing")
            image_sha = sha256_file(image)
        request = GenerationRequest(
            provider=ctx.provider,
            model=ctx.model,
            params=dict(ctx.params),
            prompt=str(gen.get("prompt", "")),
            seed=int(gen["seed"]),
            item_id=ctx.item_key,
            image=str(image) if image else None,
            attempt=ctx.attempt,
            stop=ctx.stop,
            workdir=str(ctx.spec_dir) if ctx.spec_dir else None,
        )
        cache = ProviderCallCache(store, self.policy)
        return cache.obtain(
            session,
            provider,
            request,
            run_id=ctx.run_id,
            attempt=ctx.attempt,
            raw_path=store.path_for(ctx.run_id, "raw"),
            image_sha256=image_sha,
            use_cache=ctx.use_cache,
            stop=ctx.stop,
            fence=fence,
        )

    @staticmethod
    def _check_stop(ctx: RunContext, stage: str) -> None:
        if ctx.stop.is_set():
            raise LeaseLost(f"run {ctx.run_id} stopped before {stage}")

    @staticmethod
    def _frames_document(
        ctx: RunContext,
        raw: RawOutput,
        canon: StoredFile,
        result: NormalizeResult,
        summary: Any,
        metrics: FrameMetrics,
    ) -> dict[str, Any]:
        return {
            "run_id": ctx.run_id,
            "canonical": ctx.canonical.model_dump(),
            "raw": {"uri": raw.uri, "sha256": raw.sha256, "cached": raw.cached},
            "canon": {"uri": canon.uri, "sha256": canon.sha256},
            "source": result.source,
            "frames_written": result.frames,
            "truncated": result.truncated,
            "reference": str(ctx.reference_path) if ctx.reference_path else None,
            "reference_frames": result.reference_frames,
            "summary": summary,
            "frames": _finite(metrics.frames()),
        }
