"""Outputs made once and reused: canonical videos of raw videos, canonical references.

Normalization is a pure function of its inputs: the same raw video, canonical
format, reference and metric configuration give the same canonical video and
the same numbers. A run whose raw video came from the provider-call cache (or
a provider that returned the very same bytes) therefore reuses the canonical
video, per-frame file and summary of the first run that made them, instead of
decoding and encoding again; an item's reference video is scaled to the
canonical format once, kept as a lossless copy, and later runs decode that.

Rows live in ``derived_outputs`` (:class:`reelbench.db.models.DerivedOutput`),
keyed by a SHA-256 of everything the output depends on. A row is written
only after its files are complete, in the same transaction as the result of
the run that made it (so a run that lost its lease leaves none); a reader
checks the file's SHA-256 before reusing it, and makes the output again when
the file is gone or changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reelbench.db.engine import read_transaction
from reelbench.db.models import DerivedOutput
from reelbench.db.retry import retry_db
from reelbench.identity import spec_hash
from reelbench.metrics import METRICS_VERSION
from reelbench.storage import ArtifactStore
from reelbench.video.canonical import CanonicalFormat

__all__ = [
    "CANONICAL",
    "REFERENCE",
    "Derived",
    "canonical_key",
    "derived_insert",
    "find_derived",
    "reference_key",
]

CANONICAL = "canonical"
REFERENCE = "reference"

#: Bumped when the lossless reference copies change format.
REFERENCE_COPY_VERSION = 1


@dataclass(frozen=True)
class Derived:
    """A reusable output: its file, and what else was recorded with it."""

    uri: str
    sha256: str
    bytes: int
    details: Mapping[str, Any]


def canonical_key(
    raw_sha256: str,
    canonical: CanonicalFormat,
    reference_sha256: str | None,
    groups: Sequence[str],
    *,
    plugins: Sequence[tuple[str, str]] = (),
    dynamic_threshold: float = 0.005,
) -> str:
    """What a canonical video and its metrics depend on, hashed.

    ``plugins``: (name, version) of each metric plugin, in order: a new
    plugin, or a new version of one, makes the metrics again.
    """
    return spec_hash(
        {
            "raw_sha256": raw_sha256,
            "canonical": canonical.model_dump(mode="json"),
            "reference_sha256": reference_sha256,
            "metric_groups": list(groups),
            "metric_plugins": [list(p) for p in plugins],
            "dynamic_threshold": dynamic_threshold,
            "metrics_version": METRICS_VERSION,
        }
    )


def reference_key(reference_sha256: str, canonical: CanonicalFormat) -> str:
    """What a canonical copy of a reference depends on, hashed."""
    return spec_hash(
        {
            "reference_sha256": reference_sha256,
            "canonical": canonical.model_dump(mode="json"),
            "copy_version": REFERENCE_COPY_VERSION,
        }
    )


_TABLE = DerivedOutput.__table__
_FIND = select(_TABLE.c.uri, _TABLE.c.sha256, _TABLE.c.bytes, _TABLE.c.details).where(
    _TABLE.c.kind == bindparam("kind"), _TABLE.c.key == bindparam("key")
)


def find_derived(session: Session, store: ArtifactStore, kind: str, key: str) -> Derived | None:
    """The output of ``kind`` recorded under ``key``, if its file is still intact."""

    def read() -> Any:
        read_transaction(session)
        row = session.execute(_FIND, {"kind": kind, "key": key}).first()
        session.commit()  # no transaction stays open while files are checked
        return row

    row = retry_db("reading reusable outputs", read, session=session)
    if row is None or not store.verify(row.uri, row.sha256):
        return None
    details = dict(row.details or {})
    frames = details.get("frames")
    if isinstance(frames, Mapping) and not store.verify(
        str(frames.get("uri")), str(frames.get("sha256") or "")
    ):
        return None
    return Derived(uri=row.uri, sha256=row.sha256, bytes=int(row.bytes), details=details)


def derived_insert(
    session: Session,
    kind: str,
    key: str,
    output: Derived,
    *,
    run_id: int,
    created_at: Any,
) -> Any:
    """The INSERT recording an output (first writer wins: a duplicate is skipped).

    Meant for the run's result transaction (see :mod:`reelbench.db.result_rows`),
    so only the owner of a run records what it made.
    """
    dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return (
        dialect.insert(DerivedOutput)
        .values(
            kind=kind,
            key=key,
            uri=output.uri,
            sha256=output.sha256,
            bytes=output.bytes,
            details=dict(output.details),
            source_run_id=run_id,
            created_at=created_at,
        )
        .on_conflict_do_nothing(index_elements=["kind", "key"])
    )
