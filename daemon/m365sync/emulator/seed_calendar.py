"""The seeded calendar: single events in five time zones, recurring series with four pattern
types, an all-day event and a private one, with attendees from the seeded cast. The weekly
standup runs for a year (so it crosses DST changes), has an exception (next Monday's moved to
10:00) and a cancelled occurrence (next Wednesday's), given as the calendar store reads them
back (`Calendar.add_event`: beta's ``cancelledOccurrences`` on the master, the exception as an
``exception`` item after it).

Why these: the daemon converts Graph's ``patternedRecurrence`` and Windows/IANA zone names
(docs `resources/event.md`, `resources/patternedrecurrence.md`), so the seed carries one of each
kind it must handle. Events are stored as created, start/end in their own zone; an events
endpoint would answer in UTC or in the zone of ``Prefer: outlook.timezone``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from m365sync.emulator.calendar import format_utc, zone
from m365sync.emulator.mailbox import make_change_key, make_id
from m365sync.emulator.seed_cast import OWNER, Person, esc


def _dtz(moment: datetime, zone: str) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": zone}


def _event(
    key: bytes,
    number: int,
    subject: str,
    start: datetime,
    minutes: int,
    zone: str,
    owner: Person,
    attendees: list[Person],
    **extra: Any,
) -> dict[str, Any]:
    eid = make_id(key, 1, 2_000_000_000 + number)
    change_key = make_change_key(key, 2_000_000_000 + number)
    created = (start - timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    body_html = f"<html><body><div>{esc(subject)}</div></body></html>"
    event: dict[str, Any] = {
        "@odata.etag": f'W/"{change_key}"',
        "id": eid,
        "createdDateTime": created,
        "lastModifiedDateTime": created,
        "changeKey": change_key,
        "categories": [],
        "transactionId": None,
        "originalStartTimeZone": zone,
        "originalEndTimeZone": zone,
        "iCalUId": "040000008200E00074C5B7101A82E00800000000"
        + hashlib.sha256(eid.encode()).hexdigest()[:48].upper(),
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": True,
        "hasAttachments": False,
        "subject": subject,
        "bodyPreview": subject,
        "importance": "normal",
        "sensitivity": "normal",
        "isAllDay": False,
        "isCancelled": False,
        "isOrganizer": True,
        "responseRequested": True,
        "seriesMasterId": None,
        "showAs": "busy",
        "type": "singleInstance",
        "webLink": "https://outlook.office365.com/owa/?itemid="
        + eid.replace("=", "%3D")
        + "&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "allowNewTimeProposals": True,
        "isDraft": False,
        "hideAttendees": False,
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "body": {"contentType": "html", "content": body_html},
        "start": _dtz(start, zone),
        "end": _dtz(start + timedelta(minutes=minutes), zone),
        "location": {"displayName": "", "locationType": "default", "uniqueIdType": "unknown"},
        "locations": [],
        "recurrence": None,
        "attendees": [
            {
                "type": "required",
                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                "emailAddress": {"name": p.name or p.address, "address": p.address},
            }
            for p in attendees
        ],
        "organizer": {"emailAddress": {"name": owner.name, "address": owner.address}},
        "onlineMeeting": None,
    }
    event.update(extra)
    return event


def _recurrence(
    pattern: dict[str, Any], start: datetime, zone: str, **range_: Any
) -> dict[str, Any]:
    full_pattern = {
        "type": "weekly",
        "interval": 1,
        "month": 0,
        "dayOfMonth": 0,
        "daysOfWeek": [],
        "firstDayOfWeek": "sunday",
        "index": "first",
    }
    full_pattern.update(pattern)
    full_range = {
        "type": "noEnd",
        "startDate": start.date().isoformat(),
        "endDate": "0001-01-01",
        "recurrenceTimeZone": zone,
        "numberOfOccurrences": 0,
    }
    full_range.update(range_)
    return {"pattern": full_pattern, "range": full_range}


def build_events(key: bytes, people: list[Person], anchor: datetime) -> list[dict[str, Any]]:
    """The seeded calendar: singles in five zones, series of four patterns, all-day, private."""
    owner = people[OWNER]
    by_address = {p.address.lower(): p for p in people}

    def who(*addresses: str) -> list[Person]:
        return [by_address[a.lower()] for a in addresses]

    day = anchor.replace(tzinfo=None)
    singles = [
        (
            "Pipeline review with Fabrikam",
            day + timedelta(days=3, hours=16),
            60,
            "UTC",
            who("kevin.cook@fabrikam.com", "AdeleV@contoso.com"),
        ),
        (
            "Northwind quarterly business review",
            day + timedelta(days=5, hours=10),
            90,
            "Pacific Standard Time",
            who("nancy.davolio@northwindtraders.com", "andrew.fuller+crm@northwindtraders.com"),
        ),
        (
            "Call with Bäckerei Müller",
            day + timedelta(days=6, hours=9, minutes=30),
            30,
            "W. Europe Standard Time",
            who("juergen@bäckerei-müller.de"),
        ),
        (
            "Lunch with Litware",
            day + timedelta(days=8, hours=12, minutes=30),
            75,
            "Europe/Paris",
            who("amy.alberts@litwareinc.com"),
        ),
        (
            "Wingtip Toys APAC sync",
            day + timedelta(days=2, hours=9),
            45,
            "New Zealand Standard Time",
            who("aroha.ngata@wingtiptoys.com", "sean.chai@wingtiptoys.com"),
        ),
        (
            "Kick-off with Adventure Works",
            day - timedelta(days=20, hours=-14),
            60,
            "Pacific Standard Time",
            who("lori.penor@adventure-works.com"),
        ),
        (
            "Coffee with Sam",
            day - timedelta(days=9, hours=-8),
            30,
            "UTC",
            who("sam.taylor1987@gmail.com"),
        ),
    ]
    events = [
        _event(key, n, subject, start, minutes, zone, owner, attendees)
        for n, (subject, start, minutes, zone, attendees) in enumerate(singles, start=1)
    ]
    number = len(events)

    def add(
        subject: str,
        start: datetime,
        minutes: int,
        zone: str,
        attendees: list[Person],
        **extra: Any,
    ) -> None:
        nonlocal number
        number += 1
        events.append(_event(key, number, subject, start, minutes, zone, owner, attendees, **extra))

    show = day + timedelta(days=12)
    add(
        "Trade show - Contoso booth",
        show,
        2 * 24 * 60,
        "UTC",
        [],
        isAllDay=True,
        showAs="oof",
        responseRequested=False,
    )
    add(
        "Doctor appointment",
        day + timedelta(days=4, hours=15),
        60,
        "W. Europe Standard Time",
        [],
        sensitivity="private",
        responseRequested=False,
    )
    monday = day - timedelta(days=day.weekday() + 28) + timedelta(hours=9)
    add(
        "Weekly marketing standup",
        monday,
        30,
        "Pacific Standard Time",
        who("AdeleV@contoso.com", "AlexW@contoso.com", "PattiF@contoso.com"),
        type="seriesMaster",
        recurrence=_recurrence(
            {"type": "weekly", "daysOfWeek": ["monday", "wednesday"]},
            monday,
            "Pacific Standard Time",
            type="endDate",
            # a year, so the series always crosses a DST change (both, in fact)
            endDate=(monday + timedelta(days=364)).date().isoformat(),
        ),
    )
    standup = events[-1]
    pacific = zone("Pacific Standard Time")
    next_monday = monday + timedelta(days=35)
    next_wednesday = monday + timedelta(days=37)
    standup["cancelledOccurrences"] = [f"OID.{standup['id']}.{next_wednesday.date().isoformat()}"]
    moved = next_monday + timedelta(hours=1)
    exceptions = [
        {
            "type": "exception",
            "seriesMasterId": standup["id"],
            "originalStart": format_utc(next_monday.replace(tzinfo=pacific)),
            "subject": "Weekly marketing standup (moved to 10:00)",
            "start": _dtz(moved, "Pacific Standard Time"),
            "end": _dtz(moved + timedelta(minutes=30), "Pacific Standard Time"),
        }
    ]
    daily = day - timedelta(days=3) + timedelta(hours=8)
    add(
        "Inbox zero",
        daily,
        15,
        "UTC",
        [],
        type="seriesMaster",
        showAs="tentative",
        recurrence=_recurrence(
            {"type": "daily", "daysOfWeek": []},
            daily,
            "UTC",
            type="numbered",
            numberOfOccurrences=10,
        ),
    )
    monthly = datetime(day.year, day.month, 15, 14, 0) - timedelta(days=31)
    monthly = monthly.replace(day=15)
    add(
        "Monthly report to Fabrikam",
        monthly,
        45,
        "W. Europe Standard Time",
        who("kevin.cook@fabrikam.com", "dana.birkby@fabrikam.com"),
        type="seriesMaster",
        recurrence=_recurrence(
            {"type": "absoluteMonthly", "dayOfMonth": 15}, monthly, "W. Europe Standard Time"
        ),
    )
    first = datetime(day.year, day.month, 1, 11, 0)
    second_tuesday = first + timedelta(days=(1 - first.weekday()) % 7 + 7)
    add(
        "Northwind account review",
        second_tuesday,
        60,
        "Pacific Standard Time",
        who("nancy.davolio@northwindtraders.com", "janet.leverling@northwindtraders.com"),
        type="seriesMaster",
        recurrence=_recurrence(
            {"type": "relativeMonthly", "daysOfWeek": ["tuesday"], "index": "second"},
            second_tuesday,
            "Pacific Standard Time",
            type="endDate",
            endDate=(second_tuesday + timedelta(days=365)).date().isoformat(),
        ),
    )
    thursday = day + timedelta(days=(3 - day.weekday()) % 7, hours=8)
    add(
        "APAC partner call",
        thursday,
        30,
        "New Zealand Standard Time",
        who("aroha.ngata@wingtiptoys.com"),
        type="seriesMaster",
        recurrence=_recurrence(
            {"type": "weekly", "interval": 2, "daysOfWeek": ["thursday"]},
            thursday,
            "New Zealand Standard Time",
            type="numbered",
            numberOfOccurrences=8,
        ),
    )
    for event in events:
        if event["isAllDay"]:
            start = datetime.fromisoformat(event["start"]["dateTime"][:19]).replace(
                hour=0, minute=0
            )
            event["start"] = _dtz(start, "UTC")
            event["end"] = _dtz(start + timedelta(days=2), "UTC")
    return events + exceptions
