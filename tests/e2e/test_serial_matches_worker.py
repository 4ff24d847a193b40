"""CQ_SERIAL and a direct call hand the function what a worker hands it: the
arguments read back from the stored row (JSON), and the row's related managers."""

from decimal import Decimal

import pytest
from django.db.models import Manager
from django.test import override_settings

from cq.models import Task
from tests.app import tasks
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

# A Decimal is stored as JSON text: the function gets the string '74.00'.
SEEN = {"amount": ["str", "74.00"], "subtasks": [True, 1]}


def finished(task):
    wait_until(lambda: Task.objects.get(pk=task.pk).status == Task.STATUS_SUCCESS, timeout=60)
    task.refresh_from_db()
    return task


def test_a_worker_gets_a_decimal_as_its_json_string_and_subtasks_as_a_manager(start_worker):
    start_worker()
    task = finished(tasks.describe_call.delay(Decimal("74.00")))
    assert task.result == SEEN
    assert isinstance(task.subtasks, Manager) and task.subtasks.count() == 1


def test_serial_delay_gets_the_same_arguments_and_subtasks_as_a_worker(transactional_db):
    with override_settings(CQ_SERIAL=True):
        task = tasks.describe_call.delay(Decimal("74.00"))
    assert (task.status, task.result) == (Task.STATUS_SUCCESS, SEEN)
    assert isinstance(task.subtasks, Manager) and task.subtasks.count() == 1


def test_a_direct_call_gets_the_same_arguments_and_subtasks_as_a_worker(transactional_db):
    assert tasks.describe_call(Decimal("74.00")) == SEEN
