"""Work done once: a reference is scaled once per format, a cached raw video never again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processor_support import FAST, Lab, work
from sqlalchemy import select
from sqlalchemy.orm import Session
from videos import encode_video, moving_pattern

import reelbench.video.normalize as normalize
from reelbench.context import RunContext
from reelbench.db import cache_hits
from reelbench.db.cache_hits import HitBatcher, HitScope, _complete
from reelbench.db.models import Artifact, DerivedOutput, Item, Metric, Run, RunAttempt, Variant
from reelbench.identity import sha256_file
from reelbench.metrics import FrameMetrics
from reelbench.orchestrator import WorkerOrchestrator, WorkerStats, cancel_experiment
from reelbench.processor import FileHashes, RunProcessor
from reelbench.storage import path_from_uri
from reelbench.video.canonical import CanonicalFormat
from reelbench.video.frames import iter_y_planes

SYNTHETIC = {"key": "orbit", "provider": "synthetic", "model": "orbit", "repeats": 6,
             "params": {"width": 64, "height": 48, "fps": 12, "seconds": 1}}  # fmt: skip


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.open(database_url, tmp_path / "artifacts")
    yield lab
    lab.db.dispose()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times each file was opened for decoding by the normalizer."""
    counts: dict[str, int] = {}
    original = normalize._Decoder.__init__

    def counting(self: Any, path: Path, *args: Any, **kwargs: Any) -> None:
        counts[str(path)] = counts.get(str(path), 0) + 1
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(normalize._Decoder, "__init__", counting)
    return counts


def _metrics(lab: Lab, experiment_id: int) -> dict[int, dict[tuple[str, str], float | None]]:
    with lab.db.sessions() as session:
        runs = session.scalars(select(Run.id).where(Run.experiment_id == experiment_id)).all()
        out: dict[int, dict[tuple[str, str], float | None]] = {r: {} for r in runs}
        for m in session.scalars(select(Metric).where(Metric.run_id.in_(runs))):
            out[m.run_id][m.name, m.stat] = m.value
    return out


def test_an_items_reference_is_decoded_once_for_all_its_runs(
    lab: Lab, tmp_path: Path, decodes: dict[str, int]
) -> None:
    reference = tmp_path / "ref.mp4"
    # Not in the canonical format (another size and rate): it must be scaled.
    encode_video(reference, moving_pattern(96, 72, 30, seed=4), fps=24, crf=10)
    exp = lab.submit("refs", [SYNTHETIC], items=[
        {"id": "cat", "prompt": "a cat", "reference": str(reference)}])  # fmt: skip
    stats = work(lab, "refs", concurrency=3)
    assert stats.succeeded == 6
    assert decodes[str(reference)] == 1, decodes

    with lab.db.sessions() as session:
        copy = session.scalars(select(DerivedOutput).where(DerivedOutput.kind == "reference")).one()
        assert sha256_file(path_from_uri(copy.uri)) == copy.sha256
        refs = session.scalars(select(Artifact).where(Artifact.kind == "reference")).all()
        assert {r.uri for r in refs} == {reference.resolve().as_uri()}
        assert {r.sha256 for r in refs} == {sha256_file(reference)}
        raws = {
            a.run_id: path_from_uri(a.uri)
            for a in session.scalars(select(Artifact).where(Artifact.kind == "raw"))
        }

    # The copy is exact: the same frames as scaling the reference directly.
    fmt = CanonicalFormat.model_validate(lab_canonical())
    direct = [f.to_ndarray() for f in normalize.canonical_frames(reference, fmt)]
    copied = [
        f.to_ndarray()
        for f in normalize.canonical_frames(path_from_uri(copy.uri), fmt, already_canonical=True)
    ]
    assert len(direct) == len(copied) == 15  # 1.25 s at 12 fps
    assert all((a == b).all() for a, b in zip(direct, copied, strict=True))

    # And every run's numbers are those of normalizing its raw video against the
    # original reference, as each run did before references were shared.
    stored = _metrics(lab, exp)
    for run_id, raw in raws.items():
        fm = FrameMetrics()
        normalize.normalize_video(raw, tmp_path / f"check-{run_id}.mp4", fmt, metrics=fm,
                                  reference=reference)  # fmt: skip
        expected = {(name, stat): value for name, stats in fm.summary().items()
                    if isinstance(stats, dict) for stat, value in stats.items()}  # fmt: skip
        assert {k: v for k, v in stored[run_id].items() if k in expected} == expected


def lab_canonical() -> dict[str, Any]:
    from processor_support import SMALL_CANONICAL

    return dict(SMALL_CANONICAL)


def test_cache_hits_reuse_the_canonical_video_without_decoding(
    lab: Lab, decodes: dict[str, int]
) -> None:
    variant = {**SYNTHETIC, "repeats": 2}
    first = lab.submit("first", [variant], items=[{"id": "a", "prompt": "p"},
                                                  {"id": "b", "prompt": "q"}])  # fmt: skip
    work(lab, "first")
    opened = sum(decodes.values())
    assert opened == 4  # one decode per raw video
    again = lab.submit("again", [variant], items=[{"id": "a", "prompt": "p"},
                                                  {"id": "b", "prompt": "q"}])  # fmt: skip
    stats = work(lab, "again")
    assert stats.succeeded == 4
    assert sum(decodes.values()) == opened, "no raw video was decoded again"

    with lab.db.sessions() as session:

        def canon(experiment_id: int) -> list[tuple[str | None, str | None]]:
            return [
                (r.canon_uri, r.canon_sha256)
                for r in session.scalars(
                    select(Run).where(Run.experiment_id == experiment_id).order_by(Run.id)
                )
            ]

        assert canon(again) == canon(first)
        frames = session.scalars(select(Artifact.kind).where(Artifact.kind == "frames")).all()
        assert len(frames) == 8
    # The numbers are the same, row for row.
    one, two = _metrics(lab, first), _metrics(lab, again)
    assert sorted(one.values(), key=repr) == sorted(two.values(), key=repr)


def test_a_changed_canonical_file_is_made_again_not_reused(
    lab: Lab, decodes: dict[str, int]
) -> None:
    variant = {**SYNTHETIC, "repeats": 1}
    lab.submit("first", [variant])
    work(lab, "first")
    with lab.db.sessions() as session:
        made = session.scalars(select(DerivedOutput).where(DerivedOutput.kind == "canonical")).one()
        path = path_from_uri(made.uri)
    path.write_bytes(path.read_bytes()[:-10])  # damaged behind the database's back
    lab.submit("again", [variant])
    assert work(lab, "again").succeeded == 1
    assert sum(decodes.values()) == 2, "the damaged file was not reused"
    with lab.db.sessions() as session:
        run = session.scalars(select(Run).order_by(Run.id.desc())).first()
        assert run is not None and run.canon_sha256 == sha256_file(
            path_from_uri(run.canon_uri or "")
        )


def test_chroma_group_from_the_spec_reaches_the_runs(lab: Lab, tmp_path: Path) -> None:
    reference = tmp_path / "ref.mp4"
    encode_video(reference, moving_pattern(64, 48, 24, seed=2), fps=12, crf=30)
    spec_variant = {**SYNTHETIC, "repeats": 1}
    from reelbench.spec import parse_spec
    from reelbench.submit import submit_spec

    spec = parse_spec({
        "experiment": {"name": "chroma"}, "canonical": lab_canonical(),
        "metrics": {"groups": ["reference", "chroma"]},
        "items": [{"id": "cat", "prompt": "a cat", "reference": str(reference)}],
        "variants": [spec_variant]})  # fmt: skip
    exp = submit_spec(lab.db.sessions, spec).experiment_id
    assert work(lab, "chroma").succeeded == 1
    stored = next(iter(_metrics(lab, exp).values()))
    names = {name for name, _ in stored}
    assert {"ssim_u", "ssim_v", "ssim_all", "psnr_u", "psnr_v", "psnr_avg"} <= names
    assert "luma_mean" not in names and "ssim_prev" not in names
    assert 0 < (stored["ssim_all", "mean"] or 0) < 1


def test_y_planes_helper_still_reads_canonical_videos(lab: Lab) -> None:
    lab.submit("plain", [{**SYNTHETIC, "repeats": 1}])
    work(lab, "plain")
    with lab.db.sessions() as session:
        run = session.scalars(select(Run)).one()
    planes = list(iter_y_planes(path_from_uri(run.canon_uri or "")))
    assert planes and planes[0].shape == (48, 64)


# --- cache hits completed in batches (reelbench.db.cache_hits) -----------------


class _CountingProcessor(RunProcessor):
    """A real processor that counts the runs it processed one by one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(policy=FAST, **kwargs)
        self.processed: list[int] = []

    def process(self, ctx: RunContext, session: Session) -> tuple[str, str]:
        self.processed.append(ctx.run_id)
        return super().process(ctx, session)


def _work_with(lab: Lab, experiment: str | None, processor: RunProcessor) -> WorkerStats:
    return WorkerOrchestrator(
        lab.db.sessions, processor, concurrency=2, experiment=experiment,
        artifact_root=lab.artifacts, poll_seconds=0.05, lease_seconds=30,
    ).run_until_idle()  # fmt: skip


def _results(lab: Lab, experiment_id: int) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Everything a report reads of each run, keyed by (item, variant, repeat), ids left out."""
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    with lab.db.sessions() as session:
        rows = session.execute(
            select(Run, Item.key, Variant.key)
            .join(Item, Item.id == Run.item_id)
            .join(Variant, Variant.id == Run.variant_id)
            .where(Run.experiment_id == experiment_id)
        ).all()
        for run, item, variant in rows:
            attempts = session.scalars(
                select(RunAttempt).where(RunAttempt.run_id == run.id).order_by(RunAttempt.attempt)
            ).all()
            out[item, variant, run.repeat] = {
                "run": (run.status, run.attempt, run.max_attempts, run.canon_uri, run.canon_sha256,
                        run.provider_call_id, run.error_class, run.error_message, run.task,
                        run.remeasure, run.not_before, run.wait_reason, run.lease_expires_at,
                        run.worker_id is not None, run.started_at is not None,
                        run.finished_at is not None),
                "attempts": [(a.attempt, a.outcome, a.error_class, a.error_message,
                              a.worker_id == run.worker_id, a.finished_at is not None)
                             for a in attempts],
                "artifacts": sorted(
                    (a.kind, a.uri, a.sha256, a.bytes)
                    for a in session.scalars(select(Artifact).where(Artifact.run_id == run.id))
                ),
                "metrics": sorted(
                    (m.name, m.stat, m.value, m.version)
                    for m in session.scalars(select(Metric).where(Metric.run_id == run.id))
                ),
            }  # fmt: skip
    return out


def _hit_items(reference: Path) -> list[dict[str, Any]]:
    return [{"id": "a", "prompt": "p", "reference": str(reference)}, {"id": "b", "prompt": "q"}]


def test_batched_cache_hits_write_what_the_per_run_path_writes(
    lab: Lab, tmp_path: Path, decodes: dict[str, int]
) -> None:
    reference = tmp_path / "ref.mp4"
    encode_video(reference, moving_pattern(64, 48, 12, seed=3), fps=12, crf=20)
    variant = {**SYNTHETIC, "repeats": 3}
    lab.submit("first", [variant], items=_hit_items(reference))
    assert _work_with(lab, "first", RunProcessor(policy=FAST)).succeeded == 6
    opened = sum(decodes.values())

    one_by_one = _CountingProcessor(batch_cache_hits=False)
    single = lab.submit("single", [variant], items=_hit_items(reference))
    assert _work_with(lab, "single", one_by_one).succeeded == 6
    assert len(one_by_one.processed) == 6

    batching = _CountingProcessor()
    batched = lab.submit("batched", [variant], items=_hit_items(reference))
    stats = _work_with(lab, "batched", batching)
    assert (stats.claimed, stats.succeeded) == (6, 6)
    assert batching.processed == [], "every run was a clean hit, completed in a batch"
    assert sum(decodes.values()) == opened

    expected, got = _results(lab, single), _results(lab, batched)
    assert got == expected
    assert all(r["run"][0] == "succeeded" and len(r["metrics"]) > 10 for r in got.values())
    assert {k for r in got.values() for k, *_ in r["artifacts"]} == {
        "raw", "canon", "frames", "reference"}  # fmt: skip


def test_runs_that_are_not_clean_hits_go_the_normal_way(lab: Lab) -> None:
    variant = {**SYNTHETIC, "repeats": 2}
    lab.submit("first", [variant], items=[{"id": "a", "prompt": "p"}])
    _work_with(lab, "first", RunProcessor(policy=FAST))
    # Item b was never generated: its runs need the provider, the others are hits.
    lab.submit("mixed", [variant], items=[{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "q"}])
    processor = _CountingProcessor()
    stats = _work_with(lab, "mixed", processor)
    assert stats.succeeded == 4
    assert len(processor.processed) == 2
    # Without the cache, nothing is a hit.
    lab.submit("fresh", [variant], items=[{"id": "a", "prompt": "p"}])
    fresh = _CountingProcessor()
    orchestrator = WorkerOrchestrator(
        lab.db.sessions, fresh, concurrency=2, experiment="fresh", use_cache=False,
        artifact_root=lab.artifacts, poll_seconds=0.05, lease_seconds=30,
    )  # fmt: skip
    assert orchestrator.run_until_idle().succeeded == 2
    assert len(fresh.processed) == 2


def _scope(lab: Lab, experiment_id: int | None = None) -> HitScope:
    return HitScope("batch-worker", experiment_id, lab.artifacts, True, 30.0)


def test_a_run_cancelled_or_claimed_meanwhile_is_not_touched(lab: Lab) -> None:
    variant = {**SYNTHETIC, "repeats": 2}
    items = [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "q"}]
    lab.submit("first", [variant], items=items)
    _work_with(lab, "first", RunProcessor(policy=FAST))
    kept = lab.submit("kept", [variant], items=items)
    dropped = lab.submit("dropped", [variant], items=items)
    before = _results(lab, dropped)

    batcher = HitBatcher(FileHashes())
    hits, looked_at = batcher._find(lab.db.sessions, _scope(lab), 100)
    assert looked_at == 8 and len(hits) == 8
    # Between the read and the write: one experiment is cancelled, one run of
    # the other is claimed by another worker.
    cancel_experiment(lab.db.sessions, "dropped")
    other = lab.claim(kept, limit=1)
    assert len(other) == 1
    done = _complete(lab.db.sessions, "batch-worker", hits)
    assert sorted(c.run_id for c in done) == sorted(
        h.ctx.run_id
        for h in hits
        if h.ctx.experiment_id == kept and h.ctx.run_id != other[0].run_id
    )

    after = _results(lab, dropped)
    assert {r["run"][0] for r in after.values()} == {"cancelled"}
    assert all(r["attempts"] == [] and r["artifacts"] == [] and r["metrics"] == []
               for r in after.values())  # fmt: skip
    assert [r["run"][1] for r in after.values()] == [r["run"][1] for r in before.values()]
    with lab.db.sessions() as session:
        claimed = session.get(Run, other[0].run_id)
        assert claimed is not None
        assert (claimed.status, claimed.attempt, claimed.worker_id) == ("running", 1, "test-worker")
        history = session.scalars(select(RunAttempt).where(RunAttempt.run_id == claimed.id)).all()
        assert [(a.attempt, a.worker_id, a.outcome) for a in history] == [(1, "test-worker", None)]
        assert not session.scalars(select(Artifact).where(Artifact.run_id == claimed.id)).all()
    # The claimed run is finished by its owner as usual.
    lab.process(other[0])
    assert {r["run"][0] for r in _results(lab, kept).values()} == {"succeeded"}


class _Killed(BaseException):
    """Stands in for the process dying in the middle of a batch's transaction."""


def test_a_worker_killed_in_a_batch_loses_nothing(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    variant = {**SYNTHETIC, "repeats": 2}
    items = [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "q"}]
    lab.submit("first", [variant], items=items)
    _work_with(lab, "first", RunProcessor(policy=FAST))
    single = lab.submit("single", [variant], items=items)
    _work_with(lab, "single", RunProcessor(policy=FAST, batch_cache_hits=False))
    again = lab.submit("again", [variant], items=items)
    before = _results(lab, again)

    # Dies after the runs' status and attempt history were written, before the commit.
    real = cache_hits._metric_rows

    def die(hits: Any) -> Any:
        real(hits)
        raise _Killed

    monkeypatch.setattr(cache_hits, "_metric_rows", die)
    with pytest.raises(_Killed):
        HitBatcher(FileHashes()).resolve(lab.db.sessions, _scope(lab, again))
    assert _results(lab, again) == before
    assert {r["run"][:2] for r in before.values()} == {("queued", 0)}

    monkeypatch.setattr(cache_hits, "_metric_rows", real)
    processor = _CountingProcessor()
    assert _work_with(lab, "again", processor).succeeded == 4
    assert processor.processed == []
    assert _results(lab, again) == _results(lab, single)
