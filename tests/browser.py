"""The browser tests' pieces: a Daphne server on the test database and a
headless Chromium (the system's, from Debian's `chromium` and
`chromium-driver`, which .ci/run installs) driven by Selenium."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

from tests.faults import free_port
from tests.helpers import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# Screenshots go here (CI keeps the directory as the run's artifacts).
ARTIFACTS = Path(os.environ.get("CQ_TEST_ARTIFACTS", ROOT / "test-artifacts"))


class DaphneServer:
    """`daphne tests.live_asgi:application` on a free port of 127.0.0.1."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ARTIFACTS / f"daphne-{os.getpid()}.log"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "w")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "CQ_TEST_DB_NAME": connection.settings_dict["NAME"],
            "PYTHONPATH": str(ROOT),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
            + ["tests.live_asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_listening()

    def _wait_listening(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daphne exited: {self.log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"daphne not listening after {timeout}s")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def chromium(width=1280, height=900):
    """A headless Chromium, `width` pixels wide (the admin must work at 1280)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def log_in(driver, server, user):
    """Give the browser a session of `user`, as after the login form."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    driver.get(f"{server.url}/admin/login/")
    driver.add_cookie(
        {"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"}
    )


def screenshot(driver, name):
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
