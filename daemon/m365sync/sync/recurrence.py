"""Recurring series: Graph's ``patternedRecurrence`` <-> RFC 5545 RRULE, in Outlook's terms.

Graph is the reference: a series is what Outlook expands it to. The RRULEs written here
(with icalendar's `vRecur`) are chosen so that an RFC 5545 expander (dateutil) produces
exactly Outlook's occurrences, and `occurrences` expands them that way. Where a rule means
something Graph cannot say (or a CRM's own recurrence model cannot hold a pattern:
`m365sync.crm.odoo_recurrence` for Odoo's ``calendar.recurrence``), `Unrepresentable` is
raised with one sentence for the person, so the caller keeps the original beside it rather
than approximate.

Graph semantics this module relies on (docs: ``resources/recurrencepattern.md``,
``resources/recurrencerange.md``, ``concepts/outlook-schedule-recurring-events.md``; EWS
``AbsoluteMonthlyRecurrence``; MS-OXOCAL 2.2.1.44.1.1):

- ``dayOfMonth`` larger than the month is "the last day of the month" (EWS), where RFC 5545
  would skip the month. So day 31 is written ``BYMONTHDAY=-1`` and days 29 and 30 of a
  monthly pattern ``BYMONTHDAY=28,29[,30];BYSETPOS=-1``; 29 February yearly is ``-1``.
- ``index`` with several ``daysOfWeek`` picks the n-th of all those days in the month ("the
  first Thursday or Friday"): ``BYDAY=TH,FR;BYSETPOS=1``. One day is written ``BYDAY=2TU``.
- The series starts at the first date on or after ``range.startDate`` that fits the pattern,
  and the interval counts from that occurrence (MS-OXOCAL: the first week is "the week in
  which the first event of the recurring series occurs"; the Graph concept page's example of
  "first Thursday of every other month" starting 29 August has its first occurrence in
  September). RFC 5545 counts from DTSTART instead, so `occurrences` first moves DTSTART to
  that first occurrence; with a start that fits the pattern both agree.
- ``endDate`` includes its day, in the series' zone. ``firstDayOfWeek`` is ``WKST``.
- ``numberOfOccurrences`` counts occurrences, so it is ``COUNT``.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from dateutil.rrule import rrulestr
from icalendar import vRecur

from m365sync.domain import Recurrence
from m365sync.sync import timezones

__all__ = [
    "INDEXES",
    "PATTERN_TYPES",
    "RANGE_TYPES",
    "WEEKDAYS",
    "Unrepresentable",
    "first_occurrence",
    "from_rrule",
    "normalise",
    "occurrences",
    "to_rrule",
    "validate",
]

PATTERN_TYPES = (
    "daily",
    "weekly",
    "absoluteMonthly",
    "relativeMonthly",
    "absoluteYearly",
    "relativeYearly",
)
RANGE_TYPES = ("endDate", "noEnd", "numbered")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEXES = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}

_RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # same order as WEEKDAYS
ORDINALS = {value: name for name, value in INDEXES.items()}
FREQ_OF = {
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "absoluteMonthly": "MONTHLY",
    "relativeMonthly": "MONTHLY",
    "absoluteYearly": "YEARLY",
    "relativeYearly": "YEARLY",
}
_SUPPORTED_PARTS = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
)
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_DEFAULTS = Recurrence(pattern_type="daily", start_date=date.min)


class Unrepresentable(ValueError):
    """The target cannot express this recurrence; the message says why, for the UI."""


# --- normalising ----------------------------------------------------------------------------


def normalise(r: Recurrence) -> Recurrence:
    """The same series with every field its pattern and range type ignore reset to defaults.

    Graph reads back defaults in fields a pattern ignores (a weekly pattern comes back with
    month 0, dayOfMonth 0, index "first"; an endDate range with numberOfOccurrences 0 and a
    recurrenceTimeZone), names days "monday" where they were sent as "Monday", and orders
    days as it likes. Two recurrences mean the same series iff their `normalise` are equal.
    ``firstDayOfWeek`` only matters for weekly patterns with an interval above 1.
    ``time_zone`` is cleared: occurrences are always expanded in the event's own zone.
    """
    pattern_type = r.pattern_type
    days = _sorted_days(r.days_of_week)
    keep_days = pattern_type in {"weekly", "relativeMonthly", "relativeYearly"}
    keep_index = pattern_type in {"relativeMonthly", "relativeYearly"}
    keep_month = pattern_type in {"absoluteYearly", "relativeYearly"}
    keep_wkst = pattern_type == "weekly" and r.interval > 1
    day_of_month = r.day_of_month if pattern_type in {"absoluteMonthly", "absoluteYearly"} else 0
    if pattern_type == "absoluteYearly" and 1 <= r.month <= 12:
        day_of_month = min(day_of_month, _max_days(r.month))  # "last day" either way
    return replace(
        r,
        days_of_week=days if keep_days else (),
        day_of_month=day_of_month,
        month=r.month if keep_month else 0,
        first_day_of_week=r.first_day_of_week.lower() if keep_wkst else _DEFAULTS.first_day_of_week,
        index=r.index.lower() if keep_index else _DEFAULTS.index,
        end_date=r.end_date if r.range_type == "endDate" else None,
        number_of_occurrences=r.number_of_occurrences if r.range_type == "numbered" else 0,
        time_zone="",
    )


def _sorted_days(days: tuple[str, ...]) -> tuple[str, ...]:
    lowered = {day.lower() for day in days}
    unknown = lowered - set(WEEKDAYS)
    if unknown:
        raise ValueError(f"unknown day of week: {sorted(unknown)}")
    return tuple(day for day in WEEKDAYS if day in lowered)


def validate(r: Recurrence) -> None:
    """Reject what Graph itself would reject, so nothing below guesses."""
    if r.pattern_type not in PATTERN_TYPES:
        raise ValueError(f"unknown recurrence pattern type {r.pattern_type!r}")
    if r.range_type not in RANGE_TYPES:
        raise ValueError(f"unknown recurrence range type {r.range_type!r}")
    if r.interval < 1:
        raise ValueError(f"recurrence interval must be at least 1, not {r.interval}")
    if r.pattern_type in {"weekly", "relativeMonthly", "relativeYearly"} and not r.days_of_week:
        raise ValueError(f"a {r.pattern_type} pattern needs daysOfWeek")
    if r.pattern_type in {"absoluteMonthly", "absoluteYearly"} and not 1 <= r.day_of_month <= 31:
        raise ValueError(f"dayOfMonth must be 1..31, not {r.day_of_month}")
    if r.pattern_type in {"absoluteYearly", "relativeYearly"} and not 1 <= r.month <= 12:
        raise ValueError(f"month must be 1..12, not {r.month}")
    if r.pattern_type in {"relativeMonthly", "relativeYearly"} and r.index not in INDEXES:
        raise ValueError(f"unknown week index {r.index!r}")
    if r.pattern_type == "weekly" and r.first_day_of_week not in WEEKDAYS:
        raise ValueError(f"unknown firstDayOfWeek {r.first_day_of_week!r}")
    if r.range_type == "endDate" and r.end_date is None:
        raise ValueError("an endDate range needs an end date")
    if r.range_type == "numbered" and r.number_of_occurrences < 1:
        raise ValueError("a numbered range needs a positive numberOfOccurrences")


# --- Graph -> RRULE -------------------------------------------------------------------------


def to_rrule(r: Recurrence, *, start: date | datetime | None = None) -> str:
    """The RFC 5545 RRULE value (without ``RRULE:``) that expands like Outlook expands ``r``.

    ``start`` decides the form of UNTIL for an endDate range, because RFC 5545 ties it to
    DTSTART: an aware datetime (the series' start in its own zone) gives the UTC instant of
    the last possible occurrence, i.e. the start's wall-clock time on the end date in that
    zone (``UNTIL=20170731T070000Z`` for 09:00 Europe/Paris), so it holds across DST; a naive
    datetime gives that wall-clock time, floating; a date or None gives ``UNTIL=<date>``, the
    form for all-day series. All three include the whole end date, as Graph does.
    """
    n = normalise(r)
    validate(n)
    parts: dict[str, Any] = {"FREQ": FREQ_OF[n.pattern_type]}
    if n.interval != 1:
        parts["INTERVAL"] = n.interval
    parts.update(_pattern_parts(n))
    if n.range_type == "numbered":
        parts["COUNT"] = n.number_of_occurrences
    elif n.range_type == "endDate":
        assert n.end_date is not None  # validate
        parts["UNTIL"] = _until_value(n.end_date, start)
    if n.pattern_type == "weekly":
        # The caller's firstDayOfWeek, even where it changes nothing, so it survives a trip.
        wkst = r.first_day_of_week.lower()
        parts["WKST"] = _rrule_day(wkst if wkst in WEEKDAYS else n.first_day_of_week)
    return vRecur(parts).to_ical().decode("ascii")


def _pattern_parts(n: Recurrence) -> dict[str, Any]:
    kind = n.pattern_type
    if kind == "weekly":
        return {"BYDAY": [_rrule_day(day) for day in n.days_of_week]}
    if kind == "absoluteMonthly":
        return _month_day_parts(n.day_of_month, min_days=28, max_days=31)
    if kind == "absoluteYearly":
        parts = _month_day_parts(n.day_of_month, shortest_month(n.month), _max_days(n.month))
        return {"BYMONTH": [n.month], **parts}
    if kind == "relativeMonthly":
        return _relative_parts(n)
    if kind == "relativeYearly":
        return {"BYMONTH": [n.month], **_relative_parts(n)}
    return {}  # daily


def _month_day_parts(day: int, min_days: int, max_days: int) -> dict[str, Any]:
    """Outlook's "day N, or the last day of a shorter month", in RFC 5545 terms."""
    if day <= min_days:
        return {"BYMONTHDAY": [day]}
    if day >= max_days:
        return {"BYMONTHDAY": [-1]}
    return {"BYMONTHDAY": list(range(min_days, day + 1)), "BYSETPOS": [-1]}


def _relative_parts(n: Recurrence) -> dict[str, Any]:
    ordinal = INDEXES[n.index]
    if len(n.days_of_week) == 1:
        return {"BYDAY": [f"{ordinal}{_rrule_day(n.days_of_week[0])}"]}
    return {"BYDAY": [_rrule_day(day) for day in n.days_of_week], "BYSETPOS": [ordinal]}


def _until_value(end: date, start: date | datetime | None) -> date | datetime:
    if not isinstance(start, datetime):
        return end
    last = datetime.combine(end, start.time(), tzinfo=start.tzinfo)
    return last.astimezone(UTC) if start.tzinfo is not None else last


def _rrule_day(day: str) -> str:
    return _RRULE_DAYS[WEEKDAYS.index(day)]


def shortest_month(month: int) -> int:
    return 28 if month == 2 else calendar.monthrange(2001, month)[1]


def _max_days(month: int) -> int:
    return calendar.monthrange(2000, month)[1]  # 2000 is a leap year


# --- RRULE -> Graph -------------------------------------------------------------------------


def from_rrule(rrule: str, start: date | datetime, *, time_zone: str = "") -> Recurrence:
    """The Graph recurrence meaning what ``rrule`` means for a series starting at ``start``.

    Accepts what `to_rrule` writes and the usual forms of other clients: ``BYDAY=1MO`` or
    ``BYDAY=MO;BYSETPOS=1``, ``FREQ=DAILY;BYDAY=MO,...,FR`` (Outlook's "every weekday"),
    ``FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=15``, ``FREQ=YEARLY;BYMONTHDAY=15`` (the 15th of every
    month, as RFC 5545 expands it), a missing BYDAY/BYMONTHDAY/BYMONTH taken from ``start``,
    a missing WKST read as RFC 5545's Monday, ``X-`` parts ignored. ``start`` is a date, or a
    datetime whose wall-clock time makes a datetime UNTIL exact; ``time_zone`` (Windows or
    IANA) is the zone a UTC UNTIL is read in, and is kept as recurrenceTimeZone.
    Raises `Unrepresentable` for rules Outlook cannot express, `ValueError` for broken ones.
    """
    parts = _parse_rrule(rrule)
    start_date = start.date() if isinstance(start, datetime) else start
    freq = _single(parts, "FREQ", str)
    interval = _single(parts, "INTERVAL", int, default=1)
    if interval < 1:
        raise ValueError(f"INTERVAL must be at least 1, not {interval}")
    pattern = _pattern_from_parts(freq, interval, parts, start_date)
    base = Recurrence(start_date=start_date, interval=interval, time_zone=time_zone, **pattern)
    result = replace(base, **_range_from_parts(parts, start, time_zone))
    _check_start_fits(result, rrule)
    return result


def _parse_rrule(text: str) -> dict[str, list[Any]]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    rule_lines = [line for line in lines if line.upper().startswith("RRULE")] or lines[-1:]
    if len(rule_lines) != 1:
        raise ValueError("expected exactly one RRULE")
    value = re.sub(r"^RRULE[^:]*:", "", rule_lines[0], flags=re.IGNORECASE)
    try:
        parsed = vRecur.from_ical(value)
    except ValueError as exc:
        raise ValueError(f"not an RRULE: {value!r}") from exc
    parts = {key.upper(): list(vals) for key, vals in parsed.items() if not key.startswith("X-")}
    unsupported = sorted(set(parts) - _SUPPORTED_PARTS)
    if unsupported:
        raise Unrepresentable(
            f"Outlook cannot repeat by {', '.join(unsupported)}: its patterns are daily, weekly,"
            " monthly or yearly on a day of the month or a day of the week."
        )
    if "FREQ" not in parts:
        raise ValueError("an RRULE needs FREQ")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("an RRULE cannot have both COUNT and UNTIL")
    return parts


def _single(parts: dict[str, list[Any]], key: str, kind: type, default: Any = None) -> Any:
    values = parts.get(key)
    if not values:
        return default
    if len(values) != 1:
        raise ValueError(f"{key} takes one value")
    return str(values[0]).upper() if kind is str else kind(values[0])


def _pattern_from_parts(
    freq: str, interval: int, parts: dict[str, list[Any]], start: date
) -> dict[str, Any]:
    byday = [_parse_byday(str(value)) for value in parts.get("BYDAY", [])]
    if freq == "DAILY":
        return _daily(interval, byday, parts)
    if freq == "WEEKLY":
        return _weekly(byday, parts, start)
    if freq == "MONTHLY":
        if parts.get("BYMONTH"):
            raise Unrepresentable("Outlook cannot repeat monthly in some months only.")
        return _monthly_or_yearly(interval, byday, parts, start, month=0)
    if freq == "YEARLY":
        return _yearly(interval, byday, parts, start)
    raise Unrepresentable(f"Outlook cannot repeat {freq.lower()}: only daily to yearly.")


def _parse_byday(value: str) -> tuple[int | None, str]:
    match = _BYDAY.match(value.upper())
    if match is None:
        raise ValueError(f"bad BYDAY value {value!r}")
    ordinal = int(match.group(1)) if match.group(1) else None
    return ordinal, WEEKDAYS[_RRULE_DAYS.index(match.group(2))]


def _daily(interval: int, byday: list[tuple[int | None, str]], parts: dict) -> dict[str, Any]:
    if any(parts.get(key) for key in ("BYMONTHDAY", "BYMONTH", "BYSETPOS")):
        raise Unrepresentable("Outlook cannot limit a daily pattern to some days or months.")
    if not byday:
        return {"pattern_type": "daily"}
    if interval != 1 or any(ordinal is not None for ordinal, _ in byday):
        raise Unrepresentable("Outlook cannot repeat every few days on some weekdays only.")
    # Every day, but only on these weekdays, is a weekly pattern on them (Outlook's
    # "every weekday" is weekly Monday..Friday).
    return {"pattern_type": "weekly", "days_of_week": tuple(day for _, day in byday)}


def _weekly(byday: list[tuple[int | None, str]], parts: dict, start: date) -> dict[str, Any]:
    if any(parts.get(key) for key in ("BYMONTHDAY", "BYMONTH", "BYSETPOS")):
        raise Unrepresentable("Outlook cannot limit a weekly pattern to some months or days.")
    if any(ordinal is not None for ordinal, _ in byday):
        raise ValueError("a weekly BYDAY takes no ordinal")
    days = tuple(day for _, day in byday) or (WEEKDAYS[start.weekday()],)
    wkst = _single(parts, "WKST", str, default="MO")  # RFC 5545's default week start
    if wkst not in _RRULE_DAYS:
        raise ValueError(f"bad WKST {wkst!r}")
    return {
        "pattern_type": "weekly",
        "days_of_week": days,
        "first_day_of_week": WEEKDAYS[_RRULE_DAYS.index(wkst)],
    }


def _yearly(
    interval: int, byday: list[tuple[int | None, str]], parts: dict, start: date
) -> dict[str, Any]:
    months = [int(m) for m in parts.get("BYMONTH", [])]
    if len(months) > 1:
        raise Unrepresentable("Outlook repeats a yearly pattern in one month only.")
    if byday and not months:
        raise Unrepresentable("Outlook cannot count weekdays across a whole year, only in a month.")
    if parts.get("BYMONTHDAY") and not months:
        return _yearly_every_month(interval, parts, start)
    month = months[0] if months else start.month
    if not 1 <= month <= 12:
        raise ValueError(f"bad BYMONTH {month}")
    return _monthly_or_yearly(interval, byday, parts, start, month=month)


def _yearly_every_month(interval: int, parts: dict, start: date) -> dict[str, Any]:
    """``FREQ=YEARLY;BYMONTHDAY=..`` without BYMONTH: in RFC 5545's BYxxx table (3.3.10)
    BYMONTHDAY *expands* a YEARLY rule, over the whole year when no BYMONTH limits it, so
    this is those days of every month (as dateutil and libical expand it). DTSTART lends its
    month only to a yearly rule that names no day (``FREQ=YEARLY``)."""
    if interval != 1:
        raise Unrepresentable(
            f"This rule repeats every month, but only every {interval} years; Outlook's"
            " monthly series cannot skip years."
        )
    if parts.get("BYSETPOS"):
        raise Unrepresentable(
            "Outlook cannot pick one of these days of the month across a whole year."
        )
    return _monthly_or_yearly(1, [], parts, start, month=0)


def _monthly_or_yearly(
    interval: int, byday: list[tuple[int | None, str]], parts: dict, start: date, *, month: int
) -> dict[str, Any]:
    """A monthly (``month`` 0) or yearly rule on a day of the month or a day of the week."""
    yearly = month != 0
    monthdays = [int(d) for d in parts.get("BYMONTHDAY", [])]
    setpos = [int(p) for p in parts.get("BYSETPOS", [])]
    if byday and monthdays:
        raise Unrepresentable("Outlook cannot combine a day of the month with a weekday.")
    if byday:
        relative = _relative_from(byday, setpos)
        if relative is None:  # plain BYDAY: every such weekday of the month
            if yearly or interval != 1:
                raise Unrepresentable(
                    "Outlook cannot repeat on every such weekday of some months only."
                )
            return {"pattern_type": "weekly", "days_of_week": tuple(d for _, d in byday)}
        kind = "relativeYearly" if yearly else "relativeMonthly"
        return {"pattern_type": kind, "month": month, **relative}
    min_days = shortest_month(month) if yearly else 28
    max_days = _max_days(month) if yearly else 31
    day = _day_of_month_from(monthdays or [start.day], setpos, min_days, max_days)
    kind = "absoluteYearly" if yearly else "absoluteMonthly"
    return {"pattern_type": kind, "month": month, "day_of_month": day}


def _relative_from(byday: list[tuple[int | None, str]], setpos: list[int]) -> dict[str, Any] | None:
    ordinals = {ordinal for ordinal, _ in byday}
    days = tuple(day for _, day in byday)
    if ordinals == {None} and not setpos:
        return None
    if ordinals == {None} and len(setpos) == 1:
        ordinal = setpos[0]
    elif None not in ordinals and len(ordinals) == 1 and len(byday) == 1 and not setpos:
        ordinal = next(iter(ordinals))
    elif len(byday) > 1 and None not in ordinals:
        raise Unrepresentable(
            "Outlook picks one weekday of the month, not several (such as the first Monday"
            " and the third Friday)."
        )
    else:
        raise Unrepresentable("Outlook cannot combine BYSETPOS with a numbered weekday.")
    if ordinal not in ORDINALS:
        raise Unrepresentable(
            "Outlook counts weekdays as first to fourth or last only, not"
            f" {ordinal} ({', '.join(_rrule_day(d) for d in days)})."
        )
    return {"days_of_week": days, "index": ORDINALS[ordinal]}


def _day_of_month_from(
    monthdays: list[int], setpos: list[int], min_days: int, max_days: int
) -> int:
    """Invert `_month_day_parts`; anything else is not Outlook's "day N or the last day"."""
    if monthdays == [-1] and not setpos:
        return max_days
    if len(monthdays) == 1 and not setpos and 1 <= monthdays[0] <= min_days:
        return monthdays[0]
    day = max(monthdays)
    if setpos == [-1] and monthdays == list(range(min_days, day + 1)) and min_days < day:
        return day
    if len(monthdays) == 1 and not setpos and min_days < monthdays[0] <= max_days:
        raise Unrepresentable(
            f"This rule skips months without a day {monthdays[0]}; Outlook would move those"
            " occurrences to the last day of the month instead."
        )
    raise Unrepresentable("Outlook repeats on one day of the month only.")


def _range_from_parts(
    parts: dict[str, list[Any]], start: date | datetime, time_zone: str
) -> dict[str, Any]:
    count = _single(parts, "COUNT", int)
    if count is not None:
        if count < 1:
            raise ValueError(f"COUNT must be positive, not {count}")
        return {"range_type": "numbered", "number_of_occurrences": count}
    until = parts.get("UNTIL")
    if not until:
        return {"range_type": "noEnd"}
    return {"range_type": "endDate", "end_date": _end_date_from(until[0], start, time_zone)}


def _end_date_from(until: date | datetime, start: date | datetime, time_zone: str) -> date:
    """The last day an occurrence may start on, given RFC 5545's inclusive UNTIL."""
    if not isinstance(until, datetime):
        return until
    if until.tzinfo is not None:
        zone = timezones.zone(time_zone) if time_zone else UTC
        until = until.astimezone(zone)
    if isinstance(start, datetime) and until.time() < start.time():
        return until.date() - timedelta(days=1)  # that day's occurrence would come too late
    return until.date()


def _check_start_fits(r: Recurrence, rrule: str) -> None:
    """RFC 5545 counts INTERVAL from DTSTART, Outlook from the first occurrence; they agree
    exactly when the first occurrence is the same under both counts."""
    if r.interval == 1:
        return
    dtstart = datetime.combine(r.start_date, time())
    rfc = _first(_parse_rrule(rrule), dtstart)
    graph = first_occurrence(r, dtstart)
    if rfc is not None and rfc != graph:
        raise Unrepresentable(
            f"The series starts on {r.start_date}, which is not one of its days: start it on"
            f" its first occurrence ({rfc.date()}), as Outlook counts the interval from there."
        )


def _first(parts: dict[str, list[Any]], dtstart: datetime) -> datetime | None:
    unbounded = {key: values for key, values in parts.items() if key not in {"COUNT", "UNTIL"}}
    rule = vRecur(unbounded).to_ical().decode("ascii")
    return next(iter(rrulestr(rule, dtstart=dtstart)), None)


# --- expanding ------------------------------------------------------------------------------


def first_occurrence(r: Recurrence, start: datetime) -> datetime | None:
    """The first date-time on or after ``start`` that fits the pattern (ignoring the interval
    and the range, as Outlook does when it picks where a series begins)."""
    n = replace(normalise(r), interval=1, range_type="noEnd", end_date=None)
    validate(n)
    return next(iter(rrulestr(to_rrule(n), dtstart=start)), None)


def occurrences(
    r: Recurrence,
    start: datetime,
    *,
    tz: str,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[datetime]:
    """The local start times (aware, in ``tz``) of the series' occurrences, Outlook's way.

    ``start`` is the master's start (aware in any zone, or naive wall-clock time in ``tz``);
    ``tz`` is the zone the series is planned in (Windows or IANA). Occurrences keep their
    wall-clock time across DST changes (a 09:00 Europe/Paris meeting stays at 09:00). The
    list stops at the range's end, at ``until`` (inclusive) and after ``limit`` items.
    """
    zone = timezones.zone(tz)
    local = _localise(start, zone)
    first = first_occurrence(r, local)
    if first is None:
        return []
    n = normalise(r)
    rule = rrulestr(to_rrule(n, start=first), dtstart=first)
    stop = _localise(until, zone) if until is not None else None
    result: list[datetime] = []
    for occurrence in rule:
        if (stop is not None and occurrence > stop) or len(result) >= limit:
            break
        result.append(occurrence)
    return result


def _localise(moment: datetime, zone: tzinfo) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone)
    return moment.astimezone(zone)
