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
import mimetypes
import os
import random
import re
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from reelbench.db.engine import make_engine
from reelbench.db.models import Artifact, Experiment, Item
from reelbench.judging.ratings import compute_ratings
from reelbench.judging.selection import pair_key, select_pair
from reelbench.judging.storage import VoteRefused, judgeable_runs, record_vote
from reelbench.object_store import S3ArtifactStore, first_line, is_object_uri
from reelbench.report.html import REPORT_CSS, REPORT_JS, render_body
from reelbench.report.human import judging_details_html, judging_html
from reelbench.serve import pages
from reelbench.serve.pages import APP_CSS
from reelbench.serve.queries import (
    VIDEO_KINDS,
    NotFound,
    VoteCache,
    compare_choice,
    experiment_report,
    experiments_progress,
    image_path,
    pick_videos,
    reference_path,
    repeats_of,
)
from reelbench.storage import path_from_uri

__all__ = ["create_app"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "media-src 'self'; img-src 'self' data:; connect-src 'self'"
)
CHUNK = 64 * 1024
SPEEDS = (0.25, 0.5, 0.75, 1, 1.25, 1.5, 2)


def _static() -> dict[str, tuple[str, str]]:
    """The files under ``/static/``: name -> (content, media type), fixed at start."""
    here = resources.files("reelbench.serve") / "static"
    out = {
        name: ((here / name).read_text(encoding="utf-8"), "text/javascript")
        for name in ("judge.js", "live.js", "compare.js")
    }
    out["report.js"] = (REPORT_JS, "text/javascript")
    out["app.css"] = (REPORT_CSS + APP_CSS, "text/css")
    return out


def _money(x: float | None) -> str:
    return "\u2014" if x is None else f"${x:.4f}"


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no runs"


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

    def body() -> Iterator[bytes]:  # sync: Starlette reads it in its thread pool
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
    """The app on the database at ``db_url``; ``token``: required on every request when set.

    Handlers that touch the database are plain functions (Starlette runs
    them in its thread pool) or hand their database work to it, so a slow
    query never blocks the event loop.
    """
    engine = make_engine(db_url)
    sessions = sessionmaker(engine)
    signer = _Signer(secret or os.urandom(32))
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    templates = {name: env.from_string(getattr(pages, name)) for name in pages.__all__
                 if name not in ("APP_CSS",)}  # fmt: skip
    static = _static()
    last_pair: dict[str, tuple[str, str, str]] = {}
    vote_cache = VoteCache()

    def page(title: str, template: str, status: int = 200, *, scripts: Sequence[str] = (),
             experiment: Any = None, **values: Any) -> HTMLResponse:  # fmt: skip
        body = Markup(templates[template].render(experiment=experiment, **values))
        html = templates["PAGE"].render(title=title, body=body, experiment=experiment,
                                        scripts=scripts)  # fmt: skip
        return HTMLResponse(html, status_code=status)

    def not_found(what: str) -> Response:
        return Response(f"not found: {what}", status_code=404, media_type="text/plain")

    def csrf_for(rater: str) -> str:
        return hmac.new(signer.secret, b"csrf:" + rater.encode(), hashlib.sha256).hexdigest()

    def experiment_row(session: Session, experiment_id: int) -> dict[str, Any] | None:
        exp = session.get(Experiment, experiment_id)
        return None if exp is None else {"id": exp.id, "name": exp.name}

    # -- experiments and progress ---------------------------------------------
    def index(request: Request) -> Response:
        with sessions() as session:
            progress = experiments_progress(session)
        experiments = [
            {"id": e.id, "name": e.name, "total": e.total, "finished": e.finished,
             "counts_text": _counts_text(e.counts), "spend_text": _money(e.spend)}
            for e in progress
        ]  # fmt: skip
        return page("experiments", "EXPERIMENTS", experiments=experiments, scripts=["live.js"])

    def progress_all(request: Request) -> Response:
        with sessions() as session:
            progress = experiments_progress(session)
        return JSONResponse({"experiments": [e.as_dict() for e in progress]})

    def progress_one(request: Request) -> Response:
        with sessions() as session:
            found = experiments_progress(session, int(request.path_params["experiment_id"]))
        return JSONResponse(found[0].as_dict()) if found else not_found("experiment")

    def experiment_page(request: Request) -> Response:
        experiment_id = int(request.path_params["experiment_id"])
        with sessions() as session:
            found = experiments_progress(session, experiment_id)
            if not found:
                return not_found("experiment")
            report, links = experiment_report(session, experiment_id)
        body = render_body(report, video_link=links.get)
        e = found[0]
        return page(e.name, "EXPERIMENT", experiment={"id": e.id, "name": e.name},
                    progress=e, counts_text=_counts_text(e.counts), spend_text=_money(e.spend),
                    report=Markup(body), scripts=["report.js", "live.js"])  # fmt: skip

    # -- compare ----------------------------------------------------------------
    def compare(request: Request) -> Response:
        experiment_id = int(request.path_params["experiment_id"])
        item_text = request.query_params.get("item")
        if item_text is not None and not item_text.isdigit():
            return not_found("item")
        repeat_text = request.query_params.get("repeat") or ""
        if repeat_text and not repeat_text.isdigit():
            return not_found("repeat")
        repeat = int(repeat_text) if repeat_text else None
        asked = request.query_params.getlist("v")
        with sessions() as session:
            try:
                choice = compare_choice(
                    session, experiment_id, int(item_text) if item_text else None
                )
            except NotFound as exc:
                return not_found(str(exc))
        experiment = {"id": choice.experiment_id, "name": choice.experiment}
        message, status = "", 200
        if not asked:
            asked = list(choice.videos)[:2]
        try:
            videos = pick_videos(choice, asked, repeat)
        except ValueError as exc:
            videos, message, status = [], str(exc), 400
        if status == 200 and len(videos) < 2:
            message = "choose at least two variants to compare"
            videos = []
        return page("compare", "COMPARE", status, experiment=experiment, c=choice,
                    chosen=asked, videos=videos, message=message, speeds=SPEEDS,
                    repeats=repeats_of(choice), repeat=repeat,
                    fps=choice.fps or 24, scripts=["compare.js"])  # fmt: skip

    # -- ratings ----------------------------------------------------------------
    def ratings(request: Request) -> Response:
        experiment_id = int(request.path_params["experiment_id"])
        with sessions() as session:
            experiment = experiment_row(session, experiment_id)
            if experiment is None:
                return not_found("experiment")
            report, _ = experiment_report(session, experiment_id)
        judging = report.judging
        leaderboard = Markup(judging_html(judging)) if judging else None
        details = Markup(judging_details_html(judging)) if judging else None
        return page("ratings", "RATINGS", experiment=experiment, leaderboard=leaderboard,
                    details=details, scripts=["report.js"])  # fmt: skip

    # -- judging ----------------------------------------------------------------
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

    def judge(request: Request) -> Response:
        experiment_id = int(request.path_params["experiment_id"])
        rater = request.cookies.get("rater", "").strip()
        with sessions() as session:
            experiment = experiment_row(session, experiment_id)
            if experiment is None:
                return not_found("experiment")
            if not rater:
                return page("who is judging", "NAME", next=f"/judge/{experiment_id}",
                            experiment=experiment)  # fmt: skip
            runs = judgeable_runs(session, experiment_id)
            votes = vote_cache.current(vote_cache.refresh(session, experiment_id), runs)
            ratings = compute_ratings(votes, bootstrap=0)
            strengths = {r.variant: r.strength for r in ratings.variants}
            pair = select_pair(runs, votes, ratings=strengths, last=last_pair.get(rater),
                               rng=random.Random())  # fmt: skip
            if pair is None:
                return HTMLResponse(templates["PAGE"].render(
                    title="nothing to judge", experiment=experiment, scripts=(),
                    body=Markup("<p>No item has two variants with videos yet.</p>")))  # fmt: skip
            item = session.get(Item, pair.left.item_id)
            prompt = item.prompt if item else ""
            image_item = item.id if item is not None and image_path(session, item) else None
        tok = signer.sign(
            f"{experiment_id}:{pair.left.run_id}:{pair.right.run_id}:"
            f"{pair.left.canon_sha256}:{pair.right.canon_sha256}:{secrets.token_hex(8)}"
        )
        message = request.query_params.get("m", "")[:200]
        return page("judge", "JUDGE", prompt=prompt, token=tok, experiment=experiment,
                    image_item=image_item,
                    csrf=csrf_for(rater), rater=rater, message=message,
                    scripts=["judge.js"])  # fmt: skip

    def pair_of(tok: str) -> list[str] | None:
        text = signer.unsign(tok)
        parts = text.split(":") if text else []
        return parts if len(parts) == 6 else None

    def store_vote(experiment_id: int, rater: str, form: dict[str, str],
                   parts: list[str]) -> Response:  # fmt: skip
        seconds_text = str(form.get("seconds", "") or "")
        try:
            seconds = float(seconds_text) if seconds_text else None
        except ValueError:
            seconds = None
        uid = hashlib.sha256(f"{rater}:{form.get('token')}".encode()).hexdigest()[:32]
        with sessions() as session:
            experiment = experiment_row(session, experiment_id)
            try:
                record_vote(
                    session, experiment_id=experiment_id, left_run_id=int(parts[1]),
                    right_run_id=int(parts[2]), left_sha256=parts[3], right_sha256=parts[4],
                    outcome=str(form.get("outcome", "")), rater=rater,
                    comment=str(form.get("comment", "")) or None, seconds_to_vote=seconds,
                    vote_uid=uid,
                )  # fmt: skip
            except VoteRefused as exc:
                body = Markup(env.from_string(
                    "<p>{{ m }}</p><a href='/judge/{{ e }}'>next pair</a>"
                ).render(m=str(exc), e=experiment_id))  # fmt: skip
                return HTMLResponse(templates["PAGE"].render(
                    title="vote refused", body=body, experiment=experiment, scripts=()),
                    status_code=409)  # fmt: skip
            runs = {r.run_id: r for r in judgeable_runs(session, experiment_id)}
        left, right = runs.get(int(parts[1])), runs.get(int(parts[2]))
        if left is not None and right is not None:
            last_pair[rater] = pair_key(left.item_key, left.variant_key, right.variant_key)
        return RedirectResponse(f"/judge/{experiment_id}", status_code=303)

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
        return await run_in_threadpool(store_vote, experiment_id, rater, form, parts)

    # -- videos and static files --------------------------------------------------
    def artifact_file(session: Session, artifact_id: int) -> Path | str | None:
        art = session.get(Artifact, artifact_id)
        if art is None or art.kind not in VIDEO_KINDS:
            return None
        if is_object_uri(art.uri):
            return art.uri
        try:
            return path_from_uri(art.uri)
        except ValueError:
            return None

    async def send(path: Path | str | None, request: Request) -> Response:
        # s3:// objects stream from the bucket (async client); files from disk.
        if path is None:
            return not_found("video")
        if isinstance(path, str):
            return await _object_response(path, request)
        return _range_response(path, request)

    def video_file(artifact_id: int) -> Path | str | None:
        with sessions() as session:
            return artifact_file(session, artifact_id)

    async def video(request: Request) -> Response:
        artifact_id = int(request.path_params["artifact_id"])
        return await send(await run_in_threadpool(video_file, artifact_id), request)

    def pair_file(run_id: int) -> Path | str | None:
        with sessions() as session:
            art_id = session.scalars(
                select(Artifact.id).where(Artifact.run_id == run_id, Artifact.kind == "canon")
            ).first()
            return artifact_file(session, art_id) if art_id is not None else None

    async def pair_video(request: Request) -> Response:
        parts = pair_of(request.path_params["token"])
        side = request.path_params["side"]
        if parts is None or side not in ("left", "right"):
            return not_found("video")
        run_id = int(parts[1] if side == "left" else parts[2])
        return await send(await run_in_threadpool(pair_file, run_id), request)

    def reference(request: Request) -> Response:
        with sessions() as session:
            item = session.get(Item, int(request.path_params["item_id"]))
            path = reference_path(session, item) if item is not None else None
        return _range_response(path, request) if path else not_found("video")

    def image(request: Request) -> Response:
        # By item id only: the path comes from the database, never the URL.
        with sessions() as session:
            item = session.get(Item, int(request.path_params["item_id"]))
            path = image_path(session, item) if item is not None else None
        if path is None:
            return not_found("image")
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(path.read_bytes(), media_type=media)

    async def static_file(request: Request) -> Response:
        found = static.get(request.path_params["name"])
        if found is None:
            return not_found("file")
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "no-cache"})

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
            Route("/api/progress", progress_all),
            Route("/api/experiments/{experiment_id:int}/progress", progress_one),
            Route("/experiments/{experiment_id:int}", experiment_page),
            Route("/compare/{experiment_id:int}", compare),
            Route("/ratings/{experiment_id:int}", ratings),
            Route("/rater", set_rater, methods=["POST"]),
            Route("/judge/{experiment_id:int}", judge),
            Route("/judge/{experiment_id:int}/vote", vote, methods=["POST"]),
            Route("/video/{artifact_id:int}", video),
            Route("/reference/{item_id:int}", reference),
            Route("/image/{item_id:int}", image),
            Route("/pair/{token}/{side}", pair_video),
            Route("/static/{name}", static_file),
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
