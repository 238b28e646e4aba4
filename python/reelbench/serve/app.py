"""The judging web app: experiments, blind pairs, votes, videos by artifact id.

No URL path ever reaches the filesystem: videos are looked up by artifact
id (or by a signed pair token naming two runs) in the database, and the file
is the one the artifact row names. The judge page is blind: its HTML and its
URLs carry no variant key, seed or file name, only an HMAC-signed token.
Votes are POSTs that must come from the same origin and carry the token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import random
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

from jinja2 import Environment, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from reelbench.db.engine import make_engine
from reelbench.db.models import Artifact, Experiment, Item, Run
from reelbench.judging.ratings import compute_ratings
from reelbench.judging.selection import select_pair
from reelbench.judging.storage import VoteRefused, judgeable_runs, load_votes, record_vote
from reelbench.object_store import S3ArtifactStore, first_line, is_object_uri
from reelbench.storage import path_from_uri

__all__ = ["create_app"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "media-src 'self'; img-src 'self' data:"
)
CHUNK = 64 * 1024

JS = """
document.addEventListener('keydown', (e) => {
  if (e.target.tagName === 'INPUT' || e.target.tagName === 'TEXTAREA') return;
  const keys = {ArrowLeft: 'left', ArrowRight: 'right', ArrowDown: 'tie', ArrowUp: 'both_bad',
                '1': 'left', '2': 'right', '3': 'tie', '4': 'both_bad'};
  const outcome = keys[e.key];
  const button = outcome && document.querySelector('button[value="' + outcome + '"]');
  if (button) { e.preventDefault(); button.click(); }
});
const shown = document.querySelector('input[name="shown_at"]');
if (shown) shown.value = String(Date.now());
const form = document.querySelector('form.vote');
if (form) form.addEventListener('submit', () => {
  const s = form.querySelector('input[name="seconds"]');
  if (s && shown) s.value = String((Date.now() - Number(shown.value)) / 1000);
});
"""

PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{{ title }} &middot; reelbench</title><link rel="icon" href="data:,"></head>
<body style="font-family: sans-serif; margin: 1.5em">{{ body }}
<script src="/static/judge.js"></script></body></html>"""

INDEX = """<h1>Experiments</h1><table><thead><tr><th>experiment</th><th>runs by state</th>
<th></th></tr></thead><tbody>{% for e in experiments %}<tr><td>{{ e.name }}</td>
<td>{{ e.counts }}</td><td><a href="/judge/{{ e.id }}">judge</a></td></tr>{% endfor %}
</tbody></table>"""

NAME = """<h1>Who is judging?</h1><form method="post" action="/rater">
<input type="hidden" name="next" value="{{ next }}">
<label>Your name <input name="rater" maxlength="100" required autofocus></label>
<button type="submit">Start</button></form>"""

JUDGE = """<h1>Which video is better?</h1><p class="prompt">{{ prompt }}</p>
<div style="display: flex; gap: 1em">
<video id="left" src="/pair/{{ token }}/left" autoplay loop muted playsinline controls></video>
<video id="right" src="/pair/{{ token }}/right" autoplay loop muted playsinline controls></video>
</div>
<form class="vote" method="post" action="/judge/{{ experiment }}/vote">
<input type="hidden" name="token" value="{{ token }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="shown_at" value=""><input type="hidden" name="seconds" value="">
<p><button name="outcome" value="left">Left better (1, &larr;)</button>
<button name="outcome" value="right">Right better (2, &rarr;)</button>
<button name="outcome" value="tie">Tie (3, &darr;)</button>
<button name="outcome" value="both_bad">Both bad (4, &uarr;)</button></p>
<p><label>Comment <input name="comment" maxlength="2000"></label></p></form>
<p>Judging as {{ rater }}. {{ message }}</p>"""


class _Signer:
    """HMAC tokens naming a pair of runs and the video hashes shown."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def sign(self, text: str) -> str:
        mac = hmac.new(self.secret, text.encode(), hashlib.sha256).digest()[:16]
        raw = text.encode() + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def unsign(self, token: str) -> str | None:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            text, _, mac = raw.rpartition(b".")
        except (ValueError, TypeError):
            return None
        good = base64.urlsafe_b64encode(
            hmac.new(self.secret, text, hashlib.sha256).digest()[:16]
        ).rstrip(b"=")
        return text.decode() if hmac.compare_digest(mac, good) else None


MAX_FORM = 64 * 1024


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind the pages send), first value of each field."""
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _byte_range(size: int, request: Request) -> tuple[int, int, int, dict[str, str]] | Response:
    """``(start, end, status, headers)`` of the range asked for, or the 416 response."""
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4"}
    start, end, status = 0, size - 1, 200
    asked = request.headers.get("range")
    if asked:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", asked.strip())
        if m is None or (m[1] == "" and m[2] == ""):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        if m[1] == "":
            start, end = max(0, size - int(m[2])), size - 1
        else:
            start = int(m[1])
            end = min(int(m[2]), size - 1) if m[2] else size - 1
        if start >= size or start > end:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return start, end, status, headers


def _range_response(path: Path, request: Request) -> Response:
    """The file, whole or the one byte range asked for (206), 416 for a range past its end."""
    try:
        size = path.stat().st_size
    except OSError:
        return Response("not found", status_code=404)
    asked = _byte_range(size, request)
    if isinstance(asked, Response):
        return asked
    start, end, status, headers = asked

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    return StreamingResponse(body(), status_code=status, headers=headers)


async def _object_response(uri: str, request: Request) -> Response:
    """An ``s3://`` video streamed from the object store, with the same range handling."""
    import obstore

    from reelbench.object_store import parse_s3_uri
    from reelbench.storage import open_store

    location = parse_s3_uri(uri)
    store = cast(S3ArtifactStore, open_store(f"s3://{location.bucket}"))
    try:
        meta = await obstore.head_async(store.client, location.key)
    except FileNotFoundError:
        return Response("not found", status_code=404)
    except Exception as exc:  # the store is unreachable: say so, not "not found"
        return Response(f"the object store cannot be read: {first_line(exc)}", status_code=503)
    asked = _byte_range(int(meta["size"]), request)
    if isinstance(asked, Response):
        return asked
    start, end, status, headers = asked
    options: Any = {"range": (start, end + 1)}
    result = await obstore.get_async(store.client, location.key, options=options)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in result.stream(min_chunk_size=CHUNK):
            yield bytes(chunk)

    return StreamingResponse(body(), status_code=status, headers=headers)


def create_app(db_url: str, *, token: str | None = None, secret: bytes | None = None) -> Starlette:
    """The app on the database at ``db_url``; ``token``: required on every request when set."""
    engine = make_engine(db_url)
    sessions = sessionmaker(engine)
    signer = _Signer(secret or os.urandom(32))
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    last_pair: dict[str, tuple[str, str, str]] = {}

    def page(title: str, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        from markupsafe import Markup

        body = Markup(env.from_string(template).render(**values))
        html = env.from_string(PAGE).render(title=title, body=body)
        return HTMLResponse(html, status_code=status)

    def csrf_for(rater: str) -> str:
        return hmac.new(signer.secret, b"csrf:" + rater.encode(), hashlib.sha256).hexdigest()

    async def index(request: Request) -> Response:
        with sessions() as session:
            rows = session.execute(
                select(Experiment.id, Experiment.name, Run.status, func.count(Run.id))
                .outerjoin(Run, Run.experiment_id == Experiment.id)
                .group_by(Experiment.id, Experiment.name, Run.status)
                .order_by(Experiment.name)
            ).all()
        exps: dict[int, dict[str, Any]] = {}
        for eid, name, status, n in rows:
            e = exps.setdefault(eid, {"id": eid, "name": name, "parts": []})
            if status is not None:
                e["parts"].append(f"{n} {status}")
        experiments = [{**e, "counts": ", ".join(e["parts"]) or "no runs"} for e in exps.values()]
        return page("experiments", INDEX, experiments=experiments)

    async def set_rater(request: Request) -> Response:
        form = await _form(request)
        rater = str(form.get("rater", "")).strip()[:100]
        nxt = str(form.get("next", "/"))
        if not re.fullmatch(r"/judge/\d+", nxt):
            nxt = "/"
        response = RedirectResponse(nxt, status_code=303)
        if rater:
            response.set_cookie("rater", rater, httponly=True, samesite="strict")
        return response

    async def judge(request: Request) -> Response:
        experiment_id = int(request.path_params["experiment_id"])
        rater = request.cookies.get("rater", "").strip()
        if not rater:
            return page("who is judging", NAME, next=f"/judge/{experiment_id}")
        with sessions() as session:
            if session.get(Experiment, experiment_id) is None:
                return Response("no such experiment", status_code=404)
            runs = judgeable_runs(session, experiment_id)
            votes = load_votes(session, experiment_id)
            ratings = compute_ratings(votes, bootstrap=0)
            strengths = {r.variant: r.strength for r in ratings.variants}
            pair = select_pair(runs, votes, ratings=strengths, last=last_pair.get(rater),
                               rng=random.Random())  # fmt: skip
            if pair is None:
                return page("nothing to judge", "<p>No item has two variants with videos yet.</p>")
            item = session.get(Item, pair.left.item_id)
            prompt = item.prompt if item else ""
        tok = signer.sign(
            f"{experiment_id}:{pair.left.run_id}:{pair.right.run_id}:"
            f"{pair.left.canon_sha256}:{pair.right.canon_sha256}:{secrets.token_hex(8)}"
        )
        message = request.query_params.get("m", "")[:200]
        return page("judge", JUDGE, prompt=prompt, token=tok, experiment=experiment_id,
                    csrf=csrf_for(rater), rater=rater, message=message)  # fmt: skip

    def pair_of(tok: str) -> list[str] | None:
        text = signer.unsign(tok)
        parts = text.split(":") if text else []
        return parts if len(parts) == 6 else None

    async def vote(request: Request) -> Response:
        experiment_id = int(request.path_params["experiment_id"])
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            return Response("cross-origin vote refused", status_code=403)
        rater = request.cookies.get("rater", "").strip()
        form = await _form(request)
        if not rater or not hmac.compare_digest(str(form.get("csrf", "")), csrf_for(rater)):
            return Response("vote refused: missing rater or CSRF token", status_code=403)
        parts = pair_of(str(form.get("token", "")))
        if parts is None or int(parts[0]) != experiment_id:
            return Response("vote refused: bad pair token", status_code=400)
        seconds_text = str(form.get("seconds", "") or "")
        try:
            seconds = float(seconds_text) if seconds_text else None
        except ValueError:
            seconds = None
        uid = hashlib.sha256(f"{rater}:{form.get('token')}".encode()).hexdigest()[:32]
        with sessions() as session:
            try:
                record_vote(
                    session, experiment_id=experiment_id, left_run_id=int(parts[1]),
                    right_run_id=int(parts[2]), left_sha256=parts[3], right_sha256=parts[4],
                    outcome=str(form.get("outcome", "")), rater=rater,
                    comment=str(form.get("comment", "")) or None, seconds_to_vote=seconds,
                    vote_uid=uid,
                )  # fmt: skip
            except VoteRefused as exc:
                return page("vote refused", "<p>{{ m }}</p><a href='/judge/{{ e }}'>next pair</a>",
                            status=409, m=str(exc), e=experiment_id)  # fmt: skip
            left = session.get(Run, int(parts[1]))
            right = session.get(Run, int(parts[2]))
        if left is not None and right is not None:
            from reelbench.judging.selection import pair_key

            with sessions() as session:
                runs = {r.run_id: r for r in judgeable_runs(session, experiment_id)}
            if left.id in runs and right.id in runs:
                last_pair[rater] = pair_key(runs[left.id].item_key, runs[left.id].variant_key,
                                            runs[right.id].variant_key)  # fmt: skip
        return RedirectResponse(f"/judge/{experiment_id}", status_code=303)

    def artifact_file(session: Session, artifact_id: int) -> Path | str | None:
        art = session.get(Artifact, artifact_id)
        if art is None or art.kind != "canon":
            return None
        if is_object_uri(art.uri):
            return art.uri
        try:
            return path_from_uri(art.uri)
        except ValueError:
            return None

    async def send(path: Path | str | None, request: Request) -> Response:
        if path is None:
            return Response("not found", status_code=404)
        if isinstance(path, str):
            return await _object_response(path, request)
        return _range_response(path, request)

    async def video(request: Request) -> Response:
        with sessions() as session:
            path = artifact_file(session, int(request.path_params["artifact_id"]))
        return await send(path, request)

    async def pair_video(request: Request) -> Response:
        parts = pair_of(request.path_params["token"])
        side = request.path_params["side"]
        if parts is None or side not in ("left", "right"):
            return Response("not found", status_code=404)
        run_id = int(parts[1] if side == "left" else parts[2])
        with sessions() as session:
            art_id = session.scalars(
                select(Artifact.id).where(Artifact.run_id == run_id, Artifact.kind == "canon")
            ).first()
            path = artifact_file(session, art_id) if art_id is not None else None
        return await send(path, request)

    async def script(request: Request) -> Response:
        return Response(JS, media_type="text/javascript")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.dispose()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", index),
            Route("/rater", set_rater, methods=["POST"]),
            Route("/judge/{experiment_id:int}", judge),
            Route("/judge/{experiment_id:int}/vote", vote, methods=["POST"]),
            Route("/video/{artifact_id:int}", video),
            Route("/pair/{token}/{side}", pair_video),
            Route("/static/judge.js", script),
        ],
    )

    async def guard(request: Request, call_next: Any) -> Response:
        if token is not None:
            given = request.query_params.get("token") or request.cookies.get("reelbench_token")
            if given is None or not hmac.compare_digest(given, token):
                return Response("a token is required (printed by reelbench serve)", 401)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        if token is not None and request.query_params.get("token"):
            response.set_cookie("reelbench_token", token, httponly=True, samesite="strict")
        return response

    app.add_middleware(BaseHTTPMiddleware, dispatch=guard)
    return app
