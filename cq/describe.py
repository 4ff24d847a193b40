"""Plain-English descriptions of cron strings, for the admin.

The wording comes from cron-descriptor (the library django-celery-beat uses),
in 24-hour English: "Every 5 minutes, between 09:00 and 17:59, Monday through
Friday". When it cannot describe a schedule the cron string itself is shown,
which is better than no schedule or a sentence that is wrong.
"""

from cron_descriptor import (
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
    get_description,
)

from .cron import expand
from .exceptions import InvalidSchedule

# The library's own errors, and those it lets slip on input it does not expect:
# an admin page must not fail because a description could not be written.
CANNOT_DESCRIBE = (
    FormatException,
    MissingFieldException,
    WrongArgumentException,
    ValueError,
    IndexError,
    KeyError,
)


def describe(crontab):
    """A sentence for `crontab`, or the cron string itself when it cannot be
    described (or is not valid)."""
    written = " ".join(str(crontab).split())
    try:
        fields = expand(crontab)
    except InvalidSchedule:
        return crontab
    options = Options()
    options.use_24hour_time_format = True
    options.locale_code = "en_US"
    try:
        sentence = get_description(fields, options)
    except CANNOT_DESCRIBE:
        return written
    # A list of nth weekdays ("mon#2,fri#3") loses its ordinals: "on the  Monday
    # and Friday of the month". A blank where a word should be says so.
    if "  " in sentence:
        return written
    return sentence
