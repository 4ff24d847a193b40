"""A new user's first hour as the README tells it: a project made by
startproject, the README's settings and asgi.py pasted in, a task of its own,
`migrate`, `runworker cq-tasks`, `.delay()`, the admin, and a repeating task
run from the admin. The project has its own SQLite database in a temporary
folder; its Redis keys carry a prefix of their own, removed at the end."""

import os
import re
import subprocess
import sys
import uuid

import pytest
import redis
from django.conf import settings

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()

TASKS = """from cq import task


@task
def add(cqt, a, b):
    return a + b
"""

# What the user then does in `manage.py shell`: a task through the worker, a
# repeating task made in code and run from the admin, the admin's pages.
SESSION = """
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import setup_test_environment
from cq.models import RepeatingTask, Task, schedule_task
from shop.tasks import add

print("delay", add.delay(2, 3).wait(timeout=60, raise_on_timeout=True).result)
repeating = schedule_task(RepeatingTask, "0 3 * * *", add, (1, 2))
setup_test_environment()
client = Client()
client.force_login(User.objects.create_superuser("admin", password="pw"))
for url in ("/admin/cq/task/", "/admin/cq/repeatingtask/",
            f"/admin/cq/repeatingtask/{repeating.pk}/change/"):
    print("page", url, client.get(url).status_code)
client.post("/admin/cq/repeatingtask/",
            {"action": "run_now", "_selected_action": [repeating.pk]})
run = Task.objects.get(repeating_task=repeating)
print("repeating", run.wait(timeout=60, raise_on_timeout=True).result)
"""


# What docs/settings.md tells a SQLite project to add (and cq.W008's hint).
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


def readme_block(first_line):
    """The README's ```python block that starts with `first_line`."""
    pattern = re.compile(rf"```python\n({re.escape(first_line)}\n.*?)```", re.DOTALL)
    [block] = pattern.findall(README)
    return block


# The new project's own settings (manage.py's default), not the suite's.
ENV = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}


def run(*args, cwd, timeout=120):
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture
def project(tmp_path):
    prefix = f"cqnewproject{uuid.uuid4().hex[:8]}."
    run("-m", "django", "startproject", "mysite", str(tmp_path), cwd=tmp_path)
    run("manage.py", "startapp", "shop", cwd=tmp_path)
    (tmp_path / "shop" / "tasks.py").write_text(TASKS)

    pasted = readme_block("# settings.py")
    # The README's `...` stands for the apps already listed; this test's app
    # goes with them.
    assert "    ...,\n" in pasted
    pasted = pasted.replace("    ...,\n", '    *INSTALLED_APPS,\n    "shop",\n')
    # This machine's Redis is shared: the tests' database, under a prefix.
    pasted, hosts = re.subn(r'"redis://127\.0\.0\.1:6379/\d+"', f'"{settings.REDIS_URL}"', pasted)
    assert hosts == 2, "the channel layer's and the cache's Redis"
    with open(tmp_path / "mysite" / "settings.py", "a") as settings_file:
        settings_file.write("\n" + pasted)
        settings_file.write(
            f'\nCHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "{prefix}"'
            f'\nCACHES["default"]["KEY_PREFIX"] = "{prefix}"\n'
        )
    asgi = readme_block("# myproject/asgi.py").replace("myproject", "mysite")
    (tmp_path / "mysite" / "asgi.py").write_text(asgi)
    run("manage.py", "migrate", cwd=tmp_path)
    yield tmp_path
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*"):  # the layer's and the cache's
        client.delete(key)


def test_a_project_set_up_from_the_readme_runs_tasks_the_admin_and_a_repeating_task(project):
    # startproject's SQLite has no WAL and no BEGIN IMMEDIATE: under load, log
    # lines would be lost to "database is locked", and the check says so.
    checked = run("manage.py", "check", cwd=project)
    assert "cq.W008" in checked and "1 issue" in checked, checked
    with open(project / "mysite" / "settings.py", "a") as settings_file:
        settings_file.write(f'\nDATABASES["default"]["OPTIONS"] = {SQLITE_OPTIONS!r}\n')
    checked = run("manage.py", "check", cwd=project)
    assert "System check identified no issues" in checked, checked
    run("-c", "import mysite.asgi", cwd=project)  # the pasted asgi.py imports

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "runworker", "cq-tasks"],
        cwd=project,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        session = run("manage.py", "shell", "-c", SESSION, cwd=project)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0]

    assert "delay 5" in session, session + output
    assert session.count(" 200") == 3, session
    assert "repeating 3" in session, session + output
    assert worker.returncode == 0, output
    assert "shop.tasks.add" in output, "the banner lists the project's task"
