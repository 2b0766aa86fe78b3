"""The status page in a real browser: headless Chromium (Debian's) driven by selenium.

An operator (SciCat's `admin`, in the dev stack's operator groups) logs in, watches
an archive job of three datasets run on the job's page, its percent advancing to
100 and its final state, and finds it at 100% on the jobs page. A SciCat user who
is no operator is refused; a visitor who is not logged in lands on the login form.

`UPDATE_SCREENSHOT=1` (`make screenshots`) also saves the jobs page and the job's page
as docs/status-page.png and docs/status-page-job.png.
"""

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.browser import chromium
from tests.e2e.conftest import running_stack
from tests.e2e.datasets import pattern, write_folder
from tests.e2e.outcomes import packing_outcome
from tests.e2e.stack_clients import StackClients
from tests.e2e.uploads import ingest_folder

DOCS = Path(__file__).parents[2] / "docs"
FINAL = ("finishedSuccessful", "finishedWithDatasetErrors", "finishedUnsuccessful")
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClients]:
    with running_stack(tmp_path_factory, "status-page-stack", "posix") as clients:
        yield clients


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def status_url(stack: StackClients) -> str:
    return stack.description["status_page"]["url"]


def log_in(browser: WebDriver, stack: StackClients, role: str) -> None:
    """Fill in the login form as a person would, with the SciCat account of `role`."""
    account = stack.description["scicat"]["users"][role]
    browser.get(f"{status_url(stack)}/login")
    browser.find_element(By.ID, "username").send_keys(account["username"])
    browser.find_element(By.ID, "password").send_keys(account["password"])
    button = browser.find_element(By.ID, "login")
    button.click()
    # A click returns before the answer's page replaced the form: wait until it did.
    WebDriverWait(browser, 30).until(lambda _: replaced(button))


def replaced(element: WebElement) -> bool:
    """The element's document was replaced. chromedriver says so with a stale-element error,
    or, mid-navigation, with "Node with given id does not belong to the document"."""
    try:
        element.is_enabled()
    except WebDriverException:  # StaleElementReferenceException among them
        return True
    return False


def job_state(browser: WebDriver) -> tuple[str, float]:
    """The job page's state and percent, as shown."""
    state = browser.find_element(By.ID, "job-state").text
    percent = browser.find_element(By.CSS_SELECTOR, "#job-percent .percent").text
    return state, float(percent.rstrip("%"))


def test_not_logged_in_the_status_page_shows_the_login_form(
    stack: StackClients, browser: WebDriver
) -> None:
    """A visitor without a session is sent to the login form."""
    browser.get(status_url(stack))

    assert browser.current_url == f"{status_url(stack)}/login"
    assert browser.find_element(By.ID, "password").get_attribute("type") == "password"


def test_a_scicat_user_who_is_no_operator_is_refused(
    stack: StackClients, browser: WebDriver
) -> None:
    """The ingestor account logs in to SciCat, but the page says it is no operator."""
    log_in(browser, stack, "ingestor")

    refusal = browser.find_element(By.ID, "refused").text
    assert "who is not an archiver operator" in refusal
    browser.get(status_url(stack))
    assert browser.current_url == f"{status_url(stack)}/login"


def test_an_operator_watches_a_job_advance_to_100_percent(
    stack: StackClients, browser: WebDriver, tmp_path: Path
) -> None:
    """Seen on the job page: percent never goes back, starts below 100, ends at 100 with the
    job finishedSuccessful; the jobs page then lists it at 100%."""
    pids = []
    for n, size in enumerate((1 * MiB, 2 * MiB, 3 * MiB)):
        folder = tmp_path / f"dataset{n}"
        write_folder(folder, {"data.bin": pattern(100 + n, size), "notes.txt": b"status page\n"})
        pids.append(ingest_folder(stack.http, stack.endpoints, folder))
    for pid in pids:
        packing_outcome(stack, pid)
    log_in(browser, stack, "admin")
    assert browser.current_url == status_url(stack)

    # The ltsmover waits until the page was seen once, so the job cannot be done before it
    # (on a quiet machine a job this small ends in ~50 ms, quicker than a page load).
    ltsmover = json.loads((stack.stack.state_dir / "stack.json").read_text())["pids"]["ltsmover"]
    os.kill(ltsmover, signal.SIGSTOP)
    try:
        job = stack.scicat.create_archive_job(pids)
        browser.get(f"{status_url(stack)}/jobs/{job['id']}")
        seen = [job_state(browser)]
    finally:
        os.kill(ltsmover, signal.SIGCONT)
    deadline = time.monotonic() + 90
    while seen[-1][0] not in FINAL and time.monotonic() < deadline:
        time.sleep(0.2)
        browser.refresh()
        seen.append(job_state(browser))

    percents = [percent for _, percent in seen]
    assert seen[0][1] < 100.0, seen
    assert percents == sorted(percents), seen
    assert seen[-1] == ("finishedSuccessful", 100.0), seen
    rows = browser.find_elements(By.CSS_SELECTOR, "table.datasets tbody tr")
    assert sorted(row.get_attribute("data-pid") for row in rows) == sorted(pids)
    if os.environ.get("UPDATE_SCREENSHOT"):
        browser.save_screenshot(str(DOCS / "status-page-job.png"))

    browser.get(status_url(stack))
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job["id"]}"]')
    assert "finishedSuccessful" in row.text
    assert row.find_element(By.CLASS_NAME, "percent").text == "100.0%"
    if os.environ.get("UPDATE_SCREENSHOT"):
        browser.save_screenshot(str(DOCS / "status-page.png"))
