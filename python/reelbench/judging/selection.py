"""Which pair a rater sees next: the one that teaches the ratings most.

Candidates are every item x two variants that both have a succeeded run
with a canonical video there. They are ranked by, in order:

1. votes so far between the two variants (fewest first: spread the votes);
2. closeness of the two variants' current ratings (closest first: a vote
   between near-equals moves the leaderboard most);
3. votes so far on the item (fewest first: use every item evenly);
4. a random draw, so raters do not all get the same pair.

The pair the rater saw last (same item, same two variants) is never shown
again right away, and a different pair of variants is preferred when one
exists. Within the chosen item and variants, the repeat with the fewest votes
is shown; which side is left is drawn at random.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from reelbench.judging.storage import JudgeableRun, Vote

__all__ = ["Pair", "pair_key", "select_pair"]


@dataclass(frozen=True)
class Pair:
    """Two runs of one item from two variants, as they are to be shown."""

    left: JudgeableRun
    right: JudgeableRun

    @property
    def key(self) -> tuple[str, str, str]:
        """(item, variant, variant) with the variants sorted: the pair whatever the sides."""
        return pair_key(self.left.item_key, self.left.variant_key, self.right.variant_key)


def pair_key(item: str, a: str, b: str) -> tuple[str, str, str]:
    """The side-independent name of a pair."""
    return (item, *sorted((a, b)))  # type: ignore[return-value]


def select_pair(
    runs: Sequence[JudgeableRun],
    votes: Sequence[Vote],
    *,
    ratings: dict[str, float] | None = None,
    last: tuple[str, str, str] | None = None,
    rng: random.Random | None = None,
) -> Pair | None:
    """The next pair to show, or None when no item has two variants to compare.

    ``ratings``: current strengths by variant (missing: 0). ``last``: the
    :func:`pair_key` the rater voted on last.
    """
    rng = rng or random.Random()
    ratings = ratings or {}
    by_cell: dict[tuple[str, str], list[JudgeableRun]] = {}
    for r in runs:
        by_cell.setdefault((r.item_key, r.variant_key), []).append(r)
    items: dict[str, list[str]] = {}
    for item, variant in by_cell:
        items.setdefault(item, []).append(variant)

    current = [v for v in votes if not v.stale]
    variant_pairs = Counter(tuple(sorted((v.left_variant, v.right_variant))) for v in current)
    item_votes = Counter(v.item_key for v in current)
    run_votes = Counter(r for v in current for r in (v.left_run_id, v.right_run_id))

    candidates: list[tuple[tuple[int, int, float, int, float], str, str, str]] = []
    for item, variants in items.items():
        for i, a in enumerate(variants):
            for b in variants[i + 1 :]:
                key = pair_key(item, a, b)
                if key == last:
                    continue
                same_variants = last is not None and (last[1], last[2]) == key[1:]
                rank = (
                    int(same_variants),
                    variant_pairs[key[1], key[2]],
                    abs(ratings.get(a, 0.0) - ratings.get(b, 0.0)),
                    item_votes[item],
                    rng.random(),
                )
                candidates.append((rank, item, a, b))
    if not candidates:
        return None
    _, item, a, b = min(candidates)

    def least_judged(variant: str) -> JudgeableRun:
        cell = by_cell[item, variant]
        fewest = min(run_votes[r.run_id] for r in cell)
        return rng.choice([r for r in cell if run_votes[r.run_id] == fewest])

    first, second = least_judged(a), least_judged(b)
    if rng.random() < 0.5:
        first, second = second, first
    return Pair(first, second)
