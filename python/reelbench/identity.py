"""Identities: content hashes of files and buffers, and reproducible seeds.

The hashing runs in native code with the GIL released, so several runs on
threads hash big videos at once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reelbench._native import Sha256, seed_from_variant_key, sha256_file

__all__ = ["Sha256", "canonical_json", "seed_from_variant_key", "sha256_file", "spec_hash"]


def canonical_json(value: Any) -> str:
    """Serialize ``value`` the one way used for hashing: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(value: Any) -> str:
    """SHA-256 hex of the canonical JSON of ``value`` (a spec, a request...)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
