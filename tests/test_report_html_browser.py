"""The static HTML leaderboard in headless Chromium (Debian's chromium + chromedriver,
installed by ``scripts/setup.sh --test``): the table and the highlighted best values are
visible, sorting works from disk with no server, and a screenshot is kept as an artefact
(``$TOKBENCH_TEST_ARTIFACTS``, default ``test-artifacts/``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from report_fixtures import golden_records
from tokbench.report.report import build_report, write_leaderboard

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (bash scripts/setup.sh --test as root)"
)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_leaderboard_renders_highlights_and_sorts(tmp_path, browser):
    from selenium.webdriver.common.by import By

    report = build_report(golden_records(), title="tokbench leaderboard: golden")
    page = write_leaderboard(report, tmp_path / "board", ["html"])["html"]
    browser.get(page.resolve().as_uri())

    table = browser.find_element(By.CSS_SELECTOR, "#table-reconstruction table.leaderboard")
    assert table.is_displayed()
    headers = [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert headers[:3] == ["Tokenizer", "rFID ↓", "PSNR (dB) ↑"]
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["bicubic f4 & co_1", "VAE tiny", "VTP tiny"]

    best = table.find_elements(By.CSS_SELECTOR, "td.best")
    assert best and all(cell.is_displayed() for cell in best)
    assert "152.99" in [cell.text for cell in best]  # lowest rFID
    weight = browser.execute_script("return getComputedStyle(arguments[0]).fontWeight", best[0])
    background = browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", best[0])
    assert int(weight) >= 700 and background not in ("rgba(0, 0, 0, 0)", "transparent")
    second = table.find_elements(By.CSS_SELECTOR, "td.second")
    assert second and all(cell.is_displayed() for cell in second)

    rfid_header = table.find_elements(By.CSS_SELECTOR, "thead th")[1]
    rfid_header.click()  # ascending: best rFID first
    assert table.find_element(By.CSS_SELECTOR, "tbody tr th").text == "bicubic f4 & co_1"
    rfid_header.click()  # descending
    assert table.find_element(By.CSS_SELECTOR, "tbody tr th").text == "VAE tiny"
    assert "hover" in browser.find_element(By.CSS_SELECTOR, "p.meta").text

    artifacts = Path(os.environ.get("TOKBENCH_TEST_ARTIFACTS", REPO / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "leaderboard.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
