"""Graph event JSON <-> ``CalendarEvent`` (pure), a calendarView delta reader and an event writer.

The parsers take dicts and return dataclasses, so they are tested on the documentation's own
payloads with no I/O (STYLE habit 13). One bad item never fails its page (invariant 4): it
becomes a ``RejectedItem`` with a reason.

Facts this module relies on (docs = microsoftgraph/microsoft-graph-docs-contrib; see also
/work/shared/GRAPH-FACTS.md sections 4 and 5):

- ``start``/``end`` are ``dateTimeTimeZone``: a local ``dateTime`` with seven fractional digits
  (``2017-04-15T11:00:00.0000000``) plus a ``timeZone`` name, "any of the time zones currently
  supported by Windows, as well as the other time zones supported by the calendar API" (a list
  of IANA names) (docs `resources/datetimetimezone.md`). The zone of each value is always read:
  the documented event-get example sends ``Prefer: outlook.timezone="Pacific Standard Time"``,
  gets ``Preference-Applied`` back, and still shows ``"timeZone": "UTC"`` (docs
  `api/event-get.md` @ 02e0226b), and all-day events are reported to ignore the preference
  (learn.microsoft.com/answers/questions/1382503; msgraph-sdk-javascript#1158).
- ``isAllDay``: "start and end time must be set to midnight and be in the same time zone";
  ``originalStartTimeZone`` is the zone the event was created in, and may be
  ``tzone://Microsoft/Custom`` for "a legacy custom time zone" (docs `resources/event.md`
  @ 82e5d12b). ``originalStart`` (UTC) exists only on occurrences and exceptions (same page).
- ``transactionId``: "A custom identifier specified by a client app for the server to avoid
  redundant POST operations in case of client retries to create the same event"; cannot be
  changed later; returned only if set (event.md @ 82e5d12b; example 1 of
  `api/user-post-events.md` @ b7c64905).
- calendarView delta: ``GET /me/calendarView/delta?startDateTime=..&endDateTime=..``; query
  options only in the first request ("encoded into the token portion" of the links); no
  ``$select``/``$filter``/``$expand``/``$orderby``; ``Prefer: odata.maxpagesize`` and a time-zone
  preference are the documented headers; ``@removed`` with reason ``deleted`` also covers
  events *outside* the window (docs `api/event-delta.md` @ 028b8e35,
  `concepts/delta-query-events.md` @ 0a028464). Items are occurrences and exceptions, not
  series masters' rules: masters are read by id for their ``recurrence``.
- Range limit: Graph refuses calendar views wider than 1825 days ("The range between the start
  and end dates is greater than the allowed range. Maximum number of days: 1825",
  ErrorInvalidRequest; microsoftgraph/microsoft-graph-docs-contrib#6321). Five calendar years
  with a leap day are 1826 days, so the limit is checked in days, not years.
- ``instances`` of a master: ``/me/events/{id}/instances?startDateTime=..&endDateTime=..``;
  occurrences and exceptions in the range, "but does not include occurrences that have been
  cancelled from the series" (event.md; `api/event-list-instances.md` @ 007a9ba3).
- Recurrence: "Include only the properties that you need for a recurrence pattern. Any property
  that you include that does not have a supported value would result in an error"
  (`resources/recurrencepattern.md` @ 09455a65); ``range.startDate`` "MUST correspond to the
  date value of the start property"; ``recurrenceTimeZone`` is optional and defaults to the
  event's zone (`concepts/outlook-schedule-recurring-events.md` @ 15f91f36).
- Deleting a meeting on the organizer's calendar "sends a cancellation message to the meeting
  attendees" (event-delete); so a cancelled occurrence is one DELETE of its instance.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import partial
from typing import Any, Protocol
from urllib.parse import quote

from m365sync.domain import (
    Attendee,
    CalendarEvent,
    EmailAddress,
    EventType,
    Recurrence,
    RejectedItem,
    ResponseStatus,
    Sensitivity,
    ShowAs,
)
from m365sync.errors import GraphError, MalformedResponse, NotFound
from m365sync.graph import batch
from m365sync.graph.mail import BadItem, parse_address
from m365sync.graph.payload import PagingClient, odata_query, opt_bool, opt_str, page_link
from m365sync.sync import timezones

log = logging.getLogger("m365sync.graph.calendar")

#: Graph refuses calendar views wider than this (see the module docstring).
MAX_WINDOW = timedelta(days=1825)
#: Outlook's marker for a zone drawn by hand in old desktop Outlook: it maps to nothing.
CUSTOM_ZONE = "tzone://Microsoft/Custom"
#: Prefer values every calendar read carries: they apply only to the request carrying them.
UTC_PREFERENCE = 'outlook.timezone="UTC"'
IMMUTABLE_IDS = 'IdType="ImmutableId"'

_MIDNIGHT = time(0, 0)
_PATTERN_FIELDS: dict[str, tuple[str, ...]] = {
    # What each pattern type needs (recurrencepattern.md's table); nothing else is sent.
    "daily": (),
    "weekly": ("daysOfWeek", "firstDayOfWeek"),
    "absoluteMonthly": ("dayOfMonth",),
    "relativeMonthly": ("daysOfWeek", "index"),
    "absoluteYearly": ("dayOfMonth", "month"),
    "relativeYearly": ("daysOfWeek", "month", "index"),
}
_EVENT_TYPES = {member.value.lower(): member for member in EventType}
_SENSITIVITIES = {member.value.lower(): member for member in Sensitivity}
_SHOW_AS = {member.value.lower(): member for member in ShowAs}
_RESPONSES = {member.value.lower(): member for member in ResponseStatus}
_RESPONSE_ACTIONS = {
    ResponseStatus.ACCEPTED: "accept",
    ResponseStatus.DECLINED: "decline",
    ResponseStatus.TENTATIVE: "tentativelyAccept",
}


class BadEvent(ValueError):
    """An event Graph sent that we cannot use; ``reason`` says why (counted, never dropped)."""

    def __init__(self, reason: str, graph_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.graph_id = graph_id


@dataclass(slots=True)
class EventPage:
    """One calendarView delta page, parsed.

    ``removed_ids`` may name events outside the window (Graph reports those as removed too);
    the sync layer decides what a removal means. ``zone_fallbacks`` maps an event id to the
    ``originalStartTimeZone`` we could not map (``tzone://Microsoft/Custom`` or an unknown
    name), so the event's ``time_zone`` is a stand-in; reported, not hidden.
    """

    events: list[CalendarEvent]
    removed_ids: list[str]
    rejected: list[RejectedItem]
    next_link: str | None
    delta_link: str | None
    zone_fallbacks: dict[str, str] = field(default_factory=dict)


# --- time zones -----------------------------------------------------------------------------


def zone_named(name: str) -> tzinfo:
    """A Windows or IANA zone name as a tzinfo, through the maintained (CLDR) mapping.

    Raises ``timezones.UnknownTimeZone`` for custom and unknown names.
    """
    return timezones.zone(name)


def _iana_name(name: str) -> str | None:
    try:
        return timezones.to_iana(name)
    except timezones.UnknownTimeZone:
        return None


def graph_zone_name(name: str) -> str | None:
    """The name to send Graph for a zone: its Windows name, or None if there is none.

    Windows names are what every create/update example in the docs uses, and
    datetimetimezone.md warns that create and update "might not support all" of the other
    (IANA) names. Windows names pass through unchanged.
    """
    try:
        return timezones.to_windows(name)
    except timezones.UnknownTimeZone:
        return None


# --- field readers --------------------------------------------------------------------------


_opt_str = partial(opt_str, bad=BadEvent)
_opt_bool = partial(opt_bool, bad=BadEvent)


def _opt_int(mapping: Mapping[str, Any], key: str) -> int:
    value = mapping.get(key)
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadEvent(f"{key} is not an integer")


def _obj(item: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = item.get(key)
    if value is None or isinstance(value, Mapping):
        return value
    raise BadEvent(f"{key} is not an object")


def _instant(item: Mapping[str, Any], key: str) -> datetime | None:
    """A Graph DateTimeOffset (always UTC per event.md) as an aware UTC datetime."""
    value = _opt_str(item, key)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # 3.11 reads seven fractional digits
    except ValueError:
        raise BadEvent(f"{key} is not a timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Local:
    """One ``dateTimeTimeZone`` value: wall-clock time and the zone it is written in."""

    wall: datetime  # naive
    zone: tzinfo

    @property
    def instant(self) -> datetime:
        return self.wall.replace(tzinfo=self.zone).astimezone(UTC)


def _local(item: Mapping[str, Any], key: str) -> _Local:
    value = item.get(key)
    if not isinstance(value, Mapping):
        raise BadEvent(f"{key} is missing" if value is None else f"{key} is not an object")
    text, zone_name = value.get("dateTime"), value.get("timeZone")
    if not isinstance(text, str) or not text:
        raise BadEvent(f"{key}.dateTime is missing")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadEvent(f"{key}.dateTime is not a date-time: {text[:40]!r}") from None
    if parsed.tzinfo is not None:  # an explicit offset wins over any zone name
        return _Local(parsed.astimezone(UTC).replace(tzinfo=None), UTC)
    if zone_name is None or zone_name == "":
        return _Local(parsed, UTC)  # "By default, the start time is in UTC" (event.md)
    if not isinstance(zone_name, str):
        raise BadEvent(f"{key}.timeZone is not a string")
    try:
        return _Local(parsed, zone_named(zone_name))
    except timezones.UnknownTimeZone:
        raise BadEvent(f"{key}.timeZone {zone_name[:60]!r} is not a known time zone") from None


def _event_zone(item: Mapping[str, Any], start: _Local) -> tuple[str, str | None]:
    """``(IANA zone the event was planned in, unmappable original name or None)``.

    From ``originalStartTimeZone``; a custom or unknown name falls back to the zone the start
    is written in (UTC under our Prefer header) and is reported.
    """
    original = _opt_str(item, "originalStartTimeZone")
    if original:
        iana = _iana_name(original)  # None for CUSTOM_ZONE and names CLDR does not know
        if iana is not None:
            return iana, None
    fallback = getattr(start.zone, "key", None) or "UTC"
    return fallback, original or None


def _end_zone(item: Mapping[str, Any], time_zone: str) -> str:
    """The IANA zone of ``originalEndTimeZone`` when it maps and differs from the start's;
    else "" (the end is in the event's zone; an unmappable name changes nothing)."""
    original = _opt_str(item, "originalEndTimeZone")
    end_zone = _iana_name(original) if original else None
    return end_zone if end_zone is not None and end_zone != time_zone else ""


def _all_day_date(value: _Local, event_zone: tzinfo, *, is_end: bool) -> date:
    """The calendar day an all-day boundary names, in the event's own zone, never in UTC.

    Graph writes all-day boundaries as midnight of the event's zone (sometimes labelled with
    that zone, sometimes as a floating "UTC" midnight): midnight in the written zone is taken
    as it stands. A boundary converted to another zone (e.g. 11:00 UTC for midnight in
    Auckland) is converted back to the event's zone. A boundary that is midnight nowhere is
    widened to whole days, as Exchange itself does (start to the midnight before, end to the
    midnight after: EWS "Create all-day events").
    """
    if value.wall.time() == _MIDNIGHT:
        return value.wall.date()
    local = value.instant.astimezone(event_zone)
    day = local.date()
    if is_end and local.time() != _MIDNIGHT:
        day += timedelta(days=1)
    return day


def _response(raw: Any) -> ResponseStatus:
    if isinstance(raw, str):
        return _RESPONSES.get(raw.lower(), ResponseStatus.NONE)
    return ResponseStatus.NONE


def _attendees(item: Mapping[str, Any]) -> tuple[Attendee, ...]:
    value = item.get("attendees")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadEvent("attendees is not a list")
    found: list[Attendee] = []
    for entry in value:
        address = _address(entry, "attendees")
        if address is None:
            continue  # an attendee without an address cannot be linked or invited
        status = entry.get("status") if isinstance(entry, Mapping) else None
        kind = entry.get("type")
        found.append(
            Attendee(
                address=address.address,
                name=address.name,
                kind=kind.lower() if isinstance(kind, str) and kind else "required",
                response=_response(status.get("response") if isinstance(status, Mapping) else None),
            )
        )
    return tuple(found)


def _address(recipient: Any, key: str) -> EmailAddress | None:
    try:
        return parse_address(recipient, field=key)
    except BadItem as exc:
        raise BadEvent(exc.reason) from None


def _enum(item: Mapping[str, Any], key: str, table: dict[str, Any], default: Any) -> Any:
    raw = _opt_str(item, key)
    if raw is None or raw == "":
        return default
    return table.get(raw.lower())


def _event_type(item: Mapping[str, Any]) -> EventType:
    """Graph's ``type``; when absent (a ``$select`` without it) inferred from what is there."""
    raw = _opt_str(item, "type")
    if raw:
        found = _EVENT_TYPES.get(raw.lower())
        if found is None:
            raise BadEvent(f"type {raw[:40]!r} is not an event type we know")
        return found
    if item.get("recurrence"):
        return EventType.SERIES_MASTER
    if item.get("seriesMasterId"):
        return EventType.OCCURRENCE
    return EventType.SINGLE


def _sensitivity(item: Mapping[str, Any]) -> Sensitivity:
    """Unknown values count as private: guessing "normal" could expose a private event."""
    found = _enum(item, "sensitivity", _SENSITIVITIES, Sensitivity.NORMAL)
    return found if found is not None else Sensitivity.PRIVATE


def _show_as(item: Mapping[str, Any]) -> ShowAs:
    found = _enum(item, "showAs", _SHOW_AS, ShowAs.BUSY)
    return found if found is not None else ShowAs.UNKNOWN


def _body_html(item: Mapping[str, Any]) -> str | None:
    """The body as HTML; a text body is escaped into <pre> so later layers see one format."""
    body = _obj(item, "body")
    if body is None:
        return None
    content = _opt_str(body, "content")
    if content is None:
        return None
    kind = body.get("contentType")
    if isinstance(kind, str) and kind.lower() == "text":
        return f"<pre>{html.escape(content)}</pre>"
    return content


def _location(item: Mapping[str, Any]) -> str | None:
    location = _obj(item, "location")
    if location is None:
        return None
    name = (_opt_str(location, "displayName") or "").strip()
    return name or None


def _join_url(item: Mapping[str, Any]) -> str | None:
    """``onlineMeeting.joinUrl``; ``onlineMeetingUrl`` "will be deprecated" but may be all."""
    meeting = _obj(item, "onlineMeeting")
    url = _opt_str(meeting, "joinUrl") if meeting is not None else None
    return url or _opt_str(item, "onlineMeetingUrl") or None


def _date(mapping: Mapping[str, Any], key: str) -> date | None:
    value = mapping.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadEvent(f"recurrence {key} is not a date")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise BadEvent(f"recurrence {key} is not a date: {value[:20]!r}") from None


def parse_recurrence(value: Any) -> Recurrence | None:
    """``patternedRecurrence`` -> ``Recurrence`` with Graph's values kept as they came.

    Read-back fills defaults (month 0, firstDayOfWeek "sunday", numberOfOccurrences 0,
    "Monday" as "monday"); making sense of those is the recurrence module's job, not ours.
    What Graph documents as required is never guessed: the pattern's ``interval`` ("The
    number of units between occurrences ... Required", at least 1) and the range's ``type``
    (recurrencepattern.md, recurrencerange.md); without them the event is refused.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadEvent("recurrence is not an object")
    pattern, rng = value.get("pattern"), value.get("range")
    if not isinstance(pattern, Mapping) or not isinstance(rng, Mapping):
        raise BadEvent("recurrence lacks its pattern or range")
    pattern_type, range_type = pattern.get("type"), rng.get("type")
    start_date = _date(rng, "startDate")
    if not isinstance(pattern_type, str) or not pattern_type or start_date is None:
        raise BadEvent("recurrence lacks a pattern type or a range start date")
    interval = pattern.get("interval")
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise BadEvent(
            f"recurrence interval must be a whole number of at least 1, not {interval!r:.20}"
        )
    if not isinstance(range_type, str) or not range_type:
        raise BadEvent("recurrence range has no type")
    days = pattern.get("daysOfWeek") or []
    if not isinstance(days, list) or not all(isinstance(day, str) for day in days):
        raise BadEvent("recurrence daysOfWeek is not a list of names")
    return Recurrence(
        pattern_type=pattern_type,
        start_date=start_date,
        interval=interval,
        days_of_week=tuple(days),
        day_of_month=_opt_int(pattern, "dayOfMonth"),
        month=_opt_int(pattern, "month"),
        first_day_of_week=_opt_str(pattern, "firstDayOfWeek") or "sunday",
        index=_opt_str(pattern, "index") or "first",
        range_type=range_type,
        end_date=_date(rng, "endDate"),
        number_of_occurrences=_opt_int(rng, "numberOfOccurrences"),
        time_zone=_opt_str(rng, "recurrenceTimeZone") or "",
    )


# --- events and pages -----------------------------------------------------------------------


def parse_event(item: Mapping[str, Any]) -> CalendarEvent:
    """One Graph event -> CalendarEvent, or ``BadEvent`` saying why it cannot be used.

    Unknown fields are ignored; missing optional fields are fine; a missing or unreadable
    start/end, an unknown zone name or a wrong type is refused.
    """
    return _parse(item)[0]


def _parse(item: Any) -> tuple[CalendarEvent, str | None]:
    """``(event, unmappable originalStartTimeZone or None)``."""
    if not isinstance(item, Mapping):
        raise BadEvent("item is not an object")
    graph_id = item.get("id")
    if not isinstance(graph_id, str) or not graph_id:
        raise BadEvent("item has no id")
    try:
        return _fields(item, graph_id)
    except BadEvent as exc:
        exc.graph_id = graph_id
        raise


def _fields(item: Mapping[str, Any], graph_id: str) -> tuple[CalendarEvent, str | None]:
    start, end = _local(item, "start"), _local(item, "end")
    time_zone, fallback_from = _event_zone(item, start)
    is_all_day = _opt_bool(item, "isAllDay")
    event = CalendarEvent(
        graph_id=graph_id,
        ical_uid=_opt_str(item, "iCalUId"),
        event_type=_event_type(item),
        subject=_opt_str(item, "subject"),
        start=None if is_all_day else start.instant,
        end=None if is_all_day else end.instant,
        time_zone=time_zone,
        is_all_day=is_all_day,
        series_master_id=_opt_str(item, "seriesMasterId"),
        original_start=_instant(item, "originalStart"),
        recurrence=parse_recurrence(item.get("recurrence")),
        body_html=_body_html(item),
        location=_location(item),
        online_meeting_url=_join_url(item),
        sensitivity=_sensitivity(item),
        show_as=_show_as(item),
        is_cancelled=_opt_bool(item, "isCancelled"),
        organizer=_address(item.get("organizer"), "organizer"),
        attendees=_attendees(item),
        change_key=_opt_str(item, "changeKey"),
        last_modified=_instant(item, "lastModifiedDateTime"),
        transaction_id=_opt_str(item, "transactionId"),
        my_response=_response((_obj(item, "responseStatus") or {}).get("response")),
        is_online_meeting=_opt_bool(item, "isOnlineMeeting"),
        end_time_zone="" if is_all_day else _end_zone(item, time_zone),
        is_organizer=_opt_bool(item, "isOrganizer") if "isOrganizer" in item else None,
    )
    if is_all_day:
        zone = zone_named(time_zone)
        event.start_date = _all_day_date(start, zone, is_end=False)
        event.end_date = _all_day_date(end, zone, is_end=True)
        if event.end_date <= event.start_date:
            raise BadEvent("all-day event ends before it starts")
    elif end.instant < start.instant:
        raise BadEvent("event ends before it starts")
    return event, fallback_from


def parse_event_page(payload: Mapping[str, Any]) -> EventPage:
    """One calendarView delta page -> EventPage. Never raises for one item; raises
    ``MalformedResponse`` for a page without a value list or without either link.

    An id seen twice keeps its last usable occurrence (delta replays are normal); a rejection
    does not displace a usable occurrence of the same id.
    """
    items = payload.get("value")
    if not isinstance(items, list):
        raise MalformedResponse("a delta page without a value list")
    next_link = page_link(payload, "@odata.nextLink")
    delta_link = page_link(payload, "@odata.deltaLink")
    if next_link is None and delta_link is None:
        raise MalformedResponse("a delta page with neither @odata.nextLink nor @odata.deltaLink")
    if next_link is not None:
        delta_link = None  # the round goes on; a deltaLink is only valid at its end

    latest: dict[str, CalendarEvent | None] = {}  # None = removed
    rejected: dict[str, RejectedItem] = {}
    anonymous: list[RejectedItem] = []
    fallbacks: dict[str, str] = {}
    for item in items:
        graph_id, outcome, fallback = _classify(item)
        if isinstance(outcome, RejectedItem):
            if graph_id is None:
                anonymous.append(outcome)
            elif graph_id not in latest:
                rejected[graph_id] = outcome
            continue
        assert graph_id is not None
        latest.pop(graph_id, None)
        rejected.pop(graph_id, None)
        latest[graph_id] = outcome
        if fallback is not None:
            fallbacks[graph_id] = fallback
    return EventPage(
        events=[event for event in latest.values() if event is not None],
        removed_ids=[gid for gid, event in latest.items() if event is None],
        rejected=anonymous + list(rejected.values()),
        next_link=next_link,
        delta_link=delta_link,
        zone_fallbacks={
            gid: name for gid, name in fallbacks.items() if latest.get(gid) is not None
        },
    )


def _classify(item: Any) -> tuple[str | None, CalendarEvent | RejectedItem | None, str | None]:
    """``(id, event, fallback)``, ``(id, None, None)`` for a removal, or a RejectedItem."""
    raw_id = item.get("id") if isinstance(item, Mapping) else None
    graph_id = raw_id if isinstance(raw_id, str) and raw_id else None
    if isinstance(item, Mapping) and "@removed" in item:
        if graph_id is None:
            return None, RejectedItem(None, "removed item without an id"), None
        return graph_id, None, None
    try:
        event, fallback = _parse(item)
    except BadEvent as exc:
        return graph_id, RejectedItem(graph_id, exc.reason), None
    if fallback is not None:
        log.info(
            "event %s: time zone %r maps to no IANA zone; using %s",
            graph_id,
            fallback[:60],
            event.time_zone,
        )
    return graph_id, event, fallback


# --- CalendarEvent -> Graph JSON -----------------------------------------------------------


SERIES_SHAPE = ("start", "end", "isAllDay", "recurrence")


def event_body(
    event: CalendarEvent,
    *,
    create: bool = False,
    online_meeting: bool = False,
    details_only: bool = False,
) -> dict[str, Any]:
    """The JSON for ``POST /me/events`` (``create``) or a full ``PATCH`` of ``event``.

    Start and end are written as wall-clock time in the event's own zone under its Windows
    name, so Outlook shows and recurs the event where it was planned (DST included); the end
    of a timed event planned to end in another zone (``end_time_zone``) is written in that
    one. A zone with no Windows name is sent as UTC: the instant stays right, only the
    planning zone is lost (logged). ``transactionId`` goes only into a create (Graph refuses
    to change it), and only if the event carries one. ``online_meeting`` asks Outlook to
    attach its default online meeting; once set, Outlook ignores attempts to turn it off
    (event.md), so it is never sent as false. ``details_only`` leaves out what shapes a series
    (start, end, isAllDay, recurrence): a PATCH of a series master's details then keeps its
    occurrences and exceptions as they are.

    A private event is sent whole, details and attendees included, with its ``sensitivity``
    (``normal``, ``personal``, ``private``, ``confidential``: `resources/event.md`): privacy is
    Outlook's to keep. The owner and the attendees see a private meeting; those the owner shares
    the calendar with see details only of "non-private events", and delegates "can view all
    information in and have write access to non-private events", unless "the owner can give
    explicit permissions to delegates to view the owner's private events"
    (https://learn.microsoft.com/en-us/graph/outlook-share-or-delegate-calendar).
    """
    zone_name = graph_zone_name(event.time_zone)
    if zone_name is None:
        log.warning("zone %r has no Windows name; writing the event in UTC", event.time_zone)
    body: dict[str, Any] = {
        "subject": event.subject or "",
        "body": {"contentType": "HTML", "content": event.body_html or ""},
        **_boundaries(event, zone_name),
        "isAllDay": event.is_all_day,
        "location": {"displayName": event.location or ""},
        "attendees": [_attendee_json(attendee) for attendee in event.attendees],
        "sensitivity": event.sensitivity.value,
        "showAs": event.show_as.value,
    }
    if event.recurrence is not None and event.event_type in (
        EventType.SERIES_MASTER,
        EventType.SINGLE,
    ):
        body["recurrence"] = recurrence_json(event.recurrence, _start_day(event, zone_name))
    if create and event.transaction_id:
        body["transactionId"] = event.transaction_id
    if online_meeting:
        body["isOnlineMeeting"] = True
    if details_only:
        for key in SERIES_SHAPE:
            body.pop(key, None)
    return body


def _boundaries(event: CalendarEvent, zone_name: str | None) -> dict[str, Any]:
    name = zone_name or "UTC"
    if event.is_all_day:
        if event.start_date is None or event.end_date is None:
            raise ValueError("an all-day event needs start_date and end_date")
        # "start and end time must be set to midnight and be in the same time zone"
        return {
            "start": _dtz(datetime.combine(event.start_date, _MIDNIGHT), name),
            "end": _dtz(datetime.combine(event.end_date, _MIDNIGHT), name),
        }
    if event.start is None or event.end is None:
        raise ValueError("a timed event needs start and end")
    zone = zone_named(event.time_zone) if zone_name else UTC
    end_zone, end_name = zone, name
    if event.end_time_zone and event.end_time_zone != event.time_zone:
        own_name = graph_zone_name(event.end_time_zone)
        if own_name is not None:
            end_zone, end_name = zone_named(event.end_time_zone), own_name
    return {
        "start": _dtz(_wall(event.start, zone), name),
        "end": _dtz(_wall(event.end, end_zone), end_name),
    }


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone).replace(tzinfo=None)


def _dtz(wall: datetime, zone_name: str) -> dict[str, str]:
    return {"dateTime": wall.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": zone_name}


def _start_day(event: CalendarEvent, zone_name: str | None) -> date:
    """The date of ``start`` as Graph will see it: range.startDate must equal it."""
    if event.is_all_day and event.start_date is not None:
        return event.start_date
    assert event.start is not None
    zone = zone_named(event.time_zone) if zone_name else UTC
    return _wall(event.start, zone).date()


def _attendee_json(attendee: Attendee) -> dict[str, Any]:
    address: dict[str, str] = {"address": attendee.address}
    if attendee.name:
        address["name"] = attendee.name
    return {"emailAddress": address, "type": attendee.kind or "required"}


def recurrence_json(recurrence: Recurrence, start_day: date) -> dict[str, Any]:
    """``patternedRecurrence`` with only the fields its pattern and range types use.

    ``range.startDate`` is ``start_day`` (the date of the event's start), whatever the
    Recurrence says: Graph requires the two to agree. An unknown pattern type is refused here
    rather than by Graph.
    """
    wanted = _PATTERN_FIELDS.get(recurrence.pattern_type)
    if wanted is None:
        raise ValueError(f"unknown recurrence pattern type {recurrence.pattern_type!r}")
    values: dict[str, Any] = {
        "daysOfWeek": [day.lower() for day in recurrence.days_of_week],
        "firstDayOfWeek": recurrence.first_day_of_week.lower(),
        "dayOfMonth": recurrence.day_of_month,
        "month": recurrence.month,
        "index": recurrence.index.lower(),
    }
    pattern = {"type": recurrence.pattern_type, "interval": recurrence.interval}
    pattern.update({key: values[key] for key in wanted})
    rng: dict[str, Any] = {"type": recurrence.range_type, "startDate": start_day.isoformat()}
    if recurrence.range_type == "endDate":
        if recurrence.end_date is None:
            raise ValueError("an endDate recurrence range needs an end date")
        rng["endDate"] = recurrence.end_date.isoformat()
    elif recurrence.range_type == "numbered":
        rng["numberOfOccurrences"] = recurrence.number_of_occurrences
    zone = _recurrence_zone(recurrence.time_zone)
    if zone:
        rng["recurrenceTimeZone"] = zone
    return {"pattern": pattern, "range": rng}


def _recurrence_zone(name: str) -> str | None:
    """A Windows name stays; an IANA name becomes its Windows name; unknown ones are dropped
    (the range then uses the event's own zone, which Graph documents as the default)."""
    return graph_zone_name(name) if name else None


# --- reading --------------------------------------------------------------------------------


class CalendarClient(PagingClient, Protocol):
    """What the reader and writer need of ``client.GraphClient`` (``batch_get`` takes it too)."""

    def post_json(
        self,
        url_or_path: str,
        body: Any | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]: ...

    def patch_json(
        self,
        url_or_path: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]: ...

    def delete(self, url_or_path: str, *, headers: Mapping[str, str] | None = None) -> None: ...


def _query(params: Mapping[str, str]) -> str:
    """Keep ':' readable in the window's timestamps."""
    return odata_query(params, safe="$,:")


def _stamp(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def check_window(window_start: datetime, window_end: datetime) -> None:
    """Refuse a window Graph would refuse, before spending a request on it."""
    if window_start.tzinfo is None or window_end.tzinfo is None:
        raise ValueError("the calendar window needs time-zone-aware datetimes")
    if window_end <= window_start:
        raise ValueError("the calendar window must end after it starts")
    if window_end - window_start > MAX_WINDOW:
        days = (window_end - window_start).days
        raise ValueError(
            f"the calendar window spans {days} days; Graph refuses calendar views over "
            f"{MAX_WINDOW.days} days (shorten the window's past or future part)"
        )


def _event_path(graph_id: str) -> str:
    return f"/me/events/{quote(graph_id, safe='')}"


class CalendarReader:
    """Reads one mailbox's default calendar: calendarView delta rounds, masters, instances."""

    def __init__(self, client: CalendarClient, *, page_size: int = 100) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self._client = client
        self._page_size = page_size

    @property
    def prefer(self) -> str:
        """Sent on every request: Prefer values apply only to the request carrying them."""
        return f"{UTC_PREFERENCE}, odata.maxpagesize={self._page_size}, {IMMUTABLE_IDS}"

    def _headers(self) -> dict[str, str]:
        return {"Prefer": self.prefer}

    def pages(
        self,
        *,
        window_start: datetime,
        window_end: datetime,
        resume_link: str | None = None,
    ) -> Iterator[EventPage]:
        """Parsed pages of one calendarView delta round, from ``resume_link`` or the start.

        The window shapes only the first request; after it, it lives inside the links, which
        are followed verbatim. The window is checked either way, so a misconfiguration shows
        at once rather than at the next full resync.
        """
        check_window(window_start, window_end)
        if resume_link:
            start = resume_link
        else:
            params = {"startDateTime": _stamp(window_start), "endDateTime": _stamp(window_end)}
            start = f"/me/calendarView/delta?{odata_query(params, safe='$,:')}"
        for payload in self._client.iter_pages(start, headers=self._headers()):
            yield parse_event_page(payload)

    def masters(self, series_ids: list[str]) -> dict[str, CalendarEvent]:
        """Series masters by id, read through JSON batching for their ``recurrence``.

        A master that is gone (404) or unreadable is left out (logged); any other failure
        raises, so the page that needed the masters is not stored half-understood.
        """
        paths = {series_id: _event_path(series_id) for series_id in dict.fromkeys(series_ids)}
        if not paths:
            return {}
        answers = batch.batch_get(
            self._client,  # type: ignore[arg-type]
            list(paths.values()),
            headers={"Prefer": f"{UTC_PREFERENCE}, {IMMUTABLE_IDS}"},
        )
        found: dict[str, CalendarEvent] = {}
        for series_id, path in paths.items():
            answer = answers.get(path)
            if isinstance(answer, NotFound):
                log.info("series master %s is gone", series_id)
                continue
            if isinstance(answer, GraphError):
                raise answer
            if answer is None:
                raise MalformedResponse(f"no $batch answer for series master {series_id}")
            try:
                found[series_id] = parse_event(answer)
            except BadEvent as exc:
                log.warning("series master %s is unusable: %s", series_id, exc.reason)
        return found

    def deleted(self, removed_ids: list[str]) -> list[str]:
        """The ids a delta page reported removed that Graph no longer serves (404) or serves
        cancelled: calendarView delta also reports events that merely left the window, and
        those are kept. An unknown fate raises, so the page is not stored half-understood."""
        if not removed_ids:
            return []
        paths = {
            graph_id: f"{_event_path(graph_id)}?$select=id,isCancelled" for graph_id in removed_ids
        }
        answers = batch.batch_get(
            self._client,  # type: ignore[arg-type]
            list(paths.values()),
            headers={"Prefer": IMMUTABLE_IDS},
        )
        gone = []
        for graph_id, path in paths.items():
            answer = answers.get(path)
            if isinstance(answer, NotFound) or (
                isinstance(answer, dict) and answer.get("isCancelled") is True
            ):
                gone.append(graph_id)
            elif isinstance(answer, GraphError):
                raise answer  # unknown fate: store nothing, retry the page next cycle
        return gone

    def instances(self, master_id: str, start: datetime, end: datetime) -> list[CalendarEvent]:
        """Occurrences and exceptions of a series between ``start`` and ``end`` (all pages).

        Cancelled occurrences are not among them (event.md). Unusable items are logged and
        left out: callers look for one instance, not a complete list.
        """
        params = {"startDateTime": _stamp(start), "endDateTime": _stamp(end)}
        path = f"{_event_path(master_id)}/instances?{odata_query(params, safe='$,:')}"
        found: list[CalendarEvent] = []
        for page in self._client.iter_pages(path, headers=self._headers()):
            items = page.get("value")
            if not isinstance(items, list):
                raise MalformedResponse("an instances page without a value list")
            for item in items:
                try:
                    found.append(parse_event(item))
                except BadEvent as exc:
                    log.warning("instance %s of %s unusable: %s", exc.graph_id, master_id, exc)
        return found


# --- writing --------------------------------------------------------------------------------


class CalendarWriter:
    """Creates, patches and deletes events (and single occurrences) in the default calendar.

    Every request asks for immutable ids (the ids we store) and UTC times in the answer (what
    ``parse_event`` reads back into the changeKey and instants we record for echo suppression).
    """

    def __init__(self, client: CalendarClient, *, reader: CalendarReader | None = None) -> None:
        self._client = client
        self._reader = reader or CalendarReader(client)
        self._headers = {"Prefer": f"{UTC_PREFERENCE}, {IMMUTABLE_IDS}"}

    def create(
        self, event: CalendarEvent, *, transaction_id: str, online_meeting: bool = False
    ) -> CalendarEvent:
        """POST the event with ``transactionId`` set; the created event as Graph stored it.

        Retried on 429/5xx (``idempotent=True``) only because ``transactionId`` is set: Graph
        uses it "to avoid redundant POST operations in case of client retries to create the
        same event", so a retry after a lost answer reaches the same event, not a second one.
        """
        if not transaction_id:
            raise ValueError("a create needs a transaction id (it is what makes retries safe)")
        body = event_body(event, create=True, online_meeting=online_meeting)
        body["transactionId"] = transaction_id
        answer = self._client.post_json("/me/events", body, headers=self._headers, idempotent=True)
        return parse_event(answer)

    def update(self, graph_id: str, changes: Mapping[str, Any]) -> CalendarEvent:
        """PATCH ``changes`` (Graph JSON, e.g. from ``event_body``); the event as it is now.

        The result's ``change_key`` is the new version, recorded to drop the delta echo. Not
        retried on 5xx: a PATCH that reached Outlook may already have sent attendees an
        update, so the scheduler decides when to send it again.
        """
        answer = self._client.patch_json(
            _event_path(graph_id), dict(changes), headers=self._headers
        )
        return parse_event(answer)

    def respond(self, graph_id: str, response: ResponseStatus) -> None:
        """Answer an invitation as the mailbox owner (docs `api/event-accept.md`, 202 and no
        body; likewise decline and tentativelyAccept); Outlook tells the organizer."""
        action = _RESPONSE_ACTIONS.get(response)
        if action is None:
            raise ValueError(f"{response.value!r} is not an answer one can send to an invitation")
        self._client.post_json(
            f"{_event_path(graph_id)}/{action}", {"sendResponse": True}, headers=self._headers
        )

    def delete(self, graph_id: str) -> bool:
        """Delete an event; False when it was already gone (404/410 count as success).

        403 is NOT treated as gone. Odoo's Outlook sync does (``addons/microsoft_calendar/
        utils/microsoft_calendar.py``), but its comment ("For some unknown reason Microsoft can
        also return a 403 response when the event is already cancelled") is copied word for
        word from its Google sync, and no Graph error code for it is documented or observed;
        a 403 also means ErrorAccessDenied, which must reach the user as a permission problem.
        """
        try:
            self._client.delete(_event_path(graph_id), headers=self._headers)
        except GraphError as exc:
            if exc.status in (404, 410):
                log.info("event %s was already gone (HTTP %s)", graph_id, exc.status)
                return False
            raise
        return True

    def find_occurrence(
        self, master_id: str, original_start: datetime, *, slack: timedelta = timedelta(days=1)
    ) -> CalendarEvent | None:
        """The instance of a series that fills the slot ``original_start``, or None.

        Looked up among the instances within ``slack`` of the slot; an exception moved further
        than that is not found. None also means the occurrence was cancelled already (instances
        leave cancelled occurrences out).
        """
        slot = original_start.astimezone(UTC)
        for instance in self._reader.instances(master_id, slot - slack, slot + slack):
            if instance.original_start is not None:
                if instance.original_start == slot:
                    return instance
            elif instance.event_type is EventType.OCCURRENCE and instance.start == slot:
                return instance
        return None

    def cancel_occurrence(self, master_id: str, original_start: datetime) -> bool:
        """Cancel one occurrence (DELETE its instance); False if it was not there any more."""
        instance = self.find_occurrence(master_id, original_start)
        if instance is None:
            log.info("occurrence %s of %s is already cancelled", original_start, master_id)
            return False
        return self.delete(instance.graph_id)

    def update_occurrence(
        self, master_id: str, original_start: datetime, changes: Mapping[str, Any]
    ) -> CalendarEvent:
        """PATCH one occurrence, which Outlook turns into an exception of the series."""
        instance = self.find_occurrence(master_id, original_start)
        if instance is None:
            raise NotFound(
                f"series {master_id} has no occurrence at {_stamp(original_start)} "
                "(cancelled, or moved more than a day away)",
                status=404,
            )
        return self.update(instance.graph_id, changes)
