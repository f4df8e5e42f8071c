"""A state machine over the calendar's two-way sync, run against each gateway (vdirsyncer's
SyncMachine is the model; `mail_machine` is its mail half).

The sync is the product's own `CalendarCycle` (push the CRM's creates, pull the delta, push
the CRM's other changes), over an in-memory Outlook (`machine_outlook`) of two mailboxes.

Outlook's side: the first mailbox's owner makes a meeting, alone or with the second mailbox
invited (one copy per mailbox, one iCalUId), normal or private, single or a weekly series;
renames or moves it (every copy changes), deletes it; in a series, moves one occurrence (it
becomes an exception), cancels one, renames or deletes the whole series. The CRM's side (the
store's own user actions): a salesperson makes a meeting for the first mailbox, renames or
moves one, makes one private or public again, deletes one. A conflict: both sides rename one
meeting between two syncs, Outlook's edit stamped before or after the CRM's.

Faults, per cycle: the daemon dies after planning a page and before storing it, or between
two pages (after the first is stored); dies after Outlook took a create and before the CRM
recorded it (the retry carries the same transactionId and Outlook answers with the event it
made); the delta link expired (410: the cycle starts the window afresh); Outlook replays
changes the CRM already has (a round from an older link); a CRM user renames a meeting of the
page between its plan and its store (`StalePlan`: planned again, a conflict).

What must hold once `settle` has run every mailbox's cycle until nothing moves (and one more
cycle each then changes nothing: our own writes never come back as changes, no echo): each
mailbox's items are bound, each to its own CRM event, the items of one meeting to the same one
across mailboxes, and nothing else is bound (but the master of a series deleted in Outlook,
which calendarView delta never names); Ann's meetings in the CRM are exactly the first
mailbox's instances not kept as busy time, at their Outlook times, with the subject the rules
say: the last writer's (a conflict: the later edit wins), a private Outlook meeting only as
busy time, a meeting made private in the CRM keeping the CRM's details while Outlook renames
it; Outlook holds the CRM's subject of every meeting not private; nothing waits to be pushed.
Edits are made on meetings known to both sides (made before the last settle), and each side
edits a meeting only while the other has no unsynced edit of it, except in the conflict rules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import (
    Account,
    CalendarEvent,
    EventPageWrite,
    EventType,
    Privacy,
    Recurrence,
    Sensitivity,
    ShowAs,
    SyncRun,
)
from m365sync.service.calendar_cycle import CalendarCycle
from m365sync.sync.calendar import crm_event_of
from m365sync.sync.mail import MailPolicy

from .gateway_contract import spec, unique
from .machine_common import StoreMachine
from .machine_outlook import PRIVATE, WEEKDAYS, Killed, Meeting, Outlook, Pattern, Slot, expand

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=5)
# Outlook's mailboxes and the CRM's users plan meetings in these zones (a series recurs on the
# zone's wall clock: across a DST change its UTC instants move by an hour).
ZONES = ("UTC", "Europe/Berlin", "America/Los_Angeles")
SENSITIVITIES = ("normal", "personal", "private", "confidential")
SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")


def before_dst_change(zone: str) -> datetime:
    """A whole hour a week before the zone's next offset change after START (09:00 local):
    a weekly series from there crosses it."""
    tz = ZoneInfo(zone)
    day = START
    while day.astimezone(tz).utcoffset() == START.astimezone(tz).utcoffset():
        day += timedelta(days=1)
        if day > START + timedelta(days=400):
            return START  # a zone without DST
    local = (day - timedelta(days=7)).astimezone(tz)
    return local.replace(hour=9, minute=0).astimezone(UTC)


POLICY = MailPolicy.build(["contoso.example"], Privacy.EVERYTHING)
FAULTS = (
    "none",
    "dies before storing the first page",
    "dies before storing the second page",
    "dies after storing the first page",
    "dies after Outlook took a create",
    "410: the delta link expired",
    "Outlook replays changes",
    "a CRM user renames a meeting of the page between its plan and its store",  # keep it last
)


@dataclass
class CrmActions:
    """The CRM user's own actions for one store (not the daemon's interface)."""

    create: Callable[[CrmGateway, Account, CalendarEvent, list[int]], int]
    rename: Callable[[CrmGateway, int, str], None]
    move: Callable[[CrmGateway, int, datetime, datetime], None]
    set_private: Callable[[CrmGateway, int, bool], None]
    delete: Callable[[CrmGateway, int], None]
    # What a user sees of events: {id: (private, free)} (Odoo knows free and busy only).
    read: Callable[[CrmGateway, list[int]], dict[int, tuple[bool, bool]]]
    # Series, as a user edits them in the store: the series' own event (the store's master;
    # Odoo: any of its occurrences, written "all events") and one occurrence.
    create_series: Callable[[CrmGateway, Account, CalendarEvent, list[int]], int]
    edit_occurrence: Callable[[CrmGateway, int, dict[str, Any]], None]
    delete_occurrence: Callable[[CrmGateway, int], None]
    rename_series: Callable[[CrmGateway, SeriesRef, str], None]
    reshape_series: Callable[[CrmGateway, SeriesRef, Recurrence, datetime], None]
    delete_series: Callable[[CrmGateway, SeriesRef], None]


@dataclass(frozen=True)
class SeriesRef:
    """A series in the CRM: its master's event (None when the store has none bound) and the
    events of its occurrences, as the bindings say."""

    master: int | None
    occurrences: tuple[int, ...]


class Dies:
    """The gateway, with the daemon dying around its ``store_event_page`` calls, or a CRM
    user's edit landing between a page's plan and its store (``meanwhile``, called once with
    the planned page)."""

    def __init__(
        self,
        gateway: CrmGateway,
        *,
        before: int = 0,
        after: int = 0,
        meanwhile: Callable[[EventPageWrite], bool] | None = None,
    ) -> None:
        self._gateway = gateway
        self._before, self._after, self._stored = before, after, 0
        self._meanwhile = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    def store_event_page(self, page: EventPageWrite, **kwargs: Any) -> Any:
        self._stored += 1
        if self._stored == self._before:
            raise Killed(f"before storing page {self._stored}")
        if self._meanwhile is not None and self._meanwhile(page):
            self._meanwhile = None
        result = self._gateway.store_event_page(page, **kwargs)
        if self._stored == self._after:
            raise Killed(f"after storing page {self._stored}")
        return result


@dataclass
class Expected:
    """What the CRM must show of the meetings: by iCalUId (Outlook's) or CRM event id (made
    in the CRM); None: busy time only."""

    by_uid: dict[str, str | None] = field(default_factory=dict)
    by_crm_id: dict[int, str | None] = field(default_factory=dict)
    # An occurrence renamed on its own: (iCalUId of its series, its original start) -> subject.
    by_slot: dict[tuple[str, datetime], str] = field(default_factory=dict)
    crm_tag: str = ""  # the store's (`CrmSettings.crm_tag`): its creates carry it

    def of_slot(self, meeting: Meeting, original: datetime | None) -> str | None:
        """What the CRM shows of one instance (``original``: an occurrence's slot)."""
        subject = self.get(meeting)
        if subject is None or original is None:
            return subject
        return self.by_slot.get((meeting.uid, original), subject)

    def restore(self, meeting: Meeting, settled: Expected) -> None:
        """What the CRM showed of ``meeting`` at the last settle (a meeting made private in
        Outlook since: the CRM keeps those details, and hears of no rename made meanwhile)."""
        kind, key = self.key(meeting)
        table, before = (
            (self.by_crm_id, settled.by_crm_id) if kind == "crm" else (self.by_uid, settled.by_uid)
        )
        if key in before:
            table[key] = before[key]  # type: ignore[index]
        for slot_key in [k for k in self.by_slot if k[0] == meeting.uid]:
            del self.by_slot[slot_key]
        self.by_slot.update({k: v for k, v in settled.by_slot.items() if k[0] == meeting.uid})

    def copy(self) -> Expected:
        return Expected(dict(self.by_uid), dict(self.by_crm_id), dict(self.by_slot), self.crm_tag)

    def reshaped(self, meeting: Meeting) -> None:
        """The series was rebuilt or renamed whole: its occurrences' own subjects are gone."""
        for key in [k for k in self.by_slot if k[0] == meeting.uid]:
            del self.by_slot[key]

    def key(self, meeting: Meeting) -> tuple[str, int | str]:
        made_by_crm = crm_event_of(meeting.transaction, self.crm_tag)
        return ("crm", made_by_crm) if made_by_crm is not None else ("uid", meeting.uid)

    def get(self, meeting: Meeting) -> str | None:
        kind, key = self.key(meeting)
        return self.by_crm_id[key] if kind == "crm" else self.by_uid[key]  # type: ignore[index]

    def set(self, meeting: Meeting, subject: str | None) -> None:
        kind, key = self.key(meeting)
        (self.by_crm_id if kind == "crm" else self.by_uid)[key] = subject  # type: ignore[index]


class CalendarSyncMachine(StoreMachine):
    """Bound by `machine_common.machine_for` to a gateway, a contact seeder and CRM actions."""

    crm: CrmActions

    def __init__(self) -> None:
        super().__init__()
        self.customer = f"ann.{unique('c')}@customer.example"
        self.ann = self.seed_partner(self.gateway, "Ann", self.customer)
        self.accounts = [self.gateway.upsert_account(spec()) for _ in range(2)]
        self.outlook = Outlook([a.address for a in self.accounts], self.customer)
        tag = self.gateway.crm_settings().crm_tag
        self.expected = Expected(crm_tag=tag)
        self.settled = Expected(crm_tag=tag)  # the expectations at the last settle
        self.known: set[str] = set()  # uids of the meetings both sides had at the last settle
        self.dirty: dict[str, str] = {}  # uid -> the side with an unsynced edit
        self.crm_made: list[int] = []  # CRM events made and not yet seen in Outlook
        # What a CRM edit must have done in Outlook by the next settle: (what, check).
        # (a later edit of the same thing replaces the promise of an earlier one).
        self.promised: dict[str, tuple[str, Callable[[], bool]]] = {}
        # Series the CRM rebuilt or deleted since the last settle: their occurrences in the
        # CRM are no longer the ones Outlook lists, so no CRM user edits them meanwhile.
        self.crm_rebuilt: set[str] = set()
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    # --- helpers ------------------------------------------------------------------------------

    def _pick(
        self,
        data: st.DataObject,
        side: str,
        *,
        single: bool | None = None,
        public: bool = False,
        timed: bool = False,
    ) -> Meeting | None:
        """A meeting both sides know that ``side`` may edit now (``timed``: not all-day)."""
        found = [
            m
            for m in self.outlook.meetings
            if m.uid in self.known
            and self.dirty.get(m.uid, side) == side
            and (single is None or (m.slots is None) == single)
            and not (public and self.expected.get(m) is None)
            and not (timed and m.all_day)
            and not (side == "crm" and m.uid in self.crm_rebuilt)
        ]
        return data.draw(st.sampled_from(found)) if found else None

    def _crm_id(self, meeting: Meeting) -> int:
        graph_id = meeting.copies[0]
        return self.gateway.event_bindings(self.accounts[0].id, [graph_id])[graph_id].crm_event_id

    def _outlook_changed(self, meeting: Meeting, *, modified: datetime | None = None) -> None:
        # A plain edit is stamped a little in the past: Odoo's write times have whole seconds,
        # and a CRM edit that follows must be the later one (the conflict rules rely on it).
        meeting.modified = modified or datetime.now(UTC) - timedelta(seconds=2)
        self.outlook.commit(meeting)
        self.dirty[meeting.uid] = "outlook"
        if not meeting.private:
            self.expected.set(meeting, meeting.subject)

    # --- Outlook ------------------------------------------------------------------------------

    @rule(
        invite=st.booleans(),
        private=st.booleans(),
        weeks=st.sampled_from([0, 0, 3]),
        zone=st.sampled_from(ZONES),
        all_day=st.sampled_from([False, False, True]),
        across_dst=st.booleans(),
    )
    def outlook_create(
        self,
        invite: bool,
        private: bool,
        weeks: int,
        zone: str = "UTC",
        all_day: bool = False,
        across_dst: bool = False,
    ) -> None:
        """A meeting of the first mailbox's owner (``weeks``: a weekly series of that many),
        planned in ``zone``; all-day (a day or two, its dates as the owner's calendar shows
        them), or timed, a series perhaps starting a week before the zone's DST change."""
        n = self._next()
        start = START + timedelta(hours=n)
        if across_dst and weeks and not all_day:
            start = before_dst_change(zone) + timedelta(hours=n % 8)
        copies = {i: self.outlook.new_id() for i in ((0, 1) if invite else (0,))}
        meeting = Meeting(
            unique("uid"),
            f"Outlook meeting {n}",
            start,
            copies,
            "private" if private else "normal",
            zone=zone,
        )
        if all_day:
            meeting.all_day = True
            meeting.start = datetime.combine(start.date() + timedelta(days=n), time(0), UTC)
            meeting.length = timedelta(days=1 + n % 2)
        if weeks:
            first = meeting.start if all_day else meeting.start.astimezone(ZoneInfo(zone))
            meeting.pattern = Pattern("weekly", count=weeks, days=(WEEKDAYS[first.weekday()],))
            meeting.rebuild()
        self.outlook.add(meeting)
        self.expected.set(meeting, None if private else meeting.subject)

    @rule(data=st.data())
    def outlook_rename(self, data: st.DataObject) -> None:
        """A single meeting, or a whole series (every occurrence takes the new subject)."""
        if meeting := self._pick(data, "outlook"):
            meeting.subject = f"{meeting.subject} (Outlook {self._next()})"
            self._outlook_changed(meeting)

    @rule(data=st.data(), hours=st.integers(-3, 30))
    def outlook_move(self, data: st.DataObject, hours: int) -> None:
        """A single meeting to another time (an all-day one to another day)."""
        if meeting := self._pick(data, "outlook", single=True):
            if meeting.all_day:
                meeting.start += timedelta(days=1 if hours >= 0 else -1)
            else:
                meeting.start += timedelta(hours=hours)
            self._outlook_changed(meeting)

    @rule(data=st.data(), sensitivity=st.sampled_from(SENSITIVITIES))
    def outlook_privacy(self, data: st.DataObject, sensitivity: str) -> None:
        """A meeting or a whole series made private, confidential, personal or normal in
        Outlook: a bound one made private keeps the CRM's details (busy time only comes),
        one made normal or personal again brings Outlook's details."""
        meeting = self._pick(data, "outlook")
        if meeting is not None and meeting.sensitivity != sensitivity:
            if sensitivity in PRIVATE and not meeting.private:
                # The CRM keeps what it holds when the private item comes; with Outlook edits
                # not yet synced, that depends on which cycles ran since (a cycle cut short
                # may have stored some): only a meeting both sides agree on is made private.
                if self.dirty.get(meeting.uid):
                    return
                self.expected.restore(meeting, self.settled)
            meeting.sensitivity = sensitivity
            self._outlook_changed(meeting)

    @rule(data=st.data(), show_as=st.sampled_from(SHOW_AS))
    def outlook_show_as(self, data: st.DataObject, show_as: str) -> None:
        meeting = self._pick(data, "outlook")
        if meeting is not None and meeting.show_as != show_as:
            meeting.show_as = show_as
            self._outlook_changed(meeting)

    @rule(data=st.data())
    def outlook_delete(self, data: st.DataObject) -> None:
        """A single meeting, or a whole series."""
        if meeting := self._pick(data, "outlook"):
            self.outlook.commit(meeting, gone=True)
            self.dirty[meeting.uid] = "outlook"

    @rule(data=st.data(), hours=st.integers(1, 30))
    def outlook_move_occurrence(self, data: st.DataObject, hours: int) -> None:
        if meeting := self._pick(data, "outlook", single=False):
            assert meeting.slots is not None
            slot = data.draw(st.sampled_from([s for s in meeting.slots if not s.cancelled]))
            slot.start += timedelta(hours=hours)
            self._outlook_changed(meeting)

    @rule(data=st.data())
    def outlook_cancel_occurrence(self, data: st.DataObject) -> None:
        if meeting := self._pick(data, "outlook", single=False):
            assert meeting.slots is not None
            left = [s for s in meeting.slots if not s.cancelled]
            if len(left) > 1:
                data.draw(st.sampled_from(left)).cancelled = True
                self._outlook_changed(meeting)

    # --- the CRM ------------------------------------------------------------------------------

    @rule(
        private=st.booleans(),
        zone=st.sampled_from(ZONES),
        all_day=st.sampled_from([False, False, True]),
    )
    def crm_create(self, private: bool, zone: str = "UTC", all_day: bool = False) -> None:
        """A meeting for the first mailbox, planned in the CRM user's ``zone``; all-day (its
        dates, end exclusive as Outlook has it), or timed."""
        n = self._next()
        item = CalendarEvent(
            graph_id="",
            ical_uid=None,
            event_type=EventType.SINGLE,
            subject=f"CRM meeting {n}",
            start=START + timedelta(hours=n),
            end=START + timedelta(hours=n + 1),
            time_zone=zone,
            sensitivity=Sensitivity.PRIVATE if private else Sensitivity.NORMAL,
        )
        if all_day:
            day = START.date() + timedelta(days=n)
            item.is_all_day, item.start, item.end = True, None, None
            item.start_date, item.end_date = day, day + timedelta(days=1 + n % 2)
        crm_id = self.crm.create(self.gateway, self.accounts[0], item, [self.ann.id])
        self.expected.by_crm_id[crm_id] = item.subject
        self.crm_made.append(crm_id)
        self._promise(
            f"{item.subject} reached Outlook as made",
            lambda: any(
                m.subject == item.subject
                and m.all_day == all_day
                and (m.start.date() == item.start_date if all_day else m.start == item.start)
                for m in self.outlook.meetings
            ),
        )

    # --- the CRM's series ---------------------------------------------------------------------

    def _promise(
        self,
        what: str,
        check: Callable[[], bool],
        meeting: Meeting | None = None,
        aspect: str = "",
    ) -> None:
        """``check`` must hold at the next settle, unless ``meeting`` was deleted by then (a
        later CRM edit: `crm_delete_series`, whose own promise is checked)."""
        key = what if meeting is None else f"{meeting.uid} {aspect}"
        if meeting is None:
            self.promised[key] = (what, check)
        else:
            self.promised[key] = (what, lambda: meeting not in self.outlook.meetings or check())

    def _series(self, meeting: Meeting) -> SeriesRef:
        assert meeting.slots is not None
        ids = [meeting.occurrence_id(0, n) for n, s in enumerate(meeting.slots) if not s.cancelled]
        found = self.gateway.event_bindings(self.accounts[0].id, [meeting.copies[0], *ids])
        master = found.get(meeting.copies[0])
        return SeriesRef(
            master.crm_event_id if master is not None else None,
            tuple(found[g].crm_event_id for g in ids if g in found),
        )

    def _occurrence(self, data: st.DataObject, meeting: Meeting) -> tuple[Slot, int]:
        """One occurrence of the series (not cancelled) and its CRM event."""
        assert meeting.slots is not None
        live = [n for n, s in enumerate(meeting.slots) if not s.cancelled]
        n = data.draw(st.sampled_from(live))
        graph_id = meeting.occurrence_id(0, n)
        binding = self.gateway.event_bindings(self.accounts[0].id, [graph_id])[graph_id]
        return meeting.slots[n], binding.crm_event_id

    @staticmethod
    def _unchanged(meeting: Meeting) -> Callable[[], bool]:
        """Whether the series is still as it was (a later edit may delete or rebuild it)."""
        generation = meeting.generation
        return lambda: meeting.generation == generation

    @rule(
        kind=st.sampled_from(["daily", "weekly"]),
        count=st.integers(2, 4),
        zone=st.sampled_from(ZONES),
        across_dst=st.booleans(),
    )
    def crm_create_series(self, kind: str, count: int, zone: str, across_dst: bool) -> None:
        """A recurring meeting made in the CRM (daily or weekly, ``count`` of them) in the
        user's ``zone``, perhaps a weekly one across the zone's DST change: Outlook makes
        the series, and its occurrences come back bound to the CRM's."""
        n = self._next()
        start = START + timedelta(hours=n)
        if across_dst and kind == "weekly":
            start = before_dst_change(zone) + timedelta(hours=n % 8)
        local = start.astimezone(ZoneInfo(zone))
        days = (WEEKDAYS[local.weekday()],) if kind == "weekly" else ()
        item = CalendarEvent(
            graph_id="",
            ical_uid=None,
            event_type=EventType.SERIES_MASTER,
            subject=f"CRM series {n}",
            start=start,
            end=start + timedelta(hours=1),
            time_zone=zone,
            recurrence=Recurrence(
                kind,
                local.date(),
                days_of_week=days,
                range_type="numbered",
                number_of_occurrences=count,
            ),
        )
        crm_id = self.crm.create_series(self.gateway, self.accounts[0], item, [self.ann.id])
        self.expected.by_crm_id[crm_id] = item.subject
        self.crm_made.append(crm_id)
        wanted = expand(start, zone, Pattern(kind, count=count, days=days), False)
        self._promise(
            f"{item.subject} reached Outlook as a {kind} series of {count} in {zone}",
            lambda: any(
                m.subject == item.subject
                and m.slots is not None
                and [s.start for s in m.slots] == wanted
                for m in self.outlook.meetings
            ),
        )

    @rule(data=st.data(), rename=st.booleans(), hours=st.integers(1, 3))
    def crm_edit_occurrence(self, data: st.DataObject, rename: bool, hours: int) -> None:
        """One occurrence renamed or moved (by a few hours: Outlook refuses to move one
        past its neighbour) in the CRM: Outlook's becomes an exception."""
        meeting = self._pick(data, "crm", single=False, public=True, timed=not rename)
        if meeting is None or meeting.private:
            return
        slot, event_id = self._occurrence(data, meeting)
        same = self._unchanged(meeting)
        if rename:
            subject = f"{self.expected.of_slot(meeting, slot.original)} (CRM {self._next()})"
            self.crm.edit_occurrence(self.gateway, event_id, {"subject": subject})
            self.expected.by_slot[(meeting.uid, slot.original)] = subject
            self._promise(
                f"occurrence renamed to {subject}",
                lambda: not same() or slot.cancelled or slot.subject == subject,
                meeting=meeting,
                aspect=f"subject {slot.original}",
            )
        else:
            start = slot.start + timedelta(hours=hours)
            self.crm.edit_occurrence(
                self.gateway, event_id, {"start": start, "end": start + meeting.length}
            )
            self._promise(
                f"occurrence of {meeting.subject} moved to {start}",
                lambda: not same() or slot.cancelled or slot.start == start,
                meeting=meeting,
                aspect=f"start {slot.original}",
            )
        self.dirty[meeting.uid] = "crm"

    @rule(data=st.data())
    def crm_delete_occurrence(self, data: st.DataObject) -> None:
        meeting = self._pick(data, "crm", single=False, public=True)
        if meeting is None or meeting.private:
            return
        assert meeting.slots is not None
        if sum(not s.cancelled for s in meeting.slots) < 2:
            return
        slot, event_id = self._occurrence(data, meeting)
        self.crm.delete_occurrence(self.gateway, event_id)
        same = self._unchanged(meeting)
        self._promise(
            "occurrence cancelled",
            lambda: not same() or slot.cancelled,
            meeting=meeting,
            aspect=f"cancel {slot.original}",
        )
        self.dirty[meeting.uid] = "crm"

    @rule(data=st.data())
    def crm_rename_series(self, data: st.DataObject) -> None:
        """Every occurrence renamed in the CRM ("all events", the occurrences renamed on
        their own since the last sync included): Outlook's master is patched (its details
        only: the exceptions stay). Series with an exception renamed in Outlook are left out:
        whether Outlook renames such an exception too is not documented."""
        meeting = self._pick(data, "crm", single=False, public=True)
        if meeting is None or meeting.private:
            return
        assert meeting.slots is not None
        if any(s.subject is not None for s in meeting.slots):
            return
        subject = f"{self.expected.get(meeting)} (CRM all {self._next()})"
        self.crm.rename_series(self.gateway, self._series(meeting), subject)
        self.expected.set(meeting, subject)
        # The occurrences renamed on their own since the last sync take the series' name
        # too (an "all events" edit writes it on every occurrence).
        self.expected.reshaped(meeting)
        for key in [k for k in self.promised if k.startswith(f"{meeting.uid} subject ")]:
            del self.promised[key]
        self._promise(
            f"series renamed to {subject}",
            lambda: meeting.subject == subject,
            meeting=meeting,
            aspect="subject",
        )
        self.dirty[meeting.uid] = "crm"

    @rule(data=st.data(), kind=st.sampled_from(["daily", "weekly"]), count=st.integers(2, 4))
    def crm_reshape_series(self, data: st.DataObject, kind: str, count: int) -> None:
        """The series' pattern changed in the CRM ("all events"): Outlook rebuilds its
        occurrences (new ids, exceptions gone), and the CRM binds the new ones. A series the
        second mailbox is invited to too: whichever mailbox syncs first, only the organizer's
        push of the new shape ends the pending reshape
        (`series_reshaped_while_an_invitee_syncs_first`)."""
        meeting = self._pick(data, "crm", single=False, public=True, timed=True)
        if meeting is None or meeting.private or meeting.pattern is None:
            return
        if (meeting.pattern.kind, meeting.pattern.count) == (kind, count):
            return
        local = meeting.start.astimezone(ZoneInfo(meeting.zone))
        days = (WEEKDAYS[local.weekday()],) if kind == "weekly" else ()
        recurrence = Recurrence(
            kind,
            local.date(),
            days_of_week=days,
            range_type="numbered",
            number_of_occurrences=count,
        )
        self.crm.reshape_series(self.gateway, self._series(meeting), recurrence, meeting.start)
        self.expected.reshaped(meeting)
        wanted = expand(meeting.start, meeting.zone, Pattern(kind, count=count, days=days), False)
        self._promise(
            f"series {meeting.subject} rebuilt as a {kind} series of {count}",
            lambda: (
                meeting.slots is not None
                and [(s.start, s.cancelled, s.subject) for s in meeting.slots]
                == [(w, False, None) for w in wanted]
            ),
            meeting=meeting,
            aspect="shape",
        )
        self.crm_rebuilt.add(meeting.uid)
        self.dirty[meeting.uid] = "crm"

    @rule(data=st.data())
    def crm_delete_series(self, data: st.DataObject) -> None:
        meeting = self._pick(data, "crm", single=False, public=True)
        if meeting is None or meeting.private:
            return
        self.crm.delete_series(self.gateway, self._series(meeting))
        self._promise(
            f"series {meeting.subject} deleted", lambda: meeting not in self.outlook.meetings
        )
        self.crm_rebuilt.add(meeting.uid)
        self.dirty[meeting.uid] = "crm"

    @rule(data=st.data())
    def crm_rename(self, data: st.DataObject) -> None:
        if meeting := self._pick(data, "crm", single=True, public=True):
            subject = f"{self.expected.get(meeting)} (CRM {self._next()})"
            self.crm.rename(self.gateway, self._crm_id(meeting), subject)
            self.expected.set(meeting, subject)
            self.dirty[meeting.uid] = "crm"

    @rule(data=st.data(), hours=st.integers(-3, 30))
    def crm_move(self, data: st.DataObject, hours: int) -> None:
        """A single meeting to another time, in the CRM: Outlook's copies follow."""
        if meeting := self._pick(data, "crm", single=True, public=True, timed=True):
            start = meeting.start + timedelta(hours=hours)
            self.crm.move(self.gateway, self._crm_id(meeting), start, start + timedelta(hours=1))
            self.dirty[meeting.uid] = "crm"

    @rule(data=st.data())
    def crm_privacy(self, data: st.DataObject) -> None:
        """Private goes to Outlook whole, marked private; Outlook's later renames then reach
        the CRM as busy time only, and the CRM keeps its details."""
        if meeting := self._pick(data, "crm", single=True, public=True):
            self.crm.set_private(self.gateway, self._crm_id(meeting), not meeting.private)
            self.dirty[meeting.uid] = "crm"

    @rule(data=st.data())
    def crm_delete(self, data: st.DataObject) -> None:
        if meeting := self._pick(data, "crm", single=True, public=True):
            self.crm.delete(self.gateway, self._crm_id(meeting))
            self.dirty[meeting.uid] = "crm"

    @rule(data=st.data(), outlook_later=st.booleans())
    def conflict(self, data: st.DataObject, outlook_later: bool) -> None:
        """Both sides rename one meeting between two syncs: the later edit wins (Outlook's
        ``lastModifiedDateTime`` against the CRM's write time), on both sides."""
        meeting = self._pick(data, "crm", single=True, public=True)
        if meeting is None or meeting.private or self.dirty.get(meeting.uid):
            return
        n = self._next()
        crm_subject = f"{self.expected.get(meeting)} (CRM {n})"
        self.crm.rename(self.gateway, self._crm_id(meeting), crm_subject)
        meeting.subject = f"{meeting.subject} (Outlook {n})"
        shift = timedelta(hours=1 if outlook_later else -1)
        self._outlook_changed(meeting, modified=datetime.now(UTC) + shift)
        self.expected.set(meeting, meeting.subject if outlook_later else crm_subject)
        self.dirty[meeting.uid] = "both"

    # --- the sync -----------------------------------------------------------------------------

    def _cycle(self, index: int, gateway: Any = None) -> SyncRun:
        account = self.accounts[index]
        cycle = CalendarCycle(
            gateway or self.gateway,
            None,  # type: ignore[arg-type]  # no Graph: the reader and writer are Outlook's
            POLICY,
            reader=self.outlook.reader(index),  # type: ignore[arg-type]
            writer=self.outlook.writer(index),  # type: ignore[arg-type]
        )
        return cycle.run(account, SyncRun(account_id=account.id, started_at=datetime.now(UTC)))

    @rule(index=st.integers(0, 1), fault=st.sampled_from(FAULTS))
    def cycle(self, index: int, fault: str) -> None:
        """One calendar cycle of a mailbox, perhaps cut short (the next one carries on)."""
        box = self.outlook.boxes[index]
        gateway: Any = None
        if fault == "dies before storing the first page":
            gateway = Dies(self.gateway, before=1)
        elif fault == "dies before storing the second page":
            gateway = Dies(self.gateway, before=2)
        elif fault == "dies after storing the first page":
            gateway = Dies(self.gateway, after=1)
        elif fault == "dies after Outlook took a create":
            box.crash_after_create = True
        elif fault == "410: the delta link expired":
            box.expired = True
        elif fault == "Outlook replays changes":
            box.rewind = True
        elif fault.startswith("a CRM user renames"):
            gateway = Dies(self.gateway, meanwhile=lambda page: self._rename_meanwhile(index, page))
        with contextlib.suppress(Killed):  # the next cycle carries on
            self._cycle(index, gateway)
        box.crash_after_create = box.rewind = False

    def _rename_meanwhile(self, index: int, page: EventPageWrite) -> bool:
        """A CRM user renames a single meeting this page changes: the store refuses the stale
        plan (`StalePlan`), the cycle plans again and finds a conflict, which the CRM's edit,
        the later one, wins. False when the page has no such meeting."""
        for stored in page.upserts:
            if stored.crm_event_id is None:
                continue
            meeting = self.outlook.find_item(index, stored.event.graph_id)
            if meeting.slots is None and self.dirty.get(meeting.uid) == "outlook":
                if meeting.private or self.expected.get(meeting) is None:
                    continue
                subject = f"{self.expected.get(meeting)} (CRM meanwhile {self._next()})"
                self.crm.rename(self.gateway, stored.crm_event_id, subject)
                self.expected.set(meeting, subject)
                self.dirty[meeting.uid] = "both"
                return True
        return False

    @rule()
    def settle(self) -> None:
        """Every mailbox's cycle until nothing moves, then the checks of the module docstring."""
        for _ in range(2):
            for index in (0, 1):
                box = self.outlook.boxes[index]
                box.theirs_served = 0
                figures = self._cycle(index).calendar
                # What a mailbox's own sync wrote comes back to it as an echo, never as a
                # change to store: only the items it did not write may be stored.
                stored = figures.get("new", 0) + figures.get("updated", 0)
                assert stored <= box.theirs_served, f"own writes stored again: {figures}"
        for index in (0, 1):
            figures = self._cycle(index).calendar
            moved = {k: v for k, v in figures.items() if k != "pages" and v}
            assert not moved, f"mailbox {index} still moves once settled: {moved}"
        for what, check in self.promised.values():
            assert check(), f"not done in Outlook: {what}"
        self.promised.clear()
        self.crm_rebuilt.clear()
        self.settled = self.expected.copy()
        self._both_sides_agree()
        self.known = {m.uid for m in self.outlook.meetings}
        self.dirty.clear()
        self.crm_made.clear()

    def _both_sides_agree(self) -> None:
        crm_of: dict[tuple[int, str], int] = {}  # (mailbox, graph id) -> CRM event
        for index, account in enumerate(self.accounts):
            box = self.outlook.boxes[index]
            bindings = self.gateway.event_bindings(account.id, list(box.log))
            assert set(box.state) <= set(bindings), "every item of the mailbox is bound"
            # Left over: the master of a series deleted in Outlook. calendarView delta lists
            # only instances, so the CRM hears of its occurrences' removal, never the master's
            # (hidden in the CRM: no list shows a master; see the checks below).
            left = set(bindings) - set(box.state)
            assert all(any(g.startswith(f"{m}-occ") for g in box.log) for m in left), left
            ids = [b.crm_event_id for b in bindings.values()]
            assert len(set(ids)) == len(ids), "two Outlook items on one CRM event"
            crm_of.update({(index, g): b.crm_event_id for g, b in bindings.items()})
        for meeting in self.outlook.meetings:  # one meeting, one CRM event, in every mailbox
            if 1 in meeting.copies:
                mine = meeting.copies[0]
                for graph_id in self.outlook.boxes[0].state:
                    if graph_id == mine or graph_id.startswith(f"{mine}-occ"):
                        twin = meeting.copies[1] + graph_id[len(mine) :]
                        assert crm_of[(0, graph_id)] == crm_of[(1, twin)]
        # Ann's meetings in the CRM: every instance of the first mailbox not kept as busy time
        # only, none else (nothing deleted on either side lingers), each at its Outlook time,
        # with the subject the rules say. (The busy-time ones have no attendees: their binding
        # above is what is checked of them.)
        low = START - timedelta(days=1)
        shown = {
            s.crm_event_id: (s.subject, s.is_all_day, s.start_date if s.is_all_day else s.start)
            for s in self.gateway.upcoming_events_for_partner(self.ann.id, since=low, limit=1000)
        }
        wanted = {}
        instances = {
            g: item
            for g, item in self.outlook.items(0).items()
            if item.event_type is not EventType.SERIES_MASTER
        }
        for graph_id, item in instances.items():
            meeting = self.outlook.find_item(0, graph_id)
            subject = self.expected.of_slot(meeting, item.original_start)
            if subject is not None:
                when = item.start_date if item.is_all_day else item.start
                wanted[crm_of[(0, graph_id)]] = (subject, item.is_all_day, when)
        assert shown == wanted, (
            "Ann's meetings: the last writer's subject, at Outlook's time; CRM only: "
            f"{ {k: v for k, v in shown.items() if v != wanted.get(k)} }, Outlook only: "
            f"{ {k: v for k, v in wanted.items() if v != shown.get(k)} }"
        )
        # Privacy and show-as as Outlook has them (in the CRM's terms: private or not, free
        # or not), the busy-time ones included.
        views = self.crm.read(self.gateway, sorted({crm_of[(0, g)] for g in instances}))
        for graph_id, item in instances.items():
            outlook = (item.sensitivity.value in PRIVATE, item.show_as is ShowAs.FREE)
            assert views[crm_of[(0, graph_id)]] == outlook, f"privacy, show-as of {item.subject}"
        for meeting in self.outlook.meetings:  # and Outlook has the CRM's details
            if not meeting.private:
                assert meeting.subject == self.expected.get(meeting)
                for slot in meeting.slots or ():
                    if not slot.cancelled:
                        wanted_subject = self.expected.of_slot(meeting, slot.original)
                        assert (slot.subject or meeting.subject) == wanted_subject
        for account in self.accounts:
            assert self.gateway.event_changes_to_push(account.id) == []

    @invariant()
    def nothing_is_bound_twice(self) -> None:
        """After any step, even a cut-short cycle: no Outlook item is two CRM events'."""
        for index, account in enumerate(self.accounts):
            bindings = self.gateway.event_bindings(account.id, list(self.outlook.boxes[index].log))
            ids = [b.crm_event_id for b in bindings.values()]
            assert len(set(ids)) == len(ids), "two Outlook items on one CRM event"


# --- what the machine found, kept ---------------------------------------------------------------


class Draws:
    """A rule's ``data`` in a kept sequence: hands out the given values in order (the meeting
    ``_pick`` chooses, then an occurrence's index...)."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def draw(self, strategy: Any) -> Any:
        return self.values.pop(0)


def deleted_while_the_link_expired(machine: CalendarSyncMachine) -> None:
    """A meeting deleted in Outlook while the delta link expired stayed in the CRM for good:
    the 410 restarted the window afresh, and a fresh round lists no removals (fixed: the
    cycle asks about the bound ids the round did not list)."""
    machine.crm_create(private=False)
    machine.settle()
    (meeting,) = machine.outlook.meetings
    machine.outlook.commit(meeting, gone=True)
    machine.outlook_create(invite=False, private=False, weeks=0)
    machine.cycle(index=0, fault="410: the delta link expired")
    machine.settle()


def deleted_while_a_fresh_round_was_cut_short(machine: CalendarSyncMachine) -> None:
    """The same, with the fresh round cut short after its first page: the next cycle resumes
    it from its next link, and still finds what was deleted meanwhile."""
    for _ in range(3):
        machine.outlook_create(invite=False, private=False, weeks=0)
    machine.settle()
    machine.outlook.commit(machine.outlook.meetings[0], gone=True)
    machine.outlook.boxes[0].expired = True
    machine.cycle(index=0, fault="dies after storing the first page")
    machine.settle()


def a_crm_edit_between_plan_and_store(machine: CalendarSyncMachine) -> None:
    """Not a finding, a path random runs seldom reach: an Outlook rename planned, a CRM
    rename stored before the plan, the store refusing the stale plan, the plan made again
    finding a conflict that the CRM's later edit wins, on both sides."""
    machine.outlook_create(invite=True, private=False, weeks=0)
    machine.settle()
    (meeting,) = machine.outlook.meetings
    meeting.subject += " (Outlook)"
    machine._outlook_changed(meeting)
    renamed = machine._rename_meanwhile
    seen: list[bool] = []
    machine._rename_meanwhile = lambda index, page: seen.append(renamed(index, page)) or seen[-1]
    machine.cycle(
        index=0, fault="a CRM user renames a meeting of the page between its plan and its store"
    )
    assert seen[0], "the page carried the meeting"
    machine.settle()
    assert "(CRM meanwhile" in meeting.subject


def a_series_renamed_then_one_occurrence_moved(machine: CalendarSyncMachine) -> None:
    """A whole series renamed in the CRM, then one of its occurrences moved, before a sync:
    the occurrence went to Outlook with its old subject and undid the rename there (the
    embedded store's series edit left its occurrences' details as they were; Odoo's "all
    events" writes them on every occurrence)."""
    machine.crm_create_series(kind="weekly", count=3, zone="Europe/Berlin", across_dst=True)
    machine.settle()
    (meeting,) = machine.outlook.meetings
    machine.crm_rename_series(Draws(meeting))
    machine.crm_edit_occurrence(Draws(meeting, 0), rename=False, hours=1)
    machine.settle()
    assert meeting.slots is not None
    assert (meeting.slots[0].subject or meeting.subject) == meeting.subject
    assert meeting.slots[0].start == meeting.slots[0].original + timedelta(hours=1)


def a_series_rebuilt_with_one_occurrence_left(machine: CalendarSyncMachine) -> None:
    """A CRM series with only its first occurrence left, its pattern changed in the CRM:
    Outlook rebuilt it, and the page listing the old first occurrence as removed also
    carried the new one on the same day (same iCalUId). The plan placed the new one on the
    old one's CRM event, the store dropped that event with the old binding first, and the
    page was refused on every plan (`StalePlan`): the account's calendar stuck for good
    (fixed: `sync.calendar.removals` keeps a removed binding whose event a new item takes)."""
    machine.crm_create_series(kind="weekly", count=2, zone="UTC", across_dst=False)
    machine.settle()
    (meeting,) = machine.outlook.meetings
    machine.crm_delete_occurrence(Draws(meeting, 1))
    machine.settle()
    machine.crm_reshape_series(Draws(meeting), kind="weekly", count=3)
    machine.settle()


def series_reshaped_while_an_invitee_syncs_first(machine: CalendarSyncMachine) -> None:
    """A series the second mailbox is invited to, its pattern changed in the CRM, the
    invitee's mailbox syncing first. Its record of the change (`ForgetDeleted`: it only
    attends) cleared the event's ``series_reshaped`` flag in both stores (`mark_event_pushed`
    cleared it for any account), so the organizer's push was a PATCH of the details only and
    Outlook kept the old pattern: the CRM and Outlook disagreed on the series' shape, silently
    (fixed: the daemon says whether a push carried the shape, `sync.calendar`'s
    ``carries_shape``, and the stores clear the flag only then: ``shape_pushed``)."""
    machine.outlook_create(invite=True, private=False, weeks=3)
    machine.settle()
    (meeting,) = machine.outlook.meetings
    machine.crm_reshape_series(Draws(meeting), kind="daily", count=2)
    machine.cycle(index=1, fault="none")
    machine.settle()


CalendarSyncMachine.regressions = (
    deleted_while_the_link_expired,
    deleted_while_a_fresh_round_was_cut_short,
    a_crm_edit_between_plan_and_store,
    a_series_renamed_then_one_occurrence_moved,
    a_series_rebuilt_with_one_occurrence_left,
    series_reshaped_while_an_invitee_syncs_first,
)
