"""SHA-256 of big files and buffers: native vs hashlib (OpenSSL) in the same run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from reelbench.identity import Sha256, sha256_file

GIB = 1024**3


def _write_random(path: Path, size: int) -> Path:
    rng = np.random.default_rng(1)
    block = rng.integers(0, 256, 64 * 1024 * 1024, dtype=np.uint8).tobytes()
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    return path


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = _write_random(tmp_path_factory.mktemp("hash") / "one-gib.bin", GIB)
    yield path
    path.unlink()


@pytest.fixture(scope="module")
def two_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    d = tmp_path_factory.mktemp("hash2")
    paths = [_write_random(d / f"half-{i}.bin", GIB // 2) for i in range(2)]
    yield paths
    for p in paths:
        p.unlink()


def _hashlib_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@pytest.mark.benchmark(group="sha256_file 1 GiB")
def test_sha256_file_native(benchmark, big_file: Path) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(role="candidate", target=1.0)
    digest = benchmark.pedantic(sha256_file, args=(big_file,), rounds=5, warmup_rounds=1)
    assert digest == _hashlib_file(big_file)


@pytest.mark.benchmark(group="sha256_file 1 GiB")
def test_sha256_file_hashlib(benchmark, big_file: Path) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(role="baseline", baseline="hashlib.file_digest")
    benchmark.pedantic(_hashlib_file, args=(big_file,), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="sha256_file 2 x 512 MiB")
def test_sha256_file_two_threads(benchmark, two_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(role="candidate", target=1.8)
    with ThreadPoolExecutor(2) as pool:
        benchmark.pedantic(
            lambda: list(pool.map(sha256_file, two_files)), rounds=5, warmup_rounds=1
        )


@pytest.mark.benchmark(group="sha256_file 2 x 512 MiB")
def test_sha256_file_one_thread(benchmark, two_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(role="baseline", baseline="native, one thread")
    benchmark.pedantic(lambda: [sha256_file(p) for p in two_files], rounds=5, warmup_rounds=1)


@pytest.fixture(scope="module")
def buffer_64m() -> bytes:
    return np.random.default_rng(2).integers(0, 256, 64 * 1024 * 1024, dtype=np.uint8).tobytes()


@pytest.mark.benchmark(group="Sha256.update 64 MiB buffer")
def test_sha256_update_native(benchmark, buffer_64m: bytes) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(role="candidate", target=1.0)
    benchmark(lambda: Sha256(buffer_64m).digest())


@pytest.mark.benchmark(group="Sha256.update 64 MiB buffer")
def test_sha256_update_hashlib(benchmark, buffer_64m: bytes) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(role="baseline", baseline="hashlib.sha256")
    benchmark(lambda: hashlib.sha256(buffer_64m).digest())
