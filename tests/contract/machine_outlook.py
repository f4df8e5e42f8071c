"""An in-memory Outlook for the calendar state machine: meetings with a copy in each mailbox
that holds them, and per mailbox the reader and writer `CalendarCycle` uses, so the machine
runs the product's own cycle (push creates, pull, push) over it.

What it keeps of Graph (GRAPH-FACTS; docs `api/event-delta.md`, `resources/event.md`): a
calendarView delta lists instances (singles, occurrences, exceptions; never series masters),
each in its current state, and as removed the ids deleted or cancelled since the round's link;
a round's pages are followed through next links, its last page carries the delta link; a
round started afresh lists everything and no removals; a dropped link answers 410. Every
change gives the item a new change key. A create carrying a ``transactionId`` seen before
answers with the event made the first time. An occurrence moved or renamed becomes an
exception (same id); a cancelled occurrence is gone (404). Organizer changes reach every copy.

Items are served as Graph's JSON read through the product's own parser (`parse_event`), and
writes arrive as the JSON the product's client sends (`event_body`), read as Graph reads it:
- times are ``dateTimeTimeZone``; the reader asks for UTC (``Prefer: outlook.timezone``), so
  timed boundaries come in UTC, with the zone the event was planned in as
  ``originalStartTimeZone`` (a Windows name, as Outlook's clients write it); an all-day event
  comes as midnight to midnight labelled "UTC" whatever its zone (a floating date: Microsoft
  Q&A 970878, 978210), and one written must have midnight boundaries in one zone (event.md:
  "start and end time must be set to midnight and be in the same time zone");
- a series recurs on the wall clock of its zone (a weekly 09:00 in Berlin stays 09:00 across
  a DST change, so its UTC instants move); its ``patternedRecurrence`` reads back with
  Graph's defaults filled (month 0, dayOfMonth 0, firstDayOfWeek "sunday", index "first",
  endDate "0001-01-01" for a numbered range; recurrencerange.md: ``numberOfOccurrences``
  "Required and must be positive if type is numbered"); a PATCH of a master that changes its
  start or pattern rebuilds the occurrences (new ids; exceptions and cancellations dropped);
  a PATCH of its details alone reaches every occurrence and keeps the exceptions;
- sensitivity is normal | personal | private | confidential, showAs free | tentative | busy |
  oof | workingElsewhere | unknown (event.md).

Faults the machine arms on a mailbox: ``expired`` (the next resumed round answers 410),
``rewind`` (the next round starts over from the first link: a replay of changes the CRM has),
``crash_after_create`` (Outlook makes the event, then the daemon dies before reading the
answer).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from m365sync.domain import (
    CalendarEvent,
    EventType,
    ResponseStatus,
)
from m365sync.errors import GraphError, NotFound, SyncStateGone
from m365sync.graph.calendar import EventPage, event_body, graph_zone_name, parse_event, zone_named
from m365sync.sync.timezones import to_iana

PAGE_SIZE = 2  # small pages, so a cycle can die between two of them
PRIVATE = ("private", "confidential")  # what the sync keeps as busy time only
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Killed(Exception):
    """The daemon's process died here (not an error the cycle handles)."""


@dataclass
class Slot:
    """One occurrence of a series: the start it was planned at, where it is now, and the
    subject it was given on its own (an exception's)."""

    original: datetime
    start: datetime
    cancelled: bool = False
    subject: str | None = None


@dataclass
class Pattern:
    """A series' recurrence as Graph keeps it: daily or weekly (``days``), every
    ``interval`` days or weeks, ``count`` occurrences (a numbered range) or until ``until``."""

    kind: str  # daily | weekly
    count: int | None = None
    days: tuple[str, ...] = ()
    interval: int = 1
    until: date | None = None


@dataclass
class Meeting:
    uid: str
    subject: str
    start: datetime  # UTC; an all-day one: midnight UTC of its first day (a date carrier)
    copies: dict[int, str]  # mailbox index -> graph id (the master's, for a series)
    sensitivity: str = "normal"
    slots: list[Slot] | None = None  # a series; None: a single meeting
    transaction: str | None = None
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    zone: str = "UTC"  # the IANA zone it was planned in (a series recurs on its wall clock)
    all_day: bool = False
    length: timedelta = timedelta(hours=1)  # an all-day one: whole days
    show_as: str = "busy"
    pattern: Pattern | None = None
    generation: int = 0  # how many times Outlook rebuilt its occurrences (their ids change)
    answers: dict[int, ResponseStatus] = field(default_factory=dict)  # an invitee's answer

    @property
    def private(self) -> bool:
        return self.sensitivity in PRIVATE

    def occurrence_id(self, index: int, n: int) -> str:
        return f"{self.copies[index]}-occ{self.generation}x{n}"

    def rebuild(self) -> None:
        """Outlook makes the occurrences afresh from the start and the pattern."""
        assert self.pattern is not None
        self.generation += 1
        self.slots = [Slot(s, s) for s in expand(self.start, self.zone, self.pattern, self.all_day)]


def expand(first: datetime, zone: str, pattern: Pattern, all_day: bool) -> list[datetime]:
    """The starts of a series, on the wall clock of ``zone`` (UTC instants; an all-day
    series' starts are midnight UTC date carriers)."""
    tz = UTC if all_day else ZoneInfo(zone)
    wall = first.astimezone(tz).replace(tzinfo=None)
    step = timedelta(days=pattern.interval if pattern.kind == "daily" else 1)
    found: list[datetime] = []
    day = wall
    week_of = wall.date() - timedelta(days=wall.weekday())
    while len(found) < (pattern.count or 10_000):
        if pattern.until is not None and day.date() > pattern.until:
            break
        if pattern.kind == "daily":
            found.append(day)
        else:
            weeks = (day.date() - week_of).days // 7
            if weeks % pattern.interval == 0 and WEEKDAYS[day.weekday()] in pattern.days:
                found.append(day)
        day += step
        assert day - wall < timedelta(days=800), "a series the machine cannot end"
    return [w.replace(tzinfo=tz).astimezone(UTC) for w in found]


def _wall(moment: datetime) -> dict[str, str]:
    """A ``dateTimeTimeZone`` in UTC, as the reader's ``Prefer`` asks for it."""
    return {
        "dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
        "timeZone": "UTC",
    }


def _stamp(moment: datetime) -> str:
    """A DateTimeOffset as Graph writes it: UTC, seven fractional digits (event.md's
    examples, e.g. ``2017-04-15T11:00:00.1234567Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _windows(zone: str) -> str:
    return graph_zone_name(zone) or zone


def _person(address: str, name: str = "") -> dict[str, Any]:
    return {"emailAddress": {"address": address, "name": name}}


def _recurrence_json(meeting: Meeting) -> dict[str, Any]:
    """The master's ``patternedRecurrence`` as Graph reads it back (defaults filled)."""
    pattern = meeting.pattern
    assert pattern is not None
    first = meeting.start if meeting.all_day else meeting.start.astimezone(ZoneInfo(meeting.zone))
    numbered = pattern.until is None
    return {
        "pattern": {
            "type": pattern.kind,
            "interval": pattern.interval,
            "month": 0,
            "dayOfMonth": 0,
            "daysOfWeek": list(pattern.days) if pattern.kind == "weekly" else [],
            "firstDayOfWeek": "sunday",
            "index": "first",
        },
        "range": {
            "type": "numbered" if numbered else "endDate",
            "startDate": first.date().isoformat(),
            "endDate": "0001-01-01" if numbered else str(pattern.until),
            "recurrenceTimeZone": _windows(meeting.zone),
            "numberOfOccurrences": pattern.count if numbered else 0,
        },
    }


@dataclass
class OutlookBox:
    address: str
    state: dict[str, CalendarEvent] = field(default_factory=dict)  # graph id -> event
    log: dict[str, int] = field(default_factory=dict)  # graph id -> serial of its last change
    transactions: dict[str, str] = field(default_factory=dict)  # transactionId -> graph id
    ours: set[str] = field(default_factory=set)  # items last changed by this mailbox's sync
    theirs_served: int = 0  # items served by the last rounds that the sync did not write
    expired: bool = False
    rewind: bool = False
    crash_after_create: bool = False


class Outlook:
    """Every mailbox of the machine, and the meetings they hold."""

    def __init__(self, addresses: list[str], customer: str) -> None:
        self.boxes = [OutlookBox(a) for a in addresses]
        self.customer = customer
        self.meetings: list[Meeting] = []
        self.serial = itertools.count(1)
        self.ids = itertools.count(1)

    def new_id(self) -> str:
        return f"AAMkEv{next(self.ids)}"

    # --- rendering ----------------------------------------------------------------------------

    def _render(self, meeting: Meeting, index: int) -> dict[str, CalendarEvent]:
        """The meeting's items in one mailbox, as Graph's JSON read by the product's parser
        (without change keys)."""
        organizer = self.boxes[min(meeting.copies)].address
        none = {"response": "none", "time": "0001-01-01T00:00:00Z"}
        attendees = [{**_person(self.customer, "Ann"), "type": "required", "status": none}]
        attendees += [
            {**_person(self.boxes[i].address), "type": "required", "status": none}
            for i in meeting.copies
            if i != 0
        ]

        def item(graph_id: str, kind: str, start: datetime, subject: str) -> dict[str, Any]:
            end = start + meeting.length
            return {
                "id": graph_id,
                "iCalUId": meeting.uid,
                "type": kind,
                "subject": subject,
                "start": _wall(start),
                "end": _wall(end),
                "originalStartTimeZone": _windows(meeting.zone),
                "originalEndTimeZone": _windows(meeting.zone),
                "isAllDay": meeting.all_day,
                "sensitivity": meeting.sensitivity,
                "showAs": meeting.show_as,
                "organizer": _person(organizer, "Organizer"),
                "isOrganizer": index == min(meeting.copies),
                "attendees": attendees,
                "lastModifiedDateTime": _stamp(meeting.modified),
            }

        base = item(meeting.copies[index], "singleInstance", meeting.start, meeting.subject)
        if meeting.transaction:
            base["transactionId"] = meeting.transaction
        if meeting.slots is None:
            return {base["id"]: parse_event(base)}
        master = {**base, "type": "seriesMaster", "recurrence": _recurrence_json(meeting)}
        items = {master["id"]: parse_event(master)}
        for n, slot in enumerate(meeting.slots):
            if slot.cancelled:
                continue
            changed = slot.start != slot.original or slot.subject is not None
            one = item(
                meeting.occurrence_id(index, n),
                "exception" if changed else "occurrence",
                slot.start,
                slot.subject or meeting.subject,
            )
            # "different for each occurrence in a recurring series" (event.md)
            one["iCalUId"] = f"{meeting.uid}-{slot.original:%Y%m%d}"
            one["seriesMasterId"] = master["id"]
            one["originalStart"] = _stamp(slot.original)
            items[one["id"]] = parse_event(one)
        return items

    def commit(
        self, meeting: Meeting, *, gone: bool = False, by: tuple[int, str] | None = None
    ) -> None:
        """Outlook's state after a change of ``meeting`` (``gone``: deleted): each item that
        differs gets a new change key and lands in its mailbox's delta. ``by``: the mailbox
        whose sync wrote it and the item it wrote (that item then comes back to it as an
        echo; the occurrences Outlook made or changed for a series written are news to it)."""
        if gone:
            self.meetings.remove(meeting)
        for index, graph_id in meeting.copies.items():
            box = self.boxes[index]
            prefix = graph_id
            old = {
                g: e for g, e in box.state.items() if g == prefix or g.startswith(f"{prefix}-occ")
            }
            new = {} if gone else self._render(meeting, index)
            for item_id, item in new.items():
                before = old.get(item_id)
                if before is None or replace(before, change_key=None) != item:
                    serial = next(self.serial)
                    box.state[item_id] = replace(item, change_key=f"ck{serial}")
                    box.log[item_id] = serial
                    if by == (index, item_id):
                        box.ours.add(item_id)
                    else:
                        box.ours.discard(item_id)
            for item_id in set(old) - set(new):
                del box.state[item_id]
                box.log[item_id] = next(self.serial)

    def add(self, meeting: Meeting, *, by: tuple[int, str] | None = None) -> None:
        self.meetings.append(meeting)
        self.commit(meeting, by=by)

    def find(self, index: int, graph_id: str) -> Meeting:
        return next(m for m in self.meetings if m.copies.get(index) == graph_id)

    def find_item(self, index: int, graph_id: str) -> Meeting:
        """The meeting an item of a mailbox (a single, a master, an occurrence) belongs to."""
        return next(
            m
            for m in self.meetings
            if index in m.copies
            and (graph_id == m.copies[index] or graph_id.startswith(f"{m.copies[index]}-occ"))
        )

    def slot_of(self, index: int, graph_id: str) -> tuple[Meeting, Slot | None]:
        """The meeting of an item, and its slot when the item is an occurrence."""
        meeting = self.find_item(index, graph_id)
        if graph_id == meeting.copies[index]:
            return meeting, None
        assert meeting.slots is not None
        for n, slot in enumerate(meeting.slots):
            if meeting.occurrence_id(index, n) == graph_id:
                return meeting, slot
        raise KeyError(graph_id)

    def items(self, index: int) -> dict[str, CalendarEvent]:
        return self.boxes[index].state

    def reader(self, index: int) -> MailboxReader:
        return MailboxReader(self, index)

    def writer(self, index: int) -> MailboxWriter:
        return MailboxWriter(self, index)


class MailboxReader:
    """`CalendarReader`'s part the cycle uses, over one mailbox (links are ``delta:SINCE``
    and ``next:SINCE:ROUNDSTART:LASTID``; a full round has SINCE -1)."""

    def __init__(self, outlook: Outlook, index: int) -> None:
        self.outlook = outlook
        self.box = outlook.boxes[index]

    def pages(
        self, *, window_start: datetime, window_end: datetime, resume_link: str | None = None
    ) -> Iterator[EventPage]:
        box = self.box
        if resume_link is None:
            since, round_start, after, full = -1, max(box.log.values(), default=0), "", True
            box.expired = False
        else:
            if box.expired:
                raise SyncStateGone("the delta token expired", status=410, code="SyncStateNotFound")
            kind, *parts = resume_link.split(":")
            since = int(parts[0])
            round_start = int(parts[1]) if kind == "next" else max(box.log.values(), default=0)
            after = parts[2] if kind == "next" else ""
            full = since < 0
            if box.rewind:
                box.rewind = False
                since, after = 0, ""
        while True:
            if full:
                wanted = sorted(g for g, e in box.state.items() if _instance(e))
            else:
                wanted = sorted(
                    g for g, serial in box.log.items() if serial > since and not _master_id(box, g)
                )
            wanted = [g for g in wanted if g > after]
            chunk, rest = wanted[:PAGE_SIZE], wanted[PAGE_SIZE:]
            events = [box.state[g] for g in chunk if g in box.state]
            box.theirs_served += sum(e.graph_id not in box.ours for e in events)
            removed = [g for g in chunk if g not in box.state]
            if rest:
                after = chunk[-1]
                link = f"next:{since}:{round_start}:{after}"
                yield EventPage(events, removed, [], link, None)
            else:
                yield EventPage(events, removed, [], None, f"delta:{round_start}:")
                return

    def masters(self, series_ids: list[str]) -> dict[str, CalendarEvent]:
        found = {g: self.box.state[g] for g in dict.fromkeys(series_ids) if g in self.box.state}
        self.box.theirs_served += sum(g not in self.box.ours for g in found)
        return found

    def deleted(self, removed_ids: list[str]) -> list[str]:
        return [g for g in removed_ids if g not in self.box.state]

    def instances(self, master_id: str, start: datetime, end: datetime) -> list[CalendarEvent]:
        """A series' occurrences and exceptions starting in [start, end), cancelled ones
        left out (as Graph's instances); a master this mailbox does not hold is a 404."""
        if master_id not in self.box.state:
            raise NotFound(f"no event {master_id}", status=404)
        return [
            e
            for e in self.box.state.values()
            if e.series_master_id == master_id and e.start is not None and start <= e.start < end
        ]


def parse_graph_time(value: Mapping[str, str]) -> datetime:
    """A PATCH's ``dateTimeTimeZone`` (a wall time in a Windows or IANA zone) as UTC."""
    wall = datetime.fromisoformat(value["dateTime"])
    return wall.replace(tzinfo=zone_named(value["timeZone"])).astimezone(UTC)


def _instance(item: CalendarEvent) -> bool:
    return item.event_type is not EventType.SERIES_MASTER


def _master_id(box: OutlookBox, graph_id: str) -> bool:
    """A series master's id (known by its occurrences' ids): calendarView never lists one."""
    if graph_id in box.state:
        return not _instance(box.state[graph_id])
    return any(g.startswith(f"{graph_id}-occ") for g in box.log)


class MailboxWriter:
    """`CalendarWriter`'s part the cycle uses: one mailbox's owner writing its own events.
    It takes the JSON the product's client sends (`event_body`) and reads it as Graph does."""

    def __init__(self, outlook: Outlook, index: int) -> None:
        self.outlook = outlook
        self.index = index
        self.box = outlook.boxes[index]

    def create(
        self, event: CalendarEvent, *, transaction_id: str, online_meeting: bool = False
    ) -> CalendarEvent:
        known = self.box.transactions.get(transaction_id)
        if known is None or known not in self.box.state:  # as the emulator: a deleted one
            # is not answered again (what Graph does then is not documented)
            body = event_body(event, create=True, online_meeting=online_meeting)
            body["transactionId"] = transaction_id
            known = self.outlook.new_id()
            self.box.transactions[transaction_id] = known
            meeting = Meeting(
                # Graph's iCalUIds are unique the world over: never one an earlier example's
                # store holds (the graph ids start afresh in every example).
                uid=f"uid-{known}-{uuid.uuid4().hex[:12]}",
                subject=body["subject"],
                start=datetime.now(UTC),
                copies={self.index: known},
                transaction=transaction_id,
            )
            _accept(meeting, body)
            self.outlook.add(meeting, by=(self.index, known))
        if self.box.crash_after_create:
            self.box.crash_after_create = False
            raise Killed("after Outlook took a create")
        return self.box.state[known]

    def update(self, graph_id: str, changes: Mapping[str, Any]) -> CalendarEvent:
        if graph_id not in self.box.state:  # deleted, cancelled, or rebuilt away
            raise GraphError(
                "The specified object was not found in the store.",
                status=404,
                code="ErrorItemNotFound",
            )
        meeting, slot = self.outlook.slot_of(self.index, graph_id)
        if slot is not None:  # one occurrence: it becomes an exception
            assert not changes.get("recurrence"), "an occurrence has no pattern of its own"
            if "start" in changes:
                slot.start = _start_of(changes, meeting.all_day)
            subject = changes.get("subject")
            if subject is not None and subject != meeting.subject:
                slot.subject = subject
            for key, mine in (("sensitivity", meeting.sensitivity), ("showAs", meeting.show_as)):
                assert changes.get(key, mine) == mine, f"one occurrence's own {key}"
        else:
            _accept(meeting, changes)
        meeting.modified = datetime.now(UTC)
        self.outlook.commit(meeting, by=(self.index, graph_id))
        return self.box.state[graph_id]

    def delete(self, graph_id: str) -> bool:
        if graph_id not in self.box.state:
            return False
        meeting, slot = self.outlook.slot_of(self.index, graph_id)
        if slot is not None:
            slot.cancelled = True
            meeting.modified = datetime.now(UTC)
            self.outlook.commit(meeting, by=(self.index, graph_id))
        else:
            self.outlook.commit(meeting, gone=True, by=(self.index, graph_id))
        return True

    def respond(self, graph_id: str, response: ResponseStatus) -> None:
        """An invited mailbox answers a meeting it holds (``POST /events/{id}/accept``...);
        its organizer never does. Kept in ``Meeting.answers``, not shown (every attendee
        reads "none": no check compares answers). It happens on the real Odoo, where one user
        owns both mailboxes: Odoo accepts a meeting for the user who edits it (a series whose
        pattern changes is made afresh: ``calendar.attendee.create``), so the CRM says the
        invitee accepted and the daemon answers for it."""
        if graph_id not in self.box.state:
            raise GraphError(
                "The specified object was not found in the store.",
                status=404,
                code="ErrorItemNotFound",
            )
        meeting, _ = self.outlook.slot_of(self.index, graph_id)
        assert self.index != min(meeting.copies), f"the organizer answers its meeting {graph_id}"
        assert response in (
            ResponseStatus.ACCEPTED,
            ResponseStatus.DECLINED,
            ResponseStatus.TENTATIVE,
        ), response
        meeting.answers[self.index] = response


def _start_of(body: Mapping[str, Any], all_day: bool) -> datetime:
    if all_day:
        return datetime.combine(
            datetime.fromisoformat(body["start"]["dateTime"]).date(), time(0), UTC
        )
    return parse_graph_time(body["start"])


def _accept(meeting: Meeting, body: Mapping[str, Any]) -> None:
    """A create's or a PATCH's JSON on a single meeting or a series master, as Graph takes
    it: details reach every occurrence; a new start, length or pattern of a series rebuilds
    its occurrences."""
    before = (meeting.start, meeting.length, meeting.all_day, meeting.zone, meeting.pattern)
    meeting.subject = body.get("subject", meeting.subject)
    meeting.sensitivity = body.get("sensitivity", meeting.sensitivity)
    meeting.show_as = body.get("showAs", meeting.show_as)
    assert meeting.sensitivity in ("normal", "personal", *PRIVATE), meeting.sensitivity
    all_day = body.get("isAllDay", meeting.all_day)
    if "start" in body:
        start, end = body["start"], body["end"]
        if all_day:
            first = datetime.fromisoformat(start["dateTime"])
            last = datetime.fromisoformat(end["dateTime"])
            assert (
                first.time() == last.time() == time(0) and start["timeZone"] == end["timeZone"]
            ), "an all-day event's start and end are midnight in one zone (event.md)"
            meeting.start = datetime.combine(first.date(), time(0), UTC)
            meeting.length = last - first
        else:
            meeting.start = parse_graph_time(start)
            meeting.length = parse_graph_time(end) - meeting.start
        meeting.zone = to_iana(start["timeZone"])
    assert all_day == meeting.all_day or "start" in body, "isAllDay without its times"
    meeting.all_day = all_day
    if body.get("recurrence"):
        meeting.pattern = _accept_pattern(meeting, body["recurrence"])
    if meeting.pattern is not None and (
        meeting.slots is None
        or before != (meeting.start, meeting.length, meeting.all_day, meeting.zone, meeting.pattern)
    ):
        meeting.rebuild()


def _accept_pattern(meeting: Meeting, value: Mapping[str, Any]) -> Pattern:
    pattern, rng = value["pattern"], value["range"]
    assert pattern["type"] in ("daily", "weekly"), f"a {pattern['type']} series"
    first = meeting.start if meeting.all_day else meeting.start.astimezone(ZoneInfo(meeting.zone))
    # "range.startDate MUST equal the date of event.start" (outlook-schedule-recurring-events)
    assert rng["startDate"] == first.date().isoformat(), (rng["startDate"], first)
    assert rng["type"] in ("numbered", "endDate"), "the machine's series end"
    count = rng.get("numberOfOccurrences") if rng["type"] == "numbered" else None
    assert count is None or count > 0, "numberOfOccurrences must be positive (recurrencerange.md)"
    days = tuple(d.lower() for d in pattern.get("daysOfWeek") or ())
    assert pattern["type"] != "weekly" or days, "a weekly pattern names its days"
    return Pattern(
        pattern["type"],
        count=count,
        days=days if pattern["type"] == "weekly" else (),
        interval=pattern.get("interval", 1),
        until=date.fromisoformat(rng["endDate"]) if rng["type"] == "endDate" else None,
    )
