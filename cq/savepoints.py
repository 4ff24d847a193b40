"""A savepoint taken only if a task touches the database.

The tasks of a group share one transaction, each in a savepoint of its own so
that one that fails rolls back only its own writes (cq.execution.run_group).
A task that never queries the database has nothing to roll back, and many
tasks do not (they call an API, send a mail, touch a cache): for them the
SAVEPOINT and RELEASE round trips would be the largest part of their cost. So
the savepoint is taken just before the task's first statement, by an execute
wrapper, and registered like one of `transaction.atomic()`'s, so that Django
drops the on_commit callbacks of a task whose savepoint rolls back.
"""

from django.db import transaction

from .exceptions import CQError


class LazySavepoint:
    """Use as `connection.execute_wrapper(savepoint)` around one task, then
    `release()` it if the task succeeded or `rollback()` it if it failed."""

    def __init__(self, using=None):
        self.connection = transaction.get_connection(using)
        self.sid = None
        self._taking = False

    def __call__(self, execute, sql, params, many, context):
        # SAVEPOINT runs through the wrappers too: `_taking` lets it pass.
        if self.sid is None and not self._taking:
            self._taking = True
            try:
                self.sid = self.connection.savepoint()
            finally:
                self._taking = False
            self.connection.savepoint_ids.append(self.sid)
        return execute(sql, params, many, context)

    def check_not_marked(self):
        """A task that called `transaction.set_rollback(True)` outside any
        block of its own marked the group's transaction: it fails, alone."""
        if self.connection.needs_rollback:
            raise CQError("the task marked its transaction for rollback (transaction.set_rollback)")

    def release(self):
        if self.sid is not None:
            self.connection.savepoint_ids.remove(self.sid)
            self.connection.savepoint_commit(self.sid)

    def rollback(self):
        """Undo the task's writes (and its on_commit callbacks); the group's
        transaction goes on."""
        # Cleared first: Django refuses any statement, ROLLBACK TO included,
        # on a connection marked for rollback. The savepoint undoes the mark's cause.
        self.connection.needs_rollback = False
        if self.sid is not None:
            self.connection.savepoint_ids.remove(self.sid)
            self.connection.savepoint_rollback(self.sid)
