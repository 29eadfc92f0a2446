"""The page in a real headless Chromium (Debian packages ``chromium`` and ``chromium-driver``).

Pastes nothing: it uploads a small catalogue, waits for the job, opens one object's p(z) plot
and cutouts, downloads the VOTable and reads it back with astropy; the screenshot is written
to the test's tmp folder (its path is printed).
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest
import requests

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs the Debian packages chromium and chromium-driver (apt-get install -y ...)",
)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1300", "--no-proxy-server"):  # fmt: skip
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})  # fmt: skip
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver, downloads
    finally:
        driver.quit()


def _until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_upload_watch_open_an_object_and_download_votable(service, browser, tmp_path):
    from astropy.table import Table
    from selenium.webdriver.common.by import By

    url, _ = service
    driver, downloads = browser
    rng = np.random.default_rng(5)
    catalog = pd.DataFrame({"id": [f"gal{i}" for i in range(8)], "ra": rng.uniform(0, 360, 8),
                            "dec": rng.uniform(-30, 60, 8)})  # fmt: skip
    path = tmp_path / "small.csv"
    catalog.to_csv(path, index=False)

    driver.get(url)
    assert driver.title.startswith("mantis")
    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "submit").click()
    _until(lambda: driver.find_element(By.ID, "phase").text in ("COMPLETED", "ERROR"))
    assert driver.find_element(By.ID, "phase").text == "COMPLETED", driver.find_element(
        By.ID, "error"
    ).text
    assert driver.find_element(By.ID, "counts").text.startswith("8 / 8")
    # the table is filled after the phase shows COMPLETED
    rows = _until(lambda: driver.find_elements(By.CSS_SELECTOR, "#results tbody tr"))
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == catalog["id"].tolist()

    rows[2].click()
    _until(lambda: driver.execute_script(
        "const i = document.getElementById('pz'), c = document.getElementById('cutouts');"
        "return i && c && i.complete && c.complete && i.naturalWidth > 0 && c.naturalWidth > 0;"
    ))  # fmt: skip
    assert driver.find_element(By.ID, "detail-title").text.startswith("gal2: z = ")
    png = requests.get(driver.find_element(By.ID, "pz").get_attribute("src"), timeout=30)
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"

    screenshot = tmp_path / "page.png"
    driver.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000

    driver.find_element(By.CSS_SELECTOR, "#downloads a[data-format=votable]").click()
    vot = _until(lambda: [p for p in downloads.iterdir() if p.suffix == ".vot"])[0]
    _until(lambda: vot.stat().st_size > 0 and not list(downloads.glob("*.crdownload")))
    table = Table.read(vot, format="votable")
    assert table["id"].tolist() == catalog["id"].tolist()
    assert table["valid"].all() and np.isfinite(table["z_median"]).all()
    assert table["density"].shape == (8, 400)


def test_pasted_positions_run_as_a_job(service, browser):
    from selenium.webdriver.common.by import By

    url, _ = service
    driver, _ = browser
    driver.get(url)
    driver.find_element(By.ID, "positions").send_keys("a1 150.1 2.2\n<b>x</b> 150.2 2.3\n")
    driver.find_element(By.ID, "submit").click()
    _until(lambda: driver.find_element(By.ID, "phase").text in ("COMPLETED", "ERROR"))
    rows = _until(lambda: driver.find_elements(By.CSS_SELECTOR, "#results tbody tr"))
    ids = [r.find_element(By.TAG_NAME, "td").text for r in rows]
    assert ids == ["a1", "<b>x</b>"]
    rows[1].click()  # an id from a file is shown as text, never run as HTML
    assert driver.find_element(By.ID, "detail-title").text.startswith("<b>x</b>: z = ")
    assert driver.find_elements(By.CSS_SELECTOR, "#detail b") == []
    driver.find_element(By.ID, "positions").clear()
    driver.find_element(By.ID, "positions").send_keys("150.1\n")
    driver.find_element(By.ID, "submit").click()
    _until(lambda: driver.find_element(By.ID, "error").text)
    assert "line 1 has 1 values" in driver.find_element(By.ID, "error").text
