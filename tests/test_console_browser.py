"""The console in a real browser (Debian's Chromium + chromedriver) on a real simulated post:
log in, live view, draw a zone and save it, a person crossing it raises
``alarm.intrusion``, walk test, self-test, disarm, language switch, wrong PIN.

Screenshots of each screen at phone and laptop widths go to $SHAOBING_SCREENSHOTS
when set (docs/console.md shows them), else to the test's temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import wait_for
from console_support import PIN, start_post
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

WIDTHS = {"phone": (360, 780), "laptop": (1280, 900)}


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--lang=zh-CN",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    options.add_argument("--window-size=360,780")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _shots(browser, out: Path, name: str) -> None:
    for width_name, (w, h) in WIDTHS.items():
        browser.set_window_size(w, h)
        browser.save_screenshot(str(out / f"{name}-{width_name}.png"))
    browser.set_window_size(*WIDTHS["phone"])


def _login(browser, url: str, pin: str) -> None:
    browser.get(url + "/login")
    browser.find_element(By.ID, "pin").send_keys(pin)
    browser.find_element(By.ID, "login").click()


def _text(browser, css: str) -> str:
    # The page re-renders parts every second: an element found may be replaced before it is read.
    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def test_commission_a_post_from_the_page(tmp_path, mosquitto, county_factory, browser):
    out = Path(os.environ.get("SHAOBING_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    county = county_factory(mosquitto.port)
    post, url, path = start_post(tmp_path, mosquitto.port)
    try:
        _login(browser, url, "000000")
        wait_for(lambda: browser.current_url.endswith("/login?e=pin"), 20, "PIN refused")
        assert _text(browser, "#error") == "PIN 码错误"
        _shots(browser, out, "login")
        _login(browser, url, PIN)
        wait_for(lambda: _text(browser, "#link") == "已连接", 60, "broker link shown")
        _shots(browser, out, "status")

        # Draw the crossing zone on the live picture and save it.
        browser.find_element(By.ID, "tab-cameras").click()
        img = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "img.live"), 30, "camera")[0]
        wait_for(lambda: img.get_property("naturalWidth") > 0, 60, "first live frame")
        first = img.get_attribute("src")
        wait_for(lambda: img.get_attribute("src") != first, 60, "live view refreshed")
        Select(browser.find_element(By.CSS_SELECTOR, "select.zone-pick")).select_by_value(
            "crossing"
        )
        browser.find_element(By.CSS_SELECTOR, "button.new-zone").click()
        canvas = browser.find_element(By.CSS_SELECTOR, "canvas.editor")
        w, h = canvas.size["width"], canvas.size["height"]
        for fx, fy in ((0.05, 0.05), (0.95, 0.05), (0.95, 0.95), (0.05, 0.95)):
            ActionChains(browser).move_to_element_with_offset(
                canvas, int((fx - 0.5) * w), int((fy - 0.5) * h)
            ).click().perform()
        browser.find_element(By.CSS_SELECTOR, ".labels input[value=person]").click()
        browser.find_element(By.CSS_SELECTOR, "button.save-zones").click()
        wait_for(lambda: _text(browser, ".save-result").startswith("已保存"), 30, "zone saved")
        _shots(browser, out, "zones")
        assert county.wait_for(lambda m: county.events("alarm.intrusion"), 60)
        assert county.events("alarm.intrusion")[0]["zone"]["id"] == "crossing"
        saved = path.read_text(encoding="utf-8")
        assert "crossing" in saved and "person" in saved

        # Walk test: the panic button lights up, the rest are listed as not seen.
        browser.find_element(By.ID, "tab-walk").click()
        wait_for(lambda: _click(browser, "#walk-start"), 20, "walk started")
        wait_for(lambda: browser.find_elements(By.ID, "walk-finish"), 20, "walk running")
        post.wiring.press("panic-1")
        panic = "li.walk-item[data-source='panic-1']"
        wait_for(lambda: "seen" in (_el_class(browser, panic) or "").split(), 30, "panic lit")
        _shots(browser, out, "walk")
        wait_for(lambda: _click(browser, "#walk-finish"), 20, "walk finished")
        wait_for(lambda: _text(browser, "#walk-summary"), 20, "walk summary")
        wait_for(lambda: "未收到" in _text(browser, "#walk-missing"), 20, "sensors not seen listed")

        # Self-test: the table, with the broker check passed.
        browser.find_element(By.ID, "tab-selftest").click()
        browser.find_element(By.ID, "selftest-run").click()
        wait_for(lambda: "broker" in _text(browser, "#selftest-table"), 60, "self-test table")
        assert "broker" in _text(browser, "#selftest-table tr.pass:last-child")
        _shots(browser, out, "selftest")

        # Disarm the crossing for maintenance, then read the page in English.
        browser.find_element(By.ID, "tab-status").click()
        wait_for(lambda: _click(browser, "#arm-crossing"), 20, "disarm pressed")
        zone_state = ".zone-state[data-zone='crossing']"
        wait_for(lambda: _text(browser, zone_state) == "撤防", 20, "disarmed")
        browser.find_element(By.ID, "lang-en").click()
        wait_for(lambda: _text(browser, "#tab-walk") == "Walk test", 20, "English page")

        # Wrong PINs are refused, then the client is held off (console.max_attempts: 5),
        # even with the right PIN.
        for _ in range(5):
            _login(browser, url, "000000")
            wait_for(lambda: browser.current_url.endswith("/login?e=pin"), 20, "PIN refused")
        _login(browser, url, PIN)
        wait_for(lambda: browser.current_url.endswith("/login?e=rate"), 20, "client held off")
        wait_for(lambda: _text(browser, "#error") == "Too many attempts, try later", 20, "why")
    finally:
        post.stop()
    assert any(e["data"]["by"] == "console" for e in county.events("status.arming"))


def _click(browser, css: str) -> bool:
    """Click what ``css`` finds now; False (try again) if it is not there or was re-rendered."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        if not found:
            return False
        found[0].click()
        return True
    except StaleElementReferenceException:
        return False


def _el_class(browser, css: str) -> str | None:
    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        return found[0].get_attribute("class") if found else None
    except StaleElementReferenceException:
        return None
