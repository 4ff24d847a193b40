"""cq.live.TaskConsumer through Channels' WebsocketCommunicator, with a real
worker running the watched task: the current state first, then each status
change, progress report and log line; refused without permission."""

import asyncio
import contextlib

import pytest
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.db import connection
from django.test import override_settings

from cq.live.consumer import REFUSED
from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.helpers import wait_until
from tests.live import application, make_user, run_async, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def watch(task, headers):
    return WebsocketCommunicator(application(), f"/cq/live/tasks/{task.pk}/", headers=headers)


async def receive_until_done(communicator, timeout=60):
    messages = []
    while not (messages and messages[-1]["type"] == "state" and messages[-1]["task"]["done"]):
        messages.append(await communicator.receive_json_from(timeout=timeout))
    return messages


def test_watcher_gets_the_state_then_every_change_of_a_task_run_by_a_worker(start_worker):
    start_worker()
    wait_until(lambda: WorkerHeartbeat.objects.exists(), timeout=60, message="worker up")
    operator = make_user("operator", True, "view_task")
    flag = f"go-{connection.settings_dict['NAME']}"
    task = tasks.count_up.delay(3, 0.2, flag)

    async def session():
        communicator = watch(task, session_cookie_async)
        connected, _ = await communicator.connect()
        assert connected
        first = await communicator.receive_json_from(timeout=10)
        cache.set(flag, True, 60)  # the task goes on only once we watch
        rest = await receive_until_done(communicator)
        await communicator.disconnect()
        return first, rest

    session_cookie_async = session_cookie(operator)
    first, rest = run_async(session)

    assert first["type"] == "state"
    assert first["task"]["id"] == str(task.pk)
    assert first["task"]["status"] in ("Q", "R") and first["logs"] == []
    progress = [m["progress"]["done"] for m in rest if m["type"] == "progress"]
    assert progress[-1] == 3 and progress == sorted(progress)
    lines = [line["message"] for m in rest if m["type"] == "log" for line in m["lines"]]
    assert lines == ["step 1", "step 2", "step 3"]
    last = rest[-1]
    assert last["task"]["status_label"] == "Success" and last["percent"] == 100.0
    assert last["task"]["progress"]["done"] == 3
    assert last["task"]["result"] == "3"


def test_watching_a_parent_shows_its_subtasks_finishing(start_worker):
    start_worker("--concurrency", "2")
    operator = make_user("operator", True, "view_task")
    parent = tasks.spawn_counters.delay(3, 2)
    headers = session_cookie(operator)

    async def session():
        communicator = watch(parent, headers)
        assert (await communicator.connect())[0]
        messages = await receive_until_done(communicator)
        await communicator.disconnect()
        return messages

    messages = run_async(session)
    states = [m for m in messages if m["type"] == "state"]
    assert states[-1]["counts"] == {"Success": 3}
    assert states[-1]["task"]["status"] == "S"
    shares = [s["percent"] for s in states if s["task"]["status"] == "W"]
    assert shares == sorted(shares)
    subtask_ids = {sub["id"] for sub in states[-1]["subtasks"]}
    assert {m["task_id"] for m in messages if m["type"] == "progress"} <= subtask_ids
    # Each line once: in the first state's log, or in a log message after it.
    lines = messages[0].get("logs", []) + [
        line for m in messages if m["type"] == "log" for line in m["lines"]
    ]
    assert sorted(line["message"] for line in lines) == ["step 1"] * 3 + ["step 2"] * 3


def test_a_watcher_gets_the_lines_a_worker_slow_to_see_it_did_not_publish(
    start_worker, monkeypatch
):
    # A worker reads the watchers' mark every CHECK_EVERY seconds, and a
    # watcher reads the tree SETTLE seconds after marking itself; a worker
    # slower than that (a loaded machine: seen in CI) dropped the lines logged
    # in between, which the watcher then never got. Here the mark comes 5 s
    # late, and the task logs all its lines after the first state, well
    # before the worker can see the mark.
    from cq.live import consumer

    marked = consumer._keep_marked

    async def late_mark():
        await asyncio.sleep(5)
        await marked()

    monkeypatch.setattr(consumer, "_keep_marked", late_mark)
    start_worker()
    wait_until(lambda: WorkerHeartbeat.objects.exists(), timeout=60, message="worker up")
    operator = make_user("operator", True, "view_task")
    flag = f"go-late-{connection.settings_dict['NAME']}"
    task = tasks.count_up.delay(6, 0.3, flag)
    headers = session_cookie(operator)

    async def session():
        communicator = watch(task, headers)
        assert (await communicator.connect())[0]
        first = await communicator.receive_json_from(timeout=30)
        cache.set(flag, True, 60)  # the task logs only once the state is read
        messages = [first, *await receive_until_done(communicator)]
        await communicator.disconnect()
        return messages

    messages = run_async(session)
    assert messages[0]["type"] == "state" and messages[0]["logs"] == []
    lines = [line for m in messages if m["type"] == "log" for line in m["lines"]]
    assert [line["message"] for line in lines] == [f"step {n}" for n in range(1, 7)]


@pytest.mark.parametrize(
    "who",
    ["anonymous", "not staff", "staff without view permission"],
)
def test_watcher_without_permission_is_refused(who):
    task = tasks.add.delay(1, 2)
    headers = []
    if who == "not staff":
        headers = session_cookie(make_user("user", False, "view_task"))
    elif who == "staff without view permission":
        headers = session_cookie(make_user("staff", True))

    async def session():
        return await watch(task, headers).connect()

    connected, code = run_async(session)
    assert (connected, code) == (False, REFUSED)


def test_unknown_task_is_refused():
    headers = session_cookie(make_user("operator", True, "view_task"))
    task = tasks.add.delay(1, 2)
    Task.objects.filter(pk=task.pk).delete()

    async def session():
        return await watch(task, headers).connect()

    assert run_async(session) == (False, REFUSED)


@override_settings(CQ_LIVE_PERMISSION="tests.live.user_named_owner")
def test_the_apps_own_rule_decides_who_watches():
    task = tasks.add.delay(1, 2)
    owner = session_cookie(make_user("owner"))
    staff = session_cookie(make_user("operator", True, "view_task"))

    async def session(headers):
        communicator = watch(task, headers)
        connected, _ = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return connected

    assert run_async(session, owner) is True
    assert run_async(session, staff) is False


def test_a_watcher_its_server_cancels_stops_marking_itself():
    """An ASGI server cancels a consumer slow to close: its mark must not go on
    renewing, or every worker would publish for nobody."""
    headers = session_cookie(make_user("operator", True, "view_task"))
    task = tasks.add.delay(1, 2)

    def markers():
        return {t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_keep_marked"}

    async def session():
        existing = markers()
        communicator = watch(task, headers)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=10)
        ours = markers() - existing
        assert len(ours) == 1, "the connected watcher marks itself"
        communicator.future.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await communicator.future
        await asyncio.wait(ours, timeout=5)
        return all(marker.done() for marker in ours)

    assert run_async(session), "the mark of a cancelled consumer went on renewing"
