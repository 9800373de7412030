"""A real browser on the service's page: Debian's headless Chromium driven through its chromedriver."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait


def chromium() -> webdriver.Chrome:
    for binary in ("chromium", "chromedriver"):
        if shutil.which(binary) is None:
            raise RuntimeError(f"{binary} not found: `make setup` installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(argument)  # --no-sandbox: tests run as root, where Chromium's sandbox refuses
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))


def upload_through_page(url: str, audio: Path, screenshot: Path | None = None, timeout_s: float = 120) -> dict:
    """Open the page, upload ``audio`` through its form, wait for the result: its captions and status line."""
    browser = chromium()
    try:
        browser.get(url)
        wait = WebDriverWait(browser, timeout_s)
        wait.until(lambda b: "gallery of" in b.find_element(By.ID, "info").text)
        browser.find_element(By.ID, "file").send_keys(str(audio))
        browser.find_element(By.ID, "send").click()
        wait.until(expected_conditions.visibility_of_element_located((By.ID, "result")))
        faces = browser.find_elements(By.CSS_SELECTOR, "#faces figure.result-face")
        loaded = browser.execute_script(
            "return [...document.querySelectorAll('#faces img')].filter(i => i.complete && i.naturalWidth > 0).length"
        )
        drawn_width = browser.execute_script(
            "const i = document.getElementById('drawn-face'); "
            "return document.getElementById('drawn').hidden || !i.complete ? 0 : i.naturalWidth"
        )
        if screenshot is not None:
            browser.save_screenshot(str(screenshot))
        return {"captions": [face.text for face in faces], "images_loaded": loaded, "drawn_face_width": drawn_width,
                "status": browser.find_element(By.ID, "status").text}  # fmt: skip
    finally:
        browser.quit()
