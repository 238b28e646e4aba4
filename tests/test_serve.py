"""``reelbench serve``'s app under uvicorn on a real loopback port: blind pairs, votes, Range."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from report_data import Fixture, fill_database
from sqlalchemy.orm import Session

from reelbench.db.engine import make_engine
from reelbench.judging.storage import judgeable_runs, load_votes
from reelbench.serve.app import create_app


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
