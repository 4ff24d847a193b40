"""Revoking live task trees while workers finish their tasks."""

import contextlib
import os
import time
import uuid

import pytest
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count

from cq import revoking
from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import run_queued, wait_until

POSTGRES = os.environ.get("CQ_TEST_DB", "postgres") == "postgres"


def children_by_status(parent):
    return dict(
        Task.objects.filter(parent_id=parent.pk).values_list("status").annotate(n=Count("pk"))
    )


def done_children(parent):
    return Task.objects.filter(parent_id=parent.pk, status=Task.STATUS_SUCCESS).count()


@pytest.mark.slow
def test_revoking_a_large_live_tree_succeeds_and_fails_no_child(start_worker):
    # 1,000 subtasks of 20 ms on 3 workers x 4 threads: while the tree is
    # revoked, children finish all the time, each locking its own row, then the
    # parent's. Before the fix every attempt ended in "deadlock detected".
    children = 1000 if POSTGRES else 300
    for _ in range(3):
        start_worker("--concurrency", "4")
    for attempt in range(3):
        revoke_a_live_tree(attempt, children)


def revoke_a_live_tree(attempt, children):
    parent = tasks.spawn_naps.delay(children, 0.02)
    wait_until(lambda: done_children(parent) >= 30, 60, message="30 children done")
    started = time.monotonic()
    # The first attempt revokes inside the caller's transaction, as a view
    # with ATOMIC_REQUESTS would: the locks are held until it commits.
    with transaction.atomic() if attempt == 0 else contextlib.nullcontext():
        parent.revoke()
    print(f"revoke of a {children}-child live tree: {time.monotonic() - started:.2f}s")
    tree = Task.objects.filter(root_id=parent.pk)
    wait_until(
        lambda: not tree.filter(status__in=Task.STATUS_ACTIVE).exists(),
        30,
        message="no active task left in the tree",
    )
    by_status = children_by_status(parent)
    assert set(by_status) <= {Task.STATUS_SUCCESS, Task.STATUS_REVOKED}, (
        attempt,
        by_status,
        list(
            tree.exclude(status__in=[Task.STATUS_SUCCESS, Task.STATUS_REVOKED]).values_list(
                "status", "error"
            )[:3]
        ),
    )
    assert sum(by_status.values()) == children
    assert by_status[Task.STATUS_REVOKED] > 0
    parent.refresh_from_db()
    assert parent.status == Task.STATUS_REVOKED


# ---- what appears after revoke read the tree


@pytest.mark.slow
def test_subtasks_a_revoked_running_parent_commits_afterwards_never_run(start_worker):
    start_worker("--concurrency", "2")
    flag = f"spawn:{uuid.uuid4()}"
    parent = tasks.spawn_after_flag.delay(flag, 3)
    wait_until(
        lambda: Task.objects.get(pk=parent.pk).status == Task.STATUS_RUNNING,
        30,
        message="parent running",
    )
    parent.revoke()
    cache.set(flag, True, 60)  # not atomic: each subtask commits at once, queued
    children = Task.objects.filter(parent_id=parent.pk)
    wait_until(
        lambda: (
            children.count() == 3 and not children.filter(status__in=Task.STATUS_ACTIVE).exists()
        ),
        30,
        message="the 3 late subtasks done",
    )
    assert not Note.objects.exists(), "a subtask of a revoked task ran"
    assert set(children.values_list("status", flat=True)) == {Task.STATUS_REVOKED}
    assert f"its parent {parent.pk} was revoked" in children.first().error
    assert Task.objects.get(pk=parent.pk).status == Task.STATUS_REVOKED


@pytest.mark.django_db(transaction=True)
def test_a_task_chained_after_the_tree_was_read_is_revoked_too(monkeypatch):
    # chain() locks its predecessor: one that commits between revoke's read of
    # the tree and revoke's lock on that predecessor must not stay PENDING.
    parent = tasks.add.delay(1, 2)
    child = tasks.add.delay_args((1, 1), parent=parent)
    late = []
    read = revoking.tree_rows

    def read_then_chain(*args):
        rows = read(*args)
        late.append(child.chain(tasks.add, (1,)))
        late.append(late[0].chain(tasks.add, (2,)))
        return rows

    monkeypatch.setattr(revoking, "tree_rows", read_then_chain)
    parent.revoke()
    assert [Task.objects.get(pk=t.pk).status for t in late] == [Task.STATUS_REVOKED] * 2
    assert run_queued() == 0


def test_lock_layers_put_subtasks_before_parents_and_predecessors_before_followers():
    # top -> a (then a2 chained after a) ; a -> a_child ; top -> then (chained after top)
    rows = {
        "top": (None, None, "W"),
        "a": ("top", None, "W"),
        "a2": ("top", "a", "P"),
        "a_child": ("a", None, "R"),
        "then": (None, "top", "P"),
    }
    layers = revoking.lock_layers(rows)
    order = [pk for layer in layers for pk in layer]
    assert sorted(order) == sorted(rows)
    for pk, (parent, previous, _) in rows.items():
        if parent is not None:
            assert order.index(pk) < order.index(parent), (pk, parent, order)
        if previous is not None:
            assert order.index(previous) < order.index(pk), (previous, pk, order)
    assert layers == [["a_child"], ["a"], ["a2"], ["top"], ["then"]]
    assert layers == revoking.lock_layers(dict(reversed(rows.items()))), "depends on input order"
