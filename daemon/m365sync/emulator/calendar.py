"""The emulator's calendar: events, series masters, occurrences, exceptions and cancellations.

Why its own module: Graph answers calendar requests with *instances* (single events,
occurrences and exceptions of series, docs `concepts/delta-query-events.md`) while Outlook
stores series masters with a recurrence rule plus per-date exceptions and deletions
([MS-OXOCAL] ModifiedInstanceDates / DeletedInstanceDates). This module stores it the Outlook
way and expands it the Graph way, independently of the daemon's own recurrence code
(`m365sync.sync.recurrence`): an emulator sharing the client's implementation would agree with
it even where both are wrong. dateutil is not needed: the rules below are small enough to
write out from Microsoft's documentation.

Expansion rules (docs `concepts/outlook-schedule-recurring-events.md` @ 15f91f36,
`resources/recurrencepattern.md` @ 09455a65):

* ``daily``: every ``interval`` days from ``range.startDate``.
* ``weekly``: weeks begin on ``firstDayOfWeek`` (default sunday); every ``interval``-th week,
  counted from the week of the first occurrence, on each day of ``daysOfWeek`` on or after
  ``startDate``. Months and years likewise count from the first occurrence's (see
  `_pattern_dates` for the documented example that says so).
* ``absoluteMonthly`` / ``absoluteYearly``: day ``dayOfMonth`` (of ``month``) every
  ``interval`` months / years counted from ``startDate``'s month / year. A day past the end of
  a short month falls on the month's last day: Exchange stores "the last day of the month" as
  day 31 ([MS-OXCICAL] 2.1.3.2.2.3: BYMONTHDAY=-1 "SHOULD be set to 0x0000001F").
* ``relativeMonthly`` / ``relativeYearly``: the ``index``-th (first..fourth, last) of the days
  in the month that are in ``daysOfWeek`` -- with several days, "the event falls on the first
  day that satisfies the pattern", i.e. the set position among all of them ([MS-OXCICAL]
  2.1.3.2.2.4: ``BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1`` is "the last weekday").
* Ranges: ``endDate`` (inclusive), ``numbered`` (``numberOfOccurrences`` occurrences of the
  pattern on or after ``startDate``), ``noEnd``. "The first occurrence of the meeting might not
  occur on this date if it does not fit the pattern." ``range.startDate`` "MUST correspond to
  the date value of the start property" -- a mismatch is a 400 here.
* Each occurrence keeps the master's wall-clock start time in the series' time zone (a 09:00
  Pacific meeting stays at 09:00 across a DST change) and its duration.

Occurrences are keyed by their original local date (Outlook allows one occurrence per day of a
series: "an occurrence cannot be moved to or before the day of the previous occurrence",
docs `api/event-update.md`, ErrorOccurrenceCrossingBoundary). Their ids are derived from the
master id and that date, so an occurrence never listed is still addressable. Every change of an
occurrence (an exception, a cancellation) is a change of the master, as in Exchange, where
exceptions live inside the master item: all instances carry the master's changeKey (as the
documented list-instances example shows, docs `api/event-list-instances.md`). Changing a
master's recurrence, start or end drops its exceptions and cancellations, as Outlook warns
("Any exceptions associated with this recurring appointment will be cancelled").

Time zones: Windows names (as Outlook sends them) map to IANA through CLDR's windowsZones
table as icalendar ships it (data, not code); IANA names are accepted as they are.
"""

from __future__ import annotations

import base64
import calendar as pycalendar
import copy
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import win_tz  # CLDR windowsZones: Windows name -> IANA

from m365sync.emulator.delta import SyncStates

SENTINEL_TIME = "0001-01-01T00:00:00Z"
NO_END_DATE = "0001-01-01"
MAX_WINDOW_DAYS = 1825
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEXES = ("first", "second", "third", "fourth", "last")
PATTERN_TYPES = (
    "daily",
    "weekly",
    "absoluteMonthly",
    "relativeMonthly",
    "absoluteYearly",
    "relativeYearly",
)
RANGE_TYPES = ("endDate", "noEnd", "numbered")
SENSITIVITIES = ("normal", "personal", "private", "confidential")
SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
# An instance-only or read-only property: never taken from a PATCH body.
READ_ONLY = frozenset(
    [
        "@odata.etag",
        "@odata.context",
        "@odata.type",
        "id",
        "changeKey",
        "createdDateTime",
        "lastModifiedDateTime",
        "iCalUId",
        "type",
        "seriesMasterId",
        "originalStart",
        "webLink",
        "isOrganizer",
        "organizer",
        "responseStatus",
        "hasAttachments",
        "bodyPreview",
        "onlineMeetingUrl",
        "cancelledOccurrences",
    ]
)
_OCCURRENCE_TAG = b"\x00\x03\x24\x00\x07"


class CalendarError(Exception):
    """A request the calendar refuses, with Graph's status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str) -> CalendarError:
    # Graph's words for refused calendar requests start this way (docs `api/event-cancel.md`;
    # microsoft-graph-docs-contrib#6321 for the range limit); the exact codes of recurrence
    # and all-day validation failures are not documented.
    return CalendarError(400, "ErrorInvalidRequest", "Your request can't be completed. " + message)


def _not_found() -> CalendarError:
    return CalendarError(
        404, "ErrorItemNotFound", "The specified object was not found in the store."
    )


# --------------------------------------------------------------------------- time zones


def zone(name: str | None) -> ZoneInfo | None:
    """The tzinfo of a Windows or IANA zone name; None if unknown."""
    if not name:
        return None
    text = str(name).strip()
    if text.lower() in ("utc", "tzone://microsoft/utc", "etc/utc", "z"):
        return ZoneInfo("UTC")
    iana = win_tz.get(text)
    if iana is None:
        lowered = {k.lower(): v for k, v in win_tz.items()}
        iana = lowered.get(text.lower(), text)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def parse_local(value: Any) -> datetime:
    """A dateTimeTimeZone's ``dateTime`` ("2017-04-15T11:00:00.0000000") as a naive datetime."""
    text = str(value or "").strip().rstrip("Z")
    if "." in text:
        head, _, fraction = text.partition(".")
        text = head + "." + fraction[:6]
    if len(text) == 10:
        text += "T00:00:00"
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=None)


def format_local(moment: datetime) -> str:
    """Graph's dateTime form: seven fraction digits, no offset."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0"


def format_utc(moment: datetime) -> str:
    """Graph's DateTimeOffset form for originalStart: UTC with a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    return local.replace(tzinfo=tz).astimezone(UTC)


def dtz(local: datetime, zone_name: str) -> dict[str, str]:
    return {"dateTime": format_local(local), "timeZone": zone_name}


def _instant(value: dict[str, Any] | None) -> datetime:
    """An event's start/end (dateTimeTimeZone) as an aware UTC datetime."""
    if not isinstance(value, dict):
        raise _bad("A start and an end time are required.")
    tz = zone(value.get("timeZone"))
    if tz is None:
        raise CalendarError(
            400,
            "TimeZoneNotSupportedException",
            "A valid TimeZone value must be specified. The following TimeZone value is not "
            f"supported: '{value.get('timeZone')}'.",
        )
    try:
        return to_utc(parse_local(value.get("dateTime")), tz)
    except (TypeError, ValueError):
        raise _bad(f"The value '{value.get('dateTime')}' is not a valid date and time.") from None


def in_zone(moment: datetime, zone_name: str) -> dict[str, str]:
    """An aware instant as a dateTimeTimeZone in `zone_name` (which must be known)."""
    tz = zone(zone_name) or ZoneInfo("UTC")
    return dtz(moment.astimezone(tz).replace(tzinfo=None), zone_name)


# --------------------------------------------------------------------------- recurrence


def _lower_day(value: Any) -> str:
    text = str(value or "").strip().lower()
    if text not in DAYS:
        raise _bad(f"'{value}' is not a valid day of the week.")
    return text


def normalize_recurrence(recurrence: Any, start: dict[str, Any]) -> dict[str, Any]:
    """Validate a patternedRecurrence and fill what Graph fills on read-back: weekly returns
    month 0, dayOfMonth 0, firstDayOfWeek "sunday", index "first"; days lower-cased; an endDate
    range returns numberOfOccurrences 0 and recurrenceTimeZone (docs `api/user-post-events.md`,
    the recurring example's response)."""
    if not isinstance(recurrence, dict):
        raise _bad("The recurrence must have a pattern and a range.")
    pattern = recurrence.get("pattern")
    rng = recurrence.get("range")
    if not isinstance(pattern, dict) or not isinstance(rng, dict):
        raise _bad("The recurrence must have a pattern and a range.")
    types = {t.lower(): t for t in PATTERN_TYPES}
    kind = types.get(str(pattern.get("type") or "").lower())
    if kind is None:
        raise _bad(f"The recurrence pattern type '{pattern.get('type')}' is not valid.")
    try:
        interval = int(pattern.get("interval", 1) or 0)
        month = int(pattern.get("month") or 0)
        day_of_month = int(pattern.get("dayOfMonth") or 0)
    except (TypeError, ValueError):
        raise _bad("The recurrence pattern has a value that is not a number.") from None
    if not 1 <= interval <= 999:
        raise _bad("The recurrence pattern's interval must be a positive number.")
    days = [_lower_day(d) for d in pattern.get("daysOfWeek") or []]
    first_day = _lower_day(pattern.get("firstDayOfWeek") or "sunday")
    index = str(pattern.get("index") or "first").lower()
    if index not in INDEXES:
        raise _bad(f"The recurrence pattern index '{pattern.get('index')}' is not valid.")
    if not 0 <= month <= 12 or not 0 <= day_of_month <= 31:
        raise _bad("The recurrence pattern's month or dayOfMonth is out of range.")
    if kind in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        raise _bad(f"A {kind} recurrence pattern needs daysOfWeek.")
    if kind in ("absoluteMonthly", "absoluteYearly") and day_of_month < 1:
        raise _bad(f"An {kind} recurrence pattern needs dayOfMonth.")
    if kind in ("absoluteYearly", "relativeYearly") and month < 1:
        raise _bad(f"A {kind} recurrence pattern needs month.")
    range_types = {t.lower(): t for t in RANGE_TYPES}
    range_kind = range_types.get(str(rng.get("type") or "").lower())
    if range_kind is None:
        raise _bad(f"The recurrence range type '{rng.get('type')}' is not valid.")
    try:
        start_date = date.fromisoformat(str(rng.get("startDate") or ""))
    except ValueError:
        raise _bad("The recurrence range needs a startDate.") from None
    start_local = parse_local(start.get("dateTime"))
    if start_date != start_local.date():
        raise _bad(
            "The recurrence range's startDate must be the date of the event's start "
            f"({start_local.date().isoformat()})."
        )
    end_date = NO_END_DATE
    count = 0
    if range_kind == "endDate":
        try:
            end = date.fromisoformat(str(rng.get("endDate") or ""))
        except ValueError:
            raise _bad("An endDate recurrence range needs an endDate.") from None
        if end < start_date:
            raise _bad("The recurrence range's endDate is before its startDate.")
        end_date = end.isoformat()
    elif range_kind == "numbered":
        try:
            count = int(rng.get("numberOfOccurrences") or 0)
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            raise _bad("A numbered recurrence range needs a positive numberOfOccurrences.")
    zone_name = rng.get("recurrenceTimeZone") or start.get("timeZone")
    if zone(zone_name) is None:
        raise _bad(f"The recurrence time zone '{zone_name}' is not supported.")
    return {
        "pattern": {
            "type": kind,
            "interval": interval,
            "month": month,
            "dayOfMonth": day_of_month,
            "daysOfWeek": days,
            "firstDayOfWeek": first_day,
            "index": index,
        },
        "range": {
            "type": range_kind,
            "startDate": start_date.isoformat(),
            "endDate": end_date,
            "recurrenceTimeZone": zone_name,
            "numberOfOccurrences": count,
        },
    }


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    total = year * 12 + (month - 1) + months
    return total // 12, total % 12 + 1


def _clamped(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, pycalendar.monthrange(year, month)[1]))


def _relative(year: int, month: int, days: list[str], index: str) -> date | None:
    wanted = {DAYS.index(d) for d in days}
    last = pycalendar.monthrange(year, month)[1]
    matches = [
        date(year, month, d) for d in range(1, last + 1) if date(year, month, d).weekday() in wanted
    ]
    if not matches:
        return None
    position = INDEXES.index(index)
    if index == "last":
        return matches[-1]
    return matches[position] if position < len(matches) else None


def _candidate(pattern: dict[str, Any], year: int, month: int) -> date | None:
    """A monthly/yearly pattern's date in one month, if it has one."""
    if pattern["type"] in ("absoluteMonthly", "absoluteYearly"):
        return _clamped(year, month, pattern["dayOfMonth"])
    return _relative(year, month, pattern["daysOfWeek"], pattern["index"])


def _pattern_dates(pattern: dict[str, Any], start: date) -> Iterator[date]:
    """Every date of a (normalized) pattern on or after `start`, in order, without end.

    The interval counts from the period (week, month, year) of the first occurrence, not of
    ``startDate``: the documented example "first Thursday of every other month starting August
    29, 2017" has its first occurrence in September ("Because the value of startDate is after
    the first Thursday in August, the first occurrence of this series will be in September",
    docs `concepts/outlook-schedule-recurring-events.md`), so the next is in November.
    """
    kind, interval = pattern["type"], pattern["interval"]
    if kind == "daily":
        current = start
        while True:
            yield current
            current += timedelta(days=interval)
    if kind == "weekly":
        first = DAYS.index(pattern["firstDayOfWeek"])
        week = start - timedelta(days=(start.weekday() - first) % 7)
        offsets = sorted((DAYS.index(d) - first) % 7 for d in set(pattern["daysOfWeek"]))
        if all(week + timedelta(days=o) < start for o in offsets):
            week += timedelta(weeks=1)
        while True:
            for offset in offsets:
                candidate = week + timedelta(days=offset)
                if candidate >= start:
                    yield candidate
            week += timedelta(weeks=interval)
    yearly = kind in ("absoluteYearly", "relativeYearly")
    year, month = (start.year, pattern["month"]) if yearly else (start.year, start.month)
    step = 12 if yearly else 1
    for _ in range(200):  # find the first occurrence period
        found = _candidate(pattern, year, month)
        if found is not None and found >= start:
            break
        year, month = _add_months(year, month, step)
    step *= interval
    while year <= 9000:
        candidate = _candidate(pattern, year, month)
        if candidate is not None and candidate >= start:
            yield candidate
        year, month = _add_months(year, month, step)


def occurrence_dates(recurrence: dict[str, Any], until: date | None = None) -> Iterator[date]:
    """The dates of a normalized patternedRecurrence, stopping at its range end or `until`."""
    rng = recurrence["range"]
    start = date.fromisoformat(rng["startDate"])
    end = date.fromisoformat(rng["endDate"]) if rng["type"] == "endDate" else None
    for count, day in enumerate(_pattern_dates(recurrence["pattern"], start), start=1):
        if end is not None and day > end:
            return
        if until is not None and day > until:
            return
        yield day
        if rng["type"] == "numbered" and count >= rng["numberOfOccurrences"]:
            return


# --------------------------------------------------------------------------- ids


def occurrence_id(master_id: str, day: date) -> str:
    """The id of a series' occurrence on `day`: derived, so it is stable and resolvable."""
    raw = _OCCURRENCE_TAG + day.strftime("%Y%m%d").encode() + master_id.encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def split_occurrence_id(ref: str) -> tuple[str, date] | None:
    """(master id, original date) of an occurrence id, or None."""
    try:
        raw = base64.urlsafe_b64decode(ref + "=" * (-len(ref) % 4))
    except ValueError:
        return None
    if not raw.startswith(_OCCURRENCE_TAG) or len(raw) <= len(_OCCURRENCE_TAG) + 8:
        return None
    body = raw[len(_OCCURRENCE_TAG) :]
    try:
        day = datetime.strptime(body[:8].decode("ascii"), "%Y%m%d").date()
        return body[8:].decode("utf-8"), day
    except (UnicodeDecodeError, ValueError):
        return None


def occurrence_ical_uid(master_uid: str, day: date) -> str:
    """An occurrence's iCalUId: the master's Global Object ID with the instance date in bytes
    16-19 ([MS-OXOCAL] PidLidGlobalObjectId: YH, YL, M, D), so each occurrence differs."""
    stamp = f"{day.year:04X}{day.month:02X}{day.day:02X}"
    if len(master_uid) >= 40:
        return master_uid[:32] + stamp + master_uid[40:]
    return master_uid + stamp


# --------------------------------------------------------------------------- the store


@dataclass
class Instance:
    """One thing calendarView shows: a single event, an occurrence or an exception."""

    id: str
    start: datetime  # aware UTC
    end: datetime
    fingerprint: str
    master_id: str | None = None
    day: date | None = None


@dataclass
class _Series:
    exceptions: dict[date, dict[str, Any]] = field(default_factory=dict)
    cancelled: set[date] = field(default_factory=set)


@dataclass
class ViewRound:
    """A calendarView delta round: what it serves and what its delta link will know."""

    window: tuple[datetime, datetime]
    entries: list[tuple[str, str]]
    known: dict[str, str]
    watermark: int


@dataclass(frozen=True)
class ViewPage:
    round: ViewRound
    offset: int


@dataclass(frozen=True)
class ViewDelta:
    window: tuple[datetime, datetime]
    known: dict[str, str]
    watermark: int


class Calendar:
    """A user's default calendar, thread-safe under the mailbox's lock."""

    def __init__(
        self,
        key: bytes,
        owner: dict[str, Any],
        lock: threading.RLock | None = None,
    ) -> None:
        self.lock = lock or threading.RLock()
        self.key = key
        self.owner = {
            "name": str(owner.get("displayName") or owner.get("mail") or ""),
            "address": str(owner.get("mail") or owner.get("userPrincipalName") or ""),
        }
        self.sync_states = SyncStates()
        # Report changes outside a delta window as @removed, as docs `api/event-delta.md` says
        # Graph may ("Events that are outside the date range and that have been added,
        # deleted, or updated since the previous delta call").
        self.removals_outside_window = True
        # What DELETE answers for an already-cancelled occurrence: Graph documents nothing;
        # Odoo's client notes 403 (GRAPH-FACTS 5); 404 ErrorItemNotFound by default.
        self.cancelled_delete_status: tuple[int, str] = (404, "ErrorItemNotFound")
        self._seq = 0
        self._counter = 0
        self._events: dict[str, dict[str, Any]] = {}
        self._series: dict[str, _Series] = {}
        self._changed: dict[str, int] = {}
        self._by_transaction: dict[str, str] = {}
        self._written: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- stamping

    def _stamp(self, event: dict[str, Any], *, created: bool = False) -> None:
        self._seq += 1
        raw = b"\x0b\x00\x00\x00\x16\x00\x00\x00" + self.key[:16] + self._seq.to_bytes(6, "big")
        change_key = base64.b64encode(raw).decode("ascii")
        event["changeKey"] = change_key
        event["@odata.etag"] = f'W/"{change_key}"'
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        event["lastModifiedDateTime"] = now
        if created and not event.get("createdDateTime"):
            event["createdDateTime"] = now
        if not event.get("recurrence"):
            self._changed[event["id"]] = self._seq

    def _new_id(self) -> str:
        from m365sync.emulator.mailbox import make_id

        while True:
            self._counter += 1
            eid = make_id(self.key, 1, 3_000_000_000 + self._counter)
            if eid not in self._events:
                return eid

    @property
    def sequence(self) -> int:
        return self._seq

    # ----------------------------------------------------------------- filling

    def _attendees(self, given: Any) -> list[dict[str, Any]]:
        out = []
        for item in given or []:
            if not isinstance(item, dict):
                raise _bad("An attendee must be an object.")
            email = item.get("emailAddress") or {}
            address = str(email.get("address") or "")
            if not address:
                raise _bad("An attendee needs an email address.")
            status = item.get("status") or {}
            out.append(
                {
                    "type": str(item.get("type") or "required").lower(),
                    "status": {
                        "response": str(status.get("response") or "none"),
                        "time": str(status.get("time") or SENTINEL_TIME),
                    },
                    "emailAddress": {"name": str(email.get("name") or address), "address": address},
                }
            )
        return out

    @staticmethod
    def _location(given: Any) -> dict[str, Any]:
        if not isinstance(given, dict):
            return {"displayName": "", "locationType": "default", "uniqueIdType": "unknown"}
        out = copy.deepcopy(given)
        out["displayName"] = str(given.get("displayName") or "")
        out["locationType"] = str(given.get("locationType") or "default")
        if out["locationType"][:1].isupper():
            out["locationType"] = out["locationType"][0].lower() + out["locationType"][1:]
        if out["displayName"] and "uniqueId" not in out:
            out["uniqueId"] = out["displayName"]
            out["uniqueIdType"] = "private"
        out.setdefault("uniqueIdType", "unknown")
        return out

    def _validate_times(self, event: dict[str, Any]) -> None:
        start, end = _instant(event.get("start")), _instant(event.get("end"))
        if end < start:
            raise _bad("The end time must be later than the start time.")
        if event.get("isAllDay"):
            s_local = parse_local(event["start"]["dateTime"])
            e_local = parse_local(event["end"]["dateTime"])
            same = str(event["start"].get("timeZone")) == str(event["end"].get("timeZone"))
            midnight = s_local.time() == time(0) and e_local.time() == time(0)
            if not (same and midnight and e_local > s_local):
                # docs `resources/event.md`: "start and end time must be set to midnight and
                # be in the same time zone".
                raise _bad(
                    "An all-day event's start and end must be at midnight in the same time zone."
                )

    def _fill(self, given: dict[str, Any]) -> dict[str, Any]:
        """A new event resource from a POST body (or a seed/JSON resource)."""
        eid = str(given.get("id") or self._new_id())
        start = copy.deepcopy(given.get("start"))
        end = copy.deepcopy(given.get("end"))
        for value in (start, end):
            if isinstance(value, dict):
                value["dateTime"] = format_local(parse_local(value.get("dateTime")))
        body = given.get("body") or {"contentType": "html", "content": ""}
        body = {
            "contentType": str(body.get("contentType") or "html").lower(),
            "content": str(body.get("content") or ""),
        }
        from m365sync.emulator.mailbox import body_preview

        ical = given.get("iCalUId") or (
            "040000008200E00074C5B7101A82E00800000000"
            + hashlib.sha256(eid.encode()).hexdigest()[:48].upper()
        )
        online = bool(given.get("isOnlineMeeting"))
        provider = str(
            given.get("onlineMeetingProvider") or ("teamsForBusiness" if online else "unknown")
        )
        meeting = given.get("onlineMeeting")
        if online and not meeting:
            token = hashlib.sha256(eid.encode()).hexdigest()[:32]
            meeting = {
                "joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_"
                + token
                + "%40thread.v2/0"
            }
        event: dict[str, Any] = {
            "@odata.etag": "",
            "id": eid,
            "createdDateTime": given.get("createdDateTime") or "",
            "lastModifiedDateTime": given.get("lastModifiedDateTime") or "",
            "changeKey": "",
            "categories": list(given.get("categories") or []),
            "transactionId": given.get("transactionId"),
            "originalStartTimeZone": given.get("originalStartTimeZone")
            or (start or {}).get("timeZone"),
            "originalEndTimeZone": given.get("originalEndTimeZone") or (end or {}).get("timeZone"),
            "iCalUId": ical,
            "reminderMinutesBeforeStart": int(given.get("reminderMinutesBeforeStart", 15)),
            "isReminderOn": bool(given.get("isReminderOn", True)),
            "hasAttachments": bool(given.get("hasAttachments", False)),
            "subject": str(given.get("subject") or ""),
            "bodyPreview": body_preview(body),
            "importance": str(given.get("importance") or "normal").lower(),
            "sensitivity": str(given.get("sensitivity") or "normal").lower(),
            "isAllDay": bool(given.get("isAllDay", False)),
            "isCancelled": bool(given.get("isCancelled", False)),
            "isOrganizer": bool(given.get("isOrganizer", True)),
            "responseRequested": bool(given.get("responseRequested", True)),
            "seriesMasterId": None,
            "showAs": str(given.get("showAs") or "busy"),
            "type": "singleInstance",
            "webLink": "https://outlook.office365.com/owa/?itemid="
            + eid.replace("=", "%3D")
            + "&exvsurl=1&path=/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": online,
            "onlineMeetingProvider": provider,
            "allowNewTimeProposals": bool(given.get("allowNewTimeProposals", True)),
            "isDraft": bool(given.get("isDraft", False)),
            "hideAttendees": bool(given.get("hideAttendees", False)),
            "responseStatus": copy.deepcopy(
                given.get("responseStatus") or {"response": "organizer", "time": SENTINEL_TIME}
            ),
            "body": body,
            "start": start,
            "end": end,
            "location": self._location(given.get("location")),
            "locations": [],
            "recurrence": None,
            "attendees": self._attendees(given.get("attendees")),
            "organizer": copy.deepcopy(given.get("organizer") or {"emailAddress": self.owner}),
            "onlineMeeting": copy.deepcopy(meeting),
        }
        if event["location"]["displayName"]:
            event["locations"] = [
                copy.deepcopy(x) for x in given.get("locations") or [event["location"]]
            ]
        for name in ("sensitivity",):
            if event[name] not in SENSITIVITIES:
                raise _bad(f"'{event[name]}' is not a valid {name}.")
        if event["showAs"] not in SHOW_AS:
            raise _bad(f"'{event['showAs']}' is not a valid showAs.")
        self._validate_times(event)
        if given.get("recurrence"):
            event["recurrence"] = normalize_recurrence(given["recurrence"], event["start"])
            event["type"] = "seriesMaster"
        return event

    # ----------------------------------------------------------------- writes

    def create(self, given: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST /me/events: (the event, whether it is new). A transactionId seen before
        returns the event created with it: "for the server to avoid redundant POST operations
        in case of client retries" (docs `resources/event.md`)."""
        with self.lock:
            transaction = given.get("transactionId")
            if transaction and transaction in self._by_transaction:
                existing = self._by_transaction[transaction]
                if existing in self._events:
                    return copy.deepcopy(self._events[existing]), False
            body = {k: v for k, v in given.items() if k not in READ_ONLY or k == "organizer"}
            body.pop("id", None)
            event = self._fill(body)
            self._stamp(event, created=True)
            self._events[event["id"]] = event
            if event["recurrence"]:
                self._series[event["id"]] = _Series()
            if transaction:
                self._by_transaction[str(transaction)] = event["id"]
            return copy.deepcopy(event), True

    def add_event(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Store an event resource as given (seed, JSON file, tests): ids, changeKeys and
        dates are kept. A ``type: exception`` item with ``seriesMasterId`` and
        ``originalStart`` becomes an exception of its (already added) master; a master's
        ``cancelledOccurrences`` (beta's ``OID.{id}.{date}`` strings) are cancelled dates."""
        with self.lock:
            if resource.get("type") == "exception" or resource.get("seriesMasterId"):
                return self._add_exception(resource)
            event = self._fill(resource)
            if resource.get("type") == "seriesMaster" and not event["recurrence"]:
                raise _bad("A series master needs a recurrence.")
            if event["id"] in self._events:
                raise ValueError(f"an event with id {event['id']!r} already exists")
            if resource.get("changeKey"):
                event["changeKey"] = resource["changeKey"]
                event["@odata.etag"] = resource.get("@odata.etag") or f'W/"{resource["changeKey"]}"'
            else:
                self._stamp(event, created=True)
            self._events[event["id"]] = event
            if event["recurrence"]:
                series = self._series[event["id"]] = _Series()
                for oid in resource.get("cancelledOccurrences") or []:
                    series.cancelled.add(date.fromisoformat(str(oid).rsplit(".", 1)[-1]))
            if event.get("transactionId"):
                self._by_transaction[str(event["transactionId"])] = event["id"]
            return copy.deepcopy(event)

    def _add_exception(self, resource: dict[str, Any]) -> dict[str, Any]:
        master_id = str(resource.get("seriesMasterId") or "")
        master = self._events.get(master_id)
        if master is None or not master.get("recurrence"):
            raise ValueError(f"exception of an unknown series {master_id!r}")
        day = self._day_of_original(master, str(resource.get("originalStart") or ""))
        generated = self._generated(master, day)
        if generated is None:
            raise ValueError(f"no occurrence of {master_id!r} at {resource.get('originalStart')}")
        skip = READ_ONLY | {"recurrence", "transactionId"}
        overrides = {
            k: copy.deepcopy(v)
            for k, v in resource.items()
            if k not in skip and generated.get(k) != v
        }
        self._apply_exception(master, day, overrides, stamp=False)
        return self.get(occurrence_id(master_id, day))

    def occurrence_id_at(self, master_id: str, original_start: str) -> str:
        """The id of a series' occurrence by its originalStart (UTC, as Graph shows it);
        CalendarError 404 if the series has no occurrence then."""
        with self.lock:
            master = self._events.get(master_id)
            if master is None or not master.get("recurrence"):
                raise _not_found()
            day = self._day_of_original(master, original_start)
            if self._generated(master, day) is None:
                raise _not_found()
            return occurrence_id(master_id, day)

    def _day_of_original(self, master: dict[str, Any], original: str) -> date:
        """The local (series zone) date of an occurrence given its originalStart."""
        tz = zone(master["recurrence"]["range"]["recurrenceTimeZone"]) or ZoneInfo("UTC")
        moment = datetime.fromisoformat(original.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(tz).date()

    def update(self, ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH /me/events/{id}: a single event, a master, or an occurrence (which becomes an
        exception and keeps its originalStart)."""
        with self.lock:
            if "transactionId" in changes:
                # "After you set transactionId when creating an event, you cannot change
                # transactionId in a subsequent update" (docs `resources/event.md`).
                current = self._find(ref)
                if changes["transactionId"] != current.get("transactionId"):
                    raise _bad("The transactionId of an event cannot be changed.")
            changes = {k: v for k, v in changes.items() if k not in READ_ONLY}
            changes.pop("transactionId", None)
            if ref in self._events:
                return self._update_event(ref, changes)
            split = self._split(ref)
            if split is None:
                raise _not_found()
            master_id, day = split
            if "recurrence" in changes:
                raise _bad("The recurrence of an occurrence cannot be set; update the master.")
            master = self._events[master_id]
            current = self._instance_resource(master, day)
            proposed = copy.deepcopy(current)
            proposed.update(copy.deepcopy(changes))
            for name in ("start", "end"):
                if isinstance(proposed.get(name), dict):
                    proposed[name]["dateTime"] = format_local(
                        parse_local(proposed[name]["dateTime"])
                    )
            self._validate_times(proposed)
            if "start" in changes or "end" in changes:
                self._check_boundary(master, day, _instant(proposed["start"]))
            overrides = dict(self._series[master_id].exceptions.get(day, {}))
            for name, value in changes.items():
                if name == "attendees":
                    value = self._attendees(value)
                elif name == "location":
                    value = self._location(value)
                    overrides["locations"] = [value] if value["displayName"] else []
                elif name in ("start", "end"):
                    value = proposed[name]
                overrides[name] = copy.deepcopy(value)
            if "body" in changes:
                from m365sync.emulator.mailbox import body_preview

                overrides["bodyPreview"] = body_preview(overrides["body"])
            self._apply_exception(master, day, overrides, stamp=True)
            return self.get(occurrence_id(master_id, day))

    def _apply_exception(
        self, master: dict[str, Any], day: date, overrides: dict[str, Any], *, stamp: bool
    ) -> None:
        series = self._series[master["id"]]
        series.exceptions[day] = overrides
        series.cancelled.discard(day)
        if stamp:
            self._stamp(master)
        self._changed[occurrence_id(master["id"], day)] = self._seq

    def _check_boundary(self, master: dict[str, Any], day: date, new_start: datetime) -> None:
        tz = zone(master["recurrence"]["range"]["recurrenceTimeZone"]) or ZoneInfo("UTC")
        new_day = new_start.astimezone(tz).date()
        previous = following = None
        for other in occurrence_dates(
            master["recurrence"], until=max(day, new_day) + timedelta(days=800)
        ):
            if other < day:
                previous = other
            elif other > day:
                following = other
                break
        if (previous and new_day <= previous) or (following and new_day >= following):
            # docs `api/event-update.md`: "an occurrence cannot be moved to or before the day
            # of the previous occurrence, and cannot be moved to or after the day of the
            # following occurrence".
            raise CalendarError(
                400,
                "ErrorOccurrenceCrossingBoundary",
                "Modified occurrence is crossing or overlapping adjacent occurrence.",
            )

    def _update_event(self, eid: str, changes: dict[str, Any]) -> dict[str, Any]:
        event = self._events[eid]
        proposed = copy.deepcopy(event)
        for name, value in changes.items():
            if name == "attendees":
                value = self._attendees(value)
            elif name == "location":
                value = self._location(value)
                proposed["locations"] = [value] if value["displayName"] else []
            elif name == "locations":
                value = [self._location(v) for v in value or []]
            elif name in ("start", "end") and isinstance(value, dict):
                value = dict(value)
                value["dateTime"] = format_local(parse_local(value.get("dateTime")))
            elif name == "body":
                value = {
                    "contentType": str((value or {}).get("contentType") or "html").lower(),
                    "content": str((value or {}).get("content") or ""),
                }
            elif name in ("sensitivity", "importance") and isinstance(value, str):
                value = value.lower()
            proposed[name] = copy.deepcopy(value)
        if proposed.get("sensitivity") not in SENSITIVITIES:
            raise _bad(f"'{proposed.get('sensitivity')}' is not a valid sensitivity.")
        if proposed.get("showAs") not in SHOW_AS:
            raise _bad(f"'{proposed.get('showAs')}' is not a valid showAs.")
        self._validate_times(proposed)
        if "body" in changes:
            from m365sync.emulator.mailbox import body_preview

            proposed["bodyPreview"] = body_preview(proposed["body"])
        if proposed.get("isOnlineMeeting") and not proposed.get("onlineMeeting"):
            token = hashlib.sha256(eid.encode()).hexdigest()[:32]
            proposed["onlineMeeting"] = {
                "joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_"
                + token
                + "%40thread.v2/0"
            }
            if proposed.get("onlineMeetingProvider") in (None, "unknown"):
                proposed["onlineMeetingProvider"] = "teamsForBusiness"
        reshaped = "recurrence" in changes or "start" in changes or "end" in changes
        if "recurrence" in changes and changes["recurrence"] is None:
            proposed["recurrence"] = None
            proposed["type"] = "singleInstance"
        elif proposed.get("recurrence") and (reshaped or "isAllDay" in changes):
            proposed["recurrence"] = normalize_recurrence(
                changes.get("recurrence") or _rebased(proposed["recurrence"], proposed["start"]),
                proposed["start"],
            )
            proposed["type"] = "seriesMaster"
        self._events[eid] = proposed
        if proposed["type"] == "seriesMaster":
            if reshaped or eid not in self._series:
                # Outlook: "Any exceptions associated with this recurring appointment will be
                # cancelled" when the recurrence or the series' time changes.
                self._series[eid] = _Series()
        else:
            self._series.pop(eid, None)
        self._stamp(proposed)
        return copy.deepcopy(proposed)

    def delete(self, ref: str) -> None:
        """DELETE /me/events/{id}: a single event, a whole series (by its master), or one
        occurrence/exception (which is then cancelled)."""
        with self.lock:
            if ref in self._events:
                event = self._events.pop(ref)
                self._series.pop(ref, None)
                self._seq += 1
                if not event.get("recurrence"):
                    self._changed[ref] = self._seq
                transaction = event.get("transactionId")
                if transaction and self._by_transaction.get(transaction) == ref:
                    del self._by_transaction[transaction]
                return
            split = self._split(ref, include_cancelled=True)
            if split is None:
                raise _not_found()
            master_id, day = split
            series = self._series[master_id]
            if day in series.cancelled:
                status, code = self.cancelled_delete_status
                raise CalendarError(
                    status, code, "The specified object was not found in the store."
                )
            series.cancelled.add(day)
            series.exceptions.pop(day, None)
            self._stamp(self._events[master_id])
            self._changed[ref] = self._seq

    def cancel(self, ref: str) -> None:
        """POST /me/events/{id}/cancel: the organizer cancels an event or an occurrence
        (docs `api/event-cancel.md`: "moves the event to the Deleted Items folder")."""
        with self.lock:
            event = self._find(ref)
            if not event.get("isOrganizer", True):
                raise CalendarError(
                    400,
                    "ErrorAccessDenied",
                    "Your request can't be completed. You need to be an organizer to cancel a "
                    "meeting.",
                )
            self.delete(ref)

    def respond(self, ref: str, response: str) -> dict[str, Any]:
        """POST /me/events/{id}/accept | decline | tentativelyAccept (docs
        `api/event-accept.md`): the invitee's answer lands in ``responseStatus``. Returns a
        copy of the event (the caller tells the organizer when ``sendResponse`` asks it)."""
        with self.lock:
            event = self._find(ref)
            if event.get("isOrganizer", True):
                raise CalendarError(
                    400,
                    "ErrorInvalidRequest",
                    "Your request can't be completed. You can't respond to a meeting you "
                    "organized.",
                )
            target = self._events.get(ref)
            if target is None:
                raise CalendarError(
                    400,
                    "ErrorInvalidRequest",
                    "This emulator answers whole invitations only, not one occurrence.",
                )
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
            # responseStatus is read-only for PATCH; only these actions change it.
            target["responseStatus"] = {"response": response, "time": stamp}
            self._stamp(target)
            return copy.deepcopy(target)

    # ----------------------------------------------------------------- reads

    def _split(self, ref: str, *, include_cancelled: bool = False) -> tuple[str, date] | None:
        split = split_occurrence_id(ref)
        if split is None:
            return None
        master_id, day = split
        master = self._events.get(master_id)
        if master is None or not master.get("recurrence"):
            return None
        series = self._series[master_id]
        if day in series.cancelled:
            return split if include_cancelled else None
        if day in series.exceptions:
            return split
        if self._generated(master, day) is None:
            return None
        return split

    def _generated(self, master: dict[str, Any], day: date) -> dict[str, Any] | None:
        for other in occurrence_dates(master["recurrence"], until=day):
            if other == day:
                return self._occurrence(master, day)
        return None

    def _find(self, ref: str) -> dict[str, Any]:
        if ref in self._events:
            return self._events[ref]
        split = self._split(ref)
        if split is None:
            raise _not_found()
        return self._instance_resource(self._events[split[0]], split[1])

    def get(self, ref: str) -> dict[str, Any]:
        """A copy of an event, occurrence or exception (start/end in their own zones);
        CalendarError 404 if there is none."""
        with self.lock:
            return copy.deepcopy(self._find(ref))

    def exists(self, ref: str) -> bool:
        with self.lock:
            try:
                self._find(ref)
            except CalendarError:
                return False
            return True

    def _occurrence(self, master: dict[str, Any], day: date) -> dict[str, Any]:
        start_zone = master["start"]["timeZone"]
        tz = zone(start_zone) or ZoneInfo("UTC")
        master_start = parse_local(master["start"]["dateTime"])
        local_start = datetime.combine(day, master_start.time())
        if master.get("isAllDay"):
            span = parse_local(master["end"]["dateTime"]) - master_start
            start_dtz = dtz(local_start, start_zone)
            end_dtz = dtz(local_start + span, master["end"]["timeZone"])
        else:
            duration = _instant(master["end"]) - _instant(master["start"])
            start_utc = to_utc(local_start, tz)
            start_dtz = dtz(local_start, start_zone)
            end_dtz = in_zone(start_utc + duration, master["end"]["timeZone"])
        occurrence = copy.deepcopy(master)
        occurrence.update(
            {
                "id": occurrence_id(master["id"], day),
                "type": "occurrence",
                "seriesMasterId": master["id"],
                "recurrence": None,
                "iCalUId": occurrence_ical_uid(master["iCalUId"], day),
                "originalStart": format_utc(to_utc(local_start, tz)),
                "start": start_dtz,
                "end": end_dtz,
                "webLink": "https://outlook.office365.com/owa/?itemid="
                + occurrence_id(master["id"], day).replace("=", "%3D")
                + "&exvsurl=1&path=/calendar/item",
            }
        )
        occurrence["transactionId"] = None
        return occurrence

    def _instance_resource(self, master: dict[str, Any], day: date) -> dict[str, Any]:
        occurrence = self._occurrence(master, day)
        overrides = self._series[master["id"]].exceptions.get(day)
        if overrides is not None:
            occurrence.update(copy.deepcopy(overrides))
            occurrence["type"] = "exception"
        return occurrence

    def _instances_of(
        self, master: dict[str, Any], low: datetime, high: datetime
    ) -> Iterator[tuple[date, dict[str, Any]]]:
        """Occurrences and exceptions of a series overlapping [low, high), not cancelled."""
        series = self._series[master["id"]]
        tz = zone(master["recurrence"]["range"]["recurrenceTimeZone"]) or ZoneInfo("UTC")
        until = (high.astimezone(tz) + timedelta(days=2)).date()
        seen: set[date] = set()
        for day in occurrence_dates(master["recurrence"], until=until):
            if day in series.cancelled:
                continue
            seen.add(day)
            if day in series.exceptions:
                continue
            instance = self._occurrence(master, day)
            if _overlaps(instance, low, high):
                yield day, instance
        for day in sorted(series.exceptions):
            if day in series.cancelled:
                continue
            instance = self._instance_resource(master, day)
            if _overlaps(instance, low, high):
                yield day, instance

    def view(self, low: datetime, high: datetime) -> list[dict[str, Any]]:
        """calendarView: single events, occurrences and exceptions overlapping the window,
        in start order (copies, start/end in their own zones)."""
        with self.lock:
            return [resource for _, resource in self._view(low, high)]

    def _view(self, low: datetime, high: datetime) -> list[tuple[Instance, dict[str, Any]]]:
        out: list[tuple[Instance, dict[str, Any]]] = []
        for event in self._events.values():
            if event.get("recurrence"):
                for day, instance in self._instances_of(event, low, high):
                    out.append(
                        (
                            Instance(
                                instance["id"],
                                _instant(instance["start"]),
                                _instant(instance["end"]),
                                event["changeKey"],
                                event["id"],
                                day,
                            ),
                            instance,
                        )
                    )
            elif _overlaps(event, low, high):
                out.append(
                    (
                        Instance(
                            event["id"],
                            _instant(event["start"]),
                            _instant(event["end"]),
                            event["changeKey"],
                        ),
                        copy.deepcopy(event),
                    )
                )
        out.sort(key=lambda pair: (pair[0].start, pair[0].id))
        return out

    def instances(self, master_id: str, low: datetime, high: datetime) -> list[dict[str, Any]]:
        """GET /events/{id}/instances: a master's occurrences and exceptions in the window,
        "but does not include occurrences that have been cancelled" (docs `resources/event.md`).
        Graph returns them unordered; so does this (exceptions last)."""
        with self.lock:
            master = self._events.get(master_id)
            if master is None:
                if self._split(master_id) is not None:
                    return []
                raise _not_found()
            if not master.get("recurrence"):
                return []
            return [instance for _, instance in self._instances_of(master, low, high)]

    def events(self) -> list[dict[str, Any]]:
        """GET /me/events: single events and series masters, in creation order (copies)."""
        with self.lock:
            return [copy.deepcopy(e) for e in self._events.values()]

    def export(self) -> list[dict[str, Any]]:
        """Everything as `add_event` reads it back: events and masters (masters with beta's
        ``cancelledOccurrences``), then each exception as a full instance resource."""
        with self.lock:
            out: list[dict[str, Any]] = []
            exceptions: list[dict[str, Any]] = []
            for eid, event in self._events.items():
                item = copy.deepcopy(event)
                series = self._series.get(eid)
                if series is not None and series.cancelled:
                    item["cancelledOccurrences"] = [
                        f"OID.{eid}.{day.isoformat()}" for day in sorted(series.cancelled)
                    ]
                out.append(item)
                if series is not None:
                    exceptions += [
                        self._instance_resource(event, day) for day in sorted(series.exceptions)
                    ]
            return out + exceptions

    def cancelled_occurrences(self, master_id: str) -> list[str]:
        """The original dates (series zone, ISO) of a series' cancelled occurrences."""
        with self.lock:
            series = self._series.get(master_id)
            return [d.isoformat() for d in sorted(series.cancelled)] if series else []

    # ----------------------------------------------------------------- the write log

    def record_write(
        self, method: str, path: str, body: Any, status: int, event_id: str | None
    ) -> None:
        """Log a write the API answered (POST/PATCH/DELETE/cancel), body as sent."""
        with self.lock:
            self._written.append(
                {
                    "method": method,
                    "path": path,
                    "status": status,
                    "id": event_id,
                    "body": copy.deepcopy(body),
                    "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                }
            )

    def written(self) -> list[dict[str, Any]]:
        """What clients wrote through the API, oldest first (copies)."""
        with self.lock:
            return copy.deepcopy(self._written)

    def clear_written(self) -> None:
        with self.lock:
            self._written.clear()

    # ----------------------------------------------------------------- delta rounds

    def start_round(self, window: tuple[datetime, datetime], since: ViewDelta | None) -> ViewRound:
        """Snapshot a calendarView delta round (call with the lock held)."""
        now = {inst.id: inst.fingerprint for inst, _ in self._view(*window)}
        if since is None:
            return ViewRound(window, [("item", i) for i in now], dict(now), self._seq)
        # Removals first, as in the documented next-round example (delta-query-events.md).
        entries: list[tuple[str, str]] = [("removed", i) for i in since.known if i not in now]
        entries += [("item", i) for i, fp in now.items() if since.known.get(i) != fp]
        if self.removals_outside_window:
            listed = {i for _, i in entries}
            for eid, seq in self._changed.items():
                if seq > since.watermark and eid not in now and eid not in listed:
                    if eid in since.known:
                        continue
                    entries.append(("removed", eid))
        return ViewRound(window, entries, dict(now), self._seq)

    def render(self, ref: str, window: tuple[datetime, datetime]) -> dict[str, Any] | None:
        """An instance as it is now if it is in the window, else None (lock held)."""
        try:
            resource = self._find(ref)
        except CalendarError:
            return None
        if resource.get("recurrence"):
            return None
        if not _overlaps(resource, *window):
            return None
        return copy.deepcopy(resource)


def _overlaps(event: dict[str, Any], low: datetime, high: datetime) -> bool:
    start, end = _instant(event["start"]), _instant(event["end"])
    if end == start:
        return low <= start < high
    return start < high and end > low


def _rebased(recurrence: dict[str, Any], start: dict[str, Any]) -> dict[str, Any]:
    """The recurrence with its range starting on the (new) start date."""
    moved = copy.deepcopy(recurrence)
    moved["range"]["startDate"] = parse_local(start["dateTime"]).date().isoformat()
    return moved
