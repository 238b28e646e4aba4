"""The human-judgement part of a report, in every format: ratings, agreement, metric agreement.

Built by :func:`reelbench.judging.summarize_judging` from the experiment's
votes; a report of an experiment nobody voted on has none and shows nothing.
"""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any

from rich.table import Table

from reelbench.judging import JudgingSummary
from reelbench.judging.agreement import MIN_AGREEMENT_VOTES

__all__ = ["judging_details_html", "judging_html", "judging_tables", "judging_to_dict"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def judging_to_dict(s: JudgingSummary) -> dict[str, Any]:
    """The JSON section ``judging``."""
    a = s.agreement
    return {
        "votes": s.ratings.votes,
        "stale_votes": s.ratings.stale_votes,
        "both_bad": s.both_bad,
        "bootstrap_samples": s.ratings.bootstrap,
        "ratings": [asdict(r) for r in s.ratings.variants],
        "win_rate": s.ratings.win_rate,
        "items": [
            {
                "item": b.item,
                "votes": b.votes,
                "scores": {k: {"comparisons": n, "score": x} for k, (n, x) in b.scores.items()},
            }
            for b in s.ratings.items
        ],
        "raters": a.raters,
        "repeat_pairs": a.repeat_pairs,
        "repeat_consistency": a.repeat_consistency,
        "kappas": [asdict(k) for k in a.kappas],
        "position_bias": {**asdict(s.position), "left_share": s.position.left_share},
        "metric_agreement": [asdict(m) for m in s.metrics],
        "min_agreement_votes": MIN_AGREEMENT_VOTES,
    }


def _agreement_text(m: Any) -> tuple[str, str]:
    acc = _pct(m.accuracy) if m.accuracy is not None else "too few votes"
    tau = _num(m.tau, 2) if m.tau is not None else "-"
    return acc, tau


def judging_tables(s: JudgingSummary) -> list[Table]:
    """Rich tables: the leaderboard, then which metric agrees with the people."""
    board = Table(title=f"Human ratings ({s.ratings.votes} votes, Bradley-Terry, 95% bootstrap)")
    for col in ("variant", "rating", "95% interval", "votes", "won", "lost", "tied"):
        board.add_column(col, justify="left" if col == "variant" else "right")
    for r in s.ratings.variants:
        interval = "-" if r.ci_low is None else f"{r.ci_low:.0f} - {r.ci_high:.0f}"
        board.add_row(r.variant, _num(r.rating), interval, str(r.votes), str(r.wins),
                      str(r.losses), str(r.ties))  # fmt: skip
    p = s.position
    notes = [f"left side won {_pct(p.left_share)} of {p.decisive} decisive votes"
             + (" (POSITION BIAS: far from 50%)" if p.flagged else "")]  # fmt: skip
    if s.agreement.repeat_pairs:
        notes.append(f"repeat consistency {_pct(s.agreement.repeat_consistency)}")
    for k in s.agreement.kappas:
        notes.append(f"kappa {k.rater_a}/{k.rater_b} {_num(k.kappa, 2)} over {k.overlap} pairs")
    if s.ratings.stale_votes:
        notes.append(f"{s.ratings.stale_votes} stale votes (runs made again) not counted")
    board.caption = "; ".join(notes)
    agree = Table(title="Which metric agrees with the people")
    for col in ("metric", "agrees with people on", "Kendall tau", "votes"):
        agree.add_column(col, justify="left" if col == "metric" else "right")
    for m in s.metrics:
        acc, tau = _agreement_text(m)
        name = m.metric + (" (higher assumed better)" if m.assumed_direction else "")
        agree.add_row(name, acc, tau, str(m.votes))
    agree.caption = (
        f"share of decisive votes where the metric prefers the chosen video; "
        f"needs {MIN_AGREEMENT_VOTES} votes; tau: variant order by metric vs by rating"
    )
    return [board, agree]


def judging_html(s: JudgingSummary) -> str:
    """The ``Human ratings`` section of the static page (everything escaped)."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(r.variant)}</td><td class=num>{_num(r.rating)}</td>"
        f"<td class=num>{'-' if r.ci_low is None else f'{r.ci_low:.0f} &ndash; {r.ci_high:.0f}'}"
        f"</td><td class=num>{r.votes}</td><td class=num>{r.wins}</td>"
        f"<td class=num>{r.losses}</td><td class=num>{r.ties}</td></tr>"
        for r in s.ratings.variants
    )
    names = [r.variant for r in s.ratings.variants]
    matrix_head = "".join(f"<th>{e(n)}</th>" for n in names)
    matrix = "".join(
        f"<tr><td>{e(a)}</td>"
        + "".join(
            "<td class=num>&middot;</td>" if a == b else
            f"<td class=num>{_pct(s.ratings.win_rate.get(a, {}).get(b))}</td>"
            for b in names
        )
        + "</tr>"
        for a in names
    )  # fmt: skip
    agree = "".join(
        f"<tr><td>{e(m.metric)}{' (higher assumed better)' if m.assumed_direction else ''}</td>"
        f"<td class=num>{e(_agreement_text(m)[0])}</td><td class=num>{_agreement_text(m)[1]}</td>"
        f"<td class=num>{m.votes}</td></tr>"
        for m in s.metrics
    )
    p = s.position
    bias = f"Left side won {_pct(p.left_share)} of {p.decisive} decisive votes" + (
        " <strong>(position bias: far from 50%)</strong>" if p.flagged else ""
    )
    return (
        '<section id="human"><h2>Human ratings</h2>'
        f'<p class="muted">{s.ratings.votes} blind pairwise votes; Bradley-Terry strengths on an '
        "Elo-like scale (400 points = 10:1 odds), 95% bootstrap intervals. "
        f"{bias}. Repeat consistency {_pct(s.agreement.repeat_consistency)}.</p>"
        '<table id="ratings-table"><thead><tr><th>variant</th><th>rating</th><th>95% interval</th>'
        f"<th>votes</th><th>won</th><th>lost</th><th>tied</th></tr></thead><tbody>{rows}</tbody>"
        "</table><h3>Win rate (row over column, ties half)</h3>"
        f'<table id="win-matrix"><thead><tr><th></th>{matrix_head}</tr></thead>'
        f"<tbody>{matrix}</tbody></table>"
        "<h3>Which metric agrees with the people</h3>"
        f'<p class="muted">Share of decisive votes where the metric prefers the chosen video '
        f"(needs {MIN_AGREEMENT_VOTES}); Kendall tau between the variant orders.</p>"
        '<table id="metric-agreement"><thead><tr><th>metric</th><th>agrees with people on</th>'
        f"<th>tau</th><th>votes</th></tr></thead><tbody>{agree}</tbody></table></section>"
    )


def judging_details_html(s: JudgingSummary) -> str:
    """Per-item breakdown and rater agreement, for the ratings page (everything escaped)."""
    e = html.escape
    names = [r.variant for r in s.ratings.variants]
    head = "".join(f"<th>{e(n)}</th>" for n in names)
    items = "".join(
        f"<tr><td>{e(b.item)}</td><td class=num>{b.votes}</td>"
        + "".join(
            f"<td class=num>{_pct(b.scores[n][1])} <span class=std>of {b.scores[n][0]}</span></td>"
            if n in b.scores else "<td class=num>-</td>"
            for n in names
        )
        + "</tr>"
        for b in s.ratings.items
    )  # fmt: skip
    a = s.agreement
    raters = "".join(
        f"<tr><td>{e(name)}</td><td class=num>{n}</td></tr>" for name, n in a.raters.items()
    )
    kappas = "".join(
        f"<tr><td>{e(k.rater_a)}</td><td>{e(k.rater_b)}</td><td class=num>{k.overlap}</td>"
        f"<td class=num>{_num(k.kappa, 2)}</td></tr>"
        for k in a.kappas
    )
    kappa_table = (
        '<table id="kappas"><thead><tr><th>rater</th><th>rater</th><th>pairs both judged</th>'
        f"<th>Cohen's kappa</th></tr></thead><tbody>{kappas}</tbody></table>"
        if kappas
        else '<p class="muted">No two raters judged enough of the same pairs for a kappa.</p>'
    )
    repeats = (
        f"{a.repeat_agreed} of {a.repeat_pairs} repeated judgements agreed "
        f"({_pct(a.repeat_consistency)})."
        if a.repeat_pairs
        else "No rater judged the same two videos twice yet."
    )
    stale = (
        f" {s.ratings.stale_votes} stale votes (runs made again since) are not counted."
        if s.ratings.stale_votes
        else ""
    )
    return (
        '<section id="items"><h2>Per item</h2><p class="muted">Each variant\'s score share '
        "(wins, ties half) of its comparisons on the item.</p>"
        f'<table id="item-breakdown"><thead><tr><th>item</th><th>votes</th>{head}</tr></thead>'
        f"<tbody>{items}</tbody></table></section>"
        '<section id="raters"><h2>Raters</h2>'
        f"<p>{e(repeats)}{e(stale)} {s.both_bad} votes said both videos were bad.</p>"
        '<table id="raters-table"><thead><tr><th>rater</th><th>votes</th></tr></thead>'
        f"<tbody>{raters}</tbody></table>{kappa_table}</section>"
    )
