"""What the database can store: JSON and text without NUL characters or lone surrogates.

PostgreSQL refuses both, in `text` and in `jsonb` ("unsupported Unicode escape
sequence"), and the refusal aborts the whole transaction. So values a user
gives cq (arguments, results) are checked where they enter and refused with a
SerializationError, while text cq writes itself (log lines, errors,
tracebacks) is made storable: one odd byte must never cost a task its outcome.
SQLite would store them, but cq holds every database to the same rule, so code
that passes its tests on SQLite works on PostgreSQL too.
"""

import json
import re

from django.core.serializers.json import DjangoJSONEncoder

from .exceptions import SerializationError

# `\u0000` in JSON text, unless its backslash is itself escaped (`\\u0000` is
# the six characters of a literal backslash-u-0000, which is fine).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def check_json(value: object, what: str) -> None:
    """Raise SerializationError (a TypeError) unless `value` can be stored as JSON."""
    try:
        # allow_nan=False: PostgreSQL's jsonb refuses NaN and Infinity.
        # ensure_ascii=False keeps a lone surrogate a character of its own,
        # which encoding to UTF-8 then finds, while a valid pair stays valid.
        dumped = json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False, ensure_ascii=False)
    except RecursionError as exc:
        raise SerializationError(f"task {what} must not be nested this deeply") from exc
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"task {what} must be JSON serialisable: {exc}") from exc
    if "\\u0000" in dumped and _JSON_NUL.search(dumped):
        raise SerializationError(
            f"task {what} must not contain NUL characters (\\x00): the database cannot store them"
        )
    if not dumped.isascii():
        try:
            dumped.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SerializationError(
                f"task {what} must not contain lone surrogates ({dumped[exc.start]!r}): "
                "the database cannot store them"
            ) from exc


def text(value: str) -> str:
    """`value` with NUL characters and lone surrogates written as escapes (`\\x00`,
    `\\ud800`), so that the database stores it and a reader sees what was there."""
    if value.isascii():
        return value.replace("\x00", "\\x00") if "\x00" in value else value
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value.replace("\x00", "\\x00")
