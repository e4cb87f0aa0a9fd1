"""The web page in a real browser: headless Chromium (Debian's chromium + chromium-driver,
installed by `make test-sysdeps`; Selenium is told the driver's path and never downloads one)
loads the page, submits a request against the bundled digits model, waits for the progress bar
to finish, and checks that the grid and the single images appear. The screenshot is kept under
the test's tmp dir and copied to artifacts/server-page.png (gitignored)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from serverkit import running_server, settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="Debian chromium + chromium-driver are not installed (`make test-sysdeps`)",
    ),
]


@pytest.fixture
def browser(tmp_path):
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch drivers or browsers
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.05)
    state = driver.execute_script(
        "return document.body.dataset.state + ': ' + document.getElementById('status').textContent"
    )
    raise AssertionError(f"timed out waiting for {what} (page: {state})")


def test_page_generates_digits_and_shows_them(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with running_server(settings(None)) as (url, _app):  # the bundled digits model
        browser.get(url + "/")
        _wait(browser, "return document.body.dataset.state === 'ready'", 20, "the model list")
        assert Select(browser.find_element(By.ID, "model")).first_selected_option.text.startswith(
            "digits"
        )
        Select(browser.find_element(By.ID, "class")).select_by_value("7")
        for field, value in (("nfe", "16"), ("n", "8"), ("seed", "3")):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        progress_seen = []
        browser.find_element(By.ID, "go").click()
        deadline = time.monotonic() + 60
        while browser.execute_script("return document.body.dataset.state") != "done":
            assert time.monotonic() < deadline, browser.find_element(By.ID, "status").text
            state = browser.execute_script("return document.body.dataset.state")
            assert state != "failed", browser.find_element(By.ID, "status").text
            progress_seen.append(
                browser.execute_script(
                    "const p = document.getElementById('progress'); return [p.value, p.max];"
                )
            )
            time.sleep(0.02)
        value, maximum = browser.execute_script(
            "const p = document.getElementById('progress'); return [p.value, p.max];"
        )
        assert value == maximum == 8 * 16  # unipc: one step per evaluation, 8 images
        # the bar moved through the job, not only at its end
        assert any(0 < v < m for v, m in progress_seen), progress_seen
        grid_size = _wait(
            browser,
            "const g = document.getElementById('grid'); "
            "return g.complete && g.naturalWidth > 0 ? [g.naturalWidth, g.naturalHeight] : null;",
            10,
            "the grid image",
        )
        assert grid_size[0] > 8 and grid_size[1] >= 8
        singles = browser.find_elements(By.CSS_SELECTOR, "#items img")
        assert len(singles) == 8
        assert all(
            browser.execute_script("return arguments[0].naturalWidth", im) == 8 for im in singles
        )
        assert "Done" in browser.find_element(By.ID, "status").text
        shot = tmp_path / "server-page.png"
        assert browser.save_screenshot(str(shot))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / "server-page.png")
        print(f"screenshot: {shot} (copy in {ARTIFACTS / 'server-page.png'})")
