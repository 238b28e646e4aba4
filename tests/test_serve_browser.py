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
