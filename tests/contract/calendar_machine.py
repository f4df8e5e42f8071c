"""A state machine over the calendar's two-way sync, run against each gateway (vdirsyncer's
SyncMachine is the model; `mail_machine` is its mail half).

Outlook's side: a meeting the first mailbox's owner organizes, alone or with the second
mailbox invited (the same meeting, one copy per mailbox, one iCalUId); the organizer renames
or deletes it (every copy changes). The CRM's side: a salesperson creates a meeting for the
first mailbox, renames or deletes one (the store's own user actions, as in the calendar
contract). The sync: a mailbox's cycle is its delta (the changed and removed copies since the
last stored cursor) planned by the product's own rules (`sync.calendar.plan_inbound` over the
store's bindings, meeting candidates and partner lookups) and stored, then the CRM's pending
changes planned (`plan_outbound`) and carried out on the Outlook model and recorded
(`mark_event_pushed`); our own writes come back in the next delta, as Outlook sends them.
Faults: a crash after planning and before storing (nothing stored, the same delta comes
again); a page stored, then replayed (planned again on fresh state); a crash after Outlook
took a create and before the CRM recorded it (the retry carries the same transactionId, and
Outlook answers with the event it already made).

What must hold once every mailbox is synced and nothing waits to be pushed: each mailbox's
copies are bound, each to one CRM event, the copies of one meeting to the same one; the CRM
holds exactly the living meetings with their last subject; nothing is left to push (our own
writes never came back as changes: no echo).

Simultaneous edits of one meeting on both sides (last writer wins) are left to the unit tests
of `sync.calendar` and the contract: the rules here never edit a meeting with a change pending
on the other side.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import (
    Account,
    Attendee,
    CalendarEvent,
    Cursor,
    CursorKind,
    EmailAddress,
    EventPageWrite,
    EventType,
    Partner,
    Privacy,
    ResponseStatus,
)
from m365sync.sync.calendar import (
    ForgetDeleted,
    PushCreate,
    PushDelete,
    PushResponse,
    PushUpdate,
    crm_event_of,
    event_addresses,
    plan_inbound,
    plan_outbound,
)
from m365sync.sync.mail import MailPolicy, PartnerLookups, page_domains

from .gateway_contract import spec, unique

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=5)
CALENDAR = "calendarView/machine"
POLICY = MailPolicy.build(["contoso.example"], Privacy.EVERYTHING)
SeedPartner = Callable[..., Partner]


@dataclass
class CrmActions:
    """The CRM user's own actions for one store (not the daemon's interface)."""

    create: Callable[[CrmGateway, Account, CalendarEvent, list[int]], int]
    rename: Callable[[CrmGateway, int, str], None]
    delete: Callable[[CrmGateway, int], None]


@dataclass
class Meeting:
    subject: str
    start: datetime
    uid: str | None = None  # None: made in the CRM, not yet in Outlook
    crm_id: int | None = None  # known for meetings made in the CRM
    copies: dict[int, str] = field(default_factory=dict)  # mailbox index -> graph id
    change: int = 1
    crm_pending: bool = False  # a CRM change Outlook has not been told yet
    transaction: str | None = None  # the transactionId of the create that made it
    recorded: bool = True  # the CRM knows its Outlook copy (False: a create's answer was lost)


@dataclass
class Mailbox:
    account: Account
    change_keys: dict[str, str] = field(default_factory=dict)  # graph id -> its change key
    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    transactions: dict[str, str] = field(default_factory=dict)  # transactionId -> graph id

    def settled(self) -> bool:
        return not self.changed and not self.removed


class CalendarSyncMachine(RuleBasedStateMachine):
    """Subclassed by `machine_for` with a gateway factory, a contact seeder and CRM actions."""

    make_gateway: Callable[[], CrmGateway]
    seed_partner: SeedPartner
    crm: CrmActions

    def __init__(self) -> None:
        super().__init__()
        self.gateway = type(self).make_gateway()
        self.customer = f"ann.{unique('c')}@customer.example"
        self.ann = self.seed_partner(self.gateway, "Ann", self.customer)
        self.boxes = [Mailbox(self.gateway.upsert_account(spec())) for _ in range(2)]
        self.meetings: list[Meeting] = []
        self.serial = itertools.count(1)
        self.cursors = itertools.count(1)

    # --- helpers ------------------------------------------------------------------------------

    def _touch(self, meeting: Meeting) -> None:
        """Outlook changed every copy: new change keys, each in its mailbox's delta."""
        meeting.change += 1
        for index, graph_id in meeting.copies.items():
            box = self.boxes[index]
            box.change_keys[graph_id] = f"ck-{graph_id}-{meeting.change}"
            box.changed.add(graph_id)

    def _quiet(self, meeting: Meeting) -> bool:
        """In Outlook, bound in the CRM, nothing pending on either side."""
        return (
            bool(meeting.copies)
            and not meeting.crm_pending
            and not any(
                graph_id in self.boxes[i].changed or graph_id in self.boxes[i].removed
                for i, graph_id in meeting.copies.items()
            )
        )

    def _pick(self, data: st.DataObject, wanted: Callable[[Meeting], bool]) -> Meeting | None:
        found = [m for m in self.meetings if wanted(m)]
        return data.draw(st.sampled_from(found)) if found else None

    def _crm_id(self, meeting: Meeting) -> int:
        graph_id = meeting.copies[0]
        return self.gateway.event_bindings(self.boxes[0].account.id, [graph_id])[
            graph_id
        ].crm_event_id

    def _outlook_event(self, index: int, graph_id: str) -> CalendarEvent:
        meeting = next(m for m in self.meetings if m.copies.get(index) == graph_id)
        box = self.boxes[index]
        attendees = [Attendee(self.customer, "Ann", "required", ResponseStatus.NONE)]
        if 1 in meeting.copies:
            attendees.append(
                Attendee(self.boxes[1].account.address, "", "required", ResponseStatus.NONE)
            )
        return CalendarEvent(
            graph_id=graph_id,
            ical_uid=meeting.uid,
            event_type=EventType.SINGLE,
            subject=meeting.subject,
            start=meeting.start,
            end=meeting.start + timedelta(hours=1),
            time_zone="UTC",
            organizer=EmailAddress(self.boxes[0].account.address, "Organizer"),
            attendees=tuple(attendees),
            change_key=box.change_keys[graph_id],
            transaction_id=meeting.transaction,
        )

    # --- Outlook ------------------------------------------------------------------------------

    @rule(invite=st.booleans())
    def outlook_create(self, invite: bool) -> None:
        n = next(self.serial)
        meeting = Meeting(f"Outlook meeting {n}", START + timedelta(hours=n), uid=unique("uid"))
        for index in (0, 1) if invite else (0,):
            meeting.copies[index] = unique("AAMkEv")
        self.meetings.append(meeting)
        self._touch(meeting)

    @staticmethod
    def _editable_in_outlook(meeting: Meeting) -> bool:
        """In Outlook, no CRM change pending, and known to the CRM: a create Outlook took
        whose answer the CRM never recorded is left alone until the CRM has it (were it
        deleted meanwhile, the CRM's meeting would rightly be created again)."""
        return bool(meeting.copies) and not meeting.crm_pending and meeting.recorded

    @rule(data=st.data())
    def outlook_rename(self, data: st.DataObject) -> None:
        meeting = self._pick(data, self._editable_in_outlook)
        if meeting is not None:
            meeting.subject = f"{meeting.subject} (renamed in Outlook {next(self.serial)})"
            self._touch(meeting)

    @rule(data=st.data())
    def outlook_delete(self, data: st.DataObject) -> None:
        meeting = self._pick(data, self._editable_in_outlook)
        if meeting is not None:
            self._remove_from_outlook(meeting)

    def _remove_from_outlook(self, meeting: Meeting) -> None:
        for index, graph_id in meeting.copies.items():
            box = self.boxes[index]
            box.changed.discard(graph_id)
            box.removed.add(graph_id)
            box.change_keys.pop(graph_id, None)
        self.meetings.remove(meeting)

    # --- the CRM ------------------------------------------------------------------------------

    @rule()
    def crm_create(self) -> None:
        n = next(self.serial)
        meeting = Meeting(f"CRM meeting {n}", START + timedelta(hours=n), crm_pending=True)
        item = CalendarEvent(
            graph_id="",
            ical_uid=None,
            event_type=EventType.SINGLE,
            subject=meeting.subject,
            start=meeting.start,
            end=meeting.start + timedelta(hours=1),
            time_zone="UTC",
        )
        meeting.crm_id = self.crm.create(self.gateway, self.boxes[0].account, item, [self.ann.id])
        self.meetings.append(meeting)

    @rule(data=st.data())
    def crm_rename(self, data: st.DataObject) -> None:
        meeting = self._pick(data, self._quiet)
        if meeting is not None:
            meeting.subject = f"{meeting.subject} (renamed in the CRM {next(self.serial)})"
            self.crm.rename(self.gateway, self._crm_id(meeting), meeting.subject)
            meeting.crm_pending = True

    @rule(data=st.data())
    def crm_delete(self, data: st.DataObject) -> None:
        meeting = self._pick(data, self._quiet)
        if meeting is not None:
            self.crm.delete(self.gateway, self._crm_id(meeting))
            meeting.crm_pending = True
            meeting.subject = ""  # gone once pushed

    # --- the sync -----------------------------------------------------------------------------

    def _planned_page(self, index: int) -> EventPageWrite:
        box = self.boxes[index]
        events = [self._outlook_event(index, g) for g in sorted(box.changed)]
        bindings = self.gateway.event_bindings(box.account.id, [e.graph_id for e in events])
        unbound = [e for e in events if e.graph_id not in bindings]
        candidates = self.gateway.meeting_candidates(
            box.account.id,
            [e.ical_uid for e in unbound if e.ical_uid],
            [],
            [n for e in unbound if (n := crm_event_of(e.transaction_id)) is not None],
        )
        addresses = event_addresses(events)
        lookups = PartnerLookups(
            dict(self.gateway.find_partners_by_emails(addresses)),
            self.gateway.find_companies_by_domains(page_domains(addresses, POLICY)),
        )
        plan = plan_inbound(
            events,
            bindings,
            lookups,
            POLICY,
            owner=box.account.address.lower(),
            candidates=candidates,
        )
        # A conflict here is an invited mailbox whose binding is behind a CRM change the
        # organizer's mailbox pushed: Outlook's copy already carries that change.
        return EventPageWrite(
            account_id=box.account.id,
            calendar_id=CALENDAR,
            upserts=plan.upserts,
            removed_ids=sorted(box.removed),
            cursor=Cursor(f"https://graph.example/delta?{next(self.cursors)}", CursorKind.DELTA),
            skipped=dict(plan.skipped),
        )

    @rule(
        index=st.integers(0, 1),
        outcome=st.sampled_from(
            [
                "stored",
                "crash before storing",
                "stored, then replayed",
                "crash after Outlook took a create",
            ]
        ),
    )
    def cycle(self, index: int, outcome: str) -> None:
        """One calendar cycle of a mailbox: pull its delta, then push the CRM's changes."""
        box = self.boxes[index]
        page = self._planned_page(index)
        if outcome == "crash before storing":
            return  # nothing stored, the cursor stays: the same delta comes again
        self.gateway.store_event_page(page)
        if outcome == "stored, then replayed":
            # The cursor was not confirmed: the same delta again, planned on fresh state.
            result = self.gateway.store_event_page(self._planned_page(index))
            assert (result.created, result.linked, result.updated) == (0, 0, 0)
        pulled = {stored.event.graph_id for stored in page.upserts} | set(box.changed)
        for meeting in self.meetings:
            if meeting.copies.get(index) in pulled:
                meeting.recorded = True  # the pull bound it (by its transactionId)
        box.changed.clear()
        box.removed.clear()
        self._push(index, crash_after_create=outcome == "crash after Outlook took a create")

    def _push(self, index: int, *, crash_after_create: bool) -> None:
        box = self.boxes[index]
        account = box.account
        changes = self.gateway.event_changes_to_push(account.id)
        for action in plan_outbound(changes, now=START, account_address=account.address):
            change = action.change
            graph_id = change.event.graph_id
            if isinstance(action, PushCreate):
                meeting = next(m for m in self.meetings if m.crm_id == change.crm_event_id)
                graph_id = box.transactions.setdefault(action.transaction_id, unique("AAMkEv"))
                if meeting.uid is None:
                    meeting.uid = unique("uid")
                    meeting.recorded = not crash_after_create
                    meeting.transaction = action.transaction_id
                    meeting.copies[index] = graph_id
                    meeting.crm_pending = False
                    self._touch(meeting)
                if crash_after_create:
                    # Outlook has it, the CRM was not told: the next pull brings it (its
                    # transactionId names the CRM event), a retry finds it.
                    return
                self.gateway.mark_event_pushed(
                    account.id,
                    change.crm_event_id,
                    graph_id=graph_id,
                    change_key=box.change_keys[graph_id],
                    version=change.version,
                    ical_uid=meeting.uid,
                )
            elif isinstance(action, PushUpdate):
                meeting = next(m for m in self.meetings if m.copies.get(index) == graph_id)
                meeting.subject = change.event.subject or ""
                meeting.crm_pending = False
                self._touch(meeting)
                self.gateway.mark_event_pushed(
                    account.id,
                    change.crm_event_id,
                    graph_id=graph_id,
                    change_key=box.change_keys[graph_id],
                    version=change.version,
                )
            elif isinstance(action, PushDelete):
                meeting = next(m for m in self.meetings if m.copies.get(index) == graph_id)
                self._remove_from_outlook(meeting)
                self.gateway.mark_event_pushed(
                    account.id,
                    change.crm_event_id,
                    graph_id=graph_id,
                    change_key=None,
                    version=change.version,
                )
            else:
                assert isinstance(action, ForgetDeleted | PushResponse)
                assert isinstance(action, ForgetDeleted), action  # nobody answers here
                self.gateway.mark_event_pushed(
                    account.id,
                    change.crm_event_id,
                    graph_id=graph_id,
                    change_key=change.event.change_key,
                    version=change.version,
                )

    # --- what must hold -----------------------------------------------------------------------

    def _settled(self) -> bool:
        return all(box.settled() for box in self.boxes) and not any(
            m.crm_pending for m in self.meetings
        )

    @precondition(lambda self: self._settled())
    @invariant()
    def both_sides_agree(self) -> None:
        crm_of: dict[str, int] = {}
        for index, box in enumerate(self.boxes):
            mine = {m.copies[index]: m for m in self.meetings if index in m.copies}
            bindings = self.gateway.event_bindings(box.account.id, list(mine))
            assert set(bindings) == set(mine)  # every copy bound, none forgotten
            for graph_id, binding in bindings.items():
                uid = mine[graph_id].uid or ""
                # The copies of one meeting are one CRM event.
                assert crm_of.setdefault(uid, binding.crm_event_id) == binding.crm_event_id
        held = self.gateway.upcoming_events_for_partner(
            self.ann.id, since=START - timedelta(days=1), limit=1000
        )
        assert sorted(s.subject for s in held) == sorted(m.subject for m in self.meetings)
        for box in self.boxes:  # nothing waits to be pushed: our writes never echoed
            assert self.gateway.event_changes_to_push(box.account.id) == []

    def teardown(self) -> None:
        closer = getattr(type(self), "close_gateway", None)
        if closer is not None:
            closer(self.gateway)


def machine_for(
    make_gateway: Callable[[], CrmGateway],
    seed_partner: SeedPartner,
    crm: CrmActions,
    *,
    close_gateway: Callable[[CrmGateway], None] | None = None,
    max_examples: int = 100,
    steps: int = 30,
) -> type:
    """A unittest TestCase running the machine against the gateways ``make_gateway`` makes."""
    machine = type(
        "BoundCalendarSyncMachine",
        (CalendarSyncMachine,),
        {
            "make_gateway": staticmethod(make_gateway),
            "seed_partner": staticmethod(seed_partner),
            "crm": crm,
            "close_gateway": staticmethod(close_gateway) if close_gateway else None,
        },
    )
    machine.TestCase.settings = settings(
        max_examples=max_examples, stateful_step_count=steps, deadline=None
    )
    return machine.TestCase
