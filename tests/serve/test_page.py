"""The web page in a real browser (Debian's chromium, headless, driven by selenium): upload a file and see its
transcript word by word with the posteriorgram, play it with the word being heard highlighted, see a server error
in the error box, and record from the (fake) microphone. Skipped, saying why, where chromium or chromedriver is
not installed (scripts/test.sh installs both on Debian when it runs as root)."""
from __future__ import annotations

import importlib.util
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from serve_client import serving

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(
    not (CHROMEDRIVER and CHROMIUM and importlib.util.find_spec("selenium")),
    reason="the browser test needs chromium and chromedriver on PATH (Debian: apt-get install chromium "
           "chromium-driver) and selenium (the dev extra)")
WAIT = 30  # seconds, the most any step may take
ARGS = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required", "--window-size=1200,1000",
        "--disable-gpu", "--no-first-run"]


@pytest.fixture(scope="module")
def browser(deploy_run, tmp_path_factory):
    """(driver, base URL): chromium on the page of a server running the test model's ONNX export -- the whole
    chain a user follows: trained (deploy_run), exported (asr-export), served (asr-serve exported=...), used."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from asr.config import ServeConfig
    from asr.export import cli as export_cli
    from asr.inference.loading import load_engine
    from asr.serve.app import build_app

    onnx = tmp_path_factory.mktemp("page_model") / "model.onnx"
    export_cli.main({"checkpoint": str(deploy_run["run"]), "out": str(onnx)})
    cfg = ServeConfig(exported=str(onnx))
    with serving(build_app(load_engine(cfg), cfg)) as url:
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ARGS:
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        try:
            yield driver, url
        finally:
            driver.quit()


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, f"waited {WAIT} s for {what}")


def open_page(driver, url: str) -> None:
    from selenium.webdriver.common.by import By
    driver.get(f"{url}/")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#decoder option"), "the decoders from /health")


def state(driver) -> str:
    return driver.execute_script("return document.body.dataset.state")


def finished(driver) -> str:
    """Wait until the page is done transcribing (or shows an error); returns the final state."""
    wait(driver, lambda d: state(d) in ("done", "error"), "the transcript")
    return state(driver)


def test_upload_shows_words_posteriorgram_and_highlights_while_playing(browser, deploy_run):
    import matplotlib.image as mpimg
    from selenium.webdriver.common.by import By

    driver, url = browser
    utt = deploy_run["utts"][0]
    open_page(driver, url)
    driver.find_element(By.ID, "file").send_keys(str(utt.audio_filepath))
    assert finished(driver) == "done", driver.find_element(By.ID, "error").text
    words = [s.text for s in driver.find_elements(By.CSS_SELECTOR, "#transcript .word")]
    assert " ".join(words) == utt.text
    assert not driver.find_element(By.ID, "error").is_displayed()
    wait(driver, lambda d: d.execute_script(
        "const img = document.getElementById('posteriorgram'); return img.complete && img.naturalWidth > 0"),
        "the posteriorgram image")

    # Play (muted: headless has no speakers to spare); some word must light up while its time is playing.
    played = driver.execute_async_script(
        "const done = arguments[0], p = document.getElementById('player'); p.muted = true;"
        "p.play().then(() => done('playing'), (e) => done(String(e)));")
    assert played == "playing"
    active = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#transcript .word.active"),
                  "a highlighted word")
    assert active[0].text in words
    driver.execute_script("const p = document.getElementById('player'); p.pause(); p.currentTime = 0;")

    # The transcript is really drawn: dark text pixels on its light background in a screenshot.
    box = driver.execute_script(
        "const t = document.getElementById('transcript'); t.scrollIntoView({block: 'center'});"
        "const r = t.getBoundingClientRect(), s = window.devicePixelRatio;"
        "return [r.left * s, r.top * s, r.right * s, r.bottom * s];")
    time.sleep(0.2)  # let the scroll paint
    png = driver.get_screenshot_as_png()
    if os.environ.get("ASR_PAGE_SCREENSHOT"):  # keep it to look at (docs/serve_page.png comes from here)
        Path(os.environ["ASR_PAGE_SCREENSHOT"]).write_bytes(png)
    shot = mpimg.imread(io.BytesIO(png), format="png")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    luminance = shot[y0:y1, x0:x1, :3].mean(axis=2)
    assert luminance.size > 1000, box
    assert np.median(luminance) > 0.8  # a light background ...
    assert 0.003 < (luminance < 0.35).mean() < 0.5  # ... with dark text on it


def test_a_server_error_shows_in_the_error_box(browser, tmp_path):
    from selenium.webdriver.common.by import By

    driver, url = browser
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not audio\n" * 20)
    open_page(driver, url)
    driver.find_element(By.ID, "file").send_keys(str(bad))
    assert finished(driver) == "error"
    box = driver.find_element(By.ID, "error")
    assert box.is_displayed() and "cannot decode notes.txt" in box.text


def test_recording_from_the_microphone_is_uploaded_and_transcribed(browser):
    from selenium.webdriver.common.by import By

    driver, url = browser
    open_page(driver, url)
    driver.find_element(By.ID, "record").click()
    wait(driver, lambda d: state(d) in ("recording", "error"), "the recording to start")
    assert state(driver) == "recording", driver.find_element(By.ID, "error").text
    time.sleep(1.5)
    driver.find_element(By.ID, "record").click()
    # The fake microphone plays a beep: any transcript (maybe none) will do, but no error.
    assert finished(driver) == "done", driver.find_element(By.ID, "error").text
    assert not driver.find_element(By.ID, "error").is_displayed()
    assert driver.find_element(By.ID, "result").is_displayed()
    assert driver.find_element(By.ID, "result-name").text.startswith("recording-")
    meta = driver.find_element(By.ID, "meta").text
    seconds = float(meta.split(" s ")[0])
    assert 1.0 < seconds < 5.0, meta  # about the 1.5 s recorded
