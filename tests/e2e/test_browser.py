"""In a real browser: headless Chromium opens an app page with
`{% cq_progress task %}` served by Daphne, while a real worker runs the task;
the bar reaches 100 % and the status reads Success without a reload.
Screenshots of each page go to test-artifacts/ (CQ_TEST_ARTIFACTS)."""

import pytest
from django.core.cache import cache
from django.db import connection

from cq.models import WorkerHeartbeat
from tests.app import tasks
from tests.browser import CHROMEDRIVER, CHROMIUM, DaphneServer, chromium, log_in, screenshot
from tests.helpers import wait_until
from tests.live import make_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.heavy,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="no chromium/chromedriver: apt-get install chromium chromium-driver (.ci/run does)",
    ),
]


@pytest.fixture
def server(transactional_db):
    daphne = DaphneServer()
    yield daphne
    daphne.stop()


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def text_of(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector).text


def test_progress_bar_reaches_100_and_success_without_a_reload(start_worker, server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    start_worker()
    wait_until(lambda: WorkerHeartbeat.objects.exists(), timeout=60, message="worker up")
    flag = f"go-{connection.settings_dict['NAME']}"
    task = tasks.count_up.delay(5, 0.5, flag)
    log_in(browser, server, make_user("operator", True, "view_task"))
    browser.get(f"{server.url}/live/{task.pk}/")
    browser.execute_script("window.cqSamePage = 42")
    # The page was rendered before the task started: it must move by itself.
    assert text_of(browser, ".cq-progress-percent") == "0 %"
    cache.set(flag, True, 60)

    wait = WebDriverWait(browser, 60, poll_frequency=0.05)
    wait.until(lambda d: text_of(d, ".cq-progress-message").startswith("step 3"))
    screenshot(browser, "task-page-running")
    wait.until(lambda d: text_of(d, ".cq-progress-status") == "Success")
    bar = browser.find_element(By.CSS_SELECTOR, ".cq-progress-bar")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert text_of(browser, ".cq-progress-percent") == "100 %"
    lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, ".cq-progress-log li")]
    assert [line.split(" ", 1)[1] for line in lines] == [f"step {n}" for n in range(1, 6)]
    assert browser.execute_script("return window.cqSamePage") == 42, "the page was reloaded"
    screenshot(browser, "task-page-done")


def fits_the_window(driver):
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_admin_console_reads_at_1280_px_and_the_dashboard_updates_live(
    start_worker, server, browser
):
    from django.contrib.auth.models import User
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    start_worker("--concurrency", "2")
    wait_until(lambda: WorkerHeartbeat.objects.exists(), timeout=60, message="worker up")
    parent = tasks.spawn_one_failing.delay()
    parent.wait(60, raise_on_timeout=True)
    tasks.add.delay(1, 2).wait(30, raise_on_timeout=True)
    log_in(browser, server, User.objects.create_superuser("admin", password="pw"))
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)

    browser.get(f"{server.url}/admin/cq/task/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 2, "top-level tasks only"
    assert fits_the_window(browser), "the task list scrolls sideways at 1280 px"
    screenshot(browser, "admin-task-list")

    browser.get(f"{server.url}/admin/cq/task/{parent.pk}/change/")
    tree = browser.find_element(By.CSS_SELECTOR, ".cq-tree").text
    assert "tests.app.tasks.fail" in tree and "ValueError: child failed" in tree
    assert fits_the_window(browser), "the task page scrolls sideways at 1280 px"
    screenshot(browser, "admin-task-tree")

    flag = f"go-{connection.settings_dict['NAME']}"
    running = tasks.count_up.delay(2, 0.2, flag)
    browser.get(f"{server.url}/admin/cq/task/dashboard/")
    browser.execute_script("window.cqSamePage = 42")
    succeeded = int(browser.find_element(By.ID, "cq-dash-succeeded").text)
    wait.until(
        lambda d: "tests.app.tasks.count_up" in d.find_element(By.ID, "cq-dash-workers").text
    )
    screenshot(browser, "admin-dashboard")
    cache.set(flag, True, 60)
    running.wait(30, raise_on_timeout=True)
    wait.until(lambda d: int(d.find_element(By.ID, "cq-dash-succeeded").text) == succeeded + 1)
    assert browser.execute_script("return window.cqSamePage") == 42, "the page was reloaded"
    assert fits_the_window(browser)
