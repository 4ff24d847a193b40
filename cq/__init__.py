"""cq: durable, fast background tasks for Django, dispatched over Django Channels."""

from .decorators import task
from .exceptions import (
    ConfigurationError,
    CQError,
    DuplicateSubmitError,
    InvalidSchedule,
    InvalidTaskOption,
    SerializationError,
    UnknownTaskError,
)

__version__ = "0.1.0"

__all__ = [
    "task",
    "CQError",
    "ConfigurationError",
    "DuplicateSubmitError",
    "InvalidSchedule",
    "InvalidTaskOption",
    "SerializationError",
    "UnknownTaskError",
    "__version__",
]
