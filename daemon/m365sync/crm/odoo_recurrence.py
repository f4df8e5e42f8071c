"""Odoo's ``calendar.recurrence`` <-> Graph's ``patternedRecurrence``: the Odoo adapter's
translation (`crm.odoo`), kept beside it so the sync core (`sync.recurrence`) speaks only
Outlook's and RFC 5545's terms.

Odoo's model is narrower than Outlook's: where it cannot hold a pattern (or Outlook cannot
repeat what Odoo does) `Unrepresentable` says why in one sentence, and no approximate series
is made. Odoo expands a series with dateutil from ``calendar.recurrence``'s fields; the
property tests in ``tests/unit/test_recurrence.py`` compare that expansion with Outlook's.
"""

from __future__ import annotations

import calendar
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any

from dateutil.rrule import rrulestr

from m365sync.domain import Recurrence
from m365sync.sync import timezones
from m365sync.sync.recurrence import (
    FREQ_OF,
    INDEXES,
    ORDINALS,
    WEEKDAYS,
    Unrepresentable,
    normalise,
    shortest_month,
    to_rrule,
    validate,
)

__all__ = ["ODOO_MAX_OCCURRENCES", "from_odoo", "to_odoo"]

_ODOO_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # boolean field names
_ODOO_WEEKDAY = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")  # `weekday` selection

# Odoo 18 materialises at most this many events for a count or a "forever" recurrence
# (addons/calendar/models/calendar_recurrence.py: MAX_RECURRENT_EVENT = 720).
ODOO_MAX_OCCURRENCES = 720


def to_odoo(r: Recurrence, *, week_start: str = "sunday", tz: str | None = None) -> dict[str, Any]:
    """Values for Odoo 18's ``calendar.recurrence`` fields meaning the same series.

    Every recurrence field is given, so a write also clears what an earlier pattern set.
    ``until`` is an ISO date string or False, as Odoo takes and gives dates over RPC.
    ``week_start`` is the Odoo user's language week start (``res.lang.week_start``), which
    Odoo uses as WKST: it has no field for it. ``tz`` (IANA) becomes ``event_tz``; without
    it, the recurrence's own zone is used when it has one. Raises `Unrepresentable` where
    Odoo's model cannot hold the pattern (see `_odoo_pattern`).
    """
    n = normalise(r)
    validate(n)
    values: dict[str, Any] = {
        "rrule_type": FREQ_OF[n.pattern_type].lower(),
        "interval": n.interval,
        **dict.fromkeys(_ODOO_DAYS, False),
        "month_by": "date",
        "day": 1,
        "weekday": False,
        "byday": False,
        **_odoo_pattern(n, week_start.lower()),
        **_odoo_range(n),
    }
    zone_name = tz or (timezones.to_iana(r.time_zone) if r.time_zone else None)
    if zone_name:
        values["event_tz"] = zone_name
    return values


def _odoo_pattern(n: Recurrence, week_start: str) -> dict[str, Any]:
    kind = n.pattern_type
    if kind == "weekly":
        if _wkst_matters(n, week_start):
            raise Unrepresentable(
                f"This series' weeks start on {n.first_day_of_week.title()}, but Odoo counts"
                f" every {n.interval} weeks from {week_start.title()} (the user's language)."
            )
        _check_odoo_count(n, week_start)
        return {day: WEEKDAYS[i] in n.days_of_week for i, day in enumerate(_ODOO_DAYS)}
    if kind == "absoluteMonthly":
        if n.day_of_month > 28:
            raise Unrepresentable(
                f"Outlook moves day {n.day_of_month} to the last day of shorter months;"
                " Odoo skips those months."
            )
        return {"month_by": "date", "day": n.day_of_month}
    if kind == "relativeMonthly":
        if len(n.days_of_week) != 1:
            raise Unrepresentable(
                "Odoo repeats monthly on one weekday only, not on the"
                f" {n.index} of {', '.join(d.title() for d in n.days_of_week)}."
            )
        weekday = _ODOO_WEEKDAY[WEEKDAYS.index(n.days_of_week[0])]
        return {"month_by": "day", "weekday": weekday, "byday": str(INDEXES[n.index])}
    if kind == "absoluteYearly":
        return _odoo_yearly(n)
    if kind == "relativeYearly":
        raise Unrepresentable(
            "Odoo cannot repeat yearly on a weekday of a month (such as the last Friday of"
            " November); its yearly series repeat the first event's date."
        )
    return {}  # daily


def _odoo_yearly(n: Recurrence) -> dict[str, Any]:
    """Odoo's yearly series have no month or day: dateutil repeats the first event's date."""
    if (n.month, n.day_of_month) != (n.start_date.month, n.start_date.day):
        raise Unrepresentable(
            f"Odoo repeats a yearly series on its first event's date ({n.start_date:%d %B}),"
            f" not on {n.day_of_month} {calendar.month_name[n.month]}."
        )
    if n.day_of_month > shortest_month(n.month):
        raise Unrepresentable(
            "Outlook moves 29 February to the 28th in other years; Odoo skips those years."
        )
    return {}


def _check_odoo_count(n: Recurrence, week_start: str) -> None:
    """Odoo expands a weekly count from the start of the first event's week, drops what
    precedes the event, and retries once with the count doubled less what it kept
    (`_range_calculation`): with more such earlier days than the count, it creates fewer
    events than asked for."""
    if n.range_type != "numbered":
        return
    wkst = WEEKDAYS.index(week_start)
    position = (n.start_date.weekday() - wkst) % 7
    earlier = sum(1 for day in n.days_of_week if (WEEKDAYS.index(day) - wkst) % 7 < position)
    if earlier > n.number_of_occurrences:
        raise Unrepresentable(
            f"Odoo would create fewer than {n.number_of_occurrences} events for this series,"
            " as it counts from the start of the first event's week."
        )


def _wkst_matters(n: Recurrence, week_start: str) -> bool:
    """Whether counting weeks from ``week_start`` instead of the pattern's own
    firstDayOfWeek would change the occurrences (only for intervals above 1)."""
    if n.interval == 1 or week_start == n.first_day_of_week:
        return False
    if week_start not in WEEKDAYS:
        raise ValueError(f"unknown week start {week_start!r}")
    dtstart = datetime.combine(n.start_date, time())
    horizon = dtstart + timedelta(weeks=3 * n.interval + 1)

    def expand(wkst: str) -> list[datetime]:
        rule = rrulestr(to_rrule(replace(n, first_day_of_week=wkst)), dtstart=dtstart)
        return rule.between(dtstart, horizon, inc=True)

    return expand(n.first_day_of_week) != expand(week_start)


def _odoo_range(n: Recurrence) -> dict[str, Any]:
    if n.range_type == "numbered":
        if n.number_of_occurrences > ODOO_MAX_OCCURRENCES:
            raise Unrepresentable(
                f"Odoo creates at most {ODOO_MAX_OCCURRENCES} events in a series, not"
                f" {n.number_of_occurrences}."
            )
        return {"end_type": "count", "count": n.number_of_occurrences, "until": False}
    if n.range_type == "endDate":
        assert n.end_date is not None  # validate
        return {"end_type": "end_date", "count": 1, "until": n.end_date.isoformat()}
    return {"end_type": "forever", "count": 1, "until": False}


def from_odoo(values: dict[str, Any], start: date, *, week_start: str = "sunday") -> Recurrence:
    """The Graph recurrence for an Odoo ``calendar.recurrence`` read as ``values``.

    ``start`` is the date of the series' first event (Odoo's yearly series repeat it);
    ``week_start`` is the Odoo user's language week start, Odoo's WKST. Odoo's ``False`` for
    empty fields is understood. Raises `Unrepresentable` where Outlook means otherwise.
    """
    rrule_type = values.get("rrule_type") or "weekly"
    interval = int(values.get("interval") or 1)
    pattern = _pattern_from_odoo(rrule_type, values, start, week_start.lower())
    result = Recurrence(
        start_date=start,
        interval=interval,
        time_zone=values.get("event_tz") or "",
        **pattern,
        **_range_from_odoo(values),
    )
    validate(result)
    return result


def _pattern_from_odoo(
    rrule_type: str, values: dict[str, Any], start: date, week_start: str
) -> dict[str, Any]:
    if rrule_type == "daily":
        return {"pattern_type": "daily"}
    if rrule_type == "weekly":
        days = tuple(WEEKDAYS[i] for i, field in enumerate(_ODOO_DAYS) if values.get(field))
        return {"pattern_type": "weekly", "days_of_week": days, "first_day_of_week": week_start}
    if rrule_type == "monthly":
        return _monthly_from_odoo(values)
    if rrule_type == "yearly":
        if start.day > shortest_month(start.month):
            raise Unrepresentable(
                "Odoo skips 29 February in other years; Outlook would move it to the 28th."
            )
        return {"pattern_type": "absoluteYearly", "month": start.month, "day_of_month": start.day}
    raise ValueError(f"unknown Odoo rrule_type {rrule_type!r}")


def _monthly_from_odoo(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("month_by") == "day":
        weekday = str(values.get("weekday") or "").upper()
        byday = int(values.get("byday") or 0)
        if weekday not in _ODOO_WEEKDAY or byday not in ORDINALS:
            raise ValueError(f"bad Odoo weekday/byday {weekday!r}/{byday!r}")
        day = WEEKDAYS[_ODOO_WEEKDAY.index(weekday)]
        return {"pattern_type": "relativeMonthly", "days_of_week": (day,), "index": ORDINALS[byday]}
    day = int(values.get("day") or 0)
    if day > 28:
        raise Unrepresentable(
            f"Odoo skips months without a day {day}; Outlook would move those occurrences to"
            " the last day of the month instead."
        )
    return {"pattern_type": "absoluteMonthly", "day_of_month": day}


def _range_from_odoo(values: dict[str, Any]) -> dict[str, Any]:
    end_type = values.get("end_type") or "count"
    if end_type == "count":
        return {"range_type": "numbered", "number_of_occurrences": int(values.get("count") or 0)}
    if end_type == "end_date":
        until = values.get("until")
        if not until:
            raise ValueError("an Odoo end_date recurrence needs until")
        end = until if isinstance(until, date) else date.fromisoformat(str(until)[:10])
        return {"range_type": "endDate", "end_date": end}
    if end_type == "forever":
        return {"range_type": "noEnd"}
    raise ValueError(f"unknown Odoo end_type {end_type!r}")
