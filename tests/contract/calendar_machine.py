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
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import (
    Account,
    CalendarEvent,
    EventPageWrite,
    EventType,
    Privacy,
    Sensitivity,
    SyncRun,
)
from m365sync.service.calendar_cycle import CalendarCycle
from m365sync.sync.calendar import crm_event_of
from m365sync.sync.mail import MailPolicy

from .gateway_contract import spec, unique
from .machine_common import StoreMachine
from .machine_outlook import WEEKDAYS, Killed, Meeting, Outlook, Pattern

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=5)
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

    def key(self, meeting: Meeting) -> tuple[str, int | str]:
        made_by_crm = crm_event_of(meeting.transaction)
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
        self.expected = Expected()
        self.known: set[str] = set()  # uids of the meetings both sides had at the last settle
        self.dirty: dict[str, str] = {}  # uid -> the side with an unsynced edit
        self.crm_made: list[int] = []  # CRM events made and not yet seen in Outlook
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    # --- helpers ------------------------------------------------------------------------------

    def _pick(
        self, data: st.DataObject, side: str, *, single: bool | None = None, public: bool = False
    ) -> Meeting | None:
        """A meeting both sides know that ``side`` may edit now."""
        found = [
            m
            for m in self.outlook.meetings
            if m.uid in self.known
            and self.dirty.get(m.uid, side) == side
            and (single is None or (m.slots is None) == single)
            and not (public and self.expected.get(m) is None)
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

    @rule(invite=st.booleans(), private=st.booleans(), weeks=st.sampled_from([0, 0, 3]))
    def outlook_create(self, invite: bool, private: bool, weeks: int) -> None:
        """A meeting of the first mailbox's owner (``weeks``: a weekly series of that many)."""
        n = self._next()
        start = START + timedelta(hours=n)
        copies = {i: self.outlook.new_id() for i in ((0, 1) if invite else (0,))}
        meeting = Meeting(
            unique("uid"),
            f"Outlook meeting {n}",
            start,
            copies,
            "private" if private else "normal",
        )
        if weeks:
            meeting.pattern = Pattern("weekly", count=weeks, days=(WEEKDAYS[start.weekday()],))
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
        """A single meeting to another time."""
        if meeting := self._pick(data, "outlook", single=True):
            meeting.start += timedelta(hours=hours)
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

    @rule(private=st.booleans())
    def crm_create(self, private: bool) -> None:
        n = self._next()
        item = CalendarEvent(
            graph_id="",
            ical_uid=None,
            event_type=EventType.SINGLE,
            subject=f"CRM meeting {n}",
            start=START + timedelta(hours=n),
            end=START + timedelta(hours=n + 1),
            time_zone="UTC",
            sensitivity=Sensitivity.PRIVATE if private else Sensitivity.NORMAL,
        )
        crm_id = self.crm.create(self.gateway, self.accounts[0], item, [self.ann.id])
        self.expected.by_crm_id[crm_id] = item.subject
        self.crm_made.append(crm_id)

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
        if meeting := self._pick(data, "crm", single=True, public=True):
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
            s.crm_event_id: (s.subject, s.start)
            for s in self.gateway.upcoming_events_for_partner(self.ann.id, since=low, limit=1000)
        }
        wanted = {}
        for graph_id, item in self.outlook.items(0).items():
            if item.event_type is not EventType.SERIES_MASTER:
                subject = self.expected.get(self.outlook.find_item(0, graph_id))
                if subject is not None:
                    wanted[crm_of[(0, graph_id)]] = (subject, item.start)
        assert shown == wanted, "Ann's meetings: the last writer's subject, at Outlook's time"
        for meeting in self.outlook.meetings:  # and Outlook has the CRM's details
            if not meeting.private:
                assert meeting.subject == self.expected.get(meeting)
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


CalendarSyncMachine.regressions = (
    deleted_while_the_link_expired,
    deleted_while_a_fresh_round_was_cut_short,
    a_crm_edit_between_plan_and_store,
)
