"""Calendar decisions, without I/O: what to store from Outlook, what to push to it.

Inbound (a calendarView delta page, with the CRM's bindings for its ids):

- an item carrying the change key we stored is our own write coming back (or a replay):
  skipped, never stored twice and never pushed back (no echo);
- an item whose CRM event was also edited since the last exchange is a **conflict**: the last
  writer wins (Outlook's ``lastModifiedDateTime`` against the CRM's modification time), and the
  losing version is returned with the plan so the service logs both;
- private and confidential events not yet in the CRM are kept as busy time only: no subject,
  body, location or attendees reach the CRM (the user's personal appointments stay out of the
  shared CRM); one already bound to a CRM event (pushed from the CRM, or come earlier) also
  comes as busy time, flagged ``keep_details``: the stores update its times, show-as,
  sensitivity and recurrence and keep the CRM's subject, body, location and attendees;
- attendees and the organizer are linked to contacts and companies by the mail rules.

Outbound (the CRM's pending changes): a private CRM event goes to Outlook whole (details and
attendees, so the invitations go out), marked private: Outlook's own privacy. Creates carry a
``transactionId`` derived from the CRM event, so a retried create never makes a second Outlook
event; events that ended before now are never created in Outlook (connecting must not spam
attendees with the past). A change of a whole series is a change of its master: a PATCH of
the master (without its pattern and times when only its details changed, so Outlook keeps the
exceptions), a DELETE of the master for the whole series; a series split in the CRM ("this and
following") is the old master's range ending (a PATCH) and a new series (a create).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from m365sync.domain import (
    CalendarEvent,
    CrmEventChange,
    EventBinding,
    EventLink,
    EventType,
    ResponseStatus,
    Sensitivity,
    StoredEvent,
)
from m365sync.sync.addresses import domain_of, is_work_domain, normalise_address
from m365sync.sync.mail import MailPolicy, PartnerLookups

SKIP_ECHO = "unchanged (our own change)"
SKIP_CRM_NEWER = "conflict: the CRM's newer change wins"

PRIVATE = frozenset({Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL})


@dataclass(frozen=True, slots=True)
class Conflict:
    """Both sides changed one event; ``winner`` is "outlook" or "crm". Logged with both."""

    crm_event_id: int
    graph_id: str
    winner: str
    outlook_modified: datetime | None
    crm_modified: datetime | None
    outlook_subject: str | None


@dataclass(slots=True)
class InboundPlan:
    upserts: list[StoredEvent]
    skipped: Counter[str] = field(default_factory=Counter)
    conflicts: list[Conflict] = field(default_factory=list)


def event_addresses(events: Iterable[CalendarEvent]) -> set[str]:
    """Every normalised organizer and attendee address: one CRM lookup per page."""
    found: set[str] = set()
    for item in events:
        people = [a.address for a in item.attendees]
        if item.organizer is not None:
            people.append(item.organizer.address)
        found.update(a for a in map(normalise_address, people) if a)
    return found


def busy_only(item: CalendarEvent) -> CalendarEvent:
    """A private event as the CRM may keep it: when, and nothing about what or with whom."""
    return replace(
        item,
        subject=None,
        body_html=None,
        location=None,
        online_meeting_url=None,
        attendees=(),
    )


def attendee_links(
    item: CalendarEvent, lookups: PartnerLookups, policy: MailPolicy
) -> list[EventLink]:
    """The organizer and attendees, each with the contact and company it matched."""
    people: list[tuple[str, str, str, ResponseStatus]] = []
    if item.organizer is not None:
        people.append(
            ("organizer", item.organizer.address, item.organizer.name, ResponseStatus.ORGANIZER)
        )
    people.extend((a.kind, a.address, a.name, a.response) for a in item.attendees)
    links: list[EventLink] = []
    seen: set[str] = set()
    for role, raw, name, response in people:
        address = normalise_address(raw)
        if address is None or address in seen:
            continue
        seen.add(address)
        partner = lookups.by_email.get(address)
        company = None
        if partner is not None and partner.is_company:
            company = partner.id
        elif partner is not None and partner.parent_id is not None:
            company = partner.parent_id
        elif is_work_domain(domain_of(address), policy.own_domains):
            match = lookups.companies_by_domain.get(domain_of(address))
            company = match.id if match else None
        links.append(
            EventLink(
                role=role,
                address=address,
                name=(name or "").strip(),
                response=response,
                partner_id=partner.id if partner is not None and not partner.is_company else None,
                company_id=company,
            )
        )
    return links


def _conflict(item: CalendarEvent, binding: EventBinding) -> Conflict:
    outlook, crm = item.last_modified, binding.crm_modified_at
    winner = "outlook" if outlook is None or crm is None or outlook >= crm else "crm"
    return Conflict(binding.crm_event_id, item.graph_id, winner, outlook, crm, item.subject)


def with_my_response(
    links: list[EventLink], item: CalendarEvent, owner: str | None
) -> list[EventLink]:
    """The mailbox owner's own answer (Graph's ``responseStatus``) on the owner's line: the
    attendee list of an invitation often still says "none" for the invitee."""
    answer = item.my_response
    if not owner or answer in (ResponseStatus.NONE, ResponseStatus.ORGANIZER):
        return links
    mine = [link for link in links if link.address == owner]
    if mine:
        return [replace(link, response=answer) if link.address == owner else link for link in links]
    return [*links, EventLink("required", owner, "", answer, None, None)]


def plan_inbound(
    events: Iterable[CalendarEvent],
    bindings: Mapping[str, EventBinding],
    lookups: PartnerLookups,
    policy: MailPolicy,
    *,
    owner: str | None = None,
) -> InboundPlan:
    """Decide, for each Outlook event of a page, whether and what the CRM stores.

    ``owner`` is the mailbox's own (normalised) address, whose answer to each invitation is
    kept on its attendee line."""
    plan = InboundPlan(upserts=[])
    for item in events:
        binding = bindings.get(item.graph_id)
        if binding is not None and item.change_key and binding.change_key == item.change_key:
            plan.skipped[SKIP_ECHO] += 1
            continue
        if binding is not None and binding.version > binding.pushed_version:
            conflict = _conflict(item, binding)
            plan.conflicts.append(conflict)
            if conflict.winner == "crm":
                plan.skipped[SKIP_CRM_NEWER] += 1
                continue
        keep_details = False
        if item.sensitivity in PRIVATE:
            # Never more than busy time from a private event; a bound one keeps what the CRM
            # has (it may have pushed it whole) and takes only its times and state.
            item = busy_only(item)
            keep_details = binding is not None
        links = with_my_response(attendee_links(item, lookups, policy), item, owner)
        plan.upserts.append(StoredEvent(item, links, keep_details=keep_details))
    return plan


# --- outbound ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushCreate:
    change: CrmEventChange
    transaction_id: str


@dataclass(frozen=True, slots=True)
class PushUpdate:
    """PATCH the event with the whole of it; ``details_only`` for a series master whose
    pattern, start and end did not change: they are left out of the PATCH, as Outlook rebuilds
    a series' occurrences (and drops its exceptions) when they are set."""

    change: CrmEventChange
    details_only: bool = False


@dataclass(frozen=True, slots=True)
class PushDelete:
    change: CrmEventChange


@dataclass(frozen=True, slots=True)
class PushResponse:
    """A meeting someone else organizes: the account can only answer it."""

    change: CrmEventChange
    response: ResponseStatus


@dataclass(frozen=True, slots=True)
class ForgetDeleted:
    """Nothing to tell Outlook (deleted in the CRM before it reached Outlook, or a local edit
    of someone else's meeting): only the CRM's pending state is cleared."""

    change: CrmEventChange


ANSWERS = frozenset({ResponseStatus.ACCEPTED, ResponseStatus.DECLINED, ResponseStatus.TENTATIVE})

PushAction = PushCreate | PushUpdate | PushDelete | PushResponse | ForgetDeleted


def transaction_id(change: CrmEventChange) -> str:
    """Graph's idempotency key for creating this CRM event: stable across retries and
    restarts, so a create whose answer was lost cannot make a second Outlook event."""
    return f"m365sync-crm-event-{change.crm_event_id}"


def _ended(item: CalendarEvent, now: datetime) -> bool:
    if item.recurrence is not None:
        return False  # a series is judged by its range, not its first occurrence
    if item.is_all_day:
        return item.end_date is not None and item.end_date <= now.date()
    return item.end is not None and item.end <= now


def plan_outbound(changes: Iterable[CrmEventChange], *, now: datetime) -> list[PushAction]:
    """What to do in Outlook for each pending CRM change.

    A CRM event marked private goes to Outlook whole (subject, body, location, attendees: the
    invitations go out) with its sensitivity, ``private``: Outlook's own privacy. The owner and
    the attendees see the meeting; those the owner shares the calendar with or delegates it to
    see only that the time is taken, unless the owner lets a delegate view private events
    (https://learn.microsoft.com/en-us/graph/outlook-share-or-delegate-calendar: the owner
    chooses what share recipients see "in non-private events"; delegates see "non-private
    events", and "the owner can give explicit permissions to delegates to view the owner's
    private events"; `graph.calendar.event_body`). Its later Outlook-side changes come back
    as busy time with ``keep_details`` (see `plan_inbound`), so they never wipe these details.
    """
    actions: list[PushAction] = []
    for change in changes:
        in_outlook = bool(change.event.graph_id)
        if not change.organized_by_account:
            # An invitation: its details belong to its organizer; our user may only answer.
            if in_outlook and not change.deleted and change.my_response in ANSWERS:
                actions.append(PushResponse(change, change.my_response))
            else:
                actions.append(ForgetDeleted(change))
            continue
        if change.deleted:
            actions.append(PushDelete(change) if in_outlook else ForgetDeleted(change))
        elif in_outlook:
            master = change.event.event_type is EventType.SERIES_MASTER
            actions.append(PushUpdate(change, details_only=master and not change.reshapes_series))
        elif not _ended(change.event, now):
            actions.append(PushCreate(change, transaction_id(change)))
    return actions
