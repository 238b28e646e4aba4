"""Synthetic votes drawn from known Bradley-Terry strengths, for the judging tests."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

import numpy as np

from reelbench.judging.storage import Vote

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run_id(item: str, variant: str) -> int:
    """A run id fixed by (item, variant) in every process (``hash()`` of a str is salted)."""
    digest = hashlib.sha256(f"{item}\0{variant}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10**6


def vote(
    left: str,
    right: str,
    outcome: str,
    *,
    item: str = "i0",
    rater: str = "ann",
    left_run: int | None = None,
    right_run: int | None = None,
    n: int = 0,
    stale: bool = False,
) -> Vote:
    """One in-memory vote; run ids default to a stable number per item x variant."""
    lr = left_run if left_run is not None else _run_id(item, left)
    rr = right_run if right_run is not None else _run_id(item, right)
    return Vote(
        vote_uid=f"v{n}",
        item_key=item,
        left_run_id=lr,
        right_run_id=rr,
        left_variant=left,
        right_variant=right,
        left_repeat=0,
        right_repeat=0,
        left_sha256="a" * 64,
        right_sha256="b" * 64,
        outcome=outcome,
        rater=rater,
        comment=None,
        seconds_to_vote=1.0,
        created_at=T0 + timedelta(seconds=n),
        stale=stale,
    )


def simulate(
    strengths: dict[str, float],
    n_votes: int,
    rng: np.random.Generator,
    *,
    tie_share: float = 0.1,
    items: int = 4,
) -> list[Vote]:
    """Votes between random pairs: a tie with probability ``tie_share``, else BT-drawn."""
    names = list(strengths)
    out = []
    for n in range(n_votes):
        a, b = rng.choice(len(names), 2, replace=False)
        left, right = names[a], names[b]
        if rng.random() < tie_share:
            outcome = "tie"
        else:
            p = 1 / (1 + math.exp(strengths[right] - strengths[left]))
            outcome = "left" if rng.random() < p else "right"
        out.append(vote(left, right, outcome, item=f"i{n % items}", n=n))
    return out
