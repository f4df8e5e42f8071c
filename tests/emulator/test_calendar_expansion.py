"""The emulator's series expansion against dates computed by hand from Microsoft's examples.

Patterns and ranges are the documented examples of docs `concepts/outlook-schedule-recurring-
events.md` @ 15f91f36 and `api/user-post-events.md` @ b7c64905; each expected list was worked
out on a paper calendar, not by another recurrence library.
"""

from __future__ import annotations

from datetime import date
from itertools import islice
from typing import Any

import pytest

from m365sync.emulator import calendar as cal


def rec(pattern: dict[str, Any], rng: dict[str, Any], start: str) -> dict[str, Any]:
    return cal.normalize_recurrence(
        {"pattern": pattern, "range": rng}, {"dateTime": start, "timeZone": "UTC"}
    )


def dates(recurrence: dict[str, Any], n: int = 100) -> list[str]:
    return [d.isoformat() for d in islice(cal.occurrence_dates(recurrence), n)]


def test_weekly_monday_until_end_of_year_ends_on_december_25() -> None:
    # "Because December 31, 2017, is on a Sunday, the last occurrence in this series will be on
    # Monday, December 25."
    r = rec(
        {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
        {"type": "endDate", "startDate": "2017-09-04", "endDate": "2017-12-31"},
        "2017-09-04T12:00:00",
    )
    got = dates(r)
    assert got[:3] == ["2017-09-04", "2017-09-11", "2017-09-18"]
    assert got[-1] == "2017-12-25" and len(got) == 17


def test_relative_monthly_first_thursday_every_other_month_starts_in_september() -> None:
    # "Because the value of startDate is after the first Thursday in August, the first
    # occurrence of this series will be in September." Sep 1 2017 was a Friday.
    r = rec(
        {"type": "relativeMonthly", "interval": 2, "daysOfWeek": ["Thursday"], "index": "first"},
        {"type": "noEnd", "startDate": "2017-08-29"},
        "2017-08-29T14:00:00",
    )
    assert dates(r, 4) == ["2017-09-07", "2017-11-02", "2018-01-04", "2018-03-01"]


def test_daily_every_three_days_numbered() -> None:
    r = rec(
        {"type": "daily", "interval": 3},
        {"type": "numbered", "startDate": "2017-04-02", "numberOfOccurrences": 10},
        "2017-04-02T09:00:00",
    )
    got = dates(r)
    assert len(got) == 10
    assert got[:4] == ["2017-04-02", "2017-04-05", "2017-04-08", "2017-04-11"]
    assert got[-1] == "2017-04-29"


def test_weekly_every_other_monday_and_tuesday() -> None:
    # 2017-07-03 is a Monday.
    r = rec(
        {"type": "weekly", "interval": 2, "daysOfWeek": ["Monday", "Tuesday"]},
        {"type": "endDate", "startDate": "2017-07-01", "endDate": "2017-07-31"},
        "2017-07-01T09:00:00",
    )
    # startDate is a Saturday: the week of July 1 (Sunday-based weeks start June 25) has no
    # Monday/Tuesday left, so the first occurrence week is July 2-8, then every other week.
    assert dates(r) == ["2017-07-03", "2017-07-04", "2017-07-17", "2017-07-18", "2017-07-31"]


def test_weekly_first_day_of_week_matters_for_intervals() -> None:
    # Start Wednesday 2017-07-05, every other week on Sunday and Wednesday.
    sunday_weeks = rec(
        {"type": "weekly", "interval": 2, "daysOfWeek": ["sunday", "wednesday"]},
        {"type": "numbered", "startDate": "2017-07-05", "numberOfOccurrences": 4},
        "2017-07-05T09:00:00",
    )
    monday_weeks = rec(
        {
            "type": "weekly",
            "interval": 2,
            "daysOfWeek": ["sunday", "wednesday"],
            "firstDayOfWeek": "monday",
        },
        {"type": "numbered", "startDate": "2017-07-05", "numberOfOccurrences": 4},
        "2017-07-05T09:00:00",
    )
    # Sunday-first: week Jul 2-8 holds Wed 5; next period Jul 16-22 holds Sun 16, Wed 19.
    assert dates(sunday_weeks) == ["2017-07-05", "2017-07-16", "2017-07-19", "2017-07-30"]
    # Monday-first: week Jul 3-9 holds Wed 5 and Sun 9; next period Jul 17-23.
    assert dates(monday_weeks) == ["2017-07-05", "2017-07-09", "2017-07-19", "2017-07-23"]


def test_absolute_monthly_15th_and_quarterly_7th() -> None:
    monthly = rec(
        {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 15},
        {"type": "numbered", "startDate": "2017-05-20", "numberOfOccurrences": 3},
        "2017-05-20T09:00:00",
    )
    assert dates(monthly) == ["2017-06-15", "2017-07-15", "2017-08-15"]
    quarterly = rec(
        {"type": "absoluteMonthly", "interval": 3, "dayOfMonth": 7},
        {"type": "numbered", "startDate": "2017-01-07", "numberOfOccurrences": 4},
        "2017-01-07T09:00:00",
    )
    assert dates(quarterly) == ["2017-01-07", "2017-04-07", "2017-07-07", "2017-10-07"]


def test_absolute_monthly_day_31_falls_on_the_last_day_of_short_months() -> None:
    r = rec(
        {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
        {"type": "numbered", "startDate": "2024-01-31", "numberOfOccurrences": 4},
        "2024-01-31T09:00:00",
    )
    assert dates(r) == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"]


def test_relative_monthly_second_wednesday_and_first_thursday_or_friday() -> None:
    second_wednesday = rec(
        {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["Wednesday"], "index": "second"},
        {"type": "numbered", "startDate": "2017-01-01", "numberOfOccurrences": 3},
        "2017-01-01T09:00:00",
    )
    assert dates(second_wednesday) == ["2017-01-11", "2017-02-08", "2017-03-08"]
    thursday_or_friday = rec(
        {
            "type": "relativeMonthly",
            "interval": 1,
            "daysOfWeek": ["Thursday", "Friday"],
            "index": "first",
        },
        {"type": "numbered", "startDate": "2017-09-01", "numberOfOccurrences": 3},
        "2017-09-01T09:00:00",
    )
    # Sep 1 2017 Friday; Oct 5 Thursday; Nov 2 Thursday.
    assert dates(thursday_or_friday) == ["2017-09-01", "2017-10-05", "2017-11-02"]
    last_weekday = rec(
        {
            "type": "relativeMonthly",
            "interval": 1,
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "index": "last",
        },
        {"type": "numbered", "startDate": "2017-09-01", "numberOfOccurrences": 3},
        "2017-09-01T09:00:00",
    )
    # Sep 30 2017 Saturday -> Fri 29; Oct 31 Tuesday; Nov 30 Thursday.
    assert dates(last_weekday) == ["2017-09-29", "2017-10-31", "2017-11-30"]


def test_absolute_yearly_april_15_and_relative_yearly_last_wednesday_of_november() -> None:
    april = rec(
        {"type": "absoluteYearly", "interval": 1, "dayOfMonth": 15, "month": 4},
        {"type": "numbered", "startDate": "2017-04-15", "numberOfOccurrences": 3},
        "2017-04-15T09:00:00",
    )
    assert dates(april) == ["2017-04-15", "2018-04-15", "2019-04-15"]
    november = rec(
        {
            "type": "relativeYearly",
            "interval": 1,
            "daysOfWeek": ["Wednesday"],
            "index": "last",
            "month": 11,
        },
        {"type": "endDate", "startDate": "2017-01-01", "endDate": "2019-12-31"},
        "2017-01-01T09:00:00",
    )
    assert dates(november) == ["2017-11-29", "2018-11-28", "2019-11-27"]
    every_third_year = rec(
        {"type": "absoluteYearly", "interval": 3, "dayOfMonth": 15, "month": 3},
        {"type": "numbered", "startDate": "2017-06-01", "numberOfOccurrences": 2},
        "2017-06-01T09:00:00",
    )
    # March 15 2017 is before the start: the first occurrence is 2018, then every 3 years.
    assert dates(every_third_year) == ["2018-03-15", "2021-03-15"]


def test_end_date_range_example_july_2017() -> None:
    r = rec(
        {"type": "daily", "interval": 7},
        {"type": "endDate", "startDate": "2017-07-01", "endDate": "2017-07-31"},
        "2017-07-01T09:00:00",
    )
    assert dates(r) == ["2017-07-01", "2017-07-08", "2017-07-15", "2017-07-22", "2017-07-29"]


def test_read_back_defaults() -> None:
    r = cal.normalize_recurrence(
        {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
            "range": {"type": "endDate", "startDate": "2017-09-04", "endDate": "2017-12-31"},
        },
        {"dateTime": "2017-09-04T12:00:00", "timeZone": "Pacific Standard Time"},
    )
    # The documented response of "create_event_recurring" (docs `api/user-post-events.md`).
    assert r == {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "month": 0,
            "dayOfMonth": 0,
            "daysOfWeek": ["monday"],
            "firstDayOfWeek": "sunday",
            "index": "first",
        },
        "range": {
            "type": "endDate",
            "startDate": "2017-09-04",
            "endDate": "2017-12-31",
            "recurrenceTimeZone": "Pacific Standard Time",
            "numberOfOccurrences": 0,
        },
    }


@pytest.mark.parametrize(
    "pattern, rng",
    [
        ({"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]}, {"startDate": "2017-09-05"}),
        ({"type": "hourly", "interval": 1}, {}),
        ({"type": "weekly", "interval": 1, "daysOfWeek": ["Funday"]}, {}),
        ({"type": "weekly", "interval": 1, "daysOfWeek": []}, {}),
        ({"type": "absoluteMonthly", "interval": 1}, {}),
        ({"type": "relativeYearly", "interval": 1, "daysOfWeek": ["monday"]}, {}),
        ({"type": "daily", "interval": 0}, {}),
        # an ignored field is still validated (docs: "Even if a field is ignored, it is still
        # validated")
        ({"type": "daily", "interval": 1, "index": "fifth"}, {}),
        ({"type": "daily", "interval": 1}, {"type": "numbered", "numberOfOccurrences": 0}),
        ({"type": "daily", "interval": 1}, {"type": "endDate", "endDate": "2017-09-01"}),
        ({"type": "daily", "interval": 1}, {"type": "sometimes"}),
    ],
)
def test_invalid_recurrences_are_refused(pattern: dict[str, Any], rng: dict[str, Any]) -> None:
    full_range = {"type": "noEnd", "startDate": "2017-09-04", **rng}
    with pytest.raises(cal.CalendarError) as caught:
        rec(pattern, full_range, "2017-09-04T12:00:00")
    assert caught.value.status == 400


def test_weekly_series_keeps_wall_clock_time_across_dst() -> None:
    calendar = cal.Calendar(b"k" * 16, {"displayName": "Megan", "mail": "megan@contoso.com"})
    master, _ = calendar.create(
        {
            "subject": "Standup",
            "start": {"dateTime": "2027-03-08T09:00:00", "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": "2027-03-08T09:30:00", "timeZone": "Pacific Standard Time"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {"type": "numbered", "startDate": "2027-03-08", "numberOfOccurrences": 3},
            },
        }
    )
    low = cal.to_utc(cal.parse_local("2027-03-01T00:00:00"), cal.zone("UTC"))  # type: ignore[arg-type]
    high = cal.to_utc(cal.parse_local("2027-04-01T00:00:00"), cal.zone("UTC"))  # type: ignore[arg-type]
    instances = calendar.instances(master["id"], low, high)
    # US DST starts on Sunday 2027-03-14: 09:00 PST is 17:00Z, 09:00 PDT is 16:00Z.
    assert sorted(i["originalStart"] for i in instances) == [
        "2027-03-08T17:00:00Z",
        "2027-03-15T16:00:00Z",
        "2027-03-22T16:00:00Z",
    ]
    assert {i["start"]["dateTime"][11:19] for i in instances} == {"09:00:00"}
    assert len({i["iCalUId"] for i in instances} | {master["iCalUId"]}) == 4


def test_occurrence_ids_round_trip() -> None:
    oid = cal.occurrence_id("AAMkAGI1AAAt9AHjAAA=", date(2027, 3, 8))
    assert cal.split_occurrence_id(oid) == ("AAMkAGI1AAAt9AHjAAA=", date(2027, 3, 8))
    assert cal.split_occurrence_id("AAMkAGI1AAAt9AHjAAA=") is None


def test_windows_and_iana_zone_names() -> None:
    assert cal.zone("W. Europe Standard Time") == cal.zone("Europe/Berlin")
    assert cal.zone("New Zealand Standard Time") == cal.zone("Pacific/Auckland")
    assert cal.zone("UTC") is not None and cal.zone("Mars Standard Time") is None
