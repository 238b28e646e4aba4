"""``remeasure``: a finished run's metrics computed again from its canonical video.

What a worker does with a run queued by ``reelbench remeasure`` (see
``db/remeasure.py``): decode the canonical video (and the item's canonical
reference copy, for reference metrics) once, feed the native accumulators
and the metric plugins, and stage in the run's fenced result transaction:

* the run's metric rows, with the remeasured metrics' rows replaced by the
  new values (tagged with the current ``METRICS_VERSION``) and every other
  metric's rows kept as they were (with their own version);
* a new ``frames.json`` (written under a fresh name, never over a file that
  other runs' rows may point to) merging the new per-frame values into the
  old ones, and the run's artifact row pointing at it.

No provider call, no re-encode: the canonical video and its hash stay the
same. Old values are replaced atomically per run: the new rows are
committed with the fenced status update, or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from reelbench.db.models import Artifact, Metric
from reelbench.db.result_rows import stage_rows
from reelbench.errors import TerminalError
from reelbench.metrics import METRICS_VERSION, measure_videos
from reelbench.spec import METRIC_GROUPS
from reelbench.storage import ArtifactStore

if TYPE_CHECKING:
    from reelbench.context import RunContext
    from reelbench.processor import RunProcessor

__all__ = ["remeasure_run", "split_metrics"]

_REFERENCE_GROUPS = ("reference", "chroma")


def split_metrics(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--metric`` names as (metric groups, plugin names), in the order given."""
    groups = [n for n in names if n in METRIC_GROUPS]
    plugins = [n for n in names if n not in METRIC_GROUPS]
    return groups, plugins


def remeasure_run(
    processor: RunProcessor,
    ctx: RunContext,
    session: Session,
    store: ArtifactStore,
    fence: Callable[[], None],
) -> tuple[str, str]:
    """Measure the run's canonical video again; stage its rows; return its (unchanged) video."""
    from reelbench.processor import _finite, _plugin_runner, metric_rows

    if not ctx.canon_uri or not ctx.canon_sha256:
        raise TerminalError(f"run {ctx.run_id} has no canonical video to remeasure")
    if not store.verify(ctx.canon_uri, ctx.canon_sha256):
        raise TerminalError(
            f"run {ctx.run_id}: its canonical video {ctx.canon_uri} is missing or no longer "
            "matches its SHA-256; it cannot be remeasured (submit the experiment under a new "
            "name, or forget the run's provider call, to make it again)"
        )
    if ctx.remeasure_metrics:
        groups, plugins = split_metrics(ctx.remeasure_metrics)
    else:
        groups, plugins = list(ctx.metric_groups), list(ctx.metric_plugins)
    if "chroma" in groups and "reference" not in groups:
        groups.append("reference")
    reference: Path | None = None
    if any(g in groups for g in _REFERENCE_GROUPS):
        if ctx.reference_path:
            found = processor._reference(ctx, session, store)
            if found is None or found.copy is None:
                raise TerminalError(
                    f"run {ctx.run_id}: the canonical copy of the item's reference video is "
                    "missing, so reference metrics cannot be remeasured from canonical frames"
                )
            reference = store.local_path(found.copy.uri, found.copy.sha256)
        else:
            groups = [g for g in groups if g not in _REFERENCE_GROUPS]
    runner = _plugin_runner(dataclasses.replace(ctx, metric_plugins=tuple(plugins)))
    ordered = [g for g in METRIC_GROUPS if g in groups]
    measured = measure_videos(
        [store.local_path(ctx.canon_uri, ctx.canon_sha256)],
        reference,
        groups=ordered or ["frame"],
        runners=[runner] if runner is not None else None,
        dynamic_threshold=ctx.dynamic_threshold,
    )[0]
    processor._check_stop(ctx, "writing remeasured metrics")
    summary = _finite(measured.summary())
    if not ordered:
        # Only plugins were asked for: keep the native metrics as they were.
        summary = {k: v for k, v in summary.items() if k in set(runner.summary() if runner else ())}
    records = measured.frames()

    current = _read_frames(session, store, ctx.run_id)
    frames_doc = _merged_frames(current, summary, records, ctx, ordered, plugins)
    final = store.path_for(ctx.run_id, "frames").with_name(
        f"frames-remeasured-{uuid.uuid4().hex[:8]}.json"
    )
    frames_file = store.write_bytes(
        final, json.dumps(frames_doc, indent=1, allow_nan=False).encode(), before_rename=fence
    )

    # Every row of the run is staged again (not only the new ones), so that a
    # commit cut off by an outage replays to exactly this state.
    new_rows = metric_rows(ctx.run_id, summary)
    replaced = {row["name"] for row in new_rows}
    old_rows = session.execute(
        select(Metric.name, Metric.stat, Metric.value, Metric.version).where(
            Metric.run_id == ctx.run_id
        )
    ).all()
    kept = [
        {"run_id": ctx.run_id, "name": r.name, "stat": r.stat, "value": r.value,
         "version": r.version}
        for r in old_rows
        if r.name not in replaced
    ]  # fmt: skip
    artifacts = session.execute(
        select(
            Artifact.kind, Artifact.uri, Artifact.sha256, Artifact.bytes, Artifact.created_at
        ).where(Artifact.run_id == ctx.run_id, Artifact.kind != "frames")
    ).all()
    now = datetime.now(UTC)
    artifact_rows = [
        {"run_id": ctx.run_id, "kind": a.kind, "uri": a.uri, "sha256": a.sha256,
         "bytes": a.bytes, "created_at": a.created_at}
        for a in artifacts
    ]  # fmt: skip
    artifact_rows.append(
        {"run_id": ctx.run_id, "kind": "frames", "uri": frames_file.uri,
         "sha256": frames_file.sha256, "bytes": frames_file.bytes, "created_at": now}
    )  # fmt: skip
    session.execute(delete(Metric).where(Metric.run_id == ctx.run_id))
    session.execute(delete(Artifact).where(Artifact.run_id == ctx.run_id))
    stage_rows(session, Metric, kept + new_rows)
    stage_rows(session, Artifact, artifact_rows)
    return ctx.canon_uri, ctx.canon_sha256


def _read_frames(session: Session, store: ArtifactStore, run_id: int) -> dict[str, Any]:
    """The run's current frames.json document ({} when it is gone or unreadable)."""
    row = session.execute(
        select(Artifact.uri, Artifact.sha256).where(
            Artifact.run_id == run_id, Artifact.kind == "frames"
        )
    ).first()
    if row is None or not row.uri:
        return {}
    try:
        doc = json.loads(store.local_path(row.uri, row.sha256).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _merged_frames(
    old: dict[str, Any],
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    ctx: RunContext,
    groups: list[str],
    plugins: list[str],
) -> dict[str, Any]:
    """The old document with the remeasured summary and per-frame values laid over it."""
    doc = dict(old)
    doc["run_id"] = doc.get("run_id", ctx.run_id)
    doc["canon"] = doc.get("canon", {"uri": ctx.canon_uri, "sha256": ctx.canon_sha256})
    doc["summary"] = {**dict(old.get("summary") or {}), **summary}
    old_frames = list(old.get("frames") or [])
    merged = []
    for index, record in enumerate(records):
        base = dict(old_frames[index]) if index < len(old_frames) else {}
        base.update(record)
        merged.append(base)
    doc["frames"] = merged
    versions = dict(old.get("metric_versions") or {})
    versions.update(dict.fromkeys(summary, METRICS_VERSION))
    doc["metric_versions"] = versions
    doc.setdefault("remeasured", []).append(
        {
            "at": datetime.now(UTC).isoformat(),
            "metrics_version": METRICS_VERSION,
            "groups": groups,
            "plugins": plugins,
        }
    )
    doc["metric_groups"] = sorted(set(doc.get("metric_groups") or []) | set(groups))
    return doc
