"""The demo's CQ_LIVE_PERMISSION: anyone may watch (a demo on 127.0.0.1 has
no users). A real project keeps the default (staff who may view tasks) or
checks its own rule, e.g. `task.kwargs.get("user_id") == user.pk`."""


def anyone(user, task):
    return True
