"""Work done once: a reference is scaled once per format, a cached raw video never again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processor_support import Lab, work
from sqlalchemy import select
from videos import encode_video, moving_pattern

import reelbench.video.normalize as normalize
from reelbench.db.models import Artifact, DerivedOutput, Metric, Run
from reelbench.identity import sha256_file
from reelbench.metrics import FrameMetrics
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
