"""Revoking a task tree without deadlocking with the tasks that finish meanwhile.

A finishing task locks rows in one order (see completion.py): its own row,
then the tasks chained after it, then its parent. So revoke locks the rows of
a tree in that same order, with guarded UPDATEs (active rows only), layer by
layer: all subtasks before their parent, every task before the tasks chained
after it. One UPDATE of the whole tree would lock the rows in an order
PostgreSQL picks, parent before children, and deadlock with every child that
finishes meanwhile (issue 3: 6 revokes of 6 failed).

Rows that appear after the tree was read are caught without breaking that
order: a task chained after a revoked one, by the loop over the revoked rows'
PENDING followers below; a subtask of a revoked task (a running parent can
still commit some), by the worker, which never runs a task whose parent is
REVOKED (see execution.py).
"""

import logging

from django.db import models
from django.utils import timezone

from . import cancelling, doorbell, transitions

logger = logging.getLogger(__name__)

# Most rows in one UPDATE (SQLite limits the parameters of a statement).
BATCH = 500


def revoke_tree(top, terminate=False):
    """Mark the task `top` and every active task below it (subtasks and chained
    tasks, any depth) REVOKED, in lock order; returns how many were revoked.
    Call it inside a transaction: the locks are held until it commits. The
    workers running some of them are told once it commits (cq.cancelling;
    `terminate`: they stop them)."""
    now = timezone.now()
    model = type(top)
    rows = tree_rows(model, top.pk)
    touched, revoked = [], 0
    for layer in lock_layers(rows):
        ids = [pk for pk in layer if rows[pk][2] in model.STATUS_ACTIVE]
        revoked += _revoke(model, ids, now)
        touched += ids
    # A chain() that committed after the tree was read held its predecessor's
    # lock, which we now hold: its follower is visible now.
    late = list(touched)
    while late:
        late = _pending_followers(model, late)
        revoked += _revoke(model, late, now)
        touched += late
    # Those that finished meanwhile were announced already: harmless.
    doorbell.announce_on_commit(touched)
    cancelling.push_on_commit(model, touched, now, terminate)
    logger.info("tree revoked id=%s rows=%s revoked=%s", top.pk, len(rows), revoked)
    return revoked


def tree_rows(model, top_id):
    """{pk: (parent_id, previous_id, status)} of `top_id` and every task below
    it: subtasks and chained tasks, any depth."""
    rows, frontier = {}, [top_id]
    fields = ("pk", "parent_id", "previous_id", "status")
    rows.update((pk, rest) for pk, *rest in model.objects.filter(pk=top_id).values_list(*fields))
    while frontier:
        below = model.objects.filter(
            models.Q(parent__in=frontier) | models.Q(previous__in=frontier)
        ).values_list(*fields)
        frontier = []
        for pk, *rest in below:
            if pk not in rows:
                rows[pk] = tuple(rest)
                frontier.append(pk)
    return rows


def lock_layers(rows):
    """The ids of `rows` in layers: every subtask in a layer before its
    parent's, every task in a layer before those of the tasks chained after it.

    No two tasks of a layer are ordered, and a finishing task locks only tasks
    that are ordered (itself, its followers, its parent and up): so whatever
    order the database locks the rows of one layer in, no finishing task can
    hold one of them while it waits for another that revoke holds."""
    waits_on = {pk: 0 for pk in rows}  # rows that must come before this one
    then = {pk: [] for pk in rows}
    for pk, (parent_id, previous_id, _) in rows.items():
        # (subtask, its parent) and (predecessor, its follower)
        for first, second in ((pk, parent_id), (previous_id, pk)):
            if first in rows and second in rows:
                then[first].append(second)
                waits_on[second] += 1
    layers, layer = [], sorted(pk for pk, count in waits_on.items() if count == 0)
    while layer:
        layers.append(layer)
        following = []
        for pk in layer:
            for later in then[pk]:
                waits_on[later] -= 1
                if waits_on[later] == 0:
                    following.append(later)
        layer = sorted(following)
    # Links cq creates cannot form a cycle; rows edited by hand might.
    cycle = sorted(pk for pk, count in waits_on.items() if count > 0)
    return layers + ([cycle] if cycle else [])


def _revoke(model, ids, now):
    """Guarded UPDATEs (active rows only) of the unordered `ids`, in batches;
    returns how many were revoked."""
    revoked = 0
    for start in range(0, len(ids), BATCH):
        revoked += transitions.revoke(model, ids[start : start + BATCH], now)
    return revoked


def _pending_followers(model, ids):
    found = []
    for start in range(0, len(ids), BATCH):
        found += (
            model.objects.filter(
                previous__in=ids[start : start + BATCH], status=model.STATUS_PENDING
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    return found
