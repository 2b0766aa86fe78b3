"""Headless Chromium from Debian's packages (`chromium`, `chromium-driver`), driven by selenium.

`make browser` (run by .ci/run) installs the two packages where they are missing.
Selenium is pointed at the Debian binaries and kept offline: it never downloads a
browser or a driver of its own.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def chromium_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return (
            f"{' and '.join(missing)} not installed: run `make browser`"
            " (apt-get install chromium chromium-driver)"
        )
    return None


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium with a throw-away profile; skips the test if it is not installed."""
    reason = chromium_missing()
    if reason is not None:
        pytest.skip(reason)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager: never download anything

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
