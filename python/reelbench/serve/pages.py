"""The web app's page templates (Jinja2, autoescaped) and extra styles.

Every value a template prints is escaped by Jinja2; the only markup passed
through unescaped is what :mod:`reelbench.report.html` and
:mod:`reelbench.report.human` render, which escape every value themselves.
"""

from __future__ import annotations

__all__ = [
    "APP_CSS",
    "COMPARE",
    "EXPERIMENT",
    "EXPERIMENTS",
    "JUDGE",
    "NAME",
    "PAGE",
    "RATINGS",
]

APP_CSS = """
nav.app { margin: 0 0 16px; padding: 0 0 8px; border-bottom: 1px solid var(--line); }
nav.app b { margin-right: 14px; }
.live { color: var(--muted); margin: 0 0 8px; }
.players { display: flex; flex-wrap: wrap; gap: 12px; }
.players figure { margin: 0; }
.players video { display: block; width: 420px; max-width: 100%; background: #000; }
.players figcaption { font-size: 12px; color: var(--muted); }
.controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 10px 0; }
.controls input[type=range] { width: 320px; }
.error { color: var(--bad); font-weight: 600; }
progress { width: 120px; }
"""

PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} &middot; reelbench</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/app.css"></head><body>
<nav class="app"><a href="/">Experiments</a>{% if experiment %}<b>{{ experiment.name }}</b>
<a href="/experiments/{{ experiment.id }}">Report</a>
<a href="/compare/{{ experiment.id }}">Compare</a>
<a href="/judge/{{ experiment.id }}">Judge</a>
<a href="/ratings/{{ experiment.id }}">Ratings</a>{% endif %}</nav>
{{ body }}
{% for s in scripts %}<script src="/static/{{ s }}"></script>{% endfor %}</body></html>"""

EXPERIMENTS = """<h1>Experiments</h1>
{% if not experiments %}<p class="muted">No experiments in this database yet:
run one with <code>reelbench run SPEC.toml</code>.</p>{% else %}
<p class="muted">Updated every 2 seconds while workers run. Spend: the cost of the provider
calls behind the runs (a cached call counted once); &mdash; when no call reported a cost.</p>
<table><thead><tr><th>experiment</th><th>runs by state</th><th>finished</th><th>spend</th>
<th></th></tr></thead><tbody>
{% for e in experiments %}<tr data-experiment="{{ e.id }}">
<td><a href="/experiments/{{ e.id }}">{{ e.name }}</a></td>
<td data-field="counts">{{ e.counts_text }}</td>
<td><progress max="{{ [e.total, 1] | max }}" value="{{ e.finished }}"></progress>
<span data-field="finished">{{ e.finished }} / {{ e.total }}</span></td>
<td class="num" data-field="spend">{{ e.spend_text }}</td>
<td><a href="/compare/{{ e.id }}">compare</a> &middot; <a href="/judge/{{ e.id }}">judge</a>
&middot; <a href="/ratings/{{ e.id }}">ratings</a></td></tr>{% endfor %}
</tbody></table>{% endif %}"""

EXPERIMENT = """<div id="live" class="live" data-experiment="{{ progress.id }}"
data-finished="{{ progress.finished }}">Live: <span data-field="counts">{{ counts_text }}</span>
&middot; <progress max="{{ [progress.total, 1] | max }}" value="{{ progress.finished }}"></progress>
<span data-field="finished">{{ progress.finished }} / {{ progress.total }}</span> finished
&middot; spend <span data-field="spend">{{ spend_text }}</span>
<span data-field="new" hidden>&middot; <span>0</span> more runs finished:
<a href="/experiments/{{ progress.id }}">reload</a></span></div>
{{ report }}"""

COMPARE = """<h1>Compare</h1>
<form method="get" action="/compare/{{ c.experiment_id }}" class="controls">
<label>Item <select name="item">{% for id, key in c.items %}
<option value="{{ id }}"{% if id == c.item_id %} selected{% endif %}>{{ key }}</option>
{% endfor %}</select></label>
{% if repeats|length > 1 %}<label>Repeat <select name="repeat">
<option value=""{% if repeat is none %} selected{% endif %}>each variant's first</option>
{% for r in repeats %}<option value="{{ r }}"{% if r == repeat %} selected{% endif %}>
{{- r }}</option>
{% endfor %}</select></label>{% endif %}
{% for v in c.videos %}<label><input type="checkbox" name="v" value="{{ v }}"
{% if v in chosen %} checked{% endif %}> {{ v }}</label>{% endfor %}
<button type="submit">Show</button> <span class="muted">2 to 4 variants</span></form>
<p class="prompt"><b>{{ c.item_key }}</b>: {{ c.prompt }}</p>
{% if message %}<p class="error">{{ message }}</p>{% endif %}
{% if videos %}<div id="compare" data-fps="{{ fps }}">
<div class="controls"><button id="play" type="button">Play (space)</button>
<button id="back" type="button">&larr; frame (,)</button>
<button id="forward" type="button">frame &rarr; (.)</button>
<input id="seek" type="range" min="0" max="1" step="any" value="0" aria-label="position">
<label>speed <select id="speed">{% for s in speeds %}
<option value="{{ s }}"{% if s == 1 %} selected{% endif %}>{{ s }}x</option>{% endfor %}
</select></label><label><input id="loop" type="checkbox" checked> loop</label>
<span id="clock" class="muted"></span></div>
<div class="players">{% for v in videos %}<figure>
<video class="cmp" src="/video/{{ v.artifact_id }}" muted playsinline preload="auto"></video>
<figcaption>{{ v.variant }} &middot; repeat {{ v.repeat }}</figcaption></figure>{% endfor %}
</div></div>{% endif %}"""

NAME = """<h1>Who is judging?</h1><form method="post" action="/rater">
<input type="hidden" name="next" value="{{ next }}">
<label>Your name <input name="rater" maxlength="100" required autofocus></label>
<button type="submit">Start</button></form>"""

JUDGE = """<h1>Which video is better?</h1><p class="prompt">{{ prompt }}</p>
{% if image_item %}<p><img class="input" src="/image/{{ image_item }}" alt="the input image"
style="max-height: 200px"></p>{% endif %}
<div style="display: flex; gap: 1em">
<video id="left" src="/pair/{{ token }}/left" autoplay loop muted playsinline controls></video>
<video id="right" src="/pair/{{ token }}/right" autoplay loop muted playsinline controls></video>
</div>
<form class="vote" method="post" action="/judge/{{ experiment.id }}/vote">
<input type="hidden" name="token" value="{{ token }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="shown_at" value=""><input type="hidden" name="seconds" value="">
<p><button name="outcome" value="left">Left better (1, &larr;)</button>
<button name="outcome" value="right">Right better (2, &rarr;)</button>
<button name="outcome" value="tie">Tie (3, &darr;)</button>
<button name="outcome" value="both_bad">Both bad (4, &uarr;)</button></p>
<p><label>Comment <input name="comment" maxlength="2000"></label></p></form>
<p>Judging as {{ rater }}. {{ message }}</p>"""

RATINGS = """<h1>Ratings</h1>
{% if leaderboard %}{{ leaderboard }}{{ details }}{% else %}
<p>No votes on this experiment yet: <a href="/judge/{{ experiment.id }}">judge some pairs</a>.
</p>{% endif %}"""
