"""The search page in a real browser (Debian's chromium and chromedriver, headless) against a real server
started by ``deephash serve``: upload a query, read the results, switch to category mode, take a screenshot.
Set DEEPHASH_UPDATE_SCREENSHOT=1 to write docs/serve.png (and docs/serve-phone.png)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deephash.retrieval import open_index

CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (Path(CHROMEDRIVER).exists() and shutil.which("chromium")),
                                reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")


@pytest.fixture
def server(served_indexes):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    env.pop("DEEPHASH_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "deephash", "serve", str(served_indexes["iah"]), "--port", str(port),
                             "--token", "t0ken"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("the server exited: " + proc.stdout.read())
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def unique_query(index_dir):
    """An indexed image whose code no other image shares, so its own copy must rank first at distance 0."""
    idx = open_index(index_dir)
    codes, ids = idx.codes, idx.ids
    for n, i in enumerate(ids):
        if (codes == codes[n]).all(1).sum() == 1:
            return int(i), Path(idx.get_metadata([i])[0]["path"])
    pytest.skip("every code of this tiny index is shared")


def test_page_searches_by_upload_and_shows_categories(server, browser, served_indexes, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    own, path = unique_query(served_indexes["iah"])
    wait = WebDriverWait(browser, 60)
    browser.get(server)
    wait.until(lambda d: "24 images" in d.find_element(By.ID, "info").text)
    file_input = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].hidden = false", file_input)
    file_input.send_keys(str(path))
    browser.execute_script("arguments[0].hidden = true", file_input)
    wait.until(lambda d: d.find_element(By.ID, "status").text.endswith("results (semantic)"))
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert len(cards) == 12
    assert cards[0].get_attribute("data-id") == str(own) and cards[0].get_attribute("data-distance") == "0"
    assert "d=0" in cards[0].text
    wait.until(lambda d: d.execute_script(  # thumbnails loaded
        "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"))

    Select(browser.find_element(By.ID, "mode")).select_by_value("category")
    wait.until(lambda d: d.find_element(By.ID, "status").text.endswith("results (category)"))
    groups = browser.find_elements(By.CSS_SELECTOR, "#results .group[data-category]")
    assert groups and all(g.find_elements(By.CSS_SELECTOR, ".card") for g in groups)
    assert browser.find_elements(By.CSS_SELECTOR, ".group-head .box")            # the query's box
    assert len(browser.find_elements(By.CSS_SELECTOR, ".card .box")) == len(
        browser.find_elements(By.CSS_SELECTOR, ".group .card"))                  # one box per result
    browser.find_element(By.CSS_SELECTOR, "#admin summary").click()
    assert not browser.find_element(By.ID, "add-form").is_displayed()
    browser.find_element(By.ID, "token").send_keys("t0ken")
    assert browser.find_element(By.ID, "add-form").is_displayed()                # the add form, once a token is typed
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"))
    shots = [tmp_path / "serve.png"]
    browser.save_screenshot(str(shots[0]))

    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",                 # a phone
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    assert browser.execute_script("return window.innerWidth") == 390
    assert browser.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    browser.save_screenshot(str(tmp_path / "serve-phone.png"))
    first = browser.find_element(By.CSS_SELECTOR, "#results .card")
    clicked = first.get_attribute("data-id")
    first.click()                                                                 # search by a result
    wait.until(lambda d: d.find_element(By.ID, "query-img").get_attribute("src").endswith(
        f"/v1/items/{clicked}/thumbnail?size=256"))
    wait.until(lambda d: d.find_element(By.ID, "status").text.endswith("results (category)"))
    if os.environ.get("DEEPHASH_UPDATE_SCREENSHOT"):
        shutil.copy(tmp_path / "serve.png", ROOT / "docs" / "serve.png")
        shutil.copy(tmp_path / "serve-phone.png", ROOT / "docs" / "serve-phone.png")
    assert shots[0].stat().st_size > 10_000
