"""The dashboard in a real Chromium (Debian's chromium and chromium-driver) driven by
Selenium, against a real ``qtasks web`` process and a real ``qtasks worker`` process on
a Redis server of the suite's.

A screenshot of each page goes to ``tests/web/artifacts/`` (git-ignored), to look at.
Without Chromium these tests are skipped, saying so, except in CI, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qtasks_core import QueueTasks
from tests.support import free_port, pythonpath, wait_for

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
TOKEN = "browser-test-token"


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = "Chromium and chromedriver are needed: apt-get install chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (.ci/run installs them)")
    pytest.skip(message)


class Processes:
    """The dashboard and the worker of one app, as a user runs them."""

    def __init__(self, redis_url: str, name: str) -> None:
        self.env = {
            **os.environ,
            "QTASKS_REDIS_URL": redis_url,
            "QTASKS_TEST_APP": name,
            "QTASKS_WEB_TOKEN": TOKEN,
            "PYTHONPATH": pythonpath(HERE),
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.web = self._qtasks("web", "--port", str(self.port), "--log-level", "warning")
        self.worker = self.start_worker()
        wait_for(self._answers, 30, "the dashboard to answer")

    def _qtasks(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "qtasks_core", args[0], "-A", "webapps.dash:app", *args[1:]],
            env=self.env,
            cwd=HERE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_worker(self) -> subprocess.Popen[bytes]:
        # A short lease and one attempt: a task that kills its worker is set aside as
        # soon as the next worker claims (the dead-letter test).
        return self._qtasks(
            "worker", "-c", "4", "--lease", "1", "--max-attempts", "1", "--log-level", "warning"
        )

    def _answers(self) -> bool:
        assert self.web.poll() is None, "qtasks web exited"
        try:
            with urllib.request.urlopen(f"{self.url}/login", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        for process in (self.worker, self.web):
            if process.poll() is None:
                process.terminate()
        for process in (self.worker, self.web):
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def live(redis_server: Any) -> Iterator[tuple[Processes, QueueTasks]]:
    name = f"web-browser-{os.getpid()}"
    processes = Processes(redis_server.url, name)
    producer = QueueTasks(name, redis_url=redis_server.url, load_entry_points=False)
    yield processes, producer
    processes.stop()
    producer.stop()


def submit(driver: Any, selector: str) -> None:
    """Click the form button at ``selector`` and wait for the page it leads to (the old
    page's elements go stale: reading them in between would race the navigation)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    for _ in range(5):
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            break
        except StaleElementReferenceException:
            continue  # htmx swapped the live fragment under the click: find it again
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(page))


def log_in(driver: Any, url: str, token: str = TOKEN) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/")
    assert "/login" in driver.current_url
    driver.find_element(By.NAME, "token").send_keys(token)
    submit(driver, "form button[type=submit]")


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def number(driver: Any, selector: str) -> int:
    # Read in one script: htmx replaces the element every 2 s, so a found element can
    # go stale before its text is read.
    return int(driver.execute_script(f"return document.querySelector('{selector}').textContent"))


def test_the_token_page_refuses_a_wrong_token(browser, live) -> None:
    from selenium.webdriver.common.by import By

    processes, _ = live
    browser.delete_all_cookies()
    log_in(browser, processes.url, token="not-the-token")
    refusal = browser.find_element(By.ID, "wrong-token")
    assert "Wrong token" in refusal.text
    shot(browser, "login-wrong-token")
    browser.get(f"{processes.url}/")
    assert "/login" in browser.current_url  # still not let in
    log_in(browser, processes.url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"


def test_the_overview_counts_tasks_as_they_complete_without_a_reload(browser, live) -> None:
    processes, producer = live
    browser.get(f"{processes.url}/")
    if "/login" in browser.current_url:
        log_in(browser, processes.url)
    # A page that reloaded would lose this.
    browser.execute_script("window.qtasksMarker = 'same page'")
    before = number(browser, '[data-count="success"]')
    tasks = [producer.add_task("slow", 0.4) for _ in range(12)]
    seen = {before}

    def counted() -> bool:
        seen.add(number(browser, '[data-count="success"]'))
        return max(seen) >= before + len(tasks)

    wait_for(counted, 30, "the overview to count the finished tasks")
    assert len(seen) >= 2  # it moved while we watched
    assert browser.execute_script("return window.qtasksMarker") == "same page"
    failed = producer.add_task("boom")
    producer.add_schedule("nightly-report", "add", cron="0 3 * * *", args=(1, 2))
    time.sleep(2.5)  # one more poll: the chart's last bars
    shot(browser, "overview")
    for page in ("workers", "tasks", "schedules"):
        browser.get(f"{processes.url}/{page}")
        shot(browser, page)
    browser.get(f"{processes.url}/task?uuid={tasks[0].uuid}")
    shot(browser, "task")
    producer.wait(failed.uuid, timeout=20)
    browser.get(f"{processes.url}/task?uuid={failed.uuid}")
    shot(browser, "task-failed")


def test_requeueing_a_dead_letter_with_its_button_runs_it(browser, live) -> None:
    from selenium.webdriver.common.by import By

    processes, producer = live
    browser.get(f"{processes.url}/dead")
    if "/login" in browser.current_url:
        log_in(browser, processes.url)
        browser.get(f"{processes.url}/dead")
    key = f"{producer.name}:crashed"
    task = producer.add_task("crash_once", key)
    # Its first delivery kills the worker, and the next, running it alone past the
    # lease, dies too: the third worker sets it aside.
    for _ in range(2):
        processes.worker.wait(timeout=30)
        processes.worker = processes.start_worker()
    row = f'tr[data-dead="{task.uuid}"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, row), 30, "the dead letter to show up")
    shot(browser, "dead-letters")
    submit(browser, f'{row} button[data-action="requeue"]')
    notice = browser.find_element(By.CSS_SELECTOR, ".notice.ok")
    assert "queued again" in notice.text
    done = producer.wait(task.uuid, timeout=30)
    assert done.status == "success" and done.returning == "survived"
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, row), 10, "the row to go away")


def test_a_workflow_page_follows_its_steps_without_a_reload(browser, live) -> None:
    from selenium.webdriver.common.by import By

    from qtasks_core import chain, group

    processes, producer = live
    browser.get(f"{processes.url}/workflows")
    if "/login" in browser.current_url:
        log_in(browser, processes.url)
    slow = producer.signature("slow", (0.3,))
    # The last step gets the group's list as its first argument and fails on it: the
    # page then shows the failed member and its traceback as well.
    flow = producer.start_workflow(
        chain(
            slow,
            group(producer.signature("slow"), producer.signature("slow")),
            producer.signature("add", (1,)),
        ),
        name="nightly-report",
    )
    browser.get(f"{processes.url}/workflows/{flow.uuid}")
    browser.execute_script("window.qtasksMarker = 'same page'")

    def status(path: str) -> str:
        return str(
            browser.execute_script(
                f"var n = document.querySelector('li[data-node=\"{path}\"] .status');"
                "return n ? n.textContent : ''"
            )
        )

    wait_for(lambda: status("r.2") == "error", 20, "the page to show the last step's end")
    assert status("r.0") == status("r.1.0") == status("r.1.1") == "success"
    assert browser.execute_script("return window.qtasksMarker") == "same page"
    shot(browser, "workflow")
    browser.get(f"{processes.url}/task?uuid={flow.uuid}:r.2")
    assert "part of workflow" in browser.find_element(By.CLASS_NAME, "part-of").text
    shot(browser, "workflow-member")
    browser.get(f"{processes.url}/workflows")
    shot(browser, "workflows")


def _signed_in(driver: Any, url: str, path: str) -> None:
    driver.get(f"{url}{path}")
    if "/login" in driver.current_url:
        log_in(driver, url)
        driver.get(f"{url}{path}")


def test_a_failed_tasks_page_shows_the_users_frame_and_folds_qtasks(browser, live) -> None:
    from selenium.webdriver.common.by import By

    processes, producer = live
    failed = producer.add_task("boom")
    producer.wait(failed.uuid, timeout=20)
    _signed_in(browser, processes.url, f"/task?uuid={failed.uuid}")
    heading = browser.find_element(By.CSS_SELECTOR, "[data-failure] h2").text
    assert heading == "ValueError: a failure for the task page"
    folds = browser.find_elements(By.CSS_SELECTOR, "details.own-frames")
    assert folds and all(fold.get_attribute("open") is None for fold in folds)
    assert all(
        not f.is_displayed() for f in browser.find_elements(By.CSS_SELECTOR, ".own-frames pre")
    )
    assert "QTasks frame" in folds[0].find_element(By.TAG_NAME, "summary").text
    innermost = browser.find_element(By.CSS_SELECTOR, "pre.frame.innermost")
    assert "in boom" in innermost.text and "dash.py" in innermost.text
    # The user's frame and the exception line are in view without scrolling.
    for selector in ("pre.frame.innermost", "pre.tb-exception"):
        bottom = browser.execute_script(
            f"return document.querySelector('{selector}').getBoundingClientRect().bottom"
        )
        assert 0 < bottom <= browser.execute_script("return window.innerHeight"), selector
    shot(browser, "task-failed-folded")
    folds[0].find_element(By.TAG_NAME, "summary").click()
    assert any(f.is_displayed() for f in folds[0].find_elements(By.CSS_SELECTOR, "pre.frame"))
    shot(browser, "task-failed-unfolded")


def test_a_task_page_lists_every_attempt(browser, live) -> None:
    from selenium.webdriver.common.by import By

    processes, producer = live
    task = producer.add_task("flaky", f"flaky-{time.monotonic_ns()}")
    assert producer.wait(task.uuid, timeout=30).status == "success"
    _signed_in(browser, processes.url, f"/task?uuid={task.uuid}")
    rows = browser.find_elements(By.CSS_SELECTOR, "[data-attempts] tr[data-attempt]")
    texts = [row.text for row in rows]
    assert [row.get_attribute("data-attempt") for row in rows] == ["1", "2", "3"]
    assert "attempt 1: the service refused" in texts[0] and "waited" in texts[0]
    assert "attempt 2: the service refused" in texts[1]
    assert "success" in texts[2]
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-failure]")
    browser.execute_script("document.querySelector('[data-attempts]').scrollIntoView()")
    shot(browser, "task-attempts")


def test_the_search_box_finds_a_task_by_its_arguments(browser, live) -> None:
    from selenium.webdriver.common.by import By

    processes, producer = live
    wanted = producer.add_task("add", 4242, 1)
    producer.add_task("add", 1, 1)
    producer.wait(wanted.uuid, timeout=20)
    _signed_in(browser, processes.url, "/tasks")
    box = browser.find_element(By.NAME, "search")
    box.send_keys("4242")
    submit(browser, "form.filters button[type=submit]")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-task]")
    assert [r.get_attribute("data-task") for r in rows] == [wanted.uuid]
    note = browser.find_element(By.CSS_SELECTOR, ".search-note").text
    assert note.startswith("1 match for “4242” in") and "records searched" in note
    shot(browser, "tasks-search")


def test_retry_all_failed_asks_with_its_count_then_says_what_it_did(browser, live) -> None:
    from selenium.webdriver.common.by import By

    processes, producer = live
    # The failures of earlier tests count too: the page counts them all.
    for task in [producer.add_task("boom") for _ in range(3)]:
        producer.wait(task.uuid, timeout=20)
    expected = len(_all_failed(producer))
    _signed_in(browser, processes.url, "/tasks?status=error&task_name=boom")
    submit(browser, 'a[data-bulk-link="retry-failed"]')
    counted = browser.find_element(By.CSS_SELECTOR, "[data-bulk-count]")
    assert int(counted.get_attribute("data-bulk-count")) == expected >= 3
    assert (
        f"Retry {expected} failed tasks"
        in browser.find_element(By.CSS_SELECTOR, 'button[data-action="bulk"]').text
    )
    shot(browser, "bulk-retry-confirm")
    submit(browser, 'button[data-action="bulk"]')
    notice = browser.find_element(By.CSS_SELECTOR, ".notice.ok").text
    assert notice == (
        f"Retry all failed of task boom: {expected} sent again as new tasks, 0 skipped."
    )
    shot(browser, "bulk-retry-done")


def _all_failed(producer: QueueTasks) -> list[str]:
    found: list[str] = []
    before = None
    while True:
        page = producer.list_tasks(status="error", task_name="boom", before=before, limit=1000)
        found += [t.uuid for t in page.tasks]
        if page.next is None:
            return found
        before = page.next
