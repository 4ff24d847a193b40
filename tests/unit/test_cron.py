"""Cron strings: validation errors, time zones, daylight saving, descriptions.
Pure functions with fixed datetimes: no database, no clock."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from cq.cron import expand, get_zone, next_after, upcoming
from cq.describe import describe
from cq.exceptions import InvalidSchedule

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def runs(crontab, after, zone, count=4):
    return upcoming(crontab, after, zone, count)


@pytest.mark.parametrize(
    "crontab, expected",
    [
        ("* * * * *", "* * * * *"),
        ("  0   3 * *  mon-fri ", "0 3 * * mon-fri"),
        ("@daily", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
        ("0 0 29 2 *", "0 0 29 2 *"),
    ],
)
def test_valid_crontabs_expand_to_five_fields(crontab, expected):
    assert expand(crontab) == expected


@pytest.mark.parametrize(
    "crontab, message",
    [
        ("* * * *", "has 4 field(s); a crontab has five: minute hour"),
        ("* * * * * *", "has 6 field(s)"),
        ("*/5 * * * * 30", "there is no seconds field"),
        ("0 0 * * 5L", "1#2 for the second Monday, L5 for the last Friday"),
        ("", "has 0 field(s)"),
        ("61 * * * *", "the minute field '61' is not valid (allowed: 0-59"),
        ("* 24 * * *", "the hour field '24' is not valid (allowed: 0-23"),
        ("* * 0 * *", "the day-of-month field '0' is not valid"),
        ("* * * 13 *", "the month field '13' is not valid (allowed: 1-12 or jan-dec"),
        ("* * * * fry", "the day-of-week field 'fry' is not valid"),
        ("*/0 * * * *", "the minute field '*/0' is not valid"),
        ("0 0 30 2 *", "never matches a date"),
        ("@reboot", "has 1 field(s)"),
    ],
)
def test_invalid_crontabs_say_what_is_wrong(crontab, message):
    with pytest.raises(InvalidSchedule) as error:
        expand(crontab)
    assert message in str(error.value)


def test_a_crontab_that_is_not_a_string_is_refused():
    with pytest.raises(InvalidSchedule, match="a crontab is a string"):
        expand(5)


def test_invalid_schedule_is_a_value_error():
    with pytest.raises(ValueError):
        expand("nope")


def test_empty_zone_is_the_project_time_zone():
    with override_settings(TIME_ZONE="Asia/Tokyo"):
        assert get_zone("") == ZoneInfo("Asia/Tokyo")
    assert get_zone("Europe/Paris") == PARIS


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "../etc/passwd", "Europe/"])
def test_unknown_zone_is_refused(name):
    with pytest.raises(InvalidSchedule, match="unknown time zone"):
        get_zone(name)


def test_next_occurrence_is_strictly_after_the_given_instant():
    assert next_after("0 3 * * *", utc(2030, 1, 1, 3, 0), UTC) == utc(2030, 1, 2, 3, 0)
    assert next_after("0 3 * * *", utc(2030, 1, 1, 2, 59, 59), UTC) == utc(2030, 1, 1, 3, 0)


def test_occurrences_are_in_the_schedule_time_zone():
    # 03:00 in New York is 08:00 UTC in winter and 07:00 UTC in summer.
    assert runs("0 3 * * *", utc(2025, 3, 7, 12), NEW_YORK, 3) == [
        utc(2025, 3, 8, 8),
        utc(2025, 3, 9, 7),
        utc(2025, 3, 10, 7),
    ]


def test_a_time_skipped_by_spring_forward_runs_when_the_clocks_jump():
    # Paris, 30 March 2025: at 02:00 CET the clocks jump to 03:00 CEST.
    assert runs("30 2 * * *", utc(2025, 3, 28, 12), PARIS, 3) == [
        utc(2025, 3, 29, 1, 30),  # 02:30 CET
        utc(2025, 3, 30, 1, 0),  # 03:00 CEST, the moment of the jump
        utc(2025, 3, 31, 0, 30),  # 02:30 CEST
    ]


def test_spring_forward_keeps_a_frequent_schedule_running_once_at_the_jump():
    assert runs("*/30 * * * *", utc(2025, 3, 30, 0, 15), PARIS) == [
        utc(2025, 3, 30, 0, 30),  # 01:30 CET
        utc(2025, 3, 30, 1, 0),  # 02:00 and 02:30 are skipped: once, at 03:00 CEST
        utc(2025, 3, 30, 1, 30),
        utc(2025, 3, 30, 2, 0),
    ]


def test_a_fixed_time_repeated_by_fall_back_runs_once():
    # Paris, 26 October 2025: at 03:00 CEST the clocks go back to 02:00 CET.
    assert runs("30 2 * * *", utc(2025, 10, 24, 12), PARIS, 3) == [
        utc(2025, 10, 25, 0, 30),  # 02:30 CEST
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST, first pass only
        utc(2025, 10, 27, 1, 30),  # 02:30 CET
    ]


def test_an_hourly_schedule_keeps_its_real_time_rhythm_through_fall_back():
    assert runs("0 * * * *", utc(2025, 10, 25, 23, 30), PARIS) == [
        utc(2025, 10, 26, 0),
        utc(2025, 10, 26, 1),
        utc(2025, 10, 26, 2),
        utc(2025, 10, 26, 3),
    ]


def test_fall_back_from_inside_the_first_pass_finds_the_second_pass():
    # 00:30 UTC is 02:30 CEST, in the first pass; 02:40 CEST then 02:00 CET follow.
    assert runs("*/20 * * * *", utc(2025, 10, 26, 0, 30), PARIS) == [
        utc(2025, 10, 26, 0, 40),
        utc(2025, 10, 26, 1, 0),
        utc(2025, 10, 26, 1, 20),
        utc(2025, 10, 26, 1, 40),
    ]


def test_every_minute_is_continuous_across_both_changes():
    assert runs("* * * * *", utc(2025, 3, 30, 0, 58), PARIS, 3) == [
        utc(2025, 3, 30, 0, 59),
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 30, 1, 1),
    ]
    assert runs("* * * * *", utc(2025, 10, 26, 0, 58), PARIS, 3) == [
        utc(2025, 10, 26, 0, 59),
        utc(2025, 10, 26, 1, 0),
        utc(2025, 10, 26, 1, 1),
    ]


@pytest.mark.parametrize(
    "crontab, text",
    [
        ("* * * * *", "Every minute"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("@daily", "At 00:00"),
        ("0 9 * * mon-fri", "At 09:00, Monday through Friday"),
        ("0 9 * * 1,3,5", "At 09:00, only on Monday, Wednesday, and Friday"),
        ("0 0 1 1 *", "At 00:00, on day 1 of the month, only in January"),
        (
            "*/5 9-17 * * 1-5",
            "Every 5 minutes, between 09:00 and 17:59, Monday through Friday",
        ),
        (
            "0 8-18/2 * * mon-fri",
            "Every 2 hours, between 08:00 and 18:59, Monday through Friday",
        ),
    ],
)
def test_common_crontabs_are_described(crontab, text):
    assert describe(crontab) == text


@pytest.mark.parametrize(
    "crontab, text",
    [
        ("0 0 L * *", "At 00:00, on the last day of the month"),
        ("0 0 15W * *", "At 00:00, on the weekday nearest day 15 of the month"),
        ("0 0 * * 1#1", "At 00:00, on the first Monday of the month"),
        ("0 0 * * L5", "At 00:00, on the last Friday of the month"),
    ],
)
def test_the_cron_extensions_cq_accepts_are_described(crontab, text):
    expand(crontab)
    assert describe(crontab) == text


# Invalid ones, and a list of nth weekdays that the library words with a blank
# where the ordinals should be ("on the  Monday and Friday of the month").
@pytest.mark.parametrize("crontab", ["0 0 * * mon#2,fri#3", "bad", "61 * * * *", ""])
def test_other_crontabs_are_shown_as_written(crontab):
    assert describe(crontab) == crontab
