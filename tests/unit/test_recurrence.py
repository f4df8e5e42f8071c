"""Graph recurrence <-> RRULE <-> Odoo, checked over the whole pattern space.

Three references: dateutil's expansion of the RRULE (DTSTART in the zone), a small
independent implementation of Outlook's rules written here (`graph_dates`), and a replica
of how Odoo 18 expands its recurrence fields (`odoo_dates`).
"""

from __future__ import annotations

import calendar
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule as du
from dateutil.relativedelta import relativedelta
from dateutil.rrule import rrulestr
from hypothesis import assume, given
from hypothesis import strategies as st

from m365sync.crm.odoo_recurrence import from_odoo, to_odoo
from m365sync.domain import Recurrence
from m365sync.sync.recurrence import (
    INDEXES,
    PATTERN_TYPES,
    WEEKDAYS,
    Unrepresentable,
    first_occurrence,
    from_rrule,
    normalise,
    occurrences,
    to_rrule,
)
from m365sync.sync.timezones import zone

ZONES = [
    "UTC",
    "Europe/Paris",
    "America/Los_Angeles",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "W. Europe Standard Time",
    "Pacific Standard Time",
]
LIMIT = 40  # occurrences compared per example: several periods of any pattern

# --- strategies ------------------------------------------------------------------------------

days_sets = st.sets(st.sampled_from(WEEKDAYS), min_size=1, max_size=7).map(
    lambda days: tuple(sorted(days, key=WEEKDAYS.index))
)
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2035, 12, 31))


@st.composite
def recurrences(draw: st.DrawFn, pattern_types: tuple[str, ...] = PATTERN_TYPES) -> Recurrence:
    """Any pattern and range, with every other field filled at random, as Graph's read-back
    defaults (and worse) fill them: `normalise` must see through them."""
    start = draw(dates)
    range_type = draw(st.sampled_from(["endDate", "noEnd", "numbered"]))
    return Recurrence(
        pattern_type=draw(st.sampled_from(pattern_types)),
        start_date=start,
        interval=draw(st.integers(1, 5)),
        days_of_week=draw(days_sets),
        day_of_month=draw(st.integers(1, 31) | st.integers(28, 31)),  # month ends, often
        month=draw(st.integers(1, 12)),
        first_day_of_week=draw(st.sampled_from(WEEKDAYS)),
        index=draw(st.sampled_from(list(INDEXES))),
        range_type=range_type,
        end_date=start + timedelta(days=draw(st.integers(0, 900))),
        number_of_occurrences=draw(st.integers(1, 30)),
        time_zone=draw(st.sampled_from(["", "Pacific Standard Time", "UTC"])),
    )


def synchronised(r: Recurrence) -> Recurrence:
    """The same recurrence starting on its first occurrence, as Outlook stores a master."""
    first = first_occurrence(r, datetime.combine(r.start_date, time()))
    assume(first is not None)
    assert first is not None
    return replace(r, start_date=first.date())


def local_start(r: Recurrence, tz: str, at: time) -> datetime:
    return datetime.combine(r.start_date, at, tzinfo=zone(tz))


wall_times = st.times().map(lambda t: t.replace(second=0, microsecond=0))

# --- independent references ------------------------------------------------------------------


def graph_dates(r: Recurrence, start: date, count: int, horizon: date) -> list[date]:
    """Outlook's rules, written out plainly from the Graph and EWS documentation: the series
    begins at the first day on or after ``start`` that fits the pattern, the interval counts
    from there, a day of the month past the month's end means its last day, ``index`` picks
    among all the listed weekdays of the month."""
    result: list[date] = []
    first: date | None = None
    day = start
    while len(result) < count and day <= horizon:
        if _fits(r, day) and (first is None or _in_period(r, first, day)):
            first = first or day
            if r.range_type == "endDate" and r.end_date is not None and day > r.end_date:
                break
            result.append(day)
            if r.range_type == "numbered" and len(result) == r.number_of_occurrences:
                break
        day += timedelta(days=1)
    return result


def _fits(r: Recurrence, day: date) -> bool:
    kind = r.pattern_type
    if kind == "daily":
        return True
    if kind == "weekly":
        return WEEKDAYS[day.weekday()] in r.days_of_week
    if kind in {"absoluteYearly", "relativeYearly"} and day.month != r.month:
        return False
    if kind in {"absoluteMonthly", "absoluteYearly"}:
        last = calendar.monthrange(day.year, day.month)[1]
        return day.day == min(r.day_of_month, last)
    if WEEKDAYS[day.weekday()] not in r.days_of_week:
        return False
    month_days = calendar.monthrange(day.year, day.month)[1]
    candidates = [
        d
        for d in (day.replace(day=n) for n in range(1, month_days + 1))
        if WEEKDAYS[d.weekday()] in r.days_of_week
    ]
    position = INDEXES[r.index]
    return candidates[position - 1 if position > 0 else -1] == day


def _in_period(r: Recurrence, first: date, day: date) -> bool:
    kind = r.pattern_type
    if kind == "daily":
        steps = (day - first).days
    elif kind == "weekly":
        wkst = WEEKDAYS.index(r.first_day_of_week)
        week = lambda d: d - timedelta(days=(d.weekday() - wkst) % 7)  # noqa: E731
        steps = (week(day) - week(first)).days // 7
    elif kind in {"absoluteMonthly", "relativeMonthly"}:
        steps = (day.year - first.year) * 12 + day.month - first.month
    else:
        steps = day.year - first.year
    return steps % r.interval == 0


def odoo_dates(values: dict, start: date, week_start: str) -> list[date]:
    """Odoo 18's expansion (calendar_recurrence.py `_get_rrule`, `_get_start_of_period`,
    `_range_calculation`) for a series whose first event is on ``start``."""
    params: dict = {"interval": values["interval"]}
    if values["rrule_type"] == "monthly" and values["month_by"] == "date":
        params["bymonthday"] = values["day"]
    elif values["rrule_type"] == "monthly":
        weekday = getattr(du, values["weekday"][:2])
        params["byweekday"] = weekday(int(values["byday"]))
    elif values["rrule_type"] == "weekly":
        names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        params["byweekday"] = [du.weekday(i) for i, name in enumerate(names) if values[name]]
        params["wkst"] = WEEKDAYS.index(week_start)
    if values["end_type"] == "count":
        count = min(values["count"], 720)
    elif values["end_type"] == "forever":
        count = 720
    else:
        count = None
        params["until"] = datetime.combine(date.fromisoformat(values["until"]), time.max)
    dtstart = datetime.combine(start, time())
    if values["rrule_type"] == "weekly":
        dtstart += relativedelta(weekday=du.weekday(WEEKDAYS.index(week_start))(-1))
    elif values["rrule_type"] == "monthly":
        dtstart += relativedelta(day=1)
    freq = {"daily": du.DAILY, "weekly": du.WEEKLY, "monthly": du.MONTHLY, "yearly": du.YEARLY}

    def expand(n: int | None) -> list[date]:
        rule = du.rrule(freq[values["rrule_type"]], dtstart=dtstart, count=n, **params)
        return [d.date() for d in islice(rule, 2000)]

    found = expand(count)
    future = [d for d in found if d >= start]
    if count and len(future) < count:
        future = [d for d in expand(2 * count - len(future)) if d >= start]
    return future


# --- RRULE round trip -------------------------------------------------------------------------


@given(recurrences(), st.sampled_from(ZONES), wall_times)
def test_pattern_to_rrule_to_pattern_is_identity(r: Recurrence, tz: str, at: time) -> None:
    r = synchronised(r)
    start = local_start(r, tz, at)
    text = to_rrule(r, start=start)
    back = from_rrule(text, start.replace(tzinfo=None), time_zone=tz)
    assert normalise(back) == normalise(r), text


@given(recurrences())
def test_round_trip_with_a_date_start_as_all_day_series_have(r: Recurrence) -> None:
    r = synchronised(r)
    text = to_rrule(r)  # UNTIL as a DATE
    assert normalise(from_rrule(text, r.start_date)) == normalise(r), text


@given(recurrences())
def test_interval_one_round_trips_from_any_start(r: Recurrence) -> None:
    r = replace(r, interval=1)
    assert normalise(from_rrule(to_rrule(r), r.start_date)) == normalise(r)


@given(recurrences())
def test_normalise_is_idempotent_and_sees_through_read_back_defaults(r: Recurrence) -> None:
    n = normalise(r)
    assert normalise(n) == n
    graph_readback = replace(
        r,
        month=0 if r.pattern_type not in {"absoluteYearly", "relativeYearly"} else r.month,
        day_of_month=0
        if r.pattern_type not in {"absoluteMonthly", "absoluteYearly"}
        else r.day_of_month,
        first_day_of_week="sunday" if r.pattern_type != "weekly" else r.first_day_of_week,
        days_of_week=tuple(d.title() for d in reversed(r.days_of_week)),
        time_zone="Pacific Standard Time",
    )
    assert normalise(graph_readback) == n


# --- occurrences --------------------------------------------------------------------------------


@given(recurrences(), st.sampled_from(ZONES), wall_times)
def test_occurrences_equal_dateutils_expansion_of_the_rrule(
    r: Recurrence, tz: str, at: time
) -> None:
    r = synchronised(r)
    start = local_start(r, tz, at)
    reference = list(islice(rrulestr(to_rrule(r, start=start), dtstart=start), LIMIT))
    assert occurrences(r, start, tz=tz, limit=LIMIT) == reference


@given(recurrences(), st.sampled_from(ZONES), wall_times)
def test_occurrences_follow_outlooks_rules(r: Recurrence, tz: str, at: time) -> None:
    """Any start, fitting the pattern or not, against the plain reference above."""
    r = normalise(r)
    start = local_start(r, tz, at)
    horizon = r.start_date + timedelta(days=366 * 12)
    until = datetime.combine(horizon, time.max, tzinfo=zone(tz))
    got = occurrences(r, start, tz=tz, until=until, limit=LIMIT)
    expected = graph_dates(r, r.start_date, LIMIT, horizon)
    assert [o.date() for o in got] == expected
    assert all(o.time() == at and o.tzinfo == zone(tz) for o in got)


@given(recurrences(), st.sampled_from(ZONES))
def test_occurrences_accept_a_utc_start_and_stop_at_until(r: Recurrence, tz: str) -> None:
    r = synchronised(r)
    start = local_start(r, tz, time(9, 30))
    all_of_them = occurrences(r, start, tz=tz, limit=LIMIT)
    assert occurrences(r, start.astimezone(UTC), tz=tz, limit=LIMIT) == all_of_them
    assume(len(all_of_them) > 2)
    cut = all_of_them[2]
    assert occurrences(r, start, tz=tz, until=cut) == all_of_them[:3]
    assert occurrences(r, start, tz=tz, limit=2) == all_of_them[:2]


@pytest.mark.parametrize(
    ("tz", "first", "dst_change"),
    [
        ("Europe/Paris", date(2025, 3, 3), date(2025, 3, 30)),  # spring forward
        ("Europe/Paris", date(2025, 10, 6), date(2025, 10, 26)),  # fall back
        ("America/Los_Angeles", date(2025, 2, 24), date(2025, 3, 9)),
        ("America/Los_Angeles", date(2025, 10, 20), date(2025, 11, 2)),
        ("Pacific Standard Time", date(2025, 2, 24), date(2025, 3, 9)),
        ("Pacific/Auckland", date(2025, 3, 24), date(2025, 4, 6)),
    ],
)
def test_weekly_series_keeps_its_local_time_across_dst(
    tz: str, first: date, dst_change: date
) -> None:
    r = Recurrence(
        "weekly",
        first,
        days_of_week=(WEEKDAYS[first.weekday()],),
        range_type="numbered",
        number_of_occurrences=8,
    )
    start = datetime.combine(first, time(9), tzinfo=zone(tz))
    got = occurrences(r, start, tz=tz)
    assert len(got) == 8
    assert {o.time() for o in got} == {time(9)}
    before = {o.utcoffset() for o in got if o.date() < dst_change}
    after = {o.utcoffset() for o in got if o.date() > dst_change}
    assert len(before) == len(after) == 1
    assert before != after  # same wall-clock time, a different UTC instant
    utc_hours = {o.astimezone(UTC).hour for o in got}
    assert len(utc_hours) == 2


def test_day_31_falls_on_the_last_day_of_shorter_months() -> None:
    # EWS AbsoluteMonthlyRecurrence: "If for a particular month this value is larger than
    # the number of days in the month, the last day of the month is assumed".
    r = Recurrence("absoluteMonthly", date(2024, 1, 31), day_of_month=31)
    got = [o.date() for o in occurrences(r, datetime(2024, 1, 31, 10), tz="UTC", limit=4)]
    assert got == [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)]
    r30 = replace(r, day_of_month=30, start_date=date(2025, 1, 30))
    got = [o.date() for o in occurrences(r30, datetime(2025, 1, 30, 10), tz="UTC", limit=3)]
    assert got == [date(2025, 1, 30), date(2025, 2, 28), date(2025, 3, 30)]
    assert to_rrule(r) == "FREQ=MONTHLY;BYMONTHDAY=-1"
    assert to_rrule(r30) == "FREQ=MONTHLY;BYMONTHDAY=28,29,30;BYSETPOS=-1"


def test_series_starting_off_pattern_counts_its_interval_from_the_first_occurrence() -> None:
    # The Graph concept page's example: the first Thursday of every other month, from
    # 29 August 2017, has its first occurrence in September.
    r = Recurrence(
        "relativeMonthly", date(2017, 8, 29), interval=2, days_of_week=("thursday",), index="first"
    )
    got = [o.date() for o in occurrences(r, datetime(2017, 8, 29, 14), tz="UTC", limit=3)]
    assert got == [date(2017, 9, 7), date(2017, 11, 2), date(2018, 1, 4)]


def test_end_date_includes_its_day_in_the_series_zone() -> None:
    # The Graph concept page's example: Mondays from 4 September to 31 December 2017 end
    # on 25 December. In Auckland, 09:00 on an end date is still the previous day in UTC.
    r = Recurrence(
        "weekly",
        date(2017, 9, 4),
        days_of_week=("monday",),
        range_type="endDate",
        end_date=date(2017, 12, 25),
    )
    for tz in ("UTC", "Pacific/Auckland", "America/Los_Angeles"):
        start = datetime(2017, 9, 4, 9, tzinfo=ZoneInfo(tz))
        got = occurrences(r, start, tz=tz)
        assert got[-1].date() == date(2017, 12, 25), tz
        assert len(got) == 17
    auckland = to_rrule(r, start=datetime(2017, 9, 4, 9, tzinfo=ZoneInfo("Pacific/Auckland")))
    assert "UNTIL=20171224T200000Z" in auckland
    assert "UNTIL=20171225T090000;" in to_rrule(r, start=datetime(2017, 9, 4, 9))  # floating
    assert "UNTIL=20171225;" in to_rrule(r)  # all-day


def test_graphs_weekly_read_back_compares_equal_to_what_was_sent() -> None:
    # event_create_recurring_weekly_series_master.json: sent "Monday", read back with
    # month 0, dayOfMonth 0, firstDayOfWeek "sunday", index "first", a recurrenceTimeZone.
    sent = Recurrence(
        "weekly",
        date(2017, 9, 4),
        days_of_week=("Monday",),
        range_type="endDate",
        end_date=date(2017, 12, 31),
    )
    read = Recurrence(
        "weekly",
        date(2017, 9, 4),
        days_of_week=("monday",),
        first_day_of_week="sunday",
        index="first",
        range_type="endDate",
        end_date=date(2017, 12, 31),
        time_zone="Pacific Standard Time",
    )
    assert normalise(sent) == normalise(read)


# --- RRULEs from elsewhere ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rrule", "start", "expected"),
    [
        (
            "BYDAY=MO,WE;FREQ=WEEKLY",
            date(2025, 1, 6),
            Recurrence("weekly", date(2025, 1, 6), days_of_week=("monday", "wednesday"),
                       first_day_of_week="monday"),
        ),
        (
            "RRULE:FREQ=MONTHLY;BYDAY=1MO",
            date(2025, 1, 6),
            Recurrence("relativeMonthly", date(2025, 1, 6), days_of_week=("monday",)),
        ),
        (
            "FREQ=MONTHLY;BYSETPOS=1;BYDAY=MO",
            date(2025, 1, 6),
            Recurrence("relativeMonthly", date(2025, 1, 6), days_of_week=("monday",)),
        ),
        (
            "FREQ=MONTHLY;BYDAY=-1FR;COUNT=6",
            date(2025, 1, 31),
            Recurrence("relativeMonthly", date(2025, 1, 31), days_of_week=("friday",),
                       index="last", range_type="numbered", number_of_occurrences=6),
        ),
        (
            "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=15",
            date(2025, 3, 15),
            Recurrence("absoluteYearly", date(2025, 3, 15), month=3, day_of_month=15),
        ),
        (
            "FREQ=YEARLY",
            date(2025, 7, 14),
            Recurrence("absoluteYearly", date(2025, 7, 14), month=7, day_of_month=14),
        ),
        (
            "FREQ=MONTHLY;INTERVAL=3",
            date(2025, 1, 7),
            Recurrence("absoluteMonthly", date(2025, 1, 7), interval=3, day_of_month=7),
        ),
        (
            "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",  # "every weekday"
            date(2025, 1, 6),
            Recurrence("weekly", date(2025, 1, 6),
                       days_of_week=("monday", "tuesday", "wednesday", "thursday", "friday")),
        ),
        (
            "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU;UNTIL=20250630T235959;X-EVOLUTION-ENDDATE=20250630",
            date(2025, 1, 7),
            Recurrence("weekly", date(2025, 1, 7), days_of_week=("tuesday",),
                       range_type="endDate", end_date=date(2025, 6, 30)),
        ),
        (
            "FREQ=WEEKLY",
            date(2025, 1, 8),
            Recurrence("weekly", date(2025, 1, 8), days_of_week=("wednesday",)),
        ),
    ],
)  # fmt: skip
def test_common_rrules_from_other_clients(rrule: str, start: date, expected: Recurrence) -> None:
    assert normalise(from_rrule(rrule, start)) == normalise(expected)


def test_yearly_by_month_day_without_bymonth_repeats_every_month() -> None:
    # RFC 5545 3.3.10: BYMONTHDAY "expands" a YEARLY rule and a missing BYMONTH is not taken
    # from DTSTART once a BYxxx part names the days, so FREQ=YEARLY;BYMONTHDAY=15 is the 15th
    # of every month (dateutil agrees). Outlook says that as absoluteMonthly, interval 1.
    start = datetime(2025, 3, 15, 9)
    r = from_rrule("FREQ=YEARLY;BYMONTHDAY=15", start)
    assert normalise(r) == normalise(Recurrence("absoluteMonthly", start.date(), day_of_month=15))
    rfc = list(islice(rrulestr("FREQ=YEARLY;BYMONTHDAY=15", dtstart=start), 14))
    outlook = occurrences(r, start, tz="UTC", limit=14)
    assert [o.replace(tzinfo=None) for o in outlook] == rfc
    assert rfc[1] == datetime(2025, 4, 15, 9)  # not March 2026
    # The last day of every month, and a count, come across the same way.
    last = from_rrule("FREQ=YEARLY;BYMONTHDAY=-1;COUNT=5", date(2025, 1, 31))
    assert normalise(last) == normalise(
        Recurrence("absoluteMonthly", date(2025, 1, 31), day_of_month=31,
                   range_type="numbered", number_of_occurrences=5)
    )  # fmt: skip
    # Every month of every other year has no Outlook pattern: refused with a sentence.
    with pytest.raises(Unrepresentable, match="every month") as caught:
        from_rrule("FREQ=YEARLY;INTERVAL=2;BYMONTHDAY=15", start)
    assert str(caught.value).endswith(".")


def test_a_utc_until_is_read_in_the_series_zone() -> None:
    # 09:00 in Los Angeles on 30 June is 16:00Z; 02:00Z on 1 July is still 30 June there.
    r = from_rrule("FREQ=DAILY;UNTIL=20250701T020000Z", datetime(2025, 6, 1, 9),
                   time_zone="Pacific Standard Time")  # fmt: skip
    assert r.end_date == date(2025, 6, 30)
    assert r.time_zone == "Pacific Standard Time"
    # An UNTIL earlier in the day than the series' time excludes that day's occurrence.
    early = from_rrule("FREQ=DAILY;UNTIL=20250630T080000", datetime(2025, 6, 1, 9))
    assert early.end_date == date(2025, 6, 29)


@pytest.mark.parametrize(
    "rrule",
    [
        "FREQ=HOURLY",
        "FREQ=MINUTELY;INTERVAL=15",
        "FREQ=DAILY;BYHOUR=9,17",
        "FREQ=MONTHLY;BYMONTHDAY=1,15",
        "FREQ=MONTHLY;BYMONTHDAY=31",  # skips short months; Outlook would not
        "FREQ=MONTHLY;BYDAY=1MO,3FR",  # mixed ordinals
        "FREQ=MONTHLY;BYDAY=1MO,1TU",  # two numbered weekdays
        "FREQ=MONTHLY;BYDAY=2MO;BYSETPOS=1",
        "FREQ=MONTHLY;BYDAY=5FR",  # no "fifth" in Outlook
        "FREQ=MONTHLY;BYDAY=-2FR",
        "FREQ=MONTHLY;BYDAY=MO;BYMONTHDAY=13",
        "FREQ=MONTHLY;BYMONTH=1,7;BYMONTHDAY=1",
        "FREQ=MONTHLY;INTERVAL=2;BYDAY=MO",  # every Monday of every other month
        "FREQ=YEARLY;BYMONTH=1,7",
        "FREQ=YEARLY;BYDAY=20MO",  # the 20th Monday of the year
        "FREQ=YEARLY;BYWEEKNO=20",
        "FREQ=YEARLY;BYYEARDAY=100",
        "FREQ=DAILY;INTERVAL=2;BYDAY=MO,FR",
        "FREQ=WEEKLY;BYMONTH=6",
        "FREQ=YEARLY;INTERVAL=2;BYMONTHDAY=15",  # every month of every other year
        "FREQ=YEARLY;BYMONTHDAY=28,29,30,31;BYSETPOS=-1",  # the last of them in the year
    ],
)
def test_rrules_outlook_cannot_express_raise_unrepresentable(rrule: str) -> None:
    with pytest.raises(Unrepresentable) as caught:
        from_rrule(rrule, date(2025, 1, 6))
    assert str(caught.value).endswith(".")  # a sentence for the UI


def test_an_off_pattern_start_with_an_interval_is_unrepresentable_as_is() -> None:
    # RFC 5545 counts "every other month" from August, Outlook from the first occurrence.
    with pytest.raises(Unrepresentable, match="2017-10-05"):
        from_rrule("FREQ=MONTHLY;INTERVAL=2;BYDAY=1TH", date(2017, 8, 29))
    assert from_rrule("FREQ=MONTHLY;INTERVAL=2;BYDAY=1TH", date(2017, 10, 5)).interval == 2


@pytest.mark.parametrize(
    "rrule", ["", "FREQ=WEEKLY;COUNT=3;UNTIL=20250101", "INTERVAL=2", "FREQ=DAILY;INTERVAL=0"]
)
def test_broken_rrules_raise_value_error(rrule: str) -> None:
    with pytest.raises(ValueError) as caught:
        from_rrule(rrule, date(2025, 1, 6))
    assert not isinstance(caught.value, Unrepresentable)  # broken, not merely foreign


def test_invalid_patterns_are_rejected() -> None:
    with pytest.raises(ValueError, match="daysOfWeek"):
        to_rrule(Recurrence("weekly", date(2025, 1, 6)))
    with pytest.raises(ValueError, match="pattern type"):
        to_rrule(Recurrence("fortnightly", date(2025, 1, 6)))
    with pytest.raises(ValueError, match="end date"):
        to_rrule(Recurrence("daily", date(2025, 1, 6), range_type="endDate"))


# --- Odoo ---------------------------------------------------------------------------------------

ODOO_PATTERNS = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly")


@st.composite
def odoo_representable(draw: st.DrawFn) -> tuple[Recurrence, str]:
    r = draw(recurrences(ODOO_PATTERNS))
    week_start = draw(st.sampled_from(WEEKDAYS))
    if r.pattern_type == "absoluteMonthly":
        r = replace(r, day_of_month=min(r.day_of_month, 28))
    if r.pattern_type == "relativeMonthly":
        r = replace(r, days_of_week=r.days_of_week[:1])
    r = synchronised(r)
    if r.pattern_type == "absoluteYearly":
        assume((r.start_date.month, r.start_date.day) != (2, 29))
        r = replace(r, month=r.start_date.month, day_of_month=r.start_date.day)
    if r.pattern_type == "weekly" and draw(st.booleans()):
        r = replace(r, first_day_of_week=week_start)
    return r, week_start


@given(odoo_representable())
def test_odoo_round_trip_where_representable(case: tuple[Recurrence, str]) -> None:
    r, week_start = case
    try:
        values = to_odoo(r, week_start=week_start)
    except Unrepresentable as refused:
        # Only weekly series refuse here: weeks starting elsewhere than the user's week, or
        # a count Odoo would fall short of (more pattern days before the start than it).
        assert r.pattern_type == "weekly"
        assert (r.interval > 1 and r.first_day_of_week != week_start) or (
            "fewer than" in str(refused) and r.range_type == "numbered"
        )
        return
    back = from_odoo(values, r.start_date, week_start=week_start)
    expected = normalise(r)
    if r.pattern_type == "weekly" and r.interval > 1:
        expected = replace(expected, first_day_of_week=week_start)  # same meaning: checked
    assert normalise(back) == expected


@given(odoo_representable())
def test_odoo_expands_what_to_odoo_gives_as_outlook_does(case: tuple[Recurrence, str]) -> None:
    r, week_start = case
    assume(r.range_type != "noEnd" or r.pattern_type != "daily")  # 720 days: slow, no news
    try:
        values = to_odoo(r, week_start=week_start)
    except Unrepresentable:
        return
    odoo = odoo_dates(values, r.start_date, week_start)[:LIMIT]
    outlook = [o.date() for o in occurrences(r, datetime.combine(r.start_date, time()), tz="UTC",
                                             limit=LIMIT)]  # fmt: skip
    assert odoo == outlook


def test_to_odoo_gives_every_field() -> None:
    r = Recurrence(
        "relativeMonthly",
        date(2025, 1, 14),
        interval=2,
        days_of_week=("tuesday",),
        index="second",
        range_type="endDate",
        end_date=date(2025, 12, 31),
        time_zone="W. Europe Standard Time",
    )
    assert to_odoo(r) == {
        "rrule_type": "monthly",
        "interval": 2,
        "mon": False, "tue": False, "wed": False, "thu": False, "fri": False, "sat": False,
        "sun": False,
        "month_by": "day",
        "day": 1,
        "weekday": "TUE",
        "byday": "2",
        "end_type": "end_date",
        "count": 1,
        "until": "2025-12-31",
        "event_tz": "Europe/Berlin",
    }  # fmt: skip
    assert to_odoo(r, tz="Europe/Paris")["event_tz"] == "Europe/Paris"


@pytest.mark.parametrize(
    ("r", "why"),
    [
        (Recurrence("relativeYearly", date(2025, 11, 28), days_of_week=("friday",), index="last",
                    month=11), "weekday of a month"),
        (Recurrence("relativeMonthly", date(2025, 1, 2), days_of_week=("thursday", "friday")),
         "one weekday"),
        (Recurrence("absoluteMonthly", date(2025, 1, 31), day_of_month=31), "last day"),
        (Recurrence("absoluteMonthly", date(2025, 1, 29), day_of_month=29), "last day"),
        (Recurrence("absoluteYearly", date(2025, 1, 1), month=3, day_of_month=15),
         "first event's date"),
        (Recurrence("absoluteYearly", date(2024, 2, 29), month=2, day_of_month=29), "28th"),
        (Recurrence("daily", date(2025, 1, 1), range_type="numbered", number_of_occurrences=900),
         "at most 720"),
        (Recurrence("weekly", date(2025, 1, 5), interval=2, days_of_week=("sunday", "monday"),
                    first_day_of_week="sunday"), "weeks start"),
        (Recurrence("weekly", date(2025, 1, 4), days_of_week=("monday", "tuesday", "saturday"),
                    range_type="numbered", number_of_occurrences=1), "fewer than 1"),
    ],
)  # fmt: skip
def test_what_odoo_cannot_express(r: Recurrence, why: str) -> None:
    with pytest.raises(Unrepresentable, match=why):
        to_odoo(r, week_start="monday")


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"rrule_type": "monthly", "month_by": "date", "day": 31, "end_type": "forever"},
         "skips months"),
        ({"rrule_type": "yearly", "end_type": "forever"}, "29 February"),
    ],
)  # fmt: skip
def test_what_outlook_cannot_take_from_odoo(values: dict, why: str) -> None:
    with pytest.raises(Unrepresentable, match=why):
        from_odoo(values, date(2024, 2, 29))


def test_from_odoo_reads_odoos_false_and_strings() -> None:
    values = {
        "rrule_type": "weekly", "interval": 1, "end_type": "end_date", "until": "2025-06-30",
        "count": 1, "mon": True, "tue": False, "wed": True, "thu": False, "fri": False,
        "sat": False, "sun": False, "month_by": "date", "day": 1, "weekday": False,
        "byday": False, "event_tz": "Europe/Paris",
    }  # fmt: skip
    r = from_odoo(values, date(2025, 1, 6), week_start="monday")
    assert normalise(r) == normalise(
        Recurrence("weekly", date(2025, 1, 6), days_of_week=("monday", "wednesday"),
                   range_type="endDate", end_date=date(2025, 6, 30))
    )  # fmt: skip
    assert r.time_zone == "Europe/Paris"
