"""The HTML report in headless Chromium, opened from file:// with no network.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/ensure-test-deps``
installs them). Missing: skipped locally, a failure under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_data import XSS_PROMPT, make_sqlite_database

from reelbench.report import load_report, write_report_files


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - the test extra installs selenium
        chromium = None
    if chromium is None or driver_path is None:
        message = (
            "headless Chromium needs chromium, chromedriver and selenium (scripts/ensure-test-deps)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
        "--mute-audio",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    url, fx = make_sqlite_database(root)
    html_path, _ = write_report_files(load_report(fx.name, url, baseline="alpha"), root / "report")
    return html_path


@pytest.fixture(scope="module")
def loaded(browser: Any, page: Path) -> Any:
    browser.get(page.as_uri())
    return browser


WAIT_FOR_VIDEOS = """
const done = arguments[arguments.length - 1];
const videos = Array.from(document.querySelectorAll('video'));
Promise.all(videos.map(v => v.readyState >= 1 ? null : new Promise(ok => {
  v.addEventListener('loadedmetadata', ok, {once: true});
  v.addEventListener('error', ok, {once: true});
}))).then(() => done(videos.map(v => ({
  src: v.getAttribute('src'), duration: v.duration, error: v.error && v.error.code,
  width: v.videoWidth,
}))));
"""


def test_page_loads_without_console_errors(
    loaded: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    loaded.execute_async_script(WAIT_FOR_VIDEOS)
    errors = [e for e in loaded.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    shot = tmp_path_factory.mktemp("screenshots") / "report.png"
    assert loaded.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_every_video_loads_with_a_nonzero_duration(loaded: Any) -> None:
    videos = loaded.execute_async_script(WAIT_FOR_VIDEOS)
    assert len(videos) == 17  # 16 succeeded runs + the reference
    for v in videos:
        assert v["error"] is None, v
        assert v["duration"] > 0, v
        assert v["width"] == 96, v


def test_script_in_a_prompt_shows_as_text_and_does_not_run(loaded: Any) -> None:
    from selenium.webdriver.common.by import By

    prompts = [e.text for e in loaded.find_elements(By.CSS_SELECTOR, "td.item .prompt")]
    assert XSS_PROMPT in prompts
    assert loaded.execute_script("return window.__pwned === undefined")
    assert loaded.execute_script("return document.scripts.length") == 1


def test_summary_table_sorts_by_clicked_column(loaded: Any) -> None:
    from selenium.webdriver.common.by import By

    def order() -> list[str]:
        rows = loaded.find_elements(By.CSS_SELECTOR, "#summary-table tbody tr")
        return [r.find_elements(By.TAG_NAME, "td")[0].text.split()[0] for r in rows]

    headers = loaded.find_elements(By.CSS_SELECTOR, "#summary-table thead th")
    failed = next(h for h in headers if h.text.startswith("failed"))
    failed.click()
    assert order()[-1] == "gamma"  # ascending: most failures last
    failed.click()
    assert order()[0] == "gamma"
    assert failed.get_attribute("aria-sort") == "descending"


def test_play_row_button_plays_every_video_of_the_row(loaded: Any) -> None:
    from selenium.webdriver.common.by import By

    button = loaded.find_elements(By.CSS_SELECTOR, "button.play-row")[0]
    button.click()
    playing = loaded.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const row = document.querySelector('button.play-row').closest('tr');
        setTimeout(() => done(Array.from(row.querySelectorAll('video')).map(v => !v.paused)), 300);
        """
    )
    assert playing and all(playing)


REAL_SPEC = """
[experiment]
name = "browser"

[canonical]
width = 96
height = 64
fps = 8
crf = 30

[[items]]
id = "x"
prompt = "<script>window.__pwned = 1</script> a cat"

[[variants]]
key = "wide"
provider = "synthetic"
model = "orbit"
repeats = 2
params = { seconds = 1, width = 128, height = 72, fps = 8 }

[[variants]]
key = "square"
provider = "synthetic"
model = "bars"
params = { seconds = 1, width = 64, height = 64, fps = 8 }
"""


@pytest.fixture(scope="module")
def real_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of runs made by the real pipeline (provider -> normalize -> metrics)."""
    from click.testing import CliRunner

    from reelbench.cli import main

    root = tmp_path_factory.mktemp("real")
    (root / "spec.toml").write_text(REAL_SPEC)
    result = CliRunner().invoke(
        main,
        ["run", str(root / "spec.toml"), "--db", f"sqlite:///{root / 'db.sqlite'}",
         "--artifacts", str(root / "art"), "--report", str(root / "report")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "report" / "index.html"


def test_canonical_videos_of_the_real_pipeline_play_in_chromium(
    browser: Any, real_page: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(real_page.as_uri())
    videos = browser.execute_async_script(WAIT_FOR_VIDEOS)
    assert len(videos) == 3
    for v in videos:
        assert v["error"] is None and v["duration"] > 0 and v["width"] == 96, v
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
    prompt = browser.find_element(By.CSS_SELECTOR, "td.item .prompt").text
    assert prompt == "<script>window.__pwned = 1</script> a cat"
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.CSS_SELECTOR, "#frames svg polyline")
    shot = tmp_path_factory.mktemp("screenshots") / "real-report.png"
    assert browser.save_screenshot(str(shot))
