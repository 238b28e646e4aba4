"""RunProcessor: provider -> raw video -> canonical video + frame metrics -> rows.

``process(ctx, session)`` does one run's work and returns ``(canon_uri,
canon_sha256)``; it never touches the run's status (the orchestrator does).

1. the provider's raw video, through the provider-call cache (cache hit,
   single flight, resume: :mod:`reelbench.call_cache`), written atomically to
   ``{run_id}/raw/raw.mp4``; bookkeeping committed in short transactions;
2. when the same raw video was normalized before with the same canonical
   format, reference and metric groups, that canonical video, per-frame file
   and summary are reused after their SHA-256 is checked
   (:mod:`reelbench.derived`): a provider-call cache hit costs no decoding;
3. otherwise one decode of it normalized to ``{run_id}/canon/canon.mp4``
   while the native :class:`~reelbench.metrics.FrameMetrics` measures the
   same frames against the item's reference video; the reference is scaled
   to the canonical format once per (reference, format) and kept as a
   lossless copy that later runs read;
4. ``{run_id}/metrics/frames.json`` (per-frame values, summary, source info);
5. Artifact and Metric rows, the reusable-output rows and the run's
   provider-call link, staged in the session **uncommitted** (one multi-row
   INSERT per table, :mod:`reelbench.db.result_rows`): the orchestrator
   commits them together with the fenced status update, so a run's results
   appear all at once or not at all.

``ctx.stop`` is checked between stages (and between frames while
normalizing); when set, :class:`LeaseLost` is raised. Before each rename onto
a final artifact name the fencing token is checked, so a worker that lost the
run does not replace the new owner's files (see :mod:`reelbench.storage` for
the window that remains). Every database step is retried through an outage
(:mod:`reelbench.db.retry`).

A cache hit reuses the earlier call's raw file (and a reused canonical video
the earlier run's canonical files): the run's artifact rows then point at
those files instead of copying them.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.orm import Session, sessionmaker

from reelbench.call_cache import (
    CallPolicy,
    ProviderCallCache,
    RawOutput,
    forget_unusable_output,
)
from reelbench.context import RunContext
from reelbench.db.admission import PaidCallPolicy
from reelbench.db.claim import link_provider_call, still_owner
from reelbench.db.engine import read_transaction
from reelbench.db.models import Artifact, Metric
from reelbench.db.result_rows import stage_rows, stage_statement
from reelbench.db.retry import retry_db
from reelbench.derived import (
    CANONICAL,
    REFERENCE,
    Derived,
    canonical_key,
    derived_insert,
    find_derived,
    reference_key,
)
from reelbench.errors import LeaseLost, TerminalError
from reelbench.identity import sha256_file
from reelbench.metric_plugins import MeasuringSink, PluginRun, PluginRunner
from reelbench.metrics import METRICS_VERSION, FrameMetrics
from reelbench.providers import get_provider
from reelbench.storage import ArtifactStore, StoredFile, open_store
from reelbench.video.normalize import FrameSink, NormalizeResult, UnusableVideo, normalize_video

__all__ = ["FileHashes", "RunProcessor", "metric_rows"]


# Built once: statement construction costs more than execution on this path.
_ARTIFACTS = cast(Table, Artifact.__table__)
_METRICS = cast(Table, Metric.__table__)
_DELETE_ARTIFACTS = delete(_ARTIFACTS).where(_ARTIFACTS.c.run_id == bindparam("run_id"))
_DELETE_METRICS = delete(_METRICS).where(_METRICS.c.run_id == bindparam("run_id"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def metric_rows(run_id: int, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Metric rows of a FrameMetrics summary: one per (metric, stat); scalars as ``value``.

    Non-finite values (identical frames give PSNR +inf) are stored as NULL.
    """
    rows: list[dict[str, Any]] = []
    for name, stats in summary.items():
        if isinstance(stats, Mapping):
            for stat, value in stats.items():
                rows.append(
                    {"run_id": run_id, "name": name, "stat": stat, "value": _finite(value),
                     "version": METRICS_VERSION}
                )  # fmt: skip
        else:
            value = None if stats is None else _finite(float(stats))
            rows.append(
                {"run_id": run_id, "name": name, "stat": "value", "value": value,
                 "version": METRICS_VERSION}
            )  # fmt: skip
    return rows


class FileHashes:
    """SHA-256 of local input files, hashed again only when a file changes.

    Keyed by path, size, modification time and inode: an item's image and
    reference are hashed once per worker process, not once per run, and an
    edited file is noticed.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int, int], str] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> tuple[str, int]:
        """``(sha256, size)`` of ``path`` (OSError when it cannot be read)."""
        st = os.stat(path)
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            known = self._known.get(key)
        if known is None:
            known = sha256_file(path)
            with self._lock:
                self._known[key] = known
        return known, st.st_size


@dataclass(frozen=True)
class _Reference:
    """An item's reference video and, when one exists, its canonical copy."""

    path: Path
    sha256: str
    bytes: int
    key: str
    copy: Derived | None


class RunProcessor:
    """Turns a claimed run into its canonical video, metrics and rows."""

    def __init__(
        self,
        *,
        policy: CallPolicy | None = None,
        threads: int = 0,
        metrics_factory: Callable[..., FrameMetrics] = FrameMetrics,
        batch_cache_hits: bool = True,
    ) -> None:
        self.policy = policy or CallPolicy()
        #: Complete runs whose outputs all exist in batches (:mod:`reelbench.db.cache_hits`).
        self.batch_cache_hits = batch_cache_hits
        self._hits: Any = None
        self.threads = threads
        self.metrics_factory = metrics_factory
        self.hashes = FileHashes()
        # Canonical reference copies made by this process, by key: the runs of
        # one item in flight at once wait for the first one's copy instead of
        # scaling the reference each (another host may still make its own).
        self._copies: dict[str, Derived] = {}
        self._copy_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def resolve_cache_hits(self, sessions: sessionmaker[Session], scope: Any) -> list[RunContext]:
        """Complete the clean cache hits among the next queued runs, in a few transactions.

        ``scope``: a :class:`reelbench.db.cache_hits.HitScope`. Returns the
        contexts of the runs completed (succeeded, as if processed one by one).
        """
        if not self.batch_cache_hits:
            return []
        from reelbench.db.cache_hits import HitBatcher

        with self._lock:
            if self._hits is None:
                self._hits = HitBatcher(self.hashes)
            batcher = self._hits
        return cast(list[RunContext], batcher.resolve(sessions, scope))

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        """Do the run's work; return (canon_uri, canon_sha256). See the module docs."""
        store = open_store(ctx.artifact_root)
        run_id, attempt = ctx.run_id, ctx.attempt

        def fence() -> None:
            def check() -> bool:
                read_transaction(session)
                owned = still_owner(session, run_id, attempt)
                session.commit()  # end the read: no transaction outlives a check
                return owned

            if not retry_db("checking the run's lease", check, session=session):
                raise LeaseLost(f"run {run_id} attempt {attempt} no longer owns the run")

        self._check_stop(ctx, "starting")
        if ctx.task == "remeasure":
            from reelbench.remeasure import remeasure_run

            return remeasure_run(self, ctx, session, store, fence)
        raw = self._raw(ctx, session, store, fence)
        reference = self._reference(ctx, session, store)
        groups = list(ctx.metric_groups)
        plugins = _plugin_runner(ctx)
        key = canonical_key(
            raw.sha256,
            ctx.canonical,
            reference.sha256 if reference else None,
            groups,
            plugins=plugins.versions() if plugins else (),
            dynamic_threshold=ctx.dynamic_threshold,
        )
        reused = find_derived(session, store, CANONICAL, key)
        if reused is not None:
            frames = reused.details["frames"]
            canon = StoredFile(uri=reused.uri, sha256=reused.sha256, bytes=reused.bytes)
            frames_file = StoredFile(
                uri=frames["uri"], sha256=frames["sha256"], bytes=int(frames["bytes"])
            )
            self._stage(ctx, session, raw, reference, canon, frames_file, reused.details["summary"])
            return canon.uri, canon.sha256

        self._check_stop(ctx, "normalizing")
        with self._reference_copy_turn(reference):
            if reference is not None and reference.copy is None:
                # Another thread of this process may have made it meanwhile.
                reference = self._with_copy(reference, session, store)
            canon, result, metrics, made_copy = self._normalize(
                ctx, session, store, raw, reference, groups, fence, plugins
            )
            if made_copy is not None and reference is not None:
                reference = _Reference(
                    reference.path, reference.sha256, reference.bytes, reference.key, made_copy
                )
                with self._lock:
                    self._copies[reference.key] = made_copy
        self._check_stop(ctx, "writing metrics")

        summary = metrics.summary()
        records = metrics.frames()
        if plugins is not None:
            plugins.finish()
            summary.update(plugins.summary())
            plugins.add_to_frames(records)
        summary = _finite(summary)
        frames_doc = self._frames_document(
            ctx, raw, canon, result, summary, records, reference, plugins
        )
        frames_file = store.write_bytes(
            store.path_for(run_id, "frames"),
            json.dumps(frames_doc, indent=1, allow_nan=False).encode(),
            before_rename=fence,
        )
        made = Derived(
            uri=canon.uri,
            sha256=canon.sha256,
            bytes=canon.bytes,
            details={
                "frames": {
                    "uri": frames_file.uri,
                    "sha256": frames_file.sha256,
                    "bytes": frames_file.bytes,
                },
                "summary": summary,
                "frame_count": result.frames,
                "metrics_version": METRICS_VERSION,
            },
        )
        # A plugin that failed on this run (missing weights, a bug since fixed)
        # must not have its failure reused by later runs of the same video.
        reusable = plugins is None or not plugins.failed
        self._stage(
            ctx, session, raw, reference, canon, frames_file, summary,
            made=(key, made) if reusable else None,
        )  # fmt: skip
        return canon.uri, canon.sha256

    # --- stages ---------------------------------------------------------------

    def _normalize(
        self,
        ctx: RunContext,
        session: Session,
        store: ArtifactStore,
        raw: RawOutput,
        reference: _Reference | None,
        groups: list[str],
        fence: Callable[[], None],
        plugins: PluginRunner | None = None,
    ) -> tuple[StoredFile, NormalizeResult, FrameMetrics, Derived | None]:
        canon_path = store.path_for(ctx.run_id, "canon")
        temp = store.temp_path(canon_path)
        if "motion" in groups:
            metrics = self.metrics_factory(groups=groups, dynamic_threshold=ctx.dynamic_threshold)
        else:
            metrics = self.metrics_factory(groups=groups)
        sink: FrameSink = metrics
        if plugins is not None:
            plugins.start()
            sink = MeasuringSink(metrics, plugins)
        copy_temp: Path | None = None
        copy_final: Path | None = None
        if reference is not None and reference.copy is None:
            # A fresh name per copy: a copy another host is writing is never replaced.
            copy_final = store.reference_path(f"{reference.key[:32]}-{uuid.uuid4().hex[:8]}")
            copy_temp = store.temp_path(copy_final)
        source: Path | None = None
        if reference is not None:
            source = (
                store.local_path(reference.copy.uri, reference.copy.sha256)
                if reference.copy
                else reference.path
            )
        try:
            result = normalize_video(
                store.local_path(raw.uri, raw.sha256),
                temp,
                ctx.canonical,
                metrics=sink,
                reference=source,
                reference_canonical=reference is not None and reference.copy is not None,
                reference_copy=copy_temp,
                threads=self.threads,
                stop=ctx.stop,
            )
        except UnusableVideo as exc:
            temp.unlink(missing_ok=True)
            if copy_temp is not None:
                copy_temp.unlink(missing_ok=True)
            if exc.role == "raw":
                # Garbage from the provider is a failed call: never serve it again.
                forget_unusable_output(session, raw.call_id, raw.sha256, str(exc))
            raise
        except BaseException:
            temp.unlink(missing_ok=True)
            if copy_temp is not None:
                copy_temp.unlink(missing_ok=True)
            raise
        made_copy = None
        if copy_temp is not None and copy_final is not None:
            stored = store.commit(copy_temp, copy_final)
            made_copy = Derived(
                uri=stored.uri,
                sha256=stored.sha256,
                bytes=stored.bytes,
                details={"frames": result.reference_copy_frames},
            )
        canon = store.commit(temp, canon_path, before_rename=fence)
        return canon, result, metrics, made_copy

    def _stage(
        self,
        ctx: RunContext,
        session: Session,
        raw: RawOutput,
        reference: _Reference | None,
        canon: StoredFile,
        frames: StoredFile,
        summary: Mapping[str, Any],
        *,
        made: tuple[str, Derived] | None = None,
    ) -> None:
        """Stage the run's result rows, uncommitted, for the orchestrator's fenced commit."""
        run_id = ctx.run_id
        now = datetime.now(UTC)
        session.execute(_DELETE_ARTIFACTS, {"run_id": run_id})
        session.execute(_DELETE_METRICS, {"run_id": run_id})
        files = [("raw", raw.uri, raw.sha256, raw.bytes), ("canon", canon.uri, canon.sha256,
                 canon.bytes), ("frames", frames.uri, frames.sha256, frames.bytes)]  # fmt: skip
        if reference is not None:
            files.append(
                ("reference", reference.path.resolve().as_uri(), reference.sha256, reference.bytes)
            )
        stage_rows(
            session,
            Artifact,
            [
                {"run_id": run_id, "kind": kind, "uri": uri, "sha256": sha, "bytes": size,
                 "created_at": now}
                for kind, uri, sha, size in files
            ],
        )  # fmt: skip
        stage_rows(session, Metric, metric_rows(run_id, summary))
        if made is not None:
            key, output = made
            stage_statement(
                session, derived_insert(session, CANONICAL, key, output, run_id=run_id,
                                        created_at=now)
            )  # fmt: skip
        if reference is not None and reference.copy is not None:
            # Whoever used a copy records it (once): a copy made by a run that
            # then lost its lease is still found by the next process.
            stage_statement(
                session, derived_insert(session, REFERENCE, reference.key, reference.copy,
                                        run_id=run_id, created_at=now)
            )  # fmt: skip
        link_provider_call(session, run_id, ctx.attempt, raw.call_id)

    def _reference(
        self, ctx: RunContext, session: Session, store: ArtifactStore
    ) -> _Reference | None:
        if not ctx.reference_path:
            return None
        path = Path(ctx.reference_path)
        try:
            sha, size = self.hashes.sha256(path)
        except FileNotFoundError as exc:
            raise UnusableVideo("reference", f"reference video {path} does not exist") from exc
        key = reference_key(sha, ctx.canonical)
        with self._lock:
            copy = self._copies.get(key)
        if copy is None:
            copy = find_derived(session, store, REFERENCE, key)
        return _Reference(path, sha, size, key, copy)

    def _with_copy(
        self, reference: _Reference, session: Session, store: ArtifactStore
    ) -> _Reference:
        with self._lock:
            copy = self._copies.get(reference.key)
        if copy is None:
            copy = find_derived(session, store, REFERENCE, reference.key)
        if copy is None:
            return reference
        return _Reference(reference.path, reference.sha256, reference.bytes, reference.key, copy)

    @contextmanager
    def _reference_copy_turn(self, reference: _Reference | None) -> Iterator[None]:
        """While a run of this process makes a reference's copy, the others of that item wait."""
        if reference is None or reference.copy is not None:
            yield
            return
        with self._lock:
            lock = self._copy_locks.setdefault(reference.key, threading.Lock())
        with lock:
            yield

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
            try:
                image_sha, _ = self.hashes.sha256(Path(image))
            except FileNotFoundError as exc:
                raise TerminalError(
                    f"run {ctx.run_id}: the item's input image {image} is missing"
                ) from exc
        request = ctx.request()
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
            paid=PaidCallPolicy(
                experiment_id=ctx.experiment_id,
                prices=ctx.prices,
                on_uncertain_submit=ctx.on_uncertain_submit,
                lease_seconds=ctx.lease_seconds,
                budget_recheck_seconds=ctx.budget_recheck_seconds,
            ),
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
        records: list[dict[str, Any]],
        reference: _Reference | None,
        plugins: PluginRunner | None,
    ) -> dict[str, Any]:
        return {
            # The run that made it: a run that reuses this canonical video
            # (same raw video, format, reference and metrics) points here too.
            "run_id": ctx.run_id,
            "canonical": ctx.canonical.model_dump(),
            "metrics_version": METRICS_VERSION,
            "metric_groups": list(ctx.metric_groups),
            "dynamic_threshold": ctx.dynamic_threshold if "motion" in ctx.metric_groups else None,
            # Per plugin: version, outputs, and the error when it failed on this run.
            "metric_plugins": plugins.describe() if plugins is not None else {},
            "raw": {"uri": raw.uri, "sha256": raw.sha256, "cached": raw.cached},
            "canon": {"uri": canon.uri, "sha256": canon.sha256},
            "source": result.source,
            "frames_written": result.frames,
            "truncated": result.truncated,
            "reference": str(reference.path) if reference else None,
            "reference_sha256": reference.sha256 if reference else None,
            "reference_copy": reference.copy.uri if reference and reference.copy else None,
            "reference_frames": result.reference_frames,
            "summary": summary,
            "frames": _finite(records),
        }


def _plugin_runner(ctx: RunContext) -> PluginRunner | None:
    """The run's metric plugins, loaded (a plugin that cannot be is failed, not raised)."""
    if not ctx.metric_plugins:
        return None
    image = ctx.gen_input.get("image")
    run = PluginRun(
        run_id=ctx.run_id,
        item_id=ctx.item_key,
        variant_key=ctx.variant_key,
        prompt=str(ctx.gen_input.get("prompt", "")),
        image=Path(image) if image else None,
        width=ctx.canonical.width,
        height=ctx.canonical.height,
        fps=ctx.canonical.fps,
    )
    return PluginRunner(ctx.metric_plugins, run)
