"""An in-memory Outlook for the calendar state machine: meetings with a copy in each mailbox
that holds them, and per mailbox the reader and writer `CalendarCycle` uses, so the machine
runs the product's own cycle (push creates, pull, push) over it.

What it keeps of Graph (GRAPH-FACTS; docs `api/event-delta.md`, `resources/event.md`): a
calendarView delta lists instances (singles, occurrences, exceptions; never series masters),
each in its current state, and as removed the ids deleted or cancelled since the round's link;
a round's pages are followed through next links, its last page carries the delta link; a
round started afresh lists everything and no removals; a dropped link answers 410. Every
change gives the item a new change key. A create carrying a ``transactionId`` seen before
answers with the event made the first time. An occurrence moved becomes an exception (same
id); a cancelled occurrence is gone (404). Organizer changes reach every copy.

Faults the machine arms on a mailbox: ``expired`` (the next resumed round answers 410),
``rewind`` (the next round starts over from the first link: a replay of changes the CRM has),
``crash_after_create`` (Outlook makes the event, then the daemon dies before reading the
answer).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from m365sync.domain import (
    Attendee,
    CalendarEvent,
    EmailAddress,
    EventType,
    Recurrence,
    ResponseStatus,
    Sensitivity,
)
from m365sync.errors import NotFound, SyncStateGone
from m365sync.graph.calendar import EventPage, zone_named

PAGE_SIZE = 2  # small pages, so a cycle can die between two of them


class Killed(Exception):
    """The daemon's process died here (not an error the cycle handles)."""


@dataclass
class Slot:
    """One occurrence of a series: the start it was planned at, where it is now."""

    original: datetime
    start: datetime
    cancelled: bool = False


@dataclass
class Meeting:
    uid: str
    subject: str
    start: datetime
    copies: dict[int, str]  # mailbox index -> graph id (the master's, for a series)
    private: bool = False
    slots: list[Slot] | None = None  # a weekly series; None: a single meeting
    transaction: str | None = None
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    def occurrence_id(self, index: int, n: int) -> str:
        return f"{self.copies[index]}-occ{n}"


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
        """The meeting's items in one mailbox, without change keys."""
        attendees = [Attendee(self.customer, "Ann", "required", ResponseStatus.NONE)]
        attendees += [
            Attendee(self.boxes[i].address, "", "required", ResponseStatus.NONE)
            for i in meeting.copies
            if i != 0
        ]
        organizer = self.boxes[min(meeting.copies)].address
        base = CalendarEvent(
            graph_id=meeting.copies[index],
            ical_uid=meeting.uid,
            event_type=EventType.SINGLE,
            subject=meeting.subject,
            start=meeting.start,
            end=meeting.start + timedelta(hours=1),
            time_zone="UTC",
            sensitivity=Sensitivity.PRIVATE if meeting.private else Sensitivity.NORMAL,
            organizer=EmailAddress(organizer, "Organizer"),
            attendees=tuple(attendees),
            last_modified=meeting.modified,
            transaction_id=meeting.transaction,
        )
        if meeting.slots is None:
            return {base.graph_id: base}
        master = replace(
            base,
            event_type=EventType.SERIES_MASTER,
            recurrence=Recurrence(
                "weekly",
                meeting.start.date(),
                days_of_week=(meeting.start.strftime("%A").lower(),),
                range_type="numbered",
                number_of_occurrences=len(meeting.slots),
            ),
        )
        items = {master.graph_id: master}
        for n, slot in enumerate(meeting.slots):
            if slot.cancelled:
                continue
            moved = slot.start != slot.original
            item = replace(
                base,
                graph_id=meeting.occurrence_id(index, n),
                ical_uid=f"{meeting.uid}-{slot.original:%Y%m%d}",
                event_type=EventType.EXCEPTION if moved else EventType.OCCURRENCE,
                start=slot.start,
                end=slot.start + timedelta(hours=1),
                series_master_id=master.graph_id,
                original_start=slot.original,
                transaction_id=None,
            )
            items[item.graph_id] = item
        return items

    def commit(self, meeting: Meeting, *, gone: bool = False, by: int | None = None) -> None:
        """Outlook's state after a change of ``meeting`` (``gone``: deleted): each item that
        differs gets a new change key and lands in its mailbox's delta. ``by``: the mailbox
        whose sync wrote it (its items then come back to it as echoes)."""
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
                    if by == index:
                        box.ours.add(item_id)
                    else:
                        box.ours.discard(item_id)
            for item_id in set(old) - set(new):
                del box.state[item_id]
                box.log[item_id] = next(self.serial)

    def add(self, meeting: Meeting, *, by: int | None = None) -> None:
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
    """`CalendarWriter`'s part the cycle uses: one mailbox's owner writing its own events."""

    def __init__(self, outlook: Outlook, index: int) -> None:
        self.outlook = outlook
        self.index = index
        self.box = outlook.boxes[index]

    def create(
        self, event: CalendarEvent, *, transaction_id: str, online_meeting: bool = False
    ) -> CalendarEvent:
        assert event.recurrence is None, "the machine's CRM makes single meetings"
        known = self.box.transactions.get(transaction_id)
        if known is None or known not in self.box.state:  # as the emulator: a deleted one
            # is not answered again (what Graph does then is not documented)
            known = self.outlook.new_id()
            self.box.transactions[transaction_id] = known
            assert event.start is not None
            self.outlook.add(
                Meeting(
                    uid=f"uid-{known}",
                    subject=event.subject or "",
                    start=event.start,
                    copies={self.index: known},
                    private=event.sensitivity is not Sensitivity.NORMAL,
                    transaction=transaction_id,
                ),
                by=self.index,
            )
        if self.box.crash_after_create:
            self.box.crash_after_create = False
            raise Killed("after Outlook took a create")
        return self.box.state[known]

    def update(self, graph_id: str, changes: Mapping[str, Any]) -> CalendarEvent:
        meeting = self.outlook.find(self.index, graph_id)
        meeting.subject = changes.get("subject", meeting.subject)
        if "start" in changes:
            meeting.start = parse_graph_time(changes["start"])
        if "sensitivity" in changes:
            meeting.private = changes["sensitivity"] != "normal"
        meeting.modified = datetime.now(UTC)
        self.outlook.commit(meeting, by=self.index)
        return self.box.state[graph_id]

    def delete(self, graph_id: str) -> bool:
        if graph_id not in self.box.state:
            return False
        self.outlook.commit(self.outlook.find(self.index, graph_id), gone=True, by=self.index)
        return True

    def respond(self, graph_id: str, response: ResponseStatus) -> None:
        raise AssertionError(f"nobody answers invitations here ({graph_id}, {response})")
