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
- attendees and the organizer are linked to contacts and companies by the mail rules;
- where each item goes (`place`): the CRM event bound to it, else the same meeting another
  mailbox (or the CRM) already holds (`same_meeting`), else a new CRM event; with the version
  the plan saw, so a store whose state moved on refuses the plan (`StalePlan`) instead of
  writing over an edit it did not see; a removed id whose CRM event a new item of the same
  page takes (Outlook rebuilt a series) keeps its event: its binding moves (`removals`).
  These are the only copies of the echo and same-meeting rules: the stores keep no check of
  their own.

How an Odoo event's fields map to an Outlook event's (privacy, show-as, all-day days, zones,
which Odoo events are pushed) is `sync.event_mapping`; this module plans over the mapped events.

Cancelled occurrences (`cancelled_occurrences`): a CRM occurrence of a series Outlook holds that
no mailbox has bound (Odoo expands a series into events of its own) and that none of the
series' instances fills is an occurrence Outlook cancelled before the pull listed it: it is
removed from the CRM, under the state the decision saw.

Outbound (the CRM's pending changes): a private CRM event goes to Outlook whole (details and
attendees, so the invitations go out), marked private: Outlook's own privacy. Creates carry a
``transactionId`` derived from the CRM event, so a retried create never makes a second Outlook
event; events that ended before now are never created in Outlook (connecting must not spam
attendees with the past). A change of a whole series is a change of its master: a PATCH of
the master (without its pattern and times when only its details changed, so Outlook keeps the
exceptions), a DELETE of the master for the whole series; a series split in the CRM ("this and
following") is the old master's range ending (a PATCH) and a new series (a create)
(`sync.event_mapping.series_operation`). Every verb carries the CRM version it expects
(``expected_version``): recording a push whose event was edited meanwhile keeps the newer
edit pending instead of writing over it. Every verb also says whether it carried the event's
shape (``carries_shape``: a create, or a PATCH with pattern and times): only such a push may
clear the store's pending "series reshaped" mark, never another mailbox's answer or forget.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from m365sync.domain import (
    CalendarEvent,
    CrmEventChange,
    EventBinding,
    EventLink,
    EventType,
    MeetingCandidate,
    OccurrenceRemoval,
    ResponseStatus,
    Sensitivity,
    StoredEvent,
    UnconfirmedOccurrences,
)
from m365sync.sync.addresses import domain_of, is_work_domain, normalise_address
from m365sync.sync.attendees import with_my_response
from m365sync.sync.event_mapping import SeriesOperation, series_operation
from m365sync.sync.mail import MailPolicy, PartnerLookups

SKIP_ECHO = "unchanged (our own change)"
SKIP_CRM_NEWER = "conflict: the CRM's newer change wins"
SKIP_REPEATED = "repeated in the page (its last state kept)"
SKIP_DELETED_IN_CRM = "our create of a meeting the CRM deleted (deleted in Outlook)"

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


@dataclass(frozen=True, slots=True)
class DeleteInOutlook:
    """An Outlook item the plan deletes from Outlook instead of storing it (`deleted_in_crm`):
    the organizer's copy of our own create of a CRM event the CRM no longer holds."""

    graph_id: str
    crm_event_id: int
    is_series_master: bool
    subject: str | None


@dataclass(slots=True)
class InboundPlan:
    upserts: list[StoredEvent]
    skipped: Counter[str] = field(default_factory=Counter)
    conflicts: list[Conflict] = field(default_factory=list)
    # Carried out before the page is stored (its cursor moves only once they are done).
    outlook_deletes: list[DeleteInOutlook] = field(default_factory=list)


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


def is_echo(item: CalendarEvent, binding: EventBinding | None) -> bool:
    """Our own write coming back (or a replay): the item carries the change key the CRM
    recorded for it. The one echo rule; no store checks it again."""
    return binding is not None and bool(item.change_key) and binding.change_key == item.change_key


def _slot_matches(item: CalendarEvent, candidate: MeetingCandidate) -> bool:
    if item.is_all_day:
        return item.start_date is not None and (
            candidate.is_all_day and candidate.start_date == item.start_date
        )
    slot = item.original_start or item.start
    return slot is not None and candidate.start == slot


def same_meeting(
    item: CalendarEvent,
    candidates: Iterable[MeetingCandidate],
    *,
    series_master: int | None = None,
    crm_tag: str = "",
) -> MeetingCandidate | None:
    """The CRM event an Outlook item not yet bound to this account is the same meeting as.

    First the CRM event whose create made it (its ``transactionId``, `transaction_id`): a
    create Outlook took whose answer the CRM never recorded (the daemon stopped, the answer
    was lost) comes back as this item, and must not become a second CRM event. Then by
    iCalUId (Graph gives each occurrence its own): another mailbox brought the
    meeting, or the CRM pushed it; a series master only matches a master, an occurrence only
    a non-master (``crm_tag``: this CRM's, see `our_create`; another CRM's create is not
    ours, a legacy untagged one may be). Else, for an occurrence or exception of a series the
    CRM holds (``series_master``: the CRM event of its master), the CRM occurrence of that
    series in the same slot not yet bound to this account: a series made in the CRM (Odoo
    expands its own occurrences) coming back from Outlook. Never a deleted event; the oldest
    one wins."""
    alive = sorted((c for c in candidates if not c.deleted), key=lambda c: c.crm_event_id)
    master = item.event_type is EventType.SERIES_MASTER
    ours = crm_event_of(item.transaction_id, crm_tag)
    for candidate in alive:
        if candidate.crm_event_id == ours and candidate.is_series_master == master:
            return candidate
    if item.ical_uid:
        for candidate in alive:
            if candidate.ical_uid == item.ical_uid and candidate.is_series_master == master:
                return candidate
    if series_master is None or master:
        return None
    for candidate in alive:
        if (
            candidate.series_master_id == series_master
            and not candidate.is_series_master
            and candidate.bound_graph_id is None
            and _slot_matches(item, candidate)
        ):
            return candidate
    return None


def place(
    upserts: Iterable[StoredEvent],
    bindings: Mapping[str, EventBinding],
    candidates: Iterable[MeetingCandidate],
    *,
    crm_tag: str = "",
) -> list[StoredEvent]:
    """Where each item of a page goes: its bound CRM event, else the same meeting
    (`same_meeting`), else a new event; with the version the plan saw (the store's
    precondition). A private item landing on an existing event keeps that event's details
    (``keep_details``): it is busy time, and must not wipe what the CRM holds.

    ``bindings`` cover the page's series masters too (the cycle fetches each occurrence's
    master and puts it first in the page), so an occurrence finds the CRM event its master
    is bound to, or was placed on in this very page."""
    pool = list(candidates)
    items = list(upserts)
    masters: dict[str, int] = {
        graph_id: binding.crm_event_id for graph_id, binding in bindings.items()
    }
    # One Outlook item per CRM event and account: an event bound to an item of this page is
    # not the same meeting as another of its items.
    taken = {bindings[s.event.graph_id].crm_event_id for s in items if s.event.graph_id in bindings}
    placed: list[StoredEvent] = []
    for stored in items:
        item = stored.event
        binding = bindings.get(item.graph_id)
        target: int | None = None
        version: int | None = None
        if binding is not None:
            target, version = binding.crm_event_id, binding.version
        else:
            master = masters.get(item.series_master_id or "")
            free = [c for c in pool if c.crm_event_id not in taken]
            found = same_meeting(item, free, series_master=master, crm_tag=crm_tag)
            if found is not None:
                target, version = found.crm_event_id, found.version
                taken.add(found.crm_event_id)
        if target is not None:
            masters.setdefault(item.graph_id, target)
        keep = item.sensitivity in PRIVATE and target is not None
        placed.append(
            replace(stored, keep_details=keep, crm_event_id=target, expected_version=version)
        )
    return placed


def removals(
    removed_ids: Iterable[str],
    removed_bindings: Mapping[str, EventBinding],
    placed: Iterable[StoredEvent],
    bindings: Mapping[str, EventBinding],
) -> list[str]:
    """The page's removed ids whose bindings the store drops (and with the last one, their
    CRM event): all but those whose CRM event an unbound item of the same page was placed on.

    Outlook may make an item anew under a new id with the iCalUId of one it removes: a
    series whose pattern or times changed is rebuilt, and the occurrence on the same day
    keeps its iCalUId. `same_meeting` places the new item on the old one's CRM event, and the
    store moves the binding to it; dropping the old binding first would delete the very
    event the plan placed the new item on, and every plan of that page would be refused
    (`StalePlan`: the account's calendar stuck for good). The old id's binding is moved, not
    dropped: nothing is lost, the CRM event (and what the CRM links to it) lives on."""
    taken = {
        stored.crm_event_id
        for stored in placed
        if stored.crm_event_id is not None and stored.event.graph_id not in bindings
    }
    return [
        graph_id
        for graph_id in removed_ids
        if graph_id not in removed_bindings or removed_bindings[graph_id].crm_event_id not in taken
    ]


def last_of_each(events: Iterable[CalendarEvent]) -> tuple[list[CalendarEvent], int]:
    """A page's items with each graph id once (its last state, where it first came), and how
    many repeats were dropped: a plan places each Outlook item once."""
    latest: dict[str, CalendarEvent] = {}
    count = 0
    for item in events:
        count += item.graph_id in latest
        latest[item.graph_id] = item
    return list(latest.values()), count


def plan_inbound(
    events: Iterable[CalendarEvent],
    bindings: Mapping[str, EventBinding],
    lookups: PartnerLookups,
    policy: MailPolicy,
    *,
    owner: str | None = None,
    candidates: Iterable[MeetingCandidate] = (),
    crm_tag: str = "",
    last_event_id: int = 0,
) -> InboundPlan:
    """Decide, for each Outlook event of a page, whether and what the CRM stores, and where.

    ``owner`` is the mailbox's own (normalised) address, whose answer to each invitation is
    kept on its attendee line; ``candidates`` the CRM events the page's unbound items may be
    the same meeting as (`CrmGateway.meeting_candidates`); ``crm_tag`` and ``last_event_id``
    this CRM's tag and the highest event id it has given (`deleted_in_crm`). Each item's
    people are linked to contacts and companies by the mail rules (`attendee_links`); the
    rest is `plan_items`."""

    def people(item: CalendarEvent) -> list[EventLink]:
        return with_my_response(attendee_links(item, lookups, policy), item, owner)

    return plan_items(
        events,
        bindings,
        people,
        candidates=candidates,
        crm_tag=crm_tag,
        last_event_id=last_event_id,
    )


def deleted_in_crm(
    events: Iterable[CalendarEvent],
    bindings: Mapping[str, EventBinding],
    candidates: Iterable[MeetingCandidate],
    *,
    crm_tag: str,
    last_event_id: int,
) -> list[DeleteInOutlook]:
    """The unbound Outlook items that are our own create of a CRM event the CRM deleted
    before the create was recorded: they are deleted from Outlook, never stored.

    The daemon killed after Graph took a create and before `CrmGateway.mark_event_pushed`
    stored its binding, then a CRM user deleting the meeting (Odoo removes an event Outlook
    holds no copy of outright; the embedded store keeps an unbound tombstone, which `same_meeting`
    never takes): nothing remembers the create, and the pull would bring the deleted meeting
    back as a new one on both sides. Such an item is the mailbox's own copy (Graph's
    ``isOrganizer``; an invitee's copy never carries our ``transactionId``, which Graph returns
    "only if an app has set it", and is never deleted here), carries this CRM's tag (a legacy
    untagged create may be another CRM's; another CRM's tag is not ours), and names an event
    no live candidate holds although this store gave that id (``last_event_id``: ids are never
    given twice, so a higher id is one an older copy of the database never knew: its
    meeting is imported, not deleted). A series master created so goes with its series."""
    held = {c.crm_event_id for c in candidates if not c.deleted}
    found: list[DeleteInOutlook] = []
    for item in events:
        if item.graph_id in bindings or item.is_organizer is not True:
            continue
        ours = our_create(item.transaction_id, crm_tag)
        if ours is None or not ours.tagged:
            continue
        if ours.crm_event_id in held or ours.crm_event_id > last_event_id:
            continue
        master = item.event_type is EventType.SERIES_MASTER
        found.append(DeleteInOutlook(item.graph_id, ours.crm_event_id, master, item.subject))
    return found


def plan_items(
    events: Iterable[CalendarEvent],
    bindings: Mapping[str, EventBinding],
    people: Callable[[CalendarEvent], list[EventLink]],
    *,
    candidates: Iterable[MeetingCandidate] = (),
    crm_tag: str = "",
    last_event_id: int = 0,
) -> InboundPlan:
    """`plan_inbound` with the linking of each item's people (``people``, called on the item
    as the CRM may keep it) given: each id once, our creates of meetings the CRM deleted
    deleted from Outlook (`deleted_in_crm`; their series' occurrences with them), echoes
    skipped, conflicts decided, private items as busy time, and each item placed (`place`).
    The gateway contract plans its pages here with the links it seeds, so the stores are
    tested on the plans the product makes."""
    plan = InboundPlan(upserts=[])
    unique_events, repeats = last_of_each(events)
    if repeats:
        plan.skipped[SKIP_REPEATED] += repeats
    pool = list(candidates)
    plan.outlook_deletes = deleted_in_crm(
        unique_events, bindings, pool, crm_tag=crm_tag, last_event_id=last_event_id
    )
    gone = {d.graph_id for d in plan.outlook_deletes}
    upserts: list[StoredEvent] = []
    for item in unique_events:
        if item.graph_id in gone or (item.series_master_id or "") in gone:
            plan.skipped[SKIP_DELETED_IN_CRM] += 1
            continue
        binding = bindings.get(item.graph_id)
        if is_echo(item, binding):
            plan.skipped[SKIP_ECHO] += 1
            continue
        if binding is not None and binding.version > binding.pushed_version:
            conflict = _conflict(item, binding)
            plan.conflicts.append(conflict)
            if conflict.winner == "crm":
                plan.skipped[SKIP_CRM_NEWER] += 1
                continue
        if item.sensitivity in PRIVATE:
            # Never more than busy time from a private event; one landing on a CRM event
            # keeps what the CRM has (it may have pushed it whole): see `place`.
            item = busy_only(item)
        upserts.append(StoredEvent(item, people(item)))
    plan.upserts = place(upserts, bindings, pool, crm_tag=crm_tag)
    return plan


# --- outbound ---------------------------------------------------------------------------------


class _PushVerb:
    """What every push verb carries: the change, and the CRM version it expects to find when
    its outcome is recorded (`CrmGateway.mark_event_pushed` answers whether it still did: a
    CRM edit made meanwhile stays pending, never overwritten), whether it removes Outlook's
    copy (``unbinds``), and whether it carried the event's shape (``carries_shape``)."""

    __slots__ = ()
    change: CrmEventChange

    @property
    def expected_version(self) -> int:
        return self.change.version

    @property
    def unbinds(self) -> bool:
        return False

    @property
    def carries_shape(self) -> bool:
        """Whether Outlook got the event's pattern and times from this push, so a pending
        reshape of the series is done (`CrmGateway.mark_event_pushed`'s ``shape_pushed``).
        Only the organizer's create or whole PATCH does: an invitee's answer or forget, a
        details-only PATCH and a delete leave a pending reshape pending."""
        return False


@dataclass(frozen=True, slots=True)
class PushCreate(_PushVerb):
    change: CrmEventChange
    transaction_id: str

    @property
    def carries_shape(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class PushUpdate(_PushVerb):
    """PATCH the event with the whole of it; ``details_only`` for a series master whose
    pattern, start and end did not change: they are left out of the PATCH, as Outlook rebuilds
    a series' occurrences (and drops its exceptions) when they are set."""

    change: CrmEventChange
    details_only: bool = False

    @property
    def carries_shape(self) -> bool:
        return not self.details_only


@dataclass(frozen=True, slots=True)
class PushDelete(_PushVerb):
    change: CrmEventChange

    @property
    def unbinds(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class PushResponse(_PushVerb):
    """A meeting someone else organizes: the account can only answer it."""

    change: CrmEventChange
    response: ResponseStatus


@dataclass(frozen=True, slots=True)
class ForgetDeleted(_PushVerb):
    """Nothing to tell Outlook (deleted in the CRM before it reached Outlook, or a local edit
    of someone else's meeting): only the CRM's pending state is cleared."""

    change: CrmEventChange

    @property
    def unbinds(self) -> bool:
        return self.change.deleted  # a tombstone of someone else's meeting: the copy goes


ANSWERS = frozenset({ResponseStatus.ACCEPTED, ResponseStatus.DECLINED, ResponseStatus.TENTATIVE})

PushAction = PushCreate | PushUpdate | PushDelete | PushResponse | ForgetDeleted


# Our creates' ``transactionId``: "m365sync-<tag>-crm-event-<id>", the tag a short stable
# identity of the CRM's database (`CrmSettings.crm_tag`), so two CRMs connected to one mailbox
# never take each other's creates for their own. Creates made before the tag existed (or by a
# CRM that gives none: an older addon) carry "m365sync-crm-event-<id>". Graph documents no
# length or format limit (resources/event.md: "A custom identifier specified by a client app");
# its own example is a 36-character GUID, and ours stay about that long.
_OUR_TRANSACTION = re.compile(
    r"m365sync-(?:(?P<tag>[0-9a-z]{1,16})-)?crm-event-(?P<id>[0-9]{1,18})"
)
CRM_TAG = re.compile(r"[0-9a-z]{1,16}")


@dataclass(frozen=True, slots=True)
class OurCreate:
    """What a ``transactionId`` of ours says: the CRM event it created, and whether it carries
    this CRM's tag (``tagged``: made by this very CRM) or is of the legacy, untagged form
    (made by a CRM connected to the mailbox, maybe this one)."""

    crm_event_id: int
    tagged: bool


def transaction_id(change: CrmEventChange, crm_tag: str = "") -> str:
    """Graph's idempotency key for creating this CRM event: stable across retries and
    restarts, so a create whose answer was lost cannot make a second Outlook event; tagged
    with the CRM's ``crm_tag`` (the legacy form when the CRM gives none)."""
    if not crm_tag:
        return f"m365sync-crm-event-{change.crm_event_id}"
    if not CRM_TAG.fullmatch(crm_tag):
        raise ValueError(f"a CRM tag is 1-16 lowercase letters and digits, not {crm_tag!r}")
    return f"m365sync-{crm_tag}-crm-event-{change.crm_event_id}"


def our_create(transaction: str | None, crm_tag: str = "") -> OurCreate | None:
    """The CRM event a ``transactionId`` names if this CRM may have made it: our tag, or the
    legacy untagged form; None for anything else, another CRM's tag included (its creates
    are neither same-meeting candidates nor deleted here)."""
    found = _OUR_TRANSACTION.fullmatch(transaction or "")
    if found is None:
        return None
    tag = found["tag"]
    if tag is None:
        return OurCreate(int(found["id"]), tagged=False)
    if crm_tag and tag == crm_tag:
        return OurCreate(int(found["id"]), tagged=True)
    return None


def crm_event_of(transaction: str | None, crm_tag: str = "") -> int | None:
    """The CRM event a ``transactionId`` of ours names (`our_create`), else None."""
    ours = our_create(transaction, crm_tag)
    return ours.crm_event_id if ours is not None else None


def left_behind(action: PushAction, recorded: bool, held: Iterable[MeetingCandidate]) -> bool:
    """Whether the Outlook copy a create just made is left behind: its record found the event
    changed (``recorded`` False) and the CRM no longer holds it at all (``held``: what
    `CrmGateway.meeting_candidates` answers for its id). A CRM user deleted it while the
    create was in flight, and a store removes outright an event Outlook did not hold yet
    (Odoo does), so nothing recorded the copy: kept, it would come back from the next pull as
    a new meeting on both sides (reliability soak against Odoo, seed 904967430). A tombstone
    still held took the copy's binding, and its deletion goes with the next push."""
    if recorded or not isinstance(action, PushCreate):
        return False
    return all(c.crm_event_id != action.change.crm_event_id for c in held)


def recorded_change_key(action: PushAction, answer: CalendarEvent | None) -> str | None:
    """The change key a push records as the CRM's own write (`is_echo` drops a pulled item
    that carries it), or None when the answer is not what the push sent.

    A create retried with its ``transactionId`` (its first answer was lost, or its record
    failed: Odoo refused it on a serialization conflict) reaches the event made the first
    time, and Graph answers with that event as Outlook holds it now: edited there since, its
    change key is the Outlook edit's. Recorded as ours, the pull would take that edit for our
    echo and drop it, the CRM keeping its old version for good (reliability soak against Odoo,
    seed 609439822). Recording none lets the pull bring Outlook's version (an unchanged replay
    comes back once, the same meeting). Compared are what a person edits and Outlook answers
    as sent: subject, location and the times."""
    if answer is None:
        return None
    if isinstance(action, PushCreate) and not _as_sent(action.change.event, answer):
        return None
    return answer.change_key


def _as_sent(sent: CalendarEvent, answer: CalendarEvent) -> bool:
    if (sent.subject or "") != (answer.subject or "") or (sent.location or "") != (
        answer.location or ""
    ):
        return False
    if sent.is_all_day or answer.is_all_day:
        return (sent.is_all_day, sent.start_date, sent.end_date) == (
            answer.is_all_day,
            answer.start_date,
            answer.end_date,
        )
    return (sent.start, sent.end) == (answer.start, answer.end)


def _ended(item: CalendarEvent, now: datetime) -> bool:
    if item.recurrence is not None:
        return False  # a series is judged by its range, not its first occurrence
    if item.is_all_day:
        return item.end_date is not None and item.end_date <= now.date()
    return item.end is not None and item.end <= now


def organizes(change: CrmEventChange, account_address: str) -> bool:
    """Whether the account organizes the CRM's event (it may change and delete it in Outlook)
    or only attends it (it may only answer): an event made in the CRM for the account, one
    with no organizer, or one its mailbox's owner organizes. The one copy of this rule."""
    if change.owned_by_account or change.event.organizer is None:
        return True
    return normalise_address(change.event.organizer.address) == normalise_address(account_address)


def plan_outbound(
    changes: Iterable[CrmEventChange], *, now: datetime, account_address: str, crm_tag: str = ""
) -> list[PushAction]:
    """What to do in Outlook for each pending CRM change of the account ``account_address``
    (creates carry `transaction_id` with this CRM's ``crm_tag``).

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
        if not organizes(change, account_address):
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
            operation = series_operation(
                deleted=False, in_outlook=True, reshapes_series=change.reshapes_series
            )
            details_only = master and operation is SeriesOperation.PATCH_DETAILS
            actions.append(PushUpdate(change, details_only=details_only))
        elif not _ended(change.event, now):
            actions.append(PushCreate(change, transaction_id(change, crm_tag)))
    return actions


# --- occurrences Outlook cancelled before they came back ---------------------------------------

# All-day slots are days; Outlook's ``originalStart`` of an all-day occurrence is the day's
# midnight in the series' zone, given in UTC: within 14 hours of the day's UTC midnight (zones
# run from UTC-12 to UTC+14), never a neighbouring day's.
ALL_DAY_SLACK = timedelta(hours=14)


def _filled(occurrence: MeetingCandidate, instances: Sequence[CalendarEvent]) -> bool:
    """Whether one of Outlook's instances is this CRM occurrence (its original slot, or an
    occurrence where it starts): the same slot rule as `same_meeting`'s, so what the pull
    would bind is never taken for cancelled."""
    if occurrence.is_all_day:
        day = occurrence.start_date
        if day is None:
            return True  # no slot to judge by: never removed
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return any(
            item.start_date == day
            or (
                item.original_start is not None
                and abs(item.original_start.astimezone(UTC) - midnight) < ALL_DAY_SLACK
            )
            for item in instances
        )
    slot = occurrence.start
    if slot is None:
        return True
    return any(item.original_start == slot or item.start == slot for item in instances)


def cancelled_occurrences(
    series: UnconfirmedOccurrences, instances: Iterable[CalendarEvent]
) -> list[OccurrenceRemoval]:
    """The CRM occurrences of ``series`` (bound in Outlook, its occurrences not bound by any
    mailbox) that none of Outlook's ``instances`` of it fills: Outlook cancelled them before
    the pull listed them, and `GET /events/{id}/instances` "does not include occurrences that
    have been cancelled" (Microsoft Graph, event resource), so nothing else ever names them.

    ``instances`` must cover the occurrences' slots with room for exceptions moved nearby
    (`instances_range`). Each removal carries the versions the decision saw, so a CRM edit
    made since (of the occurrence or of its series) keeps the occurrence."""
    present = [item for item in instances if not item.is_cancelled]
    return [
        OccurrenceRemoval(
            crm_event_id=occurrence.crm_event_id,
            expected_version=occurrence.version,
            master_crm_event_id=series.master_crm_event_id,
            master_version=series.master_version,
        )
        for occurrence in series.occurrences
        if not _filled(occurrence, present)
    ]


# An exception moved further than this from its slot is not among the instances asked for,
# and its CRM occurrence is taken for cancelled: the pull then brings the exception as an
# event of the series (the CRM ends as Outlook is, the occurrence's CRM-only details lost).
MOVED_SLACK = timedelta(days=7)


def instances_range(series: UnconfirmedOccurrences) -> tuple[datetime, datetime]:
    """The range to ask Outlook's instances over: the occurrences' slots, widened by
    `MOVED_SLACK` each side (and a day for all-day slots)."""
    slots: list[datetime] = []
    for occurrence in series.occurrences:
        if occurrence.is_all_day and occurrence.start_date is not None:
            day = occurrence.start_date
            slots.append(datetime(day.year, day.month, day.day, tzinfo=UTC))
            slots.append(datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1))
        elif occurrence.start is not None:
            slots.append(occurrence.start.astimezone(UTC))
    if not slots:
        raise ValueError("a series with no occurrence slot to ask about")
    return min(slots) - MOVED_SLACK, max(slots) + MOVED_SLACK
