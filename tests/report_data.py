"""A small finished experiment written with the ORM, for the report and results tests.

Real rows in a real database and real H.264 MP4s encoded with PyAV (tiny, so
Chromium plays them); per-frame metrics computed from the decoded frames. The
grid covers what reports must show: succeeded and failed runs (terminal and
retryable), a reference video, provider cost and latency, cache sharing, and
the three seed-check outcomes.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
from sqlalchemy.orm import Session

from reelbench.db.engine import make_engine, upgrade
from reelbench.db.models import (
    Artifact,
    Experiment,
    Item,
    Metric,
    ProviderCall,
    Run,
    RunStatus,
    Variant,
)
from reelbench.identity import sha256_file

XSS_PROMPT = '<script>window.__pwned = 1</script> & "quotes" <b>bold</b>'
WIDTH, HEIGHT, FPS, FRAMES = 96, 64, 12, 12


def encode_video(path: Path, *, phase: float, speed: float = 1.0) -> Path:
    """A moving gradient with a bouncing square, H.264 yuv420p with +faststart.

    Encoded once per (phase, speed) in the test session, then copied: many
    tests build the same experiment on both database backends.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_encoded(phase, speed))
    return path


@functools.cache
def _encoded(phase: float, speed: float) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.mp4"
        _encode(path, phase=phase, speed=speed)
        return path.read_bytes()


def _encode(path: Path, *, phase: float, speed: float) -> None:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(FRAMES):
            t = phase + speed * i / FRAMES
            rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            rgb[..., 0] = (xx * 255 // WIDTH + int(80 * t)) % 256
            rgb[..., 1] = (yy * 255 // HEIGHT) % 256
            rgb[..., 2] = int(127 + 100 * math.sin(6.28 * t))
            x0 = int((WIDTH - 16) * (0.5 + 0.5 * math.sin(3.1 * t)))
            rgb[20:36, x0 : x0 + 16] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_records(path: Path, reference: Path | None = None) -> list[dict[str, float | None]]:
    """Per-frame luma statistics of a video (the frames.json layout)."""
    return _frame_records(path.read_bytes(), reference.read_bytes() if reference else None)


@functools.cache
def _frame_records(video: bytes, reference: bytes | None) -> list[dict[str, float | None]]:
    with tempfile.TemporaryDirectory() as tmp:
        path, ref = Path(tmp) / "v.mp4", Path(tmp) / "ref.mp4"
        path.write_bytes(video)
        if reference is not None:
            ref.write_bytes(reference)
        return _compute_frame_records(path, ref if reference is not None else None)


def _compute_frame_records(path: Path, reference: Path | None) -> list[dict[str, float | None]]:

    def lumas(p: Path) -> list[np.ndarray]:
        with av.open(str(p)) as c:
            return [f.to_ndarray(format="gray").astype(np.float64) for f in c.decode(video=0)]

    frames = lumas(path)
    refs = lumas(reference) if reference else []
    out: list[dict[str, float | None]] = []
    for i, y in enumerate(frames):
        lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
        rec: dict[str, float | None] = {
            "index": float(i),
            "luma_mean": float(y.mean()),
            "luma_std": float(y.std()),
            "sharpness": float(lap.var()),
            "black": float((y < 16).mean()),
            "mad_prev": float(np.abs(y - frames[i - 1]).mean()) if i else None,
        }
        if i < len(refs):
            mse = float(((y - refs[i]) ** 2).mean())
            rec["mse_ref"] = mse
            rec["psnr_ref"] = 10 * math.log10(255**2 / mse) if mse else None
        out.append(rec)
    return out


def summarize(frames: list[dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """Metric rows as the processor stores them: stats of per-frame values, plus scalars."""
    summary: dict[str, dict[str, float | None]] = {}
    for name in ("luma_mean", "luma_std", "sharpness", "black", "mad_prev", "psnr_ref", "mse_ref"):
        if not any(name in f for f in frames):
            continue
        values = [f[name] for f in frames if f.get(name) is not None]
        if not values:  # e.g. PSNR of frames identical to the reference: +inf, stored as null
            summary[name] = dict.fromkeys(("mean", "min", "max", "p05", "p50", "p95"))
            continue
        arr = np.array(values, dtype=np.float64)
        summary[name] = {
            "mean": float(arr.mean()),
            "min": float(arr.min()),
            "max": float(arr.max()),
            "p05": float(np.percentile(arr, 5)),
            "p50": float(np.percentile(arr, 50)),
            "p95": float(np.percentile(arr, 95)),
        }
    mad = summary["mad_prev"]["mean"]
    assert mad is not None
    summary["temporal_flicker"] = {"value": (255 - mad) / 255}
    summary["scene_cuts"] = {"value": 0.0}
    return summary


@dataclass(frozen=True)
class Fixture:
    """What was written, for assertions."""

    name: str
    experiment_id: int
    artifact_root: Path
    variants: tuple[str, ...]
    items: tuple[str, ...]


def build_experiment(session: Session, artifact_root: Path, name: str = "report-demo") -> Fixture:
    """Write a finished 3 items x 3 variants x 2 repeats experiment; return what it holds.

    - ``alpha``: every run succeeded, repeats use different seeds (seed check: not tested);
      cost 0.01 and latency 1.5 s per call.
    - ``beta``: both repeats ask the same seed, separate provider calls, identical
      output (reproducible); except item ``city`` whose two runs share one cached call.
    - ``gamma``: same seed, outputs differ (not reproducible); ``xss`` repeat 0 failed
      retryable after 3 attempts, ``city`` repeat 1 failed terminal.
    """
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ref_path = encode_video(artifact_root / "refs" / "sunset.mp4", phase=0.0)
    exp = Experiment(
        name=name,
        description="Fixture experiment for the report tests.",
        spec_hash="ab" * 32,
        spec={},
        canonical={"width": WIDTH, "height": HEIGHT, "fps": FPS},
        spec_path=None,
        created_at=now,
        updated_at=now,
    )
    session.add(exp)
    session.flush()
    items = [
        Item(
            experiment_id=exp.id,
            key="sunset",
            prompt="a sunset over the sea",
            reference_path=str(ref_path),
            extra={},
        ),
        Item(experiment_id=exp.id, key="xss", prompt=XSS_PROMPT, extra={}),
        Item(experiment_id=exp.id, key="city", prompt="a city street at night", extra={}),
    ]
    variants = [
        Variant(
            experiment_id=exp.id,
            key="alpha",
            provider="synthetic",
            model="orbit",
            params={},
            repeats=2,
            cache=True,
        ),
        Variant(
            experiment_id=exp.id,
            key="beta",
            provider="synthetic",
            model="bars",
            params={"seed": 7},
            repeats=2,
            cache=False,
        ),
        Variant(
            experiment_id=exp.id,
            key="gamma",
            provider="command",
            model=None,
            params={"seed": 9},
            repeats=2,
            cache=False,
        ),
    ]
    session.add_all(items + variants)
    session.flush()

    call_no = 0

    def provider_call(
        variant: Variant, raw_sha: str, cost: float | None, latency: float | None
    ) -> ProviderCall:
        nonlocal call_no
        call_no += 1
        call = ProviderCall(
            request_hash=f"{call_no:064x}",
            provider=variant.provider,
            model=variant.model,
            request={"n": call_no},
            status="succeeded",
            raw_sha256=raw_sha,
            cost=cost,
            latency_seconds=latency,
            created_at=now,
        )
        session.add(call)
        session.flush()
        return call

    shared_city_call: ProviderCall | None = None
    for ii, item in enumerate(items):
        for vi, variant in enumerate(variants):
            for repeat in range(2):
                seed = 1000 + 10 * vi + repeat if variant.key == "alpha" else 7 + vi
                run = Run(
                    experiment_id=exp.id,
                    item_id=item.id,
                    variant_id=variant.id,
                    repeat=repeat,
                    seed=seed,
                    status=RunStatus.SUCCEEDED.value,
                    attempt=1,
                    max_attempts=3,
                    created_at=now,
                    started_at=now,
                    finished_at=now + timedelta(seconds=2),
                )
                session.add(run)
                session.flush()
                failed = variant.key == "gamma" and (
                    (item.key == "xss" and repeat == 0) or (item.key == "city" and repeat == 1)
                )
                if failed:
                    run.status = RunStatus.FAILED.value
                    if item.key == "xss":
                        run.attempt = 3
                        run.error_class = "retryable"
                        run.error_message = "HTTP 503 from <provider> after 3 attempts"
                    else:
                        run.error_class = "terminal"
                        run.error_message = "output is not a decodable video: <b>moov atom</b>"
                    continue
                # Identical output for beta's repeats (a provider that honors seeds).
                phase = ii + 0.1 * vi + (0.05 * repeat if variant.key != "beta" else 0.0)
                video = encode_video(
                    artifact_root / str(run.id) / "canon" / "canon.mp4", phase=phase, speed=1.0 + vi
                )
                sha = sha256_file(video)
                if variant.key == "beta" and item.key == "city":
                    if shared_city_call is None:
                        shared_city_call = provider_call(variant, sha, 0.02, 3.0)
                    call = shared_city_call
                else:
                    cost = {"alpha": 0.01, "beta": 0.02, "gamma": None}[variant.key]
                    latency = {"alpha": 1.5, "beta": 3.0, "gamma": 0.5 + repeat}[variant.key]
                    call = provider_call(variant, sha, cost, latency)
                run.provider_call_id = call.id
                run.canon_uri = video.resolve().as_uri()
                run.canon_sha256 = sha
                frames = frame_records(video, ref_path if item.key == "sunset" else None)
                frames_path = artifact_root / str(run.id) / "metrics" / "frames.json"
                frames_path.parent.mkdir(parents=True, exist_ok=True)
                frames_path.write_text(json.dumps(frames))
                for kind, path in (("canon", video), ("frames", frames_path)):
                    session.add(
                        Artifact(
                            run_id=run.id,
                            kind=kind,
                            uri=path.resolve().as_uri(),
                            sha256=sha256_file(path),
                            bytes=path.stat().st_size,
                            created_at=now,
                        )
                    )
                for metric, stats in summarize(frames).items():
                    for stat, value in stats.items():
                        session.add(Metric(run_id=run.id, name=metric, stat=stat, value=value))
    session.commit()
    return Fixture(
        name=name,
        experiment_id=exp.id,
        artifact_root=artifact_root,
        variants=tuple(v.key for v in variants),
        items=tuple(i.key for i in items),
    )


def fill_database(url: str, root: Path, name: str = "report-demo") -> Fixture:
    """Write :func:`build_experiment` into the (migrated, empty) database at ``url``."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return build_experiment(session, root / "artifacts", name)
    finally:
        engine.dispose()


def make_sqlite_database(root: Path) -> tuple[str, Fixture]:
    """A fresh, migrated SQLite file under ``root`` holding :func:`build_experiment`."""
    url = f"sqlite:///{root / 'reelbench.db'}"
    upgrade(url)
    return url, fill_database(url, root)
