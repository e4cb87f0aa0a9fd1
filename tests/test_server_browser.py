"""The web page in a real browser: headless Chromium (Debian's chromium + chromium-driver,
installed by `make test-sysdeps`; Selenium is told the driver's path and never downloads one)
loads the page, picks a class of the bundled digits model and then types a prompt for a tiny
text-to-image model, waits for the progress bar to finish each time, and checks that the grid
and the single images appear. The screenshots are kept under
the test's tmp dir and copied to artifacts/server-page*.png (gitignored)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from serverkit import (
    running_server,
    settings,
    write_tiny_audio_model,
    write_tiny_image_model,
    write_tiny_t2i_model,
    write_tiny_text_model,
)

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


def _run_job(browser) -> list:
    """Press Generate and follow the page until the job is done; the progress seen."""
    from selenium.webdriver.common.by import By

    seen = []
    browser.find_element(By.ID, "go").click()
    deadline = time.monotonic() + 60
    while (state := browser.execute_script("return document.body.dataset.state")) != "done":
        assert time.monotonic() < deadline, browser.find_element(By.ID, "status").text
        assert state != "failed", browser.find_element(By.ID, "status").text
        seen.append(browser.execute_script(PROGRESS))
        time.sleep(0.02)
    return seen


PROGRESS = "const p = document.getElementById('progress'); return [p.value, p.max];"
GRID = (
    "const g = document.getElementById('grid'); "
    "return g.complete && g.naturalWidth > 0 ? [g.naturalWidth, g.naturalHeight] : null;"
)


def _fill(browser, **fields) -> None:
    from selenium.webdriver.common.by import By

    for field, value in fields.items():
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)


def _screenshot(browser, tmp_path, name: str) -> None:
    shot = tmp_path / name
    assert browser.save_screenshot(str(shot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    print(f"screenshot: {shot} (copy in {ARTIFACTS / name})")


def test_page_generates_from_a_class_and_from_a_prompt(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from diffusionforge.assets import bundled_path

    models = tmp_path / "models"
    models.mkdir()
    (models / "digits").symlink_to(bundled_path("digits"), target_is_directory=True)
    t2i = write_tiny_t2i_model(tmp_path / "t2i")
    (models / "scenes-tiny").symlink_to(t2i, target_is_directory=True)
    text = write_tiny_text_model(tmp_path / "text")
    (models / "grammar-tiny").symlink_to(text, target_is_directory=True)
    audio = write_tiny_audio_model(tmp_path / "audio")
    (models / "tones").symlink_to(audio, target_is_directory=True)
    with running_server(settings(models)) as (url, _app):
        browser.get(url + "/")
        _wait(browser, "return document.body.dataset.state === 'ready'", 20, "the model list")
        Select(browser.find_element(By.ID, "model")).select_by_value("digits")
        assert not browser.find_element(By.ID, "prompt").is_displayed()  # a class model
        Select(browser.find_element(By.ID, "class")).select_by_value("7")
        _fill(browser, nfe="16", n="8", seed="3")
        seen = _run_job(browser)
        value, maximum = browser.execute_script(PROGRESS)
        assert value == maximum == 8 * 16  # unipc: one step per evaluation, 8 images
        assert any(0 < v < m for v, m in seen), seen  # the bar moved, not only at the end
        grid = _wait(browser, GRID, 10, "the grid image")
        assert grid[0] > 8 and grid[1] >= 8
        singles = browser.find_elements(By.CSS_SELECTOR, "#items img")
        assert len(singles) == 8
        assert all(
            browser.execute_script("return arguments[0].naturalWidth", im) == 8 for im in singles
        )
        assert "Done" in browser.find_element(By.ID, "status").text
        _screenshot(browser, tmp_path, "server-page.png")

        # a text-to-image model: type a prompt
        Select(browser.find_element(By.ID, "model")).select_by_value("scenes-tiny")
        assert browser.find_element(By.ID, "prompt").is_displayed()
        assert not browser.find_element(By.ID, "class").is_displayed()
        _fill(browser, prompt="two red circles left of a blue square", nfe="4", n="4")
        _run_job(browser)
        value, maximum = browser.execute_script(PROGRESS)
        assert value == maximum == 4  # one batch: a step moves all four images
        grid = _wait(browser, GRID, 10, "the text-to-image grid")
        assert grid[0] >= 4 * 32 and len(browser.find_elements(By.CSS_SELECTOR, "#items img")) == 4
        first = browser.find_element(By.CSS_SELECTOR, "#items img")
        assert first.get_attribute("title") == "two red circles left of a blue square"
        _screenshot(browser, tmp_path, "server-page-prompt.png")

        # a text model: fill the holes of a prompt, read the texts
        Select(browser.find_element(By.ID, "model")).select_by_value("grammar-tiny")
        assert browser.find_element(By.ID, "length").is_displayed()
        assert not browser.find_element(By.ID, "guidance").is_displayed()
        _fill(browser, prompt="the cat [____:6] mat.", nfe="6", n="2")
        _run_job(browser)
        texts = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#items pre")]
        assert len(texts) == 2 and all(t.startswith("the cat [") for t in texts), texts
        assert all(t.endswith("] mat.") for t in texts), texts  # the filled span, bracketed
        assert len(browser.find_elements(By.CSS_SELECTOR, "#items a[download]")) == 4
        _screenshot(browser, tmp_path, "server-page-text.png")

        # an audio model: pick a class, get players that load the clips
        Select(browser.find_element(By.ID, "model")).select_by_value("tones")
        Select(browser.find_element(By.ID, "class")).select_by_value("1")
        _fill(browser, nfe="2", n="2")
        _run_job(browser)
        players = browser.find_elements(By.CSS_SELECTOR, "#items audio")
        assert len(players) == 2
        durations = _wait(
            browser,
            "const a = [...document.querySelectorAll('#items audio')];"
            "return a.every(p => p.readyState >= 1) ? a.map(p => p.duration) : null;",
            10,
            "the audio clips",
        )
        assert all(abs(d - 0.25) < 0.01 for d in durations), durations
        assert _wait(browser, GRID, 10, "the spectrogram picture")
        _screenshot(browser, tmp_path, "server-page-audio.png")


def test_page_asks_for_the_token_and_sends_it(browser, tmp_path):
    """A server that needs a token: the page shows the token field, lists nothing without it,
    and with it generates (the job, its event stream and its files all need the header)."""
    from selenium.webdriver.common.by import By

    from diffusionforge.server.settings import Limits, ServerSettings

    token = "s3cret-token-0123456789"
    models = tmp_path / "models"
    write_tiny_image_model(models / "tiny")
    s = ServerSettings(models_dir=models, host="0.0.0.0", token=token, limits=Limits())
    with running_server(s) as (url, _app):
        browser.get(url + "/")
        _wait(browser, "return document.body.dataset.state === 'failed'", 20, "the refusal")
        assert "Authorization" in browser.find_element(By.ID, "status").text
        box = browser.find_element(By.ID, "token")
        assert box.is_displayed()
        box.send_keys(token)
        browser.find_element(By.ID, "model").click()  # leaving the field fires its change
        _wait(browser, "return document.body.dataset.state === 'ready'", 20, "the model list")
        _fill(browser, nfe="4", n="2")
        _run_job(browser)
        assert _wait(browser, GRID, 10, "the grid image")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#items img")) == 2


def test_page_sends_an_init_image_and_a_mask_from_file_inputs(browser, tmp_path):
    """Inpainting from the page: two file inputs, read by the page as data: URLs; the kept
    half of the result is the uploaded picture's."""
    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    models = tmp_path / "models"
    write_tiny_image_model(models / "tiny")
    picture = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 255
    Image.fromarray(picture).save(tmp_path / "init.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    with running_server(settings(models)) as (url, _app):
        browser.get(url + "/")
        _wait(browser, "return document.body.dataset.state === 'ready'", 20, "the model list")
        Select(browser.find_element(By.ID, "model")).select_by_value("tiny")
        assert browser.find_element(By.ID, "init_image").is_displayed()
        browser.find_element(By.ID, "init_image").send_keys(str(tmp_path / "init.png"))
        browser.find_element(By.ID, "mask").send_keys(str(tmp_path / "mask.png"))
        Select(browser.find_element(By.ID, "class")).select_by_value("3")
        _fill(browser, nfe="4", n="2", seed="1")
        _run_job(browser)
        singles = browser.find_elements(By.CSS_SELECTOR, "#items img")
        assert len(singles) == 2
        rgba = browser.execute_script(  # the picture as the page shows it
            "const im = arguments[0], c = document.createElement('canvas');"
            "c.width = im.naturalWidth; c.height = im.naturalHeight;"
            "const g = c.getContext('2d'); g.drawImage(im, 0, 0);"
            "return Array.from(g.getImageData(0, 0, c.width, c.height).data);",
            singles[0],
        )
        got = np.asarray(rgba, dtype=np.uint8).reshape(8, 8, 4)[..., 0]
        assert np.abs(got[:, :4].astype(int) - picture[:, :4]).max() <= 1  # kept: the upload's
        _screenshot(browser, tmp_path, "server-page-inpaint.png")
