"""Console in a real browser (system Chromium + chromedriver): log in, see the live view update,
wrong PIN refused and rate-limited."""

import socket
import threading

import cv2
import numpy as np
import pytest
import uvicorn
from conftest import wait_for
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from shaobing.agent.console.app import ConsoleState, build_app
from shaobing.agent.console.auth import LoginLimiter, hash_pin
from shaobing.agent.console.frames import AnnotatedFrame, LatestFrames


def _jpeg(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture
def served(tmp_path):
    frames = LatestFrames()
    frames.put("cam1", AnnotatedFrame(jpeg=_jpeg(64, 48)))
    state = ConsoleState(
        pin_hash=hash_pin("2468"),
        status=lambda: {"broker": "connected"},
        frames=frames,
        audit=lambda kind, data: None,
        limiter=LoginLimiter(attempts=3),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(state), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="uvicorn started")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", frames
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


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
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    options.add_argument("--window-size=360,800")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _login(browser, url: str, pin: str) -> None:
    browser.get(url + "/login")
    browser.find_element(By.ID, "pin").send_keys(pin)
    browser.find_element(By.ID, "login").click()


def test_login_and_live_view_updates(served, browser):
    url, frames = served
    _login(browser, url, "2468")
    wait_for(lambda: "broker" in browser.find_element(By.ID, "status").text, 60, "status")
    img = browser.find_element(By.CSS_SELECTOR, "img.live")
    wait_for(lambda: img.get_property("naturalWidth") == 64, 60, "first frame")
    frames.put("cam1", AnnotatedFrame(jpeg=_jpeg(80, 60)))
    wait_for(lambda: img.get_property("naturalWidth") == 80, 60, "live view updated")


def test_wrong_pin_refused_and_rate_limited(served, browser):
    url, _ = served
    for _ in range(3):
        _login(browser, url, "0000")
        assert browser.current_url.endswith("/login?e=pin")
    _login(browser, url, "2468")
    assert browser.current_url.endswith("/login?e=rate")
