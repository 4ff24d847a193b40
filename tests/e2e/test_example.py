"""`make demo`: the example project's migrate + cq_demo, as a user runs them."""

import os
import socket
import subprocess
import sys

import pytest
from django.conf import settings

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "example_project"


def run_demo(tmp_path, redis_url):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example.settings",
        "PYTHONPATH": str(ROOT),
        "CQ_DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "CQ_DEMO_REDIS": redis_url,
    }
    for command in (["migrate", "--verbosity", "0"], ["cq_demo"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=EXAMPLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_workflows_reported(output):
    assert "[ok] analyse(" in output
    assert output.count("[ok] count_words(") == 5
    assert "-> [ok] summarise(5, " in output
    assert "5 documents, 52 words, longest: cq" in output
    assert "= '*** CQ IS RUNNING! ***'" in output
    assert "retries 1" in output and "the quote service timed out" in output
    assert "11 tasks finished in" in output


def test_the_demo_runs_on_redis_with_two_runworker_processes(tmp_path):
    output = run_demo(tmp_path, settings.REDIS_URL)
    assert "starting 2 `runworker cq-tasks` processes" in output
    assert "Watch it live: http://127.0.0.1:" in output
    assert_workflows_reported(output)
    assert "exit codes [0, 0]" in output


def test_the_demo_falls_back_to_an_in_process_worker_without_redis(tmp_path):
    output = run_demo(tmp_path, f"redis://127.0.0.1:{closed_port()}/0")
    assert "in-memory channel layer" in output
    assert "No live page: it needs Redis" in output
    assert_workflows_reported(output)
    assert "In-process worker stopped" in output
