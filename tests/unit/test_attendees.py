"""Who attends and who organizes (`sync.attendees`): pure rules, both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365sync.domain import (
    Attendee,
    CalendarEvent,
    EmailAddress,
    EventLink,
    EventType,
    ResponseStatus,
    StoredEvent,
)
from m365sync.sync.attendees import (
    ODOO_STATES,
    ExtraAttendee,
    OdooAttendee,
    OdooPeople,
    Person,
    odoo_people_values,
    odoo_state,
    outlook_response,
    push_organizer,
    push_people,
    push_people_of_odoo,
    with_my_response,
)

START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
OWNER = "me@contoso.example"
MEGAN = EmailAddress("MeganB@Contoso.example", "Megan")
ADDRESSES = st.sampled_from(
    [None, "", "not an address", OWNER, "ME@contoso.example", "meganb@contoso.example"]
    + [f"p{n}@example.com" for n in range(4)]
    + ["P1@Example.com"]
)
RESPONSES = st.sampled_from([*ResponseStatus, "bogus"])
KINDS = st.sampled_from(["required", "optional", "resource", "organizer", "bogus"])
PEOPLE = st.lists(
    st.builds(
        Person,
        address=ADDRESSES,
        name=st.sampled_from(["", "Anna"]),
        kind=KINDS,
        response=RESPONSES,
        is_owner=st.booleans(),
    ),
    max_size=8,
)


def key(address: str | None) -> str | None:
    """How the stores' addresses compare (ASCII here): case-folded, an empty one is none."""
    return address.strip().casefold() or None if address else None


# --- answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "state"),
    [
        (ResponseStatus.ACCEPTED, "accepted"),
        (ResponseStatus.ORGANIZER, "accepted"),
        (ResponseStatus.DECLINED, "declined"),
        (ResponseStatus.TENTATIVE, "tentative"),
        (ResponseStatus.NONE, "needsAction"),
        (ResponseStatus.NOT_RESPONDED, "needsAction"),
        ("bogus", "needsAction"),
        (None, "needsAction"),
    ],
)
def test_graphs_answer_is_an_odoo_attendee_state(response, state) -> None:
    assert odoo_state(response) == state


@pytest.mark.parametrize("state", sorted(ODOO_STATES))
def test_an_odoo_state_goes_to_outlook_and_comes_back_the_same(state: str) -> None:
    assert odoo_state(outlook_response(state)) == state


def test_an_unknown_odoo_state_is_no_answer() -> None:
    assert outlook_response("bogus") is ResponseStatus.NONE
    assert outlook_response(None) is ResponseStatus.NONE


# --- CRM -> Outlook ------------------------------------------------------------------------


def test_the_stored_organizer_wins_over_the_user_it_belongs_to() -> None:
    user = EmailAddress("A@Contoso.example", "Alex")
    assert push_organizer(MEGAN, user) == EmailAddress("meganb@contoso.example", "Megan")
    assert push_organizer(None, user) == EmailAddress("a@contoso.example", "Alex")
    assert push_organizer(EmailAddress("", "Nobody"), user) == EmailAddress(
        "a@contoso.example", "Alex"
    )
    assert push_organizer(None, None) is None


def test_neither_the_organizer_nor_the_owner_is_invited_and_each_address_once() -> None:
    people = [
        Person("meganb@contoso.example", "Megan", "required", ResponseStatus.ACCEPTED),
        Person("anna@example.com", "Anna", "required", ResponseStatus.DECLINED),
        Person(OWNER, "Me", "required", ResponseStatus.TENTATIVE),
        Person("alias@contoso.example", "Me", "required", ResponseStatus.ACCEPTED, is_owner=True),
        Person("ANNA@example.com", "Anna again", "optional", ResponseStatus.ACCEPTED),
        Person(None, "No address"),
    ]
    kept = [
        Person("zoe@example.com", "Zoe", "optional", "tentativelyAccepted"),
        Person("room@contoso.example", "Room 4", "resource", "none"),
        Person("other@example.com", "Other", "organizer", "organizer"),
        Person("anna@example.com", "Anna kept", "required", "none"),
        Person("odd@example.com", "Odd", "bogus", "bogus"),
    ]
    pushed = push_people(people, kept, organizer=MEGAN, owner=OWNER)
    assert pushed.attendees == (
        Attendee("anna@example.com", "Anna", "required", ResponseStatus.DECLINED),
        Attendee("zoe@example.com", "Zoe", "optional", ResponseStatus.TENTATIVE),
        Attendee("room@contoso.example", "Room 4", "resource", ResponseStatus.NONE),
        Attendee("odd@example.com", "Odd", "required", ResponseStatus.NONE),
    )
    assert pushed.addresses == tuple(a.address for a in pushed.attendees)
    assert pushed.organizer == MEGAN
    # The owner's answer: the first CRM attendee who is the owner (by address here).
    assert pushed.my_response is ResponseStatus.TENTATIVE


def test_the_owners_answer_is_the_crms_never_a_kept_outlook_line() -> None:
    kept = [Person(OWNER, "Me", "required", ResponseStatus.ACCEPTED)]
    assert push_people([], kept, organizer=MEGAN, owner=OWNER).my_response is ResponseStatus.NONE
    mine = [Person("alias@contoso.example", "Me", "required", "declined", is_owner=True)]
    pushed = push_people(mine, kept, organizer=MEGAN, owner=OWNER)
    assert pushed.my_response is ResponseStatus.DECLINED
    assert pushed.attendees == ()


@given(people=PEOPLE, kept=PEOPLE, organizer=ADDRESSES, owner=ADDRESSES)
def test_push_people_invites_each_address_once_and_never_organizer_or_owner(
    people, kept, organizer, owner
) -> None:
    who = EmailAddress(organizer, "") if organizer is not None else None
    pushed = push_people(people, kept, organizer=who, owner=owner)
    addresses = [a.address for a in pushed.attendees]
    assert len(addresses) == len(set(addresses))
    assert key(organizer) not in addresses and key(owner) not in addresses
    everyone = [*people, *kept]
    for attendee in pushed.attendees:
        assert attendee.kind in ("required", "optional", "resource")
        # Each comes from the first eligible line with its address, as that line says it.
        first = next(
            p
            for p in everyone
            if key(p.address) == attendee.address and not p.is_owner and p.kind != "organizer"
        )
        assert attendee.name == first.name
        assert attendee.response == (
            first.response if first.response in set(ResponseStatus) else ResponseStatus.NONE
        )
    owners = [p for p in people if p.is_owner or (key(owner) and key(p.address) == key(owner))]
    expected = owners[0].response if owners else ResponseStatus.NONE
    assert pushed.my_response == (
        expected if expected in set(ResponseStatus) else ResponseStatus.NONE
    )


def test_an_odoo_events_people_as_outlook_sees_them() -> None:
    odoo = OdooPeople(
        attendees=(
            OdooAttendee(7, "Anna@Example.com", "Anna", "tentative"),
            OdooAttendee(3, "a@contoso.example", "Alex", "accepted", is_user=True),
            OdooAttendee(9, None, "No address", "accepted"),
        ),
        extra_attendees=(
            ExtraAttendee("zoe@example.com", "Zoe", "optional", "accepted"),
            ExtraAttendee("meganb@contoso.example", "Megan", "organizer", "organizer"),
        ),
        organizer=None,
        user=EmailAddress("A@contoso.example", "Alex"),
        owner_address="A@Contoso.example",
    )
    pushed = push_people_of_odoo(odoo)
    assert pushed.organizer == EmailAddress("a@contoso.example", "Alex")
    assert pushed.attendees == (
        Attendee("anna@example.com", "Anna", "required", ResponseStatus.TENTATIVE),
        Attendee("zoe@example.com", "Zoe", "optional", ResponseStatus.ACCEPTED),
    )
    assert pushed.my_response is ResponseStatus.ACCEPTED


def test_an_odoo_invitation_answered_by_the_user_answers_with_its_state() -> None:
    odoo = OdooPeople(
        attendees=(OdooAttendee(3, "me@contoso.example", "Me", "declined"),),
        organizer=MEGAN,
        user=EmailAddress("me@contoso.example", "Me"),
        owner_address=OWNER,
    )
    pushed = push_people_of_odoo(odoo)
    assert pushed.organizer == EmailAddress("meganb@contoso.example", "Megan")
    assert (pushed.attendees, pushed.my_response) == ((), ResponseStatus.DECLINED)


# --- Outlook -> Odoo -----------------------------------------------------------------------


def stored(links, *, organizer=MEGAN, my_response=ResponseStatus.NONE) -> StoredEvent:
    item = CalendarEvent(
        graph_id="g1",
        ical_uid="uid-1",
        event_type=EventType.SINGLE,
        subject="Review",
        start=START,
        end=START + timedelta(hours=1),
        organizer=organizer,
        my_response=my_response,
    )
    return StoredEvent(item, links)


def link(address, response, partner=None, company=None, role="required", name="") -> EventLink:
    return EventLink(role, address, name, response, partner, company)


def test_an_outlook_items_people_in_odoo() -> None:
    values = odoo_people_values(
        stored(
            [
                link("meganb@contoso.example", ResponseStatus.ORGANIZER, role="organizer"),
                link("anna@example.com", ResponseStatus.DECLINED, partner=7, company=70),
                link("anna.alias@example.com", ResponseStatus.ACCEPTED, partner=7, company=70),
                link("bob@example.com", ResponseStatus.TENTATIVE, partner=8, company=None),
                link("zoe@fabrikam.example", "none", company=90, role="optional", name="Zoe"),
            ]
        ),
        owner=OWNER,
    )
    assert values.organizer == EmailAddress("meganb@contoso.example", "Megan")
    # A contact's first line decides its state; companies of every line, in order.
    assert values.attendee_states == {7: "declined", 8: "tentative"}
    assert values.company_ids == (70, 90)
    assert values.extra_attendees == (
        ExtraAttendee("meganb@contoso.example", "", "organizer", ResponseStatus.ORGANIZER),
        ExtraAttendee("zoe@fabrikam.example", "Zoe", "optional", ResponseStatus.NONE),
    )
    assert values.organizer_state == "accepted"
    # No line of the owner's, someone else organizes: the owner's own answer (none yet).
    assert values.owner_state == "needsAction"


@pytest.mark.parametrize(
    ("links", "organizer", "my_response", "state"),
    [
        # The mailbox's own line decides (the plan put Graph's responseStatus on it).
        ([link("ME@contoso.example", ResponseStatus.TENTATIVE)], MEGAN, "none", "tentative"),
        # The mailbox organizes it: its organizer line, accepted.
        (
            [link(OWNER, ResponseStatus.ORGANIZER, role="organizer")],
            EmailAddress(OWNER),
            "organizer",
            "accepted",
        ),
        # The mailbox organizes, with no line of its own (an unusual item): accepted.
        ([], EmailAddress("Me@Contoso.example"), "none", "accepted"),
        # No line: its answer to the invitation.
        ([], MEGAN, ResponseStatus.DECLINED, "declined"),
        ([], None, ResponseStatus.NONE, "needsAction"),
    ],
)
def test_the_owners_state_in_odoo(links, organizer, my_response, state) -> None:
    values = odoo_people_values(
        stored(links, organizer=organizer, my_response=my_response), owner=OWNER
    )
    assert values.owner_state == state


def test_without_the_owners_address_its_state_is_its_answer() -> None:
    values = odoo_people_values(
        stored([link(OWNER, ResponseStatus.ACCEPTED)], my_response=ResponseStatus.DECLINED),
        owner=None,
    )
    assert values.owner_state == "declined"


@given(
    links=st.lists(
        st.builds(
            link,
            address=ADDRESSES.filter(bool),
            response=st.sampled_from(list(ResponseStatus)),
            partner=st.sampled_from([None, 1, 2, 3]),
            company=st.sampled_from([None, 10, 20]),
            role=KINDS,
        ),
        max_size=8,
    ),
    my_response=st.sampled_from(list(ResponseStatus)),
)
def test_every_line_lands_once_as_a_state_or_a_kept_line(links, my_response) -> None:
    values = odoo_people_values(stored(links, my_response=my_response), owner=OWNER)
    assert set(values.attendee_states) == {lk.partner_id for lk in links if lk.partner_id}
    assert set(values.attendee_states.values()) <= ODOO_STATES
    assert values.owner_state in ODOO_STATES
    assert list(values.company_ids) == sorted({lk.company_id for lk in links if lk.company_id})
    kept = [lk for lk in links if not lk.partner_id and key(lk.address)]
    assert [e.address for e in values.extra_attendees] == [key(lk.address) for lk in kept]
    for partner, state in values.attendee_states.items():
        first = next(lk for lk in links if lk.partner_id == partner)
        assert state == ("accepted" if first.role == "organizer" else odoo_state(first.response))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # Graph's responseStatus wins over what the attendee list says of the owner.
        (ResponseStatus.DECLINED, [ResponseStatus.ORGANIZER, ResponseStatus.DECLINED]),
        # No answer, or the organizer's own copy: the list stays as Outlook gave it.
        (ResponseStatus.NONE, [ResponseStatus.ORGANIZER, ResponseStatus.NONE]),
        (ResponseStatus.ORGANIZER, [ResponseStatus.ORGANIZER, ResponseStatus.NONE]),
    ],
)
def test_the_owners_answer_lands_on_its_line(answer, expected) -> None:
    links = [
        link("meganb@contoso.example", ResponseStatus.ORGANIZER, role="organizer"),
        link(OWNER, ResponseStatus.NONE),
    ]
    item = stored(links, my_response=answer).event
    assert [lk.response for lk in with_my_response(links, item, OWNER)] == expected


def test_the_owners_answer_adds_its_line_when_the_item_lists_none() -> None:
    item = stored([], my_response=ResponseStatus.TENTATIVE).event
    (mine,) = with_my_response([], item, OWNER)
    assert (mine.address, mine.response, mine.partner_id) == (
        OWNER,
        ResponseStatus.TENTATIVE,
        None,
    )
    assert with_my_response([], item, None) == []
