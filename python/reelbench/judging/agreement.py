"""How far the votes can be trusted, and which automatic metric agrees with them.

- Repeat consistency: a rater who judged the same two videos more than once;
  the share of those repeat pairs of votes that name the same winner (or
  both a non-preference).
- Cohen's kappa between two raters over the pairs of videos both judged
  (each rater's latest vote per pair; categories: first run better, second
  run better, tie, both bad), for rater pairs with at least
  ``MIN_OVERLAP`` pairs in common.
- Position bias: the share of decisive votes won by the left video. It is
  flagged when it lies more than two standard errors from 50% (a two-sided
  test at about 5%) with at least ``MIN_BIAS_VOTES`` decisive votes.
- Metric-human agreement, for every metric: Kendall's tau-b between the
  variants ordered by the metric (mean over their succeeded runs) and by
  human rating, and per-vote accuracy: the share of decisive votes where the
  metric prefers the video the person chose (a metric tie counts half).
  A metric's direction (higher or lower is better) comes from
  ``METRIC_DIRECTIONS``; metrics not listed are read as higher is better
  and marked so. With fewer than ``MIN_AGREEMENT_VOTES`` decisive votes, or
  fewer than 3 rated variants for tau, the result says so instead of a number.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reelbench.judging.ratings import Ratings
from reelbench.judging.storage import Vote

__all__ = [
    "METRIC_DIRECTIONS",
    "MIN_AGREEMENT_VOTES",
    "MIN_BIAS_VOTES",
    "MIN_OVERLAP",
    "MetricAgreement",
    "PositionBias",
    "RaterAgreement",
    "RaterKappa",
    "cohen_kappa",
    "kendall_tau_b",
    "metric_agreement",
    "position_bias",
    "rater_agreement",
]

MIN_OVERLAP = 5
MIN_BIAS_VOTES = 10
MIN_AGREEMENT_VOTES = 20

#: +1: higher is better; -1: lower is better.
METRIC_DIRECTIONS: dict[str, int] = {
    "ssim_ref": 1,
    "psnr_ref": 1,
    "psnr_ref_pooled": 1,
    "mse_ref": -1,
    "sharpness": 1,
    "temporal_flicker": 1,
    "ssim_prev": 1,
    "psnr_prev": 1,
    "psnr_prev_pooled": 1,
    "mad_prev": -1,
    "frozen_ratio": -1,
    "black_ratio": -1,
    "black": -1,
    "scene_cuts": -1,
    # Motion: generated clips fail far more often by barely moving than by
    # moving too much, so more motion reads as better; a steadier warp as well.
    "motion_mean": 1,
    "motion_p95": 1,
    "dynamic_degree": 1,
    "warp_error": -1,
    "si": 1,
    "ti": 1,
}


def _category(v: Vote) -> tuple[tuple[int, int], str]:
    """The pair of runs (sorted) and the verdict in terms of those runs, not of sides."""
    a, b = sorted((v.left_run_id, v.right_run_id))
    if v.outcome in ("tie", "both_bad"):
        return (a, b), v.outcome
    return (a, b), "first" if v.winner_run == a else "second"


@dataclass(frozen=True)
class RaterKappa:
    """Cohen's kappa of two raters over the pairs both judged."""

    rater_a: str
    rater_b: str
    overlap: int
    kappa: float | None


@dataclass(frozen=True)
class RaterAgreement:
    """Consistency of raters with themselves and with each other."""

    raters: dict[str, int]
    #: Pairs of votes by one rater on the same two videos, and how many agreed.
    repeat_pairs: int
    repeat_agreed: int
    kappas: list[RaterKappa]

    @property
    def repeat_consistency(self) -> float | None:
        """Share of repeated judgements that agreed; None without repeats."""
        return self.repeat_agreed / self.repeat_pairs if self.repeat_pairs else None


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two equally long label lists; None when chance agreement is total."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    labels = set(a) | set(b)
    expected = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in labels)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def rater_agreement(votes: Sequence[Vote]) -> RaterAgreement:
    """Repeat consistency and pairwise kappas of the current votes."""
    current = [v for v in votes if not v.stale]
    per_rater: dict[str, dict[tuple[int, int], list[str]]] = defaultdict(lambda: defaultdict(list))
    for v in current:
        pair, verdict = _category(v)
        per_rater[v.rater][pair].append(verdict)
    repeat_pairs = agreed = 0
    for pairs in per_rater.values():
        for verdicts in pairs.values():
            for x, y in itertools.combinations(verdicts, 2):
                repeat_pairs += 1
                agreed += x == y
    kappas = []
    for ra, rb in itertools.combinations(sorted(per_rater), 2):
        common = sorted(set(per_rater[ra]) & set(per_rater[rb]))
        if len(common) < MIN_OVERLAP:
            continue
        la = [per_rater[ra][p][-1] for p in common]
        lb = [per_rater[rb][p][-1] for p in common]
        kappas.append(RaterKappa(ra, rb, len(common), cohen_kappa(la, lb)))
    raters = {r: sum(len(x) for x in p.values()) for r, p in sorted(per_rater.items())}
    return RaterAgreement(raters, repeat_pairs, agreed, kappas)


@dataclass(frozen=True)
class PositionBias:
    """Share of decisive votes that went to the left video."""

    decisive: int
    left_wins: int
    flagged: bool

    @property
    def left_share(self) -> float | None:
        """Left wins / decisive votes; None without decisive votes."""
        return self.left_wins / self.decisive if self.decisive else None


def position_bias(votes: Sequence[Vote]) -> PositionBias:
    """Left-win share of the current decisive votes, flagged when far from 50%."""
    decisive = [v for v in votes if not v.stale and v.outcome in ("left", "right")]
    left = sum(v.outcome == "left" for v in decisive)
    n = len(decisive)
    flagged = n >= MIN_BIAS_VOTES and abs(left / n - 0.5) > 2 * 0.5 / math.sqrt(n)
    return PositionBias(n, left, flagged)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two paired sequences; None when either is constant or too short."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif (dx > 0) == (dy > 0):
            concordant += 1
        else:
            discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else None


@dataclass(frozen=True)
class MetricAgreement:
    """How one automatic metric agrees with the people."""

    metric: str
    #: +1 higher is better, -1 lower is better.
    direction: int
    #: The direction is an assumption (metric not in METRIC_DIRECTIONS).
    assumed_direction: bool
    #: Decisive votes where both videos have the metric.
    votes: int
    accuracy: float | None
    tau: float | None
    #: Why accuracy or tau is missing, when one is.
    note: str | None = None


def metric_agreement(
    votes: Sequence[Vote],
    ratings: Ratings,
    run_metrics: Mapping[int, Mapping[str, float | None]],
    variant_means: Mapping[str, Mapping[str, float | None]],
    metric_names: Sequence[str],
) -> list[MetricAgreement]:
    """One row per metric, best per-vote accuracy first (metrics without a number last).

    ``run_metrics``: run id -> metric -> headline value; ``variant_means``:
    variant -> metric -> mean over its succeeded runs.
    """
    decisive = [v for v in votes if not v.stale and v.outcome in ("left", "right")]
    rated = {r.variant: r.strength for r in ratings.variants if r.votes > 0}
    out = []
    for name in metric_names:
        direction = METRIC_DIRECTIONS.get(name, 1)
        score = 0.0
        n = 0
        for v in decisive:
            winner = v.winner_run
            loser = v.right_run_id if winner == v.left_run_id else v.left_run_id
            assert winner is not None
            w = run_metrics.get(winner, {}).get(name)
            lo = run_metrics.get(loser, {}).get(name)
            if w is None or lo is None or not (math.isfinite(w) and math.isfinite(lo)):
                continue
            n += 1
            diff = direction * (w - lo)
            score += 1.0 if diff > 0 else 0.5 if diff == 0 else 0.0
        notes = []
        accuracy = score / n if n >= MIN_AGREEMENT_VOTES else None
        if accuracy is None:
            notes.append(f"{n} decisive votes with this metric; needs {MIN_AGREEMENT_VOTES}")
        names = [
            k for k in rated
            if (m := variant_means.get(k, {}).get(name)) is not None and math.isfinite(m)
        ]  # fmt: skip
        tau = None
        if len(names) >= 3 and n >= MIN_AGREEMENT_VOTES:
            tau = kendall_tau_b(
                [direction * float(variant_means[k][name] or 0.0) for k in names],
                [rated[k] for k in names],
            )
        elif len(names) < 3:
            notes.append(f"{len(names)} rated variants with this metric; tau needs 3")
        out.append(
            MetricAgreement(
                metric=name,
                direction=direction,
                assumed_direction=name not in METRIC_DIRECTIONS,
                votes=n,
                accuracy=accuracy,
                tau=tau,
                note="; ".join(notes) or None,
            )
        )
    out.sort(key=lambda m: (m.accuracy is None, -(m.accuracy or 0.0), m.metric))
    return out
