"""cq in the Django admin: repeating tasks as a control panel, tasks as an audit view."""

from .repeating import RepeatingTaskAdmin
from .task import TaskAdmin

__all__ = ["RepeatingTaskAdmin", "TaskAdmin"]
