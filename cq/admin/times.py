"""Moments as the admin shows them: to the second, with the time zone named.

A bare "08:00" beside a schedule in another zone leaves the reader to guess
which clock it is on; an IANA name ("Europe/Paris") says it, where an
abbreviation ("CET", "IST") can be ambiguous.
"""

from django.utils import timezone


def moment(value, zone=None):
    """`value` (an aware datetime) in `zone`, or in the current time zone,
    as "2026-11-26 08:00:00 Europe/Paris"; "-" for None."""
    if value is None:
        return "-"
    zone = zone or timezone.get_current_timezone()
    name = getattr(zone, "key", None) or str(zone)
    return f"{value.astimezone(zone):%Y-%m-%d %H:%M:%S} {name}"
