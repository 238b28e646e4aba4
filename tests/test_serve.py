"""``reelbench serve``'s app under uvicorn on a real loopback port: blind pairs, votes, Range."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from report_data import Fixture, fill_database
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from reelbench.db.engine import make_engine
from reelbench.db.models import Experiment, Item, Judgment, Run, RunStatus, Variant
from reelbench.judging.storage import JudgeableRun, judgeable_runs, load_votes, record_vote
from reelbench.serve.app import create_app
from reelbench.serve.queries import VoteCache


def _serve(url: str, token: str | None = None) -> Iterator[str]:
    config = uvicorn.Config(create_app(url, token=token), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="on")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str, Fixture]]:
    fx = fill_database(database_url, tmp_path)
    for base in _serve(database_url):
        yield base, database_url, fx


def _votes(url: str, fx: Fixture) -> list:  # type: ignore[type-arg]
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return load_votes(session, fx.experiment_id)
    finally:
        engine.dispose()


def test_a_rater_votes_blind_and_each_vote_is_stored(served: tuple[str, str, Fixture]) -> None:
    base, url, fx = served
    with httpx.Client(base_url=base, follow_redirects=True, timeout=20) as client:
        first = client.get(f"/judge/{fx.experiment_id}")
        assert "Who is judging?" in first.text
        assert (
            "unsafe-inline"
            not in first.headers["content-security-policy"].split("script-src")[1].split(";")[0]
        )
        page = client.post("/rater", data={"rater": "ann", "next": f"/judge/{fx.experiment_id}"})
        shown = []
        for n in range(12):
            html = page.text
            for secret in (*fx.variants, "file://", "canon.mp4", "orbit", "seed"):
                assert secret not in html, (secret, html)
            token = re.search(r'name="token" value="([^"]+)"', html)[1]  # type: ignore[index]
            csrf = re.search(r'name="csrf" value="([^"]+)"', html)[1]  # type: ignore[index]
            left = client.get(f"/pair/{token}/left")
            assert left.status_code == 200 and left.content[4:8] == b"ftyp"
            outcome = ("left", "right", "tie", "both_bad")[n % 4]
            shown.append((token, outcome))
            page = client.post(f"/judge/{fx.experiment_id}/vote",
                               data={"token": token, "csrf": csrf, "outcome": outcome,
                                     "seconds": "1.5"})  # fmt: skip
            assert page.status_code == 200, page.text
        # The same vote sent again (a double click) is stored once.
        client.post(f"/judge/{fx.experiment_id}/vote",
                    data={"token": shown[-1][0], "csrf": csrf, "outcome": "left"})  # fmt: skip
        bad = client.post(f"/judge/{fx.experiment_id}/vote",
                          data={"token": shown[0][0], "csrf": "x", "outcome": "left"})  # fmt: skip
        assert bad.status_code == 403
        evil = {"origin": "http://evil"}
        form = {"token": shown[0][0], "csrf": csrf, "outcome": "left"}
        cross = client.post(f"/judge/{fx.experiment_id}/vote", headers=evil, data=form)
        assert cross.status_code == 403
    votes = _votes(url, fx)
    assert [v.outcome for v in votes] == [o for _, o in shown]
    assert all(v.rater == "ann" and v.seconds_to_vote == 1.5 for v in votes)
    assert all(v.left_variant != v.right_variant and not v.stale for v in votes)
    keys = [tuple(sorted((v.item_key, v.left_variant, v.right_variant))) for v in votes]
    assert all(a != b for a, b in itertools.pairwise(keys))


def test_videos_by_artifact_id_with_ranges_and_nothing_else(
    served: tuple[str, str, Fixture],
) -> None:
    base, url, fx = served
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            run = judgeable_runs(session, fx.experiment_id)[0]
    finally:
        engine.dispose()
    with httpx.Client(base_url=base, timeout=20) as client:
        whole = client.get(f"/video/{run.artifact_id}")
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        size = len(whole.content)
        part = client.get(f"/video/{run.artifact_id}", headers={"range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == whole.content[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{size}"
        tail = client.get(f"/video/{run.artifact_id}", headers={"range": "bytes=-5"})
        assert tail.status_code == 206 and tail.content == whole.content[-5:]
        past = client.get(f"/video/{run.artifact_id}", headers={"range": f"bytes={size}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
        open_end = client.get(f"/video/{run.artifact_id}", headers={"range": f"bytes={size - 3}-"})
        assert open_end.content == whole.content[-3:]
        for attempt in ("/video/999999", "/video/..%2F..%2Fetc%2Fpasswd", "/video/%2Fetc%2Fpasswd",
                        "/pair/forged/left", "/static/../../etc/passwd", "/video/-1"):  # fmt: skip
            r = client.get(attempt)
            assert r.status_code == 404, attempt
            assert b"root:" not in r.content


def test_a_token_is_required_when_one_is_set(database_url: str, tmp_path: Path) -> None:
    fill_database(database_url, tmp_path)
    for base in _serve(database_url, token="t" * 24):
        assert httpx.get(base + "/").status_code == 401
        assert httpx.get(base + "/?token=wrong").status_code == 401
        ok = httpx.get(base + "/?token=" + "t" * 24)
        assert ok.status_code == 200 and "report-demo" in ok.text


# -- experiments, progress, experiment, compare, ratings pages ------------------------------

EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _db(url: str) -> Iterator[Session]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _bare_experiment(session: Session) -> tuple[int, int]:
    """An experiment with one queued run and no provider call; (experiment id, run id)."""
    now = datetime.now(UTC)
    exp = Experiment(name="bare", spec_hash="cd" * 32, spec={}, canonical={},
                     created_at=now, updated_at=now)  # fmt: skip
    session.add(exp)
    session.flush()
    item = Item(experiment_id=exp.id, key="only", prompt="p", extra={})
    variant = Variant(experiment_id=exp.id, key="v", provider="synthetic", model=None,
                      params={}, repeats=1, cache=True)  # fmt: skip
    session.add_all([item, variant])
    session.flush()
    run = Run(experiment_id=exp.id, item_id=item.id, variant_id=variant.id, repeat=0, seed=1,
              status=RunStatus.QUEUED.value, attempt=0, max_attempts=3, created_at=now)  # fmt: skip
    session.add(run)
    session.commit()
    return exp.id, run.id


def _set_status(url: str, run_id: int, status: RunStatus) -> None:
    for session in _db(url):
        run = session.get(Run, run_id)
        assert run is not None
        run.status = status.value
        session.commit()


def test_experiments_page_and_progress_follow_the_runs(served: tuple[str, str, Fixture]) -> None:
    base, url, fx = served
    for session in _db(url):
        bare_id, run_id = _bare_experiment(session)
    with httpx.Client(base_url=base, timeout=20) as client:
        page = client.get("/")
        assert page.status_code == 200
        row = page.text.split(f'data-experiment="{fx.experiment_id}"')[1].split("</tr>")[0]
        assert "16 succeeded, 2 failed" in row and "18 / 18" in row
        # alpha 6 calls x 0.01, beta 5 calls x 0.02 (city's two runs share one), gamma none.
        assert "$0.1600" in row
        bare_row = page.text.split(f'data-experiment="{bare_id}"')[1].split("</tr>")[0]
        assert "1 queued" in bare_row and "\u2014" in bare_row and "0 / 1" in bare_row
        assert '<script src="/static/live.js">' in page.text
        assert "setInterval" in client.get("/static/live.js").text

        def bare() -> dict:  # type: ignore[type-arg]
            data = client.get("/api/progress").json()
            return next(e for e in data["experiments"] if e["id"] == bare_id)

        first = bare()
        assert first["counts"] == {"queued": 1} and first["finished"] == 0
        assert first["spend"] is None and first["total"] == 1
        _set_status(url, run_id, RunStatus.RUNNING)
        assert bare()["counts"] == {"running": 1}
        _set_status(url, run_id, RunStatus.SUCCEEDED)
        assert bare()["counts"] == {"succeeded": 1} and bare()["finished"] == 1
        one = client.get(f"/api/experiments/{fx.experiment_id}/progress").json()
        assert one["counts"] == {"succeeded": 16, "failed": 2}
        assert abs(one["spend"] - 0.16) < 1e-9
        assert client.get("/api/experiments/999999/progress").status_code == 404
        assert client.get("/judge/999999").status_code == 404
        assert client.get("/static/nope.js").status_code == 404


def test_the_experiment_page_is_the_report_with_videos_by_id(
    served: tuple[str, str, Fixture],
) -> None:
    base, _, fx = served
    with httpx.Client(base_url=base, timeout=20) as client:
        page = client.get(f"/experiments/{fx.experiment_id}")
        assert page.status_code == 200
        html = page.text
        for part in ('id="summary-table"', 'id="grid"', 'id="frames"', 'id="failures"', "<svg",
                     'data-experiment="', "/static/report.js", "moov atom"):  # fmt: skip
            assert part in html, part
        assert "file://" not in html and str(fx.artifact_root) not in html
        srcs = re.findall(r'<video src="([^"]+)"', html)
        # 16 succeeded runs and the reference video of item sunset.
        assert len(srcs) == 17
        assert sum(bool(re.fullmatch(r"/video/\d+", s)) for s in srcs) == 16
        assert sum(bool(re.fullmatch(r"/reference/\d+", s)) for s in srcs) == 1
        for src in set(srcs):
            r = client.get(src, headers={"range": "bytes=0-11"})
            assert r.status_code == 206 and r.content[4:8] == b"ftyp"
        assert "<script>" not in html.replace('<script src="', "")
        assert "sortable" in client.get("/static/report.js").text
        assert client.get("/experiments/999999").status_code == 404
        assert client.get("/reference/999999").status_code == 404


def _judgeable(url: str, fx: Fixture) -> list[JudgeableRun]:
    for session in _db(url):
        return judgeable_runs(session, fx.experiment_id)
    raise AssertionError


def test_compare_shows_two_to_four_variants_of_one_item(served: tuple[str, str, Fixture]) -> None:
    base, url, fx = served
    runs = _judgeable(url, fx)
    xss = next(r.item_id for r in runs if r.item_key == "xss")
    city = next(r.item_id for r in runs if r.item_key == "city")
    with httpx.Client(base_url=base, timeout=20) as client:
        first = client.get(f"/compare/{fx.experiment_id}")
        assert first.status_code == 200
        assert len(re.findall(r"<video class=\"cmp\"", first.text)) == 2
        assert '<script src="/static/compare.js">' in first.text
        three = client.get(f"/compare/{fx.experiment_id}",
                           params=[("item", city), ("v", "gamma"), ("v", "alpha"),
                                   ("v", "beta")])  # fmt: skip
        assert three.status_code == 200
        by_art = {r.artifact_id: r for r in runs}

        def shown(page: httpx.Response) -> list[JudgeableRun]:
            ids = re.findall(r'class="cmp" src="/video/(\d+)"', page.text)
            return [by_art[int(x)] for x in ids]

        assert [r.variant_key for r in shown(three)] == ["gamma", "alpha", "beta"]
        assert all(r.item_key == "city" for r in shown(three))
        assert 'data-fps="12' in three.text
        js = client.get("/static/compare.js").text
        assert "playbackRate" in js and "ArrowRight" in js
        # Another repeat: the same variants, each one's repeat-1 video.
        assert 'name="repeat"' in three.text
        second = client.get(f"/compare/{fx.experiment_id}",
                            params=[("item", city), ("v", "alpha"), ("v", "beta"),
                                    ("repeat", "1")])  # fmt: skip
        assert second.status_code == 200
        assert [(r.variant_key, r.repeat) for r in shown(second)] == [("alpha", 1), ("beta", 1)]
        assert '<option value="1" selected>' in second.text
        missing = client.get(f"/compare/{fx.experiment_id}",
                             params=[("item", city), ("v", "alpha"), ("v", "beta"),
                                     ("repeat", "7")])  # fmt: skip
        assert missing.status_code == 400 and "repeat 7" in missing.text
        assert client.get(f"/compare/{fx.experiment_id}?repeat=x").status_code == 404
        # gamma has no video of item xss once its last run there failed.
        for r in runs:
            if r.item_key == "xss" and r.variant_key == "gamma":
                _set_status(url, r.run_id, RunStatus.FAILED)
        refused = client.get(f"/compare/{fx.experiment_id}",
                             params=[("item", xss), ("v", "alpha"), ("v", "gamma")])  # fmt: skip
        assert refused.status_code == 400
        assert "no video of item &#39;xss&#39; from variant(s) gamma" in refused.text
        assert 'class="cmp"' not in refused.text
        unknown = client.get(f"/compare/{fx.experiment_id}",
                             params=[("item", xss), ("v", "alpha"), ("v", "nope")])  # fmt: skip
        assert unknown.status_code == 400 and "nope" in unknown.text
        five = client.get(f"/compare/{fx.experiment_id}",
                          params=[("item", city)] + [("v", v) for v in "abcde"])  # fmt: skip
        assert five.status_code == 400 and "at most 4" in five.text
        one = client.get(f"/compare/{fx.experiment_id}", params=[("item", city), ("v", "alpha")])
        assert one.status_code == 200 and "at least two" in one.text
        for bad in (f"/compare/{fx.experiment_id}?item=999999", "/compare/999999",
                    f"/compare/{fx.experiment_id}?item=x"):  # fmt: skip
            assert client.get(bad).status_code == 404, bad


def _vote_all_left(url: str, fx: Fixture, n: int, rater: str) -> None:
    runs = _judgeable(url, fx)
    pairs = [(a, b) for a in runs for b in runs
             if a.item_id == b.item_id and a.variant_key < b.variant_key]  # fmt: skip
    for session in _db(url):
        for k in range(n):
            a, b = pairs[k % len(pairs)]
            record_vote(session, experiment_id=fx.experiment_id, left_run_id=a.run_id,
                        right_run_id=b.run_id, left_sha256=a.canon_sha256,
                        right_sha256=b.canon_sha256, outcome="left", rater=rater)  # fmt: skip


def test_the_ratings_page_shows_the_leaderboard(served: tuple[str, str, Fixture]) -> None:
    base, url, fx = served
    with httpx.Client(base_url=base, timeout=20) as client:
        empty = client.get(f"/ratings/{fx.experiment_id}")
        assert empty.status_code == 200 and "No votes on this experiment yet" in empty.text
        _vote_all_left(url, fx, 24, "ann")
        _vote_all_left(url, fx, 12, "bob")
        page = client.get(f"/ratings/{fx.experiment_id}")
        html = page.text
        for part in ('id="ratings-table"', 'id="win-matrix"', 'id="item-breakdown"',
                     'id="raters-table"', 'id="kappas"', "95% interval",
                     "position bias: far from 50%", "36 blind pairwise votes"):  # fmt: skip
            assert part in html, part
        # Every vote went to the alphabetically first variant of its pair: alpha leads.
        board = html.split('id="ratings-table"')[1].split("</table>")[0]
        assert board.index("alpha") < board.index("beta") < board.index("gamma")
        assert client.get("/ratings/999999").status_code == 404


def test_user_text_is_escaped_on_every_page(served: tuple[str, str, Fixture]) -> None:
    base, url, fx = served
    for session in _db(url):
        exp = session.get(Experiment, fx.experiment_id)
        assert exp is not None
        exp.name = "exp " + EVIL
        for item in session.scalars(select(Item).where(Item.experiment_id == exp.id)):
            item.prompt = f"{item.key} {EVIL}"
        session.scalars(select(Item).where(Item.key == "city")).one().key = "city" + EVIL
        session.scalars(select(Variant).where(Variant.key == "alpha")).one().key = "a" + EVIL
        session.commit()
    _vote_all_left(url, fx, 6, "r" + EVIL)
    eid = fx.experiment_id
    with httpx.Client(base_url=base, timeout=20, follow_redirects=True) as client:
        client.post("/rater", data={"rater": "rater " + EVIL, "next": f"/judge/{eid}"})
        alpha = "a" + EVIL
        pages = {
            "experiments": client.get("/"),
            "experiment": client.get(f"/experiments/{eid}"),
            "compare": client.get(f"/compare/{eid}", params=[("v", alpha), ("v", "beta")]),
            "judge": client.get(f"/judge/{eid}"),
            "ratings": client.get(f"/ratings/{eid}"),
        }
        for name, page in pages.items():
            assert page.status_code == 200, (name, page.text)
            assert "<script>alert" not in page.text, name
            assert "<img src=x" not in page.text, name
            assert ESCAPED in page.text, name
            assert "&lt;img src=x onerror=alert(2)&gt;" in page.text, name
        assert 'class="cmp"' in pages["compare"].text


def _progress_status(base: str, answers: list[int], done: threading.Event) -> None:
    with httpx.Client(base_url=base, timeout=60) as client:
        answers.append(client.get("/api/progress").status_code)
    done.set()


def test_a_slow_query_does_not_stall_other_requests(postgres_url: str, tmp_path: Path) -> None:
    fx = fill_database(postgres_url, tmp_path)
    video = f"/video/{_judgeable(postgres_url, fx)[0].artifact_id}"
    locker = make_engine(postgres_url)
    try:
        for base in _serve(postgres_url):
            with locker.connect() as conn, httpx.Client(base_url=base, timeout=30) as client:
                conn.execute(text("LOCK TABLE experiments IN ACCESS EXCLUSIVE MODE"))
                done = threading.Event()
                answers: list[int] = []
                worker = threading.Thread(target=_progress_status, args=(base, answers, done))
                worker.start()
                try:
                    # The progress query now waits for the lock; the server still answers.
                    assert client.get("/static/app.css").status_code == 200
                    assert client.get(video, headers={"range": "bytes=0-3"}).status_code == 206
                    assert not done.is_set()
                finally:
                    conn.rollback()
                    worker.join(60)
                assert answers == [200]
    finally:
        locker.dispose()


def test_the_vote_cache_matches_load_votes(database_url: str, tmp_path: Path) -> None:
    fx = fill_database(database_url, tmp_path)
    cache = VoteCache()
    _vote_all_left(database_url, fx, 8, "ann")
    for session in _db(database_url):
        first = cache.refresh(session, fx.experiment_id)
        stored = load_votes(session, fx.experiment_id)
        assert [v.vote_uid for v in first] == [v.vote_uid for v in stored]
    _vote_all_left(database_url, fx, 5, "bob")
    for session in _db(database_url):
        # A run made again: its votes no longer count, as load_votes marks them stale.
        remade = session.get(Run, first[0].left_run_id)
        assert remade is not None
        remade.canon_sha256 = "f" * 64
        gone = session.scalars(select(Judgment).where(Judgment.vote_uid == first[1].vote_uid))
        session.delete(gone.one())
        session.commit()
        stored = load_votes(session, fx.experiment_id)
        cached = cache.refresh(session, fx.experiment_id)
        assert [v.vote_uid for v in cached] == [v.vote_uid for v in stored]
        assert len(cached) == 12 and {v.rater for v in cached} == {"ann", "bob"}
        current = cache.current(cached, judgeable_runs(session, fx.experiment_id))
        assert [v.vote_uid for v in current] == [v.vote_uid for v in stored if not v.stale]
        assert len(current) < len(cached)


def test_the_judge_page_shows_the_items_input_image_by_item_id(
    served: tuple[str, str, Fixture], tmp_path: Path
) -> None:
    base, url, fx = served
    picture = tmp_path / "input.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not decoded by the server" * 4)
    for session in _db(url):
        session.execute(
            Item.__table__.update()
            .where(Item.experiment_id == fx.experiment_id)
            .values(image_path=str(picture))
        )
        session.commit()
        item_ids = list(
            session.scalars(select(Item.id).where(Item.experiment_id == fx.experiment_id))
        )
    with httpx.Client(base_url=base, follow_redirects=True, timeout=20) as client:
        page = client.post("/rater", data={"rater": "bo", "next": f"/judge/{fx.experiment_id}"})
        shown = re.search(r'<img class="input" src="/image/(\d+)"', page.text)
        assert shown is not None and int(shown[1]) in item_ids
        assert str(picture) not in page.text and "input.png" not in page.text
        served_image = client.get(f"/image/{shown[1]}")
        assert served_image.status_code == 200
        assert served_image.headers["content-type"] == "image/png"
        assert served_image.content == picture.read_bytes()
        assert client.get("/image/987654").status_code == 404
        picture.unlink()
        assert client.get(f"/image/{shown[1]}").status_code == 404
        again = client.get(f"/judge/{fx.experiment_id}")
        assert '<img class="input"' not in again.text
