"""Bradley-Terry ratings of variants from pairwise votes, with bootstrap intervals.

Model: variant ``i`` beats ``j`` with probability ``1 / (1 + exp(θj - θi))``.
Strengths ``θ`` are fitted by maximum likelihood (Newton's method on the
concave log-likelihood) with a weak Gaussian prior, ``ALPHA / 2 · Σθ²``: it
keeps a variant that never won (or never lost) at a finite strength and
fixes the free offset so that the strengths sum to zero.

Tie model: a ``tie`` and a ``both_bad`` vote each count as half a win for
either side (the "ties count half" rule of chess ratings). Both say "no
preference between these two", which is what a rating can use; how often
people found both bad is reported separately.

Shown on an Elo-like scale: ``ELO_BASE + θ · 400 / ln 10``, so 400 points
is odds of 10 to 1. The 95% intervals come from the bootstrap: the votes
are resampled with replacement ``bootstrap`` times, the model refitted on
each sample, and the 2.5th and 97.5th percentiles of each variant's
rating taken.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from reelbench.judging.storage import Vote

__all__ = [
    "ALPHA",
    "ELO_BASE",
    "ELO_SCALE",
    "ItemBreakdown",
    "Ratings",
    "VariantRating",
    "compute_ratings",
    "fit_bradley_terry",
    "win_matrix",
]

ALPHA = 0.01
ELO_BASE = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)
DEFAULT_BOOTSTRAP = 200

Matrix = npt.NDArray[np.float64]


def fit_bradley_terry(wins: Matrix, *, alpha: float = ALPHA, tol: float = 1e-10) -> Matrix:
    """Maximum-likelihood strengths (natural-log scale, summing to 0) from a win matrix.

    ``wins[i, j]``: how many times ``i`` beat ``j`` (halves for ties).
    """
    n = wins.shape[0]
    theta = np.zeros(n)
    if n == 0:
        return theta
    games = wins + wins.T
    for _ in range(100):
        diff = theta[:, None] - theta[None, :]
        p = 1.0 / (1.0 + np.exp(-diff))
        grad = (wins - games * p).sum(axis=1) - alpha * theta
        w = games * p * (1.0 - p)
        hess = w.copy()
        np.fill_diagonal(hess, 0.0)
        hess[np.diag_indices(n)] = -w.sum(axis=1) + np.diag(w) - alpha
        step = np.linalg.solve(hess, grad)
        theta = theta - step
        if float(np.max(np.abs(step))) < tol:
            break
    centered: Matrix = theta - theta.mean()
    return centered


def win_matrix(votes: Sequence[Vote], index: dict[str, int]) -> Matrix:
    """``wins[i, j]`` over the votes, ties and both-bad counted half to each side."""
    wins = np.zeros((len(index), len(index)))
    for v in votes:
        a, b = index[v.left_variant], index[v.right_variant]
        if v.outcome == "left":
            wins[a, b] += 1
        elif v.outcome == "right":
            wins[b, a] += 1
        else:
            wins[a, b] += 0.5
            wins[b, a] += 0.5
    return wins


def to_elo(theta: Matrix | float) -> Matrix | float:
    """Strengths on the Elo-like scale."""
    return ELO_BASE + ELO_SCALE * theta


@dataclass(frozen=True)
class VariantRating:
    """One variant on the leaderboard."""

    variant: str
    #: Bradley-Terry strength, natural-log scale, strengths sum to 0.
    strength: float
    rating: float
    ci_low: float | None
    ci_high: float | None
    votes: int
    wins: int
    losses: int
    ties: int


@dataclass(frozen=True)
class ItemBreakdown:
    """One item: per variant, its comparisons and score share (wins + half ties)."""

    item: str
    votes: int
    #: variant -> (comparisons, score share 0..1)
    scores: dict[str, tuple[int, float]]


@dataclass(frozen=True)
class Ratings:
    """The leaderboard and what it rests on."""

    variants: list[VariantRating]
    votes: int
    stale_votes: int
    bootstrap: int
    #: ``win_rate[a][b]``: share of a's comparisons with b that a won (ties half); None: never met.
    win_rate: dict[str, dict[str, float | None]] = field(default_factory=dict)
    items: list[ItemBreakdown] = field(default_factory=list)

    def rating(self, variant: str) -> VariantRating | None:
        """The row of ``variant``, if it was compared at all."""
        return next((r for r in self.variants if r.variant == variant), None)


def compute_ratings(
    votes: Sequence[Vote],
    variants: Sequence[str] | None = None,
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Ratings:
    """Ratings from current votes (stale ones are counted, not used), best first.

    ``variants``: the variants to rate (default: those in the votes); a
    variant without votes gets strength 0 and no interval. The bootstrap is
    seeded, so the same votes always give the same intervals.
    """
    current = [v for v in votes if not v.stale]
    names = list(variants) if variants is not None else []
    for v in current:
        for name in (v.left_variant, v.right_variant):
            if name not in names:
                names.append(name)
    index = {name: i for i, name in enumerate(names)}
    wins = win_matrix(current, index)
    theta = fit_bradley_terry(wins)

    lows: list[float | None] = [None] * len(names)
    highs: list[float | None] = [None] * len(names)
    if current and bootstrap > 0:
        rng = np.random.default_rng(seed)
        left = np.array([index[v.left_variant] for v in current])
        right = np.array([index[v.right_variant] for v in current])
        score = np.array([{"left": 1.0, "right": 0.0}.get(v.outcome, 0.5) for v in current])
        samples = np.empty((bootstrap, len(names)))
        n = len(current)
        for b in range(bootstrap):
            pick = rng.integers(0, n, n)
            w = np.zeros((len(names), len(names)))
            np.add.at(w, (left[pick], right[pick]), score[pick])
            np.add.at(w, (right[pick], left[pick]), 1.0 - score[pick])
            samples[b] = fit_bradley_terry(w, tol=1e-8)
        lo, hi = np.percentile(to_elo(samples), [2.5, 97.5], axis=0)
        played = (wins + wins.T).sum(axis=1) > 0
        lows = [float(x) if played[i] else None for i, x in enumerate(lo)]
        highs = [float(x) if played[i] else None for i, x in enumerate(hi)]

    counts: dict[str, list[int]] = {name: [0, 0, 0, 0] for name in names}  # votes w l t
    for v in current:
        for me, side in ((v.left_variant, "left"), (v.right_variant, "right")):
            c = counts[me]
            c[0] += 1
            if v.outcome == side:
                c[1] += 1
            elif v.outcome in ("left", "right"):
                c[2] += 1
            else:
                c[3] += 1
    rows = [
        VariantRating(
            variant=name,
            strength=float(theta[i]),
            rating=float(to_elo(float(theta[i]))),
            ci_low=lows[i],
            ci_high=highs[i],
            votes=counts[name][0],
            wins=counts[name][1],
            losses=counts[name][2],
            ties=counts[name][3],
        )
        for name, i in index.items()
    ]
    rows.sort(key=lambda r: (-r.strength, r.variant))

    games = wins + wins.T
    win_rate = {
        a: {
            b: (float(wins[i, j] / games[i, j]) if games[i, j] > 0 else None)
            for b, j in index.items()
            if b != a
        }
        for a, i in index.items()
    }
    return Ratings(
        variants=rows,
        votes=len(current),
        stale_votes=len(votes) - len(current),
        bootstrap=bootstrap if current else 0,
        win_rate=win_rate,
        items=_items(current),
    )


def _items(votes: Sequence[Vote]) -> list[ItemBreakdown]:
    per_item: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    totals: dict[str, int] = defaultdict(int)
    for v in votes:
        totals[v.item_key] += 1
        s = {"left": 1.0, "right": 0.0}.get(v.outcome, 0.5)
        for name, share in ((v.left_variant, s), (v.right_variant, 1.0 - s)):
            cell = per_item[v.item_key][name]
            cell[0] += 1
            cell[1] += share
    return [
        ItemBreakdown(
            item=item,
            votes=totals[item],
            scores={name: (int(c[0]), c[1] / c[0]) for name, c in sorted(cells.items())},
        )
        for item, cells in per_item.items()
    ]
