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
    dumps(value, what)


def dumps(value: object, what: str) -> str:
    """`value` as canonical JSON text (keys sorted, as stored: `{1: "a"}` and
    `{"1": "a"}` give the same text); SerializationError unless it can be stored."""
    dumped = _dumps(value, what, sort_keys=True)
    if dumped is None:
        # A dict mixes string and other keys: allowed, unless two collide.
        dumped = _dumps(_without_colliding_keys(_dumps(value, what), what), what, sort_keys=True)
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
    return dumped


def _dumps(value, what, sort_keys=False):
    """json.dumps as the database needs it, or SerializationError. With
    `sort_keys`, None when a dict's keys are of types that do not sort together.

    Sorting is how keys that JSON could make collide are found at C speed: only
    a string and a non-string can become one key (1 and "1", None and "null";
    1 and 1.0 are one key already in Python), and sorting those two raises."""
    try:
        # allow_nan=False: PostgreSQL's jsonb refuses NaN and Infinity.
        # ensure_ascii=False keeps a lone surrogate a character of its own,
        # which encoding to UTF-8 then finds, while a valid pair stays valid.
        return json.dumps(
            value, cls=DjangoJSONEncoder, allow_nan=False, ensure_ascii=False, sort_keys=sort_keys
        )
    except RecursionError as exc:
        raise SerializationError(f"task {what} must not be nested this deeply") from exc
    except (TypeError, ValueError) as exc:
        if sort_keys and "not supported between instances" in str(exc):
            return None
        raise SerializationError(f"task {what} must be JSON serialisable: {exc}") from exc


def _without_colliding_keys(dumped, what):
    """The value of the JSON text `dumped`, refusing an object with a key twice:
    the database would keep one of them and silently drop the other."""

    def unique_keys(pairs):
        keys = [key for key, _ in pairs]
        if len(set(keys)) < len(keys):
            twice = next(key for key in keys if keys.count(key) > 1)
            raise SerializationError(
                f"task {what} must not hold a dict with two keys that are both {twice!r} "
                "as JSON, whose keys are strings (1 and '1' are one key there): the "
                "database would keep only one"
            )
        return dict(pairs)

    return json.loads(dumped, object_pairs_hook=unique_keys)


def text(value: str) -> str:
    """`value` with NUL characters and lone surrogates written as escapes (`\\x00`,
    `\\ud800`), so that the database stores it and a reader sees what was there."""
    if value.isascii():
        return value.replace("\x00", "\\x00") if "\x00" in value else value
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value.replace("\x00", "\\x00")
