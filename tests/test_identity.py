"""Native hashing and seeds against hashlib and pinned golden values."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from reelbench._native import SHA256_CHUNK_SIZE
from reelbench.identity import Sha256, seed_from_variant_key, sha256_file

CHUNK = SHA256_CHUNK_SIZE
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * 1024 * 1024 + 3]


def _data(size: int) -> bytes:
    return np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("size", SIZES)
def test_sha256_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = _data(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", SIZES)
def test_incremental_hasher_matches_hashlib_for_any_split(size: int) -> None:
    data = _data(size)
    whole = Sha256(data)
    parts = Sha256()
    for i in range(0, size, 7919):
        parts.update(memoryview(data)[i : i + 7919])
    expected = hashlib.sha256(data)
    assert whole.hexdigest() == parts.hexdigest() == expected.hexdigest()
    assert whole.digest() == expected.digest()


def test_hasher_takes_every_contiguous_buffer_kind() -> None:
    data = _data(10_000)
    arr = np.frombuffer(data, dtype=np.uint8).reshape(100, 100)
    expected = hashlib.sha256(data).hexdigest()
    for buf in (data, bytearray(data), memoryview(data), arr, arr.view(np.uint16)):
        h = Sha256()
        h.update(buf)
        assert h.hexdigest() == expected, type(buf)


def test_hasher_copy_is_independent() -> None:
    h = Sha256(b"abc")
    c = h.copy()
    c.update(b"def")
    assert h.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert c.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_buffer_is_released_after_update() -> None:
    buf = bytearray(_data(CHUNK + 5))
    Sha256().update(buf)
    # A bytearray with an exported buffer refuses to resize.
    buf.extend(b"more")
    del buf[:10]
    mv = memoryview(bytearray(100))
    Sha256().update(mv)
    mv.release()


def test_non_contiguous_input_is_refused_with_a_clear_message() -> None:
    arr = np.arange(100, dtype=np.uint8).reshape(10, 10)
    with pytest.raises(BufferError, match="contiguous"):
        Sha256().update(arr[:, ::2])
    with pytest.raises(BufferError, match="contiguous"):
        Sha256().update(memoryview(b"abcdef")[::2])
    with pytest.raises(BufferError):
        Sha256().update("text is not bytes")  # type: ignore[arg-type]


def test_missing_file_is_file_not_found_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(FileNotFoundError) as info:
        sha256_file(missing)
    assert info.value.filename == str(missing)
    assert str(missing) in str(info.value)


def test_directory_is_is_a_directory_error(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as info:
        sha256_file(tmp_path)
    assert info.value.filename == str(tmp_path)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_is_permission_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(PermissionError):
        sha256_file(path)


def _reference_seed(variant_key: str, item_id: str = "", repeat: int = 0, bits: int = 32) -> int:
    material = "reelbench-seed-v1\0" + variant_key + "\0" + item_id + "\0" + str(repeat)
    digest = hashlib.sha256(material.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (2**bits)


def test_seed_golden_values() -> None:
    assert seed_from_variant_key("synthetic-orbit") == 3042066704
    assert seed_from_variant_key("synthetic-orbit", "cat-surf", 1) == 1848638377
    assert seed_from_variant_key("vé", "ü", 7, 63) == 1494004477916787820


@pytest.mark.parametrize("bits", [1, 8, 31, 32, 53, 63])
@pytest.mark.parametrize("key", [("a", "", 0), ("variant", "item-42", 3), ("ключ", "項目", 99)])
def test_seed_matches_documented_formula(key: tuple[str, str, int], bits: int) -> None:
    assert seed_from_variant_key(*key, bits=bits) == _reference_seed(*key, bits=bits)


@pytest.mark.parametrize("bits", [0, 64, -1, 100, 2**70])
def test_seed_bits_out_of_range_is_value_error(bits: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 63"):
        seed_from_variant_key("v", bits=bits)
