"""Rater agreement, position bias, metric-human agreement and pair selection."""

from __future__ import annotations

import random

import pytest
from judging_data import vote

from reelbench.judging.agreement import (
    MIN_AGREEMENT_VOTES,
    cohen_kappa,
    kendall_tau_b,
    metric_agreement,
    position_bias,
    rater_agreement,
)
from reelbench.judging.ratings import compute_ratings
from reelbench.judging.selection import pair_key, select_pair
from reelbench.judging.storage import JudgeableRun


def test_cohen_kappa_known_values() -> None:
    assert cohen_kappa(list("aabb"), list("aabb")) == pytest.approx(1.0)
    # Observed 0.5, expected 0.5: no better than chance.
    assert cohen_kappa(list("abab"), list("aabb")) == pytest.approx(0.0)
    # Textbook 2x2: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["a"], ["a"]) is None


def test_repeat_consistency_follows_runs_not_sides() -> None:
    votes = [
        vote("x", "y", "left", left_run=1, right_run=2, n=0),
        vote("y", "x", "right", left_run=2, right_run=1, n=1),  # same verdict, sides swapped
        vote("x", "y", "right", left_run=1, right_run=2, n=2),  # changed mind
        vote("x", "y", "left", left_run=1, right_run=2, rater="bob", n=3),
    ]
    agreement = rater_agreement(votes)
    # ann: 3 votes on one pair -> 3 pairs of votes, 1 agreeing (0 and 1).
    assert (agreement.repeat_pairs, agreement.repeat_agreed) == (3, 1)
    assert agreement.raters == {"ann": 3, "bob": 1}
    assert agreement.kappas == []  # overlap of 1 pair is below the minimum


def test_kappa_between_raters_with_enough_overlap() -> None:
    votes = []
    for p in range(6):
        votes.append(vote("x", "y", "left", left_run=10 + p, right_run=20 + p, n=p))
        bob = "left" if p < 5 else "right"
        votes.append(vote("x", "y", bob, left_run=10 + p, right_run=20 + p, rater="bob", n=9 + p))
    (k,) = rater_agreement(votes).kappas
    assert (k.rater_a, k.rater_b, k.overlap) == ("ann", "bob", 6)
    assert k.kappa == pytest.approx(cohen_kappa(["first"] * 6, ["first"] * 5 + ["second"]))


def test_position_bias_flag() -> None:
    fair = [vote("x", "y", "left" if i % 2 else "right", n=i) for i in range(40)]
    assert not position_bias(fair).flagged
    assert position_bias(fair).left_share == pytest.approx(0.5)
    lefty = [vote("x", "y", "left" if i % 5 else "right", n=i) for i in range(40)]
    assert position_bias(lefty).flagged  # 80% left over 40 votes
    few = [vote("x", "y", "left", n=i) for i in range(5)]
    assert not position_bias(few).flagged  # too few votes to say


def test_kendall_tau() -> None:
    assert kendall_tau_b([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau_b([1, 1], [1, 2]) is None


def test_metric_agreement_finds_the_metric_people_follow() -> None:
    # Runs: per variant one run; people prefer the sharper video.
    sharp = {"a": 30.0, "b": 20.0, "c": 10.0}
    dark = {"a": 0.1, "b": 0.5, "c": 0.3}  # "black": lower is better, unrelated
    run_of = {"a": 1, "b": 2, "c": 3}
    run_metrics = {run_of[k]: {"sharpness": sharp[k], "black": dark[k]} for k in run_of}
    votes = []
    pairs = [("a", "b"), ("b", "c"), ("a", "c")]
    for n in range(30):
        hi, lo = pairs[n % 3]
        votes.append(
            vote(hi, lo, "left", left_run=run_of[hi], right_run=run_of[lo], n=n)
            if n % 2
            else vote(lo, hi, "right", left_run=run_of[lo], right_run=run_of[hi], n=n)
        )
    ratings = compute_ratings(votes, bootstrap=0)
    means = {k: {"sharpness": sharp[k], "black": dark[k]} for k in sharp}
    rows = {m.metric: m for m in metric_agreement(votes, ratings, run_metrics, means,
                                                   ["sharpness", "black"])}  # fmt: skip
    assert rows["sharpness"].accuracy == pytest.approx(1.0)
    assert rows["sharpness"].tau == pytest.approx(1.0)
    # black prefers a > c > b: right on a-b and a-c, wrong on b-c.
    assert rows["black"].accuracy == pytest.approx(2 / 3)
    assert rows["black"].tau == pytest.approx(1 / 3)

    few = metric_agreement(votes[: MIN_AGREEMENT_VOTES - 1], ratings, run_metrics, means,
                           ["sharpness"])  # fmt: skip
    assert few[0].accuracy is None and few[0].tau is None
    assert few[0].note is not None and "needs" in few[0].note


def _runs(items: int, variants: str, repeats: int = 1) -> list[JudgeableRun]:
    out = []
    n = 0
    for i in range(items):
        for v in variants:
            for rep in range(repeats):
                n += 1
                out.append(JudgeableRun(n, i, f"item{i}", v, rep, f"{n:064x}", n))
    return out


def test_selection_never_repeats_the_last_pair_and_spreads_votes() -> None:
    runs = _runs(3, "abc")
    rng = random.Random(1)
    votes = []
    last = None
    seen_items: dict[str, int] = {}
    for n in range(60):
        pair = select_pair(runs, votes, last=last, rng=rng)
        assert pair is not None
        assert pair.left.item_key == pair.right.item_key
        assert pair.left.variant_key != pair.right.variant_key
        assert pair.key != last
        if last is not None:
            assert pair.key[1:] != last[1:]  # another pair of variants existed: used
        last = pair.key
        seen_items[pair.left.item_key] = seen_items.get(pair.left.item_key, 0) + 1
        votes.append(
            vote(pair.left.variant_key, pair.right.variant_key, "left", item=pair.left.item_key,
                 left_run=pair.left.run_id, right_run=pair.right.run_id, n=n)
        )  # fmt: skip
    per_pair: dict[tuple[str, str], int] = {}
    for v in votes:
        key = pair_key(v.item_key, v.left_variant, v.right_variant)[1:]
        per_pair[key] = per_pair.get(key, 0) + 1
    assert sorted(per_pair.values()) == [20, 20, 20]
    assert max(seen_items.values()) - min(seen_items.values()) <= 3
    lefts = sum(v.left_variant == min(v.left_variant, v.right_variant) for v in votes)
    assert 15 <= lefts <= 45  # sides are randomized


def test_selection_prefers_close_ratings_and_least_judged_repeat() -> None:
    runs = _runs(1, "abc", repeats=2)
    # a-b, a-c, b-c all have one vote; a and b are close, c far away.
    votes = [
        vote("a", "b", "tie", item="item0", left_run=1, right_run=3, n=0),
        vote("a", "c", "tie", item="item0", n=1),
        vote("b", "c", "tie", item="item0", n=2),
    ]
    pair = select_pair(runs, votes, ratings={"a": 0.1, "b": 0.0, "c": -3.0},
                       rng=random.Random(0))  # fmt: skip
    assert pair is not None and pair.key == ("item0", "a", "b")
    # Runs 1 (a rep 0) and 3 (b rep 0) were judged: the other repeats are shown.
    assert {pair.left.run_id, pair.right.run_id} == {2, 4}


def test_selection_with_nothing_to_compare() -> None:
    assert select_pair(_runs(2, "a"), []) is None


def test_agreement_reads_motion_and_plugin_metrics() -> None:
    """People prefer the clip that moves and stays steady; a plugin's output is read as given."""
    motion = {"a": 6.0, "b": 3.0, "c": 0.2}
    warp = {"a": 0.5, "b": 1.5, "c": 4.0}  # lower is steadier
    color = {"a": 40.0, "b": 30.0, "c": 20.0}  # a plugin output
    run_of = {"a": 1, "b": 2, "c": 3}
    per_variant = {
        k: {"motion_mean": motion[k], "warp_error": warp[k], "colorfulness": color[k]}
        for k in run_of
    }
    run_metrics = {run_of[k]: per_variant[k] for k in run_of}
    pairs = [("a", "b"), ("b", "c"), ("a", "c")]
    votes = [
        vote(hi, lo, "left", left_run=run_of[hi], right_run=run_of[lo], n=n)
        for n, (hi, lo) in enumerate(pairs[i % 3] for i in range(30))
    ]
    ratings = compute_ratings(votes, bootstrap=0)
    names = ["motion_mean", "warp_error", "colorfulness"]
    rows = {m.metric: m for m in metric_agreement(votes, ratings, run_metrics, per_variant, names)}
    assert rows["motion_mean"].accuracy == pytest.approx(1.0) and rows["motion_mean"].direction == 1
    assert rows["warp_error"].accuracy == pytest.approx(1.0) and rows["warp_error"].direction == -1
    assert not rows["warp_error"].assumed_direction
    assert rows["colorfulness"].assumed_direction and rows["colorfulness"].accuracy == 1.0
