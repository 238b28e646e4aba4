"""Bradley-Terry ratings against an independent implementation (choix), and their intervals."""

from __future__ import annotations

import choix
import numpy as np
import pytest
from judging_data import simulate, vote

from reelbench.judging.ratings import ALPHA, ELO_BASE, ELO_SCALE, compute_ratings

TRUE = {"a": 1.0, "b": 0.4, "c": 0.0, "d": -0.3, "e": -1.1}


def choix_strengths(votes: list, names: list[str]) -> np.ndarray:
    """choix's MAP estimate on the same votes: a tie is one win each way, a decisive vote two."""
    index = {n: i for i, n in enumerate(names)}
    data: list[tuple[int, int]] = []
    for v in votes:
        a, b = index[v.left_variant], index[v.right_variant]
        if v.outcome == "left":
            data += [(a, b), (a, b)]
        elif v.outcome == "right":
            data += [(b, a), (b, a)]
        else:
            data += [(a, b), (b, a)]
    # choix penalizes alpha * sum(theta^2); ours is ALPHA / 2 * sum(theta^2) on half the
    # (doubled) data, so the same alpha gives the same optimum.
    theta = choix.opt_pairwise(len(names), data, alpha=ALPHA, tol=1e-10)
    return np.asarray(theta - np.mean(theta))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_strengths_match_choix(seed: int) -> None:
    votes = simulate(TRUE, 800, np.random.default_rng(seed))
    ratings = compute_ratings(votes, list(TRUE), bootstrap=0)
    ours = {r.variant: r.strength for r in ratings.variants}
    theirs = choix_strengths(votes, list(TRUE))
    for i, name in enumerate(TRUE):
        assert ours[name] == pytest.approx(theirs[i], abs=1e-3)
    order = sorted(TRUE, key=lambda n: -theirs[list(TRUE).index(n)])
    assert [r.variant for r in ratings.variants] == order
    assert sum(ours.values()) == pytest.approx(0.0, abs=1e-9)
    # 800 votes recover the true order.
    assert [r.variant for r in ratings.variants] == list(TRUE)


def test_elo_scale_and_counts() -> None:
    votes = [vote("x", "y", "left", n=i) for i in range(6)] + [
        vote("y", "x", "tie", n=10),
        vote("y", "x", "both_bad", n=11),
        vote("x", "y", "right", n=12),
    ]
    r = compute_ratings(votes, bootstrap=50)
    x, y = r.rating("x"), r.rating("y")
    assert x is not None and y is not None
    assert (x.wins, x.losses, x.ties, x.votes) == (6, 1, 2, 9)
    assert x.rating == pytest.approx(ELO_BASE + ELO_SCALE * x.strength)
    assert x.rating + y.rating == pytest.approx(2 * ELO_BASE)
    # x scored 7 of 9: the win rate counts ties half.
    assert r.win_rate["x"]["y"] == pytest.approx(7 / 9)
    assert x.ci_low is not None and x.ci_high is not None
    assert x.ci_low <= x.rating <= x.ci_high


def test_stale_votes_are_counted_but_not_used() -> None:
    votes = [vote("x", "y", "left", n=i) for i in range(5)]
    votes += [vote("x", "y", "right", n=10 + i, stale=True) for i in range(50)]
    r = compute_ratings(votes, bootstrap=0)
    assert r.votes == 5 and r.stale_votes == 50
    assert r.variants[0].variant == "x"


def test_variant_without_votes_has_no_interval() -> None:
    r = compute_ratings([vote("x", "y", "left")], ["x", "y", "z"], bootstrap=20)
    z = r.rating("z")
    assert z is not None and z.votes == 0 and z.ci_low is None
    assert r.win_rate["z"]["x"] is None


def test_bootstrap_intervals_cover_true_strengths_at_about_the_stated_rate() -> None:
    """Over 40 simulated experiments the 95% intervals hold the true rating ~95% of the time."""
    true = {"a": 0.8, "b": 0.2, "c": -0.2, "d": -0.8}
    centered = {k: v - np.mean(list(true.values())) for k, v in true.items()}
    covered = total = 0
    rng = np.random.default_rng(7)
    for trial in range(40):
        votes = simulate(true, 300, rng, tie_share=0.0)
        r = compute_ratings(votes, list(true), bootstrap=200, seed=trial)
        for row in r.variants:
            assert row.ci_low is not None and row.ci_high is not None
            truth = ELO_BASE + ELO_SCALE * centered[row.variant]
            covered += row.ci_low <= truth <= row.ci_high
            total += 1
    # 160 intervals at 95%: below 87% would be a 4-sigma miss.
    assert covered / total >= 0.87, (covered, total)
    assert covered / total <= 0.995, (covered, total)


def test_per_item_breakdown() -> None:
    votes = [vote("x", "y", "left", item="cat"), vote("x", "y", "tie", item="dog", n=1)]
    r = compute_ratings(votes, bootstrap=0)
    items = {b.item: b for b in r.items}
    assert items["cat"].scores == {"x": (1, 1.0), "y": (1, 0.0)}
    assert items["dog"].scores == {"x": (1, 0.5), "y": (1, 0.5)}
