"""The web page in a real browser: Debian's headless Chromium, driven by selenium.

Opens the page, sees the embedded voice, plays "try it" through Web Audio, uploads
and deletes a voice (checked at describe), tries a bad upload, saves a screenshot
(``WEB_SCREENSHOT=PATH`` saves it there too, e.g. ``docs/web-page.png``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from server_util import JOE, describe
from web_util import TINY_SINGLE, WebServer, run_web_server

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not CHROMEDRIVER.exists(),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
MIN_AUDIO_SECONDS = 3.0
"""The try-it text is ~6 s of speech: the page must receive and schedule at least this."""
WAIT = 120.0
TEXT = (
    "Streaming speech starts playing while the rest of the sentence is still being "
    "synthesized, so you hear the first words at once."
)
_T = TypeVar("_T")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    with run_web_server(tmp_path_factory.mktemp("browser")) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1000,1900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: object, condition: Callable[[object], _T], what: str) -> _T:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"page never showed {what}") from None


def voice_names(web: WebServer) -> list[str]:
    info = asyncio.run(describe(web.server.uri))
    return [voice.name for program in info.tts for voice in program.voices]


def test_page_in_chromium(web: WebServer, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(web.url)
    row = f'#voices tr[data-voice="{JOE}"]'
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the embedded voice")
    assert "embedded" in driver.find_element(By.CSS_SELECTOR, row).text
    unnamed = driver.execute_script(
        """return [...document.querySelectorAll("input, select, textarea, button, canvas")]
            .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
                && !e.textContent.trim())
            .map((e) => e.outerHTML);"""
    )
    assert unnamed == [], f"controls without an accessible name: {unnamed}"

    # Try it: streamed PCM is scheduled on a Web Audio context as it arrives.
    text = driver.find_element(By.ID, "try-text")
    text.clear()
    text.send_keys(TEXT)
    driver.find_element(By.ID, "try-button").click()
    message = wait_for(
        driver,
        lambda d: (
            (m := d.find_element(By.ID, "try-message").text).startswith(("Spoke", "Could")) and m
        ),
        "the end of try it",
    )
    assert message.startswith("Spoke"), message
    figures = driver.find_element(By.ID, "try-figures")
    received = float(figures.get_attribute("data-received-seconds"))
    scheduled = float(figures.get_attribute("data-scheduled-seconds"))
    assert received >= MIN_AUDIO_SECONDS and scheduled >= MIN_AUDIO_SECONDS, (received, scheduled)
    assert driver.find_element(By.ID, "fig-first").text.endswith(" ms")
    assert float(driver.find_element(By.ID, "fig-rtf").text) > 0
    requests = "//dl[@id='status']//dt[.='Requests']/following-sibling::dd"
    wait_for(
        driver,
        lambda d: (
            d.find_elements(By.XPATH, requests) and d.find_element(By.XPATH, requests).text == "1"
        ),
        "the request in the status",
    )
    assert "yes" in driver.find_element(By.CSS_SELECTOR, row).text  # joe is loaded
    # The audio clock ran through what was scheduled: it played, not just queued.
    wait_for(
        driver,
        lambda d: float(figures.get_attribute("data-played-seconds")) >= scheduled - 0.05,
        "the scheduled audio played to its end",
    )
    screenshot = tmp_path / "web-page.png"
    driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if target := os.environ.get("WEB_SCREENSHOT"):
        shutil.copyfile(screenshot, target)

    # Upload the fixture voice; it appears at describe, then delete it.
    name = TINY_SINGLE.name
    driver.find_element(By.ID, "upload-onnx").send_keys(str(TINY_SINGLE.with_suffix(".onnx")))
    driver.find_element(By.ID, "upload-config").send_keys(
        str(TINY_SINGLE.with_suffix(".onnx.json"))
    )
    driver.find_element(By.ID, "upload-button").click()
    uploaded = f'#voices tr[data-voice="{name}"]'
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, uploaded), "the uploaded voice")
    assert driver.find_element(By.ID, "upload-message").text.startswith(f"Added {name}")
    assert name in voice_names(web)
    driver.find_element(By.CSS_SELECTOR, f'{uploaded} button[aria-label="Delete {name}"]').click()
    wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, uploaded), "the deletion")
    assert name not in voice_names(web)

    # A bad upload: a clear message, nothing added.
    garbage = tmp_path / "broken.onnx"
    garbage.write_bytes(b"this is not an onnx model" * 40)
    driver.find_element(By.ID, "upload-onnx").send_keys(str(garbage))
    driver.find_element(By.ID, "upload-config").send_keys(
        str(TINY_SINGLE.with_suffix(".onnx.json"))
    )
    driver.find_element(By.ID, "upload-button").click()
    error = wait_for(
        driver,
        lambda d: (
            (e := d.find_element(By.ID, "upload-message")).text.startswith("Upload refused") and e
        ),
        "the upload error",
    )
    assert "not an ONNX file" in error.text
    assert error.get_attribute("class") == "error"
    assert "broken" not in voice_names(web)
