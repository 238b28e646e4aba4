"""A rater votes 20 times with the keyboard in headless Chromium against a live server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_data import fill_database
from test_html_browser import browser  # noqa: F401  (the shared Chromium fixture)
from test_serve import _serve, _votes

TOKEN = "const t = document.querySelector('input[name=token]'); return t ? t.value : null;"


def test_twenty_keyboard_votes_land_in_the_database(
    browser: Any,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    fx = fill_database(sqlite_url, tmp_path)
    keys = ["1", "2", "3", "4", Keys.ARROW_LEFT]
    expected = {"1": "left", "2": "right", "3": "tie", "4": "both_bad", Keys.ARROW_LEFT: "left"}
    for base in _serve(sqlite_url):
        browser.get(f"{base}/judge/{fx.experiment_id}")
        browser.find_element(By.NAME, "rater").send_keys("keyboard rater", Keys.ENTER)
        sent = []
        for n in range(20):
            WebDriverWait(browser, 20).until(lambda d: d.execute_script(TOKEN) is not None)
            token = browser.execute_script(TOKEN)
            html = browser.page_source
            for secret in (*fx.variants, "file://", "canon.mp4"):
                assert secret not in html
            srcs = [v.get_attribute("src") for v in browser.find_elements(By.TAG_NAME, "video")]
            assert len(srcs) == 2 and all("/pair/" in s for s in srcs)
            key = keys[n % len(keys)]
            browser.find_element(By.TAG_NAME, "body").send_keys(key)
            sent.append(expected[key])
            # The next page has a new pair token once the vote is committed.
            WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException]).until(
                lambda d, old=token: d.execute_script(TOKEN) not in (None, old)
            )
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        shot = tmp_path_factory.mktemp("screenshots") / "judge.png"
        assert browser.save_screenshot(str(shot))
    votes = _votes(sqlite_url, fx)
    assert [v.outcome for v in votes] == sent
    assert {v.rater for v in votes} == {"keyboard rater"}


TIMES = "return Array.from(document.querySelectorAll('video.cmp'), v => v.currentTime);"
PAUSED = "return Array.from(document.querySelectorAll('video.cmp'), v => v.paused);"
ALL_LOADED = "return Array.from(document.querySelectorAll('video'), v => v.readyState >= 1);"
READY = "return Array.from(document.querySelectorAll('video.cmp'), v => v.readyState >= 2);"


def test_compare_plays_seeks_and_steps_two_videos_together(
    browser: Any,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fx = fill_database(sqlite_url, tmp_path)
    frame = 1 / 12  # the fixture's canonical frame rate
    for base in _serve(sqlite_url):
        browser.get(f"{base}/compare/{fx.experiment_id}?v=alpha&v=beta")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda d: all(d.execute_script(READY)))
        assert len(browser.find_elements(By.CSS_SELECTOR, "video.cmp")) == 2
        body = browser.find_element(By.TAG_NAME, "body")
        # Space plays both.
        body.send_keys(" ")
        wait.until(lambda d: not any(d.execute_script(PAUSED)))
        wait.until(lambda d: min(d.execute_script(TIMES)) > 0)
        # Pause with the button; both stop at the same frame.
        browser.find_element(By.ID, "play").click()
        wait.until(lambda d: all(d.execute_script(PAUSED)))
        wait.until(lambda d: abs(d.execute_script(TIMES)[0] - d.execute_script(TIMES)[1]) < frame)
        # Seeking the second player moves the first one with it.
        browser.execute_script("document.querySelectorAll('video.cmp')[1].currentTime = 0.5;")
        wait.until(lambda d: all(abs(t - 0.5) < frame for t in d.execute_script(TIMES)))
        # One frame forward with '.', and back with the left arrow.
        body.send_keys(".")
        wait.until(lambda d: all(abs(t - (0.5 + frame)) < frame / 2
                                 for t in d.execute_script(TIMES)))  # fmt: skip
        from selenium.webdriver.common.keys import Keys

        body.send_keys(Keys.ARROW_LEFT)
        wait.until(lambda d: all(abs(t - 0.5) < frame / 2 for t in d.execute_script(TIMES)))
        # Speed applies to both.
        browser.execute_script(
            "const s = document.getElementById('speed'); s.value = '0.5';"
            "s.dispatchEvent(new Event('change'));"
        )
        rates = browser.execute_script(
            "return Array.from(document.querySelectorAll('video.cmp'), v => v.playbackRate);"
        )
        assert rates == [0.5, 0.5]
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        shot = tmp_path_factory.mktemp("screenshots") / "compare.png"
        assert browser.save_screenshot(str(shot))


def test_the_experiments_page_follows_runs_as_they_finish(
    browser: Any,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fx = fill_database(sqlite_url, tmp_path)
    failed = [r for r in _votes_runs(sqlite_url, fx) if r[1] == "failed"]
    for base in _serve(sqlite_url):
        browser.get(base + "/")
        row = f"tr[data-experiment='{fx.experiment_id}']"
        cell = browser.find_element(By.CSS_SELECTOR, row + " [data-field='counts']")
        assert cell.text == "16 succeeded, 2 failed"
        # Both failed runs are queued again, then one finishes: the page follows unreloaded.
        _set_statuses(sqlite_url, [r[0] for r in failed], "queued")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda d, c=cell: c.text == "2 queued, 16 succeeded")
        _set_statuses(sqlite_url, [failed[0][0]], "succeeded")
        wait.until(lambda d, c=cell: c.text == "1 queued, 17 succeeded")
        finished = browser.find_element(By.CSS_SELECTOR, row + " [data-field='finished']")
        assert finished.text == "17 / 18"
        assert (
            browser.find_element(By.CSS_SELECTOR, row + " progress").get_attribute("value") == "17"
        )
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors


def _votes_runs(url: str, fx: Any) -> list[tuple[int, str]]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from reelbench.db.engine import make_engine
    from reelbench.db.models import Run

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(Run.id, Run.status).where(Run.experiment_id == fx.experiment_id)
            ).all()
            return [(r.id, r.status) for r in rows]
    finally:
        engine.dispose()


def _set_statuses(url: str, run_ids: list[int], status: str) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from reelbench.db.engine import make_engine
    from reelbench.db.models import Run

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            session.execute(update(Run).where(Run.id.in_(run_ids)).values(status=status))
            session.commit()
    finally:
        engine.dispose()


def test_experiment_and_ratings_pages_run_under_the_policy(
    browser: Any,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fx = fill_database(sqlite_url, tmp_path)
    for base in _serve(sqlite_url):
        browser.get(f"{base}/experiments/{fx.experiment_id}")
        # The sorting script (served by the app, not inline) works: sort by variant, descending.
        head = browser.find_element(By.CSS_SELECTOR, "#summary-table th")
        head.click()
        head.click()
        WebDriverWait(browser, 10).until(
            lambda d, h=head: h.get_attribute("aria-sort") == "descending"
        )
        first = browser.find_element(By.CSS_SELECTOR, "#summary-table tbody tr td b")
        assert first.text == "gamma"
        WebDriverWait(browser, 20).until(lambda d: all(d.execute_script(ALL_LOADED)))
        browser.get(f"{base}/ratings/{fx.experiment_id}")
        assert "No votes on this experiment yet" in browser.page_source
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
