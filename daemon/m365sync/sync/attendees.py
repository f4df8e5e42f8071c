"""Who attends a meeting and who organizes it, between the CRM and Outlook: the one copy of
each people rule of the calendar.

Pure functions over plain data. The stores keep their people as they are (the embedded store
in Outlook's terms, `Person` rows; Odoo as ``calendar.attendee`` rows with a state, the
Outlook attendees that matched no contact as JSON lines, the Outlook organizer in two fields:
`OdooPeople`) and hand them over; what goes to Outlook, and what an Outlook item makes of an
Odoo event's people, is decided here. The Odoo adapter (`crm.odoo`) calls these functions at
the wire; the embedded store calls `push_people` over its rows.

Rules held here:

- **Answers** (`odoo_state`, `outlook_response`): Graph's ``responseStatus`` <-> Odoo's
  attendee state: accepted, declined, tentatively accepted <-> tentative, no answer (none, not
  responded) <-> needs action; the organizer has accepted.
- **Who organizes a CRM event, for the push** (`push_organizer`): the Outlook organizer the CRM
  stores, else the CRM user the event belongs to (Odoo's ``user_id``), else nobody. Whether the
  account organizes it is then `sync.calendar.organizes`.
- **Who is invited** (`push_people`): the CRM's attendees, then the Outlook attendees that
  matched no contact (kept, so a push does not uninvite them), each address once, never the
  organizer nor the mailbox's owner (nor the CRM's own user of the account), never a line
  without an address; a kept line keeps its kind (optional, resource; else required) and
  answer.
- **The owner's own answer** (`push_people`'s ``my_response``): the answer of the first CRM
  attendee who is the account's own user or has the mailbox's address; none otherwise. Kept
  Outlook lines never count: they are what Outlook said, not the user's answer in the CRM
  (pushing them would answer the organizer again).
- **The owner's answer on its line** (`with_my_response`, for both stores): Graph's
  ``responseStatus`` of the mailbox's owner replaces the answer on the owner's attendee line
  (added when the item lists none), since an invitation's list often still says none.
- **The people an Outlook item gives an Odoo event** (`odoo_people_values`): each contact the
  state of its first line (the organizer's line: accepted), the companies of all lines, the
  lines that matched no contact kept as they came; the organizing Odoo user (which only Odoo
  resolves, by the organizer's address) accepted; the account's user the state of the
  mailbox's own line, else accepted when the mailbox organizes, else its answer
  (``my_response``). A contact named by a line keeps its line's state even when Odoo resolves
  the organizing user or the account's user to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from m365sync.domain import (
    Attendee,
    CalendarEvent,
    EmailAddress,
    EventLink,
    ResponseStatus,
    StoredEvent,
)
from m365sync.sync.addresses import address_key

# Graph's ResponseStatus -> Odoo's calendar.attendee state.
STATE_OF_RESPONSE: dict[ResponseStatus, str] = {
    ResponseStatus.ACCEPTED: "accepted",
    ResponseStatus.ORGANIZER: "accepted",
    ResponseStatus.DECLINED: "declined",
    ResponseStatus.TENTATIVE: "tentative",
    ResponseStatus.NONE: "needsAction",
    ResponseStatus.NOT_RESPONDED: "needsAction",
}
# Odoo's calendar.attendee state -> Graph's ResponseStatus.
RESPONSE_OF_STATE: dict[str, ResponseStatus] = {
    "accepted": ResponseStatus.ACCEPTED,
    "declined": ResponseStatus.DECLINED,
    "tentative": ResponseStatus.TENTATIVE,
    "needsAction": ResponseStatus.NOT_RESPONDED,
}
ODOO_STATES = frozenset(RESPONSE_OF_STATE)
# The kinds of attendee Outlook takes besides required.
KINDS = frozenset({"optional", "resource"})
ORGANIZER = "organizer"


@dataclass(frozen=True, slots=True)
class Person:
    """One person on a CRM event as a store holds them, in Outlook's terms.

    ``kind``: organizer, required, optional or resource. ``is_owner``: the account's own user
    in the CRM (Odoo: its user's partner), whatever address the CRM has for them."""

    address: str | None
    name: str = ""
    kind: str = "required"
    response: ResponseStatus | str = ResponseStatus.NONE  # as stored: read through `_response`
    is_owner: bool = False


@dataclass(frozen=True, slots=True)
class PushPeople:
    """What goes to Outlook of a CRM event's people (`push_people`)."""

    organizer: EmailAddress | None
    attendees: tuple[Attendee, ...]
    my_response: ResponseStatus

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.attendees)


@dataclass(frozen=True, slots=True)
class OdooAttendee:
    """One ``calendar.attendee`` row as the addon stores it: its partner's id, address (as
    typed) and name, its state, and whether the partner is the account user's own."""

    partner_id: int
    address: str | None
    name: str = ""
    state: str = "needsAction"
    is_user: bool = False


@dataclass(frozen=True, slots=True)
class ExtraAttendee:
    """An Outlook attendee that matched no contact, kept on the Odoo event as it came
    (``m365_extra_attendees``, a JSON list of these)."""

    address: str
    name: str = ""
    role: str = "required"
    response: str = ResponseStatus.NONE.value  # as stored: read through `_response`


@dataclass(frozen=True, slots=True)
class OdooPeople:
    """The people of one Odoo event as the addon stores them (``event_changes_to_push``'s
    ``odoo_people``); no decision made. ``organizer`` is the Outlook organizer it stores
    (``m365_organizer_address``/``_name``), ``user`` the Odoo user it belongs to
    (``user_id``'s address and name), ``owner_address`` the account's mailbox."""

    attendees: tuple[OdooAttendee, ...] = ()
    extra_attendees: tuple[ExtraAttendee, ...] = ()
    organizer: EmailAddress | None = None
    user: EmailAddress | None = None
    owner_address: str | None = None


@dataclass(frozen=True, slots=True)
class OdooPeopleValues:
    """What an Outlook item makes of an Odoo event's people (``store_event_page``'s
    ``odoo_people_values``): the addon checks the ids, resolves the organizing user by
    ``organizer``'s address and the account's user, and stores.

    ``attendee_states``: partner id -> state, for the contacts the item's lines name;
    ``organizer_state``: the organizing Odoo user's partner's, ``owner_state``: the account
    user's partner's, each unless ``attendee_states`` names that partner already."""

    organizer: EmailAddress | None
    attendee_states: dict[int, str]
    organizer_state: str
    owner_state: str
    company_ids: tuple[int, ...]
    extra_attendees: tuple[ExtraAttendee, ...]


# --- answers --------------------------------------------------------------------------------


def odoo_state(response: ResponseStatus | str | None) -> str:
    """Graph's answer -> Odoo's attendee state (anything unknown: needs action)."""
    return STATE_OF_RESPONSE.get(_response(response), "needsAction")


def outlook_response(state: str | None) -> ResponseStatus:
    """Odoo's attendee state -> Graph's answer (anything unknown: none)."""
    return RESPONSE_OF_STATE.get(state or "", ResponseStatus.NONE)


# --- CRM -> Outlook ---------------------------------------------------------------------------


def push_organizer(stored: EmailAddress | None, user: EmailAddress | None) -> EmailAddress | None:
    """Who organizes a CRM event, as pushed: the Outlook organizer the CRM stores, else the CRM
    user it belongs to; addresses in their compared form."""
    for who in (stored, user):
        address = address_key(who.address) if who is not None else None
        if who is not None and address:
            return EmailAddress(address, who.name or "")
    return None


def push_people(
    people: Iterable[Person],
    kept: Iterable[Person] = (),
    *,
    organizer: EmailAddress | None,
    owner: str | None,
) -> PushPeople:
    """The Outlook attendees and the owner's own answer of a CRM event: ``people`` are the
    CRM's attendees (their answers are the CRM's), ``kept`` Outlook's lines that matched no
    contact (pushed so they stay, never read for the owner's answer)."""
    owner_key = address_key(owner)
    skip = {address_key(organizer.address) if organizer else None, owner_key} - {None}
    people = list(people)
    my_response = next(
        (
            _response(p.response)
            for p in people
            if p.is_owner or (owner_key and address_key(p.address) == owner_key)
        ),
        ResponseStatus.NONE,
    )
    attendees: list[Attendee] = []
    seen: set[str] = set()
    for person in [*people, *kept]:
        address = address_key(person.address)
        if not address or address in skip or address in seen:
            continue
        if person.is_owner or person.kind == ORGANIZER:
            continue
        seen.add(address)
        kind = person.kind if person.kind in KINDS else "required"
        attendees.append(Attendee(address, person.name or "", kind, _response(person.response)))
    return PushPeople(organizer, tuple(attendees), my_response)


def push_people_of_odoo(odoo: OdooPeople) -> PushPeople:
    """`push_people` over an Odoo event's stored people: its attendee rows (their states as
    Outlook's answers) and its kept Outlook lines; organized as `push_organizer` says."""
    people = [
        Person(row.address, row.name, "required", outlook_response(row.state), row.is_user)
        for row in odoo.attendees
    ]
    kept = [Person(e.address, e.name, e.role, e.response) for e in odoo.extra_attendees]
    return push_people(
        people,
        kept,
        organizer=push_organizer(odoo.organizer, odoo.user),
        owner=odoo.owner_address,
    )


# --- Outlook -> the CRM ------------------------------------------------------------------------


def with_my_response(
    links: list[EventLink], item: CalendarEvent, owner: str | None
) -> list[EventLink]:
    """The mailbox owner's own answer (Graph's ``responseStatus``) on the owner's line, for
    both stores: the attendee list of an invitation often still says "none" for the invitee."""
    answer = item.my_response
    if not owner or answer in (ResponseStatus.NONE, ResponseStatus.ORGANIZER):
        return links
    mine = [link for link in links if link.address == owner]
    if mine:
        return [replace(link, response=answer) if link.address == owner else link for link in links]
    return [*links, EventLink("required", owner, "", answer, None, None)]


def odoo_people_values(stored: StoredEvent, *, owner: str | None) -> OdooPeopleValues:
    """The people an Outlook item gives an Odoo event, for the mailbox ``owner`` (its
    address): see the module docstring."""
    item = stored.event
    owner_key = address_key(owner)
    organizer = push_organizer(item.organizer, None)
    states: dict[int, str] = {}
    companies: set[int] = set()
    extra: list[ExtraAttendee] = []
    owner_state: str | None = None
    for link in stored.attendees:
        address = address_key(link.address)
        state = "accepted" if link.role == ORGANIZER else odoo_state(link.response)
        if owner_key and address == owner_key and owner_state is None:
            owner_state = state
        if link.company_id:
            companies.add(int(link.company_id))
        if link.partner_id:
            states.setdefault(int(link.partner_id), state)
        elif address:
            extra.append(
                ExtraAttendee(
                    address, link.name or "", link.role or "required", _response(link.response)
                )
            )
    if owner_state is None:
        if owner_key and organizer is not None and organizer.address == owner_key:
            owner_state = "accepted"
        else:
            owner_state = odoo_state(item.my_response)
    return OdooPeopleValues(
        organizer=organizer,
        attendee_states=states,
        organizer_state="accepted",
        owner_state=owner_state,
        company_ids=tuple(sorted(companies)),
        extra_attendees=tuple(extra),
    )


def _response(value: ResponseStatus | str | None) -> ResponseStatus:
    try:
        return ResponseStatus(value or ResponseStatus.NONE)
    except ValueError:
        return ResponseStatus.NONE
