"""Calendar decisions (pure): echo, conflicts, privacy, attendee links, what to push."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from m365sync.domain import (
    Attendee,
    CalendarEvent,
    CrmEventChange,
    EmailAddress,
    EventBinding,
    EventType,
    MeetingCandidate,
    OccurrenceRemoval,
    Partner,
    Privacy,
    Recurrence,
    ResponseStatus,
    Sensitivity,
    StoredEvent,
    UnconfirmedOccurrences,
)
from m365sync.graph.calendar import event_body
from m365sync.sync.calendar import (
    SKIP_CRM_NEWER,
    SKIP_DELETED_IN_CRM,
    SKIP_ECHO,
    SKIP_REPEATED,
    DeleteInOutlook,
    ForgetDeleted,
    OurCreate,
    PushCreate,
    PushDelete,
    PushUpdate,
    cancelled_occurrences,
    crm_event_of,
    deleted_in_crm,
    event_addresses,
    instances_range,
    is_echo,
    left_behind,
    organizes,
    our_create,
    place,
    plan_inbound,
    plan_outbound,
    recorded_change_key,
    removals,
    same_meeting,
    transaction_id,
)
from m365sync.sync.mail import MailPolicy, PartnerLookups

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ME = "me@contoso.com"  # the account whose changes are planned
ANNA = Partner(id=1, name="Anna", email="anna@fabrikam.com", parent_id=10)
FABRIKAM = Partner(id=10, name="Fabrikam", is_company=True)
LOOKUPS = PartnerLookups({"anna@fabrikam.com": ANNA}, {"fabrikam.com": FABRIKAM})
POLICY = MailPolicy.build(["contoso.com"], Privacy.EVERYTHING)


def meeting(
    graph_id="g1",
    *,
    change_key="ck2",
    modified=NOW,
    sensitivity=Sensitivity.NORMAL,
    start=NOW + timedelta(days=1),
):
    return CalendarEvent(
        graph_id=graph_id,
        ical_uid="uid",
        event_type=EventType.SINGLE,
        subject="Review",
        start=start,
        end=start + timedelta(hours=1),
        body_html="<p>agenda</p>",
        location="Room 1",
        sensitivity=sensitivity,
        organizer=EmailAddress("MeganB@contoso.com", "Megan"),
        attendees=(
            Attendee("Anna@Fabrikam.com", "Anna", "required", ResponseStatus.ACCEPTED),
            Attendee("new.person@fabrikam.com", "New", "optional"),
        ),
        change_key=change_key,
        last_modified=modified,
    )


def binding(*, change_key="ck1", version=1, pushed=1, crm_modified=NOW - timedelta(hours=1)):
    return EventBinding(7, "g1", change_key, version, pushed, crm_modified)


def test_new_events_are_stored_with_their_people_linked():
    plan = plan_inbound([meeting()], {}, LOOKUPS, POLICY)
    (stored,) = plan.upserts
    roles = {(a.role, a.address, a.partner_id, a.company_id, a.response) for a in stored.attendees}
    assert ("organizer", "meganb@contoso.com", None, None, ResponseStatus.ORGANIZER) in roles
    assert ("required", "anna@fabrikam.com", 1, 10, ResponseStatus.ACCEPTED) in roles
    assert ("optional", "new.person@fabrikam.com", None, 10, ResponseStatus.NONE) in roles


def test_our_own_change_key_is_an_echo():
    plan = plan_inbound([meeting(change_key="ck1")], {"g1": binding()}, LOOKUPS, POLICY)
    assert plan.upserts == [] and plan.skipped == {SKIP_ECHO: 1}


def test_conflict_last_writer_wins_and_both_are_reported():
    crm_newer = binding(version=2, pushed=1, crm_modified=NOW + timedelta(minutes=5))
    plan = plan_inbound([meeting()], {"g1": crm_newer}, LOOKUPS, POLICY)
    assert plan.upserts == [] and plan.skipped == {SKIP_CRM_NEWER: 1}
    (conflict,) = plan.conflicts
    assert conflict.winner == "crm" and conflict.outlook_modified == NOW
    outlook_newer = binding(version=2, pushed=1, crm_modified=NOW - timedelta(minutes=5))
    plan = plan_inbound([meeting()], {"g1": outlook_newer}, LOOKUPS, POLICY)
    assert len(plan.upserts) == 1 and plan.conflicts[0].winner == "outlook"


def test_private_events_are_busy_time_only():
    plan = plan_inbound([meeting(sensitivity=Sensitivity.PRIVATE)], {}, LOOKUPS, POLICY)
    (stored,) = plan.upserts
    item = stored.event
    assert (item.subject, item.body_html, item.location, item.attendees) == (None, None, None, ())
    assert item.start == NOW + timedelta(days=1)
    assert [a.role for a in stored.attendees] == ["organizer"]
    assert not stored.keep_details  # not in the CRM: a personal appointment stays busy time


def test_a_bound_private_event_keeps_the_crms_details():
    """A private Outlook event bound to a CRM event (e.g. a private CRM meeting pushed whole)
    still comes as busy time, flagged so the stores keep the CRM's details and attendees."""
    moved = meeting(sensitivity=Sensitivity.CONFIDENTIAL, start=NOW + timedelta(days=2))
    plan = plan_inbound([moved], {"g1": binding()}, LOOKUPS, POLICY)
    (stored,) = plan.upserts
    assert stored.keep_details
    item = stored.event
    assert (item.subject, item.body_html, item.location, item.attendees) == (None, None, None, ())
    assert (item.start, item.sensitivity) == (NOW + timedelta(days=2), Sensitivity.CONFIDENTIAL)
    # Outlook's newer change of a private event also wins only its times.
    outlook_newer = binding(version=2, pushed=1, crm_modified=NOW - timedelta(minutes=5))
    (stored,) = plan_inbound([moved], {"g1": outlook_newer}, LOOKUPS, POLICY).upserts
    assert stored.keep_details
    # A bound event that is not private is stored whole, details and attendees included.
    (stored,) = plan_inbound([meeting()], {"g1": binding()}, LOOKUPS, POLICY).upserts
    assert not stored.keep_details and stored.event.subject == "Review"


def test_page_addresses_cover_organizer_and_attendees():
    assert event_addresses([meeting()]) == {
        "meganb@contoso.com",
        "anna@fabrikam.com",
        "new.person@fabrikam.com",
    }


def change(event_id=1, *, graph_id="", deleted=False, end=NOW + timedelta(days=1)):
    item = CalendarEvent(
        graph_id=graph_id,
        ical_uid=None,
        event_type=EventType.SINGLE,
        subject="x",
        start=end - timedelta(hours=1),
        end=end,
    )
    return CrmEventChange(event_id, item, version=1, deleted=deleted)


def test_outbound_actions():
    actions = plan_outbound(
        [
            change(1),
            change(2, graph_id="g2"),
            change(3, graph_id="g3", deleted=True),
            change(4, deleted=True),
            change(5, end=NOW - timedelta(days=2)),  # in the past: never created
        ],
        now=NOW,
        account_address=ME,
    )
    kinds = [(type(a).__name__, a.change.crm_event_id) for a in actions]
    assert kinds == [("PushCreate", 1), ("PushUpdate", 2), ("PushDelete", 3), ("ForgetDeleted", 4)]
    create = actions[0]
    assert isinstance(create, PushCreate) and create.transaction_id == "m365sync-crm-event-1"


def test_all_day_events_in_the_past_are_not_created():
    item = CalendarEvent(
        graph_id="",
        ical_uid=None,
        event_type=EventType.SINGLE,
        subject="Day",
        start=None,
        end=None,
        is_all_day=True,
        start_date=date(2026, 11, 20),
        end_date=date(2026, 11, 21),
    )
    assert plan_outbound([CrmEventChange(9, item, 1)], now=NOW, account_address=ME) == []


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(-3, 3)), max_size=20))
def test_every_change_gets_at_most_one_action_and_creates_have_stable_ids(rows):
    changes = [
        change(
            i, graph_id="g" if in_outlook else "", deleted=deleted, end=NOW + timedelta(days=days)
        )
        for i, (in_outlook, deleted, days) in enumerate(rows)
    ]
    actions = plan_outbound(changes, now=NOW, account_address=ME)
    assert len({a.change.crm_event_id for a in actions}) == len(actions)
    for action in actions:
        if isinstance(action, PushCreate):
            assert not action.change.event.graph_id
            assert (
                action.transaction_id
                == plan_outbound([action.change], now=NOW, account_address=ME)[0].transaction_id
            )
        if isinstance(action, PushDelete | PushUpdate):
            assert action.change.event.graph_id
        if isinstance(action, ForgetDeleted):
            assert action.change.deleted


def test_private_crm_events_go_to_outlook_whole_and_marked_private():
    """The invitations go out and the owner's Outlook shows the meeting: Outlook's own privacy
    (sensitivity private) hides it from those the calendar is shared with."""
    item = meeting(graph_id="", sensitivity=Sensitivity.PRIVATE)
    addresses = ("anna@fabrikam.com", "new.person@fabrikam.com")
    for change in (
        CrmEventChange(3, item, 1, attendee_addresses=addresses),
        CrmEventChange(4, replace(item, graph_id="g4"), 2, attendee_addresses=addresses),
    ):
        (action,) = plan_outbound([change], now=NOW, account_address=ME)
        assert isinstance(action, PushCreate | PushUpdate)
        pushed = action.change.event
        assert (pushed.subject, pushed.body_html, pushed.location) == (
            "Review",
            "<p>agenda</p>",
            "Room 1",
        )
        assert pushed.attendees == item.attendees
        assert action.change.attendee_addresses == addresses
        body = event_body(pushed, create=isinstance(action, PushCreate))
        assert body["sensitivity"] == "private" and body["subject"] == "Review"
        assert [a["emailAddress"]["address"] for a in body["attendees"]] == [
            "Anna@Fabrikam.com",
            "new.person@fabrikam.com",
        ]
        assert body["body"]["content"] == "<p>agenda</p>"


def test_an_invitation_is_only_ever_answered():
    item = meeting()
    answered = CrmEventChange(
        4,
        replace(item, graph_id="g4"),
        2,
        owned_by_account=False,
        my_response=ResponseStatus.ACCEPTED,
    )
    unanswered = CrmEventChange(5, replace(item, graph_id="g5"), 2, owned_by_account=False)
    deleted = CrmEventChange(
        6, replace(item, graph_id="g6"), 2, deleted=True, owned_by_account=False
    )
    actions = plan_outbound([answered, unanswered, deleted], now=NOW, account_address=ME)
    assert [type(a).__name__ for a in actions] == ["PushResponse", "ForgetDeleted", "ForgetDeleted"]


def test_the_owners_own_answer_lands_on_the_owners_line():
    item = replace(meeting(), my_response=ResponseStatus.TENTATIVE)
    plan = plan_inbound([item], {}, LOOKUPS, POLICY, owner="meganb@contoso.com")
    owner = [a for a in plan.upserts[0].attendees if a.address == "meganb@contoso.com"]
    assert [a.response for a in owner] == [ResponseStatus.TENTATIVE]


WEEKLY = Recurrence("weekly", (NOW + timedelta(days=1)).date(), days_of_week=("thursday",))


def _series_change(*, reshapes: bool, deleted: bool = False) -> CrmEventChange:
    master = replace(meeting("m1"), event_type=EventType.SERIES_MASTER, recurrence=WEEKLY)
    return CrmEventChange(5, master, 3, deleted=deleted, reshapes_series=reshapes)


def test_a_series_edit_of_details_patches_the_master_without_its_shape():
    (action,) = plan_outbound([_series_change(reshapes=False)], now=NOW, account_address=ME)
    assert isinstance(action, PushUpdate) and action.details_only
    body = event_body(action.change.event, details_only=action.details_only)
    assert not {"start", "end", "isAllDay", "recurrence"} & set(body)
    assert body["subject"] == "Review" and body["location"] == {"displayName": "Room 1"}


def test_a_series_edit_of_pattern_or_times_patches_the_whole_master():
    (action,) = plan_outbound([_series_change(reshapes=True)], now=NOW, account_address=ME)
    assert isinstance(action, PushUpdate) and not action.details_only
    body = event_body(action.change.event, details_only=action.details_only)
    assert body["recurrence"]["pattern"]["daysOfWeek"] == ["thursday"]
    assert {"start", "end", "isAllDay"} <= set(body)


def test_a_single_event_is_always_patched_whole():
    # reshapes_series only speaks of series masters.
    change = CrmEventChange(7, meeting("g7"), 2, reshapes_series=False)
    (action,) = plan_outbound([change], now=NOW, account_address=ME)
    assert isinstance(action, PushUpdate) and not action.details_only


def test_deleting_a_whole_series_deletes_its_master():
    (action,) = plan_outbound(
        [_series_change(reshapes=False, deleted=True)], now=NOW, account_address=ME
    )
    assert isinstance(action, PushDelete) and action.change.event.graph_id == "m1"


def test_a_create_whose_event_the_crm_no_longer_holds_leaves_its_copy_behind():
    """Issue #17 (seed 904967430): deleted in the CRM while its create was in flight, an
    event Outlook did not hold yet is gone outright; the copy the create made is left behind
    (and must go). A tombstone still held took the binding; an edit keeps the event."""
    (create,) = plan_outbound([change(7)], now=NOW, account_address=ME)
    assert isinstance(create, PushCreate)
    assert left_behind(create, False, [])
    assert left_behind(create, False, [candidate(8)])
    assert not left_behind(create, False, [candidate(7, deleted=True)])  # the tombstone's
    assert not left_behind(create, False, [candidate(7)])  # edited meanwhile: still held
    assert not left_behind(create, True, [])  # recorded: the store had it at that version
    (update,) = plan_outbound([change(7, graph_id="g7")], now=NOW, account_address=ME)
    assert not left_behind(update, False, [])  # only a create makes a copy


def test_a_create_answered_with_an_event_edited_since_records_no_change_key():
    """Issue #17 (seed 609439822): a create retried with its transactionId reaches the event
    made the first time, as Outlook holds it now; an edit made there since must not be taken
    for our echo. An answer as sent records its key; an update's answer always does."""
    (create,) = plan_outbound([change(7)], now=NOW, account_address=ME)
    sent = create.change.event
    assert recorded_change_key(create, replace(sent, graph_id="g7", change_key="k1")) == "k1"
    edited = replace(sent, graph_id="g7", change_key="k2", subject="edited in Outlook")
    assert recorded_change_key(create, edited) is None
    moved = replace(sent, graph_id="g7", change_key="k3", start=sent.start + timedelta(hours=1))
    assert recorded_change_key(create, moved) is None
    assert recorded_change_key(create, None) is None
    (update,) = plan_outbound([change(7, graph_id="g7")], now=NOW, account_address=ME)
    assert recorded_change_key(update, edited) == "k2"


# --- where an item goes: echo, same meeting, the plan's preconditions ------------------------


def candidate(crm_id, **fields) -> MeetingCandidate:
    values = {
        "crm_event_id": crm_id,
        "version": 3,
        "ical_uid": "uid",
        "is_series_master": False,
        "deleted": False,
        "series_master_id": None,
        "bound_graph_id": None,
        "is_all_day": False,
        "start": NOW + timedelta(days=1),
        "start_date": None,
    }
    return MeetingCandidate(**(values | fields))


def test_an_echo_is_only_our_own_change_key_on_a_bound_item():
    assert is_echo(meeting(change_key="ck1"), binding(change_key="ck1"))
    assert not is_echo(meeting(change_key="ck2"), binding(change_key="ck1"))
    assert not is_echo(meeting(change_key="ck1"), None)
    assert not is_echo(meeting(change_key=None), binding(change_key=None))


def test_same_meeting_by_ical_uid_never_a_deleted_one_nor_a_master_for_an_occurrence():
    item = meeting()
    assert same_meeting(item, [candidate(9), candidate(4)]).crm_event_id == 4
    assert same_meeting(item, [candidate(4, deleted=True), candidate(9)]).crm_event_id == 9
    assert same_meeting(item, [candidate(4, is_series_master=True)]) is None
    assert same_meeting(replace(item, ical_uid=None), [candidate(4, ical_uid=None)]) is None


def test_same_meeting_by_slot_in_a_series_the_crm_holds():
    """An occurrence of a series made in the CRM comes back from Outlook with its own
    iCalUId: the CRM occurrence of that series in the same slot, not yet bound here."""
    slot = NOW + timedelta(days=7)
    item = replace(
        meeting(start=slot),
        ical_uid="outlook-occurrence",
        event_type=EventType.OCCURRENCE,
        series_master_id="m1",
        original_start=slot,
    )
    crm = [
        candidate(5, ical_uid=None, series_master_id=2, start=slot, bound_graph_id="other"),
        candidate(6, ical_uid=None, series_master_id=2, start=slot),
        candidate(7, ical_uid=None, series_master_id=2, start=slot + timedelta(days=7)),
        candidate(8, ical_uid=None, series_master_id=3, start=slot),
    ]
    assert same_meeting(item, crm, series_master=2).crm_event_id == 6
    assert same_meeting(item, crm, series_master=None) is None
    day = replace(item, is_all_day=True, start=None, start_date=slot.date(), original_start=None)
    all_day = [
        candidate(11, ical_uid=None, series_master_id=2, is_all_day=True, start_date=slot.date())
    ]
    assert same_meeting(day, all_day, series_master=2).crm_event_id == 11


def test_place_carries_the_version_the_plan_saw_and_keeps_details_of_private_copies():
    bound = StoredEvent(meeting("g1"), [])
    private = StoredEvent(replace(meeting("g2"), sensitivity=Sensitivity.PRIVATE), [])
    new = StoredEvent(replace(meeting("g3"), ical_uid="other"), [])
    placed = place([bound, private, new], {"g1": binding(version=5)}, [candidate(9)])
    assert [(p.crm_event_id, p.expected_version, p.keep_details) for p in placed] == [
        (7, 5, False),
        (9, 3, True),
        (None, None, False),
    ]


def test_place_puts_an_occurrence_on_the_series_its_master_was_placed_on_in_the_page():
    slot = NOW + timedelta(days=7)
    master = replace(meeting("m1"), ical_uid="series", event_type=EventType.SERIES_MASTER)
    occurrence = replace(
        meeting("o1", start=slot),
        ical_uid="occ",
        event_type=EventType.OCCURRENCE,
        series_master_id="m1",
    )
    crm = [
        candidate(2, ical_uid="series", is_series_master=True),
        candidate(6, ical_uid=None, series_master_id=2, start=slot),
    ]
    placed = place([StoredEvent(master, []), StoredEvent(occurrence, [])], {}, crm)
    assert [p.crm_event_id for p in placed] == [2, 6]


def test_a_graph_id_repeated_in_a_page_is_planned_once_with_its_last_state():
    first, last = meeting(change_key="a"), replace(meeting(change_key="b"), subject="Later")
    plan = plan_inbound([first, last], {}, LOOKUPS, POLICY)
    (stored,) = plan.upserts
    assert stored.event.subject == "Later" and plan.skipped[SKIP_REPEATED] == 1


def test_who_organizes_is_one_rule_over_the_owner_and_the_organizer():
    """The account changes what it owns (made in the CRM for it), what has no organizer,
    and what its mailbox's owner organizes (addresses compared as the mail rules do); of
    anything else it may only answer."""
    invitation = replace(meeting(), organizer=EmailAddress("MeganB@contoso.com"))
    assert not organizes(CrmEventChange(1, invitation, 1, owned_by_account=False), ME)
    assert organizes(CrmEventChange(1, invitation, 1, owned_by_account=True), ME)
    assert organizes(CrmEventChange(1, invitation, 1, owned_by_account=False), "meganb@CONTOSO.com")
    nobody = replace(invitation, organizer=None)
    assert organizes(CrmEventChange(1, nobody, 1, owned_by_account=False), ME)


def test_an_event_bound_to_an_item_of_the_page_is_not_taken_by_another():
    """Two items of one page with one iCalUId: the bound one keeps its event, the other is
    a new one (never two Outlook items of one mailbox on one CRM event)."""
    bound = StoredEvent(meeting("g1"), [])
    twin = StoredEvent(meeting("g9"), [])
    placed = place([twin, bound], {"g1": binding(version=5)}, [candidate(7)])
    assert [(p.crm_event_id, p.expected_version) for p in placed] == [(None, None), (7, 5)]


def test_a_removed_id_whose_event_a_new_item_of_the_page_takes_keeps_its_event():
    """Found by the calendar machine: a series rebuilt in Outlook (its pattern changed) gives
    the occurrence on the same day a new id and the old iCalUId; the new item is placed on
    the old one's CRM event, so the old id's binding moves instead of being dropped (dropping
    it first deleted that event, and every plan of the page was refused for good)."""
    old = {
        "old": EventBinding(7, "old", "ck1", 1, 1, None),
        "gone": EventBinding(8, "gone", "c", 1, 1, None),
    }
    rebuilt = StoredEvent(meeting("new"), [], crm_event_id=7, expected_version=1)
    updated = StoredEvent(meeting("g1"), [], crm_event_id=8, expected_version=1)
    assert removals(["old", "gone", "unknown"], old, [rebuilt], {}) == ["gone", "unknown"]
    # An item already bound to the event moves nothing: the removal stands.
    assert removals(["gone"], old, [updated], {"g1": binding()}) == ["gone"]


# --- occurrences Outlook cancelled before they came back ---------------------------------------


def outlook_instance(start, *, original=None, **fields) -> CalendarEvent:
    return replace(
        meeting(f"i-{start:%d%H%M}", start=start),
        event_type=EventType.EXCEPTION if original else EventType.OCCURRENCE,
        series_master_id="m1",
        original_start=original or start,
        **fields,
    )


def test_a_crm_occurrence_no_instance_fills_was_cancelled_in_outlook():
    """Seed 61480911: three CRM occurrences, Outlook's instances fill two slots (one moved
    away as an exception, still naming its slot): the third is removed, under the versions
    the decision saw."""
    day = NOW + timedelta(days=3)
    crm = tuple(
        candidate(20 + n, series_master_id=9, start=day + timedelta(days=n), version=2 + n)
        for n in range(3)
    )
    series = UnconfirmedOccurrences("m1", 9, 4, crm)
    instances = [
        outlook_instance(day),
        outlook_instance(day + timedelta(days=2, hours=5), original=day + timedelta(days=2)),
    ]
    assert cancelled_occurrences(series, instances) == [OccurrenceRemoval(21, 3, 9, 4)]
    assert (
        cancelled_occurrences(series, [*instances, outlook_instance(day + timedelta(days=1))]) == []
    )
    # An instance Graph serves cancelled fills nothing; an occurrence with no original start
    # fills the slot it starts in.
    cancelled = outlook_instance(day + timedelta(days=1), is_cancelled=True)
    assert [r.crm_event_id for r in cancelled_occurrences(series, [*instances, cancelled])] == [21]
    plain = replace(outlook_instance(day + timedelta(days=1)), original_start=None)
    assert cancelled_occurrences(series, [*instances, plain]) == []
    assert [r.crm_event_id for r in cancelled_occurrences(series, [])] == [20, 21, 22]


def test_all_day_occurrences_are_judged_by_their_day():
    """An all-day instance fills its day (its start date, or an original start within the
    day's zones), never a neighbouring day."""
    first = date(2026, 12, 1)
    crm = tuple(
        candidate(30 + n, series_master_id=9, is_all_day=True, start=None,
                  start_date=first + timedelta(days=n))
        for n in range(3)
    )  # fmt: skip
    series = UnconfirmedOccurrences("m1", 9, 1, crm)
    by_date = replace(
        outlook_instance(NOW), is_all_day=True, start=None, start_date=first, original_start=None
    )
    paris = replace(  # the second day's midnight in Paris, in UTC: the evening before
        by_date, start_date=None, original_start=datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    )
    found = cancelled_occurrences(series, [by_date, paris])
    assert [r.crm_event_id for r in found] == [32]


def test_instances_are_asked_over_the_slots_with_room_for_moved_exceptions():
    day = NOW + timedelta(days=3)
    series = UnconfirmedOccurrences(
        "m1", 9, 1, (candidate(1, start=day), candidate(2, start=day + timedelta(days=4)))
    )
    assert instances_range(series) == (day - timedelta(days=7), day + timedelta(days=11))


# --- our creates: the CRM's tag, and a create whose meeting the CRM deleted (issue #17) -------

TAG = "1a2b3c4d"


def test_a_create_carries_the_crms_tag_and_only_ours_or_legacy_ones_are_recognised():
    (create,) = plan_outbound([change(7)], now=NOW, account_address=ME, crm_tag=TAG)
    assert create.transaction_id == "m365sync-1a2b3c4d-crm-event-7"
    assert len(create.transaction_id) <= 40  # about Graph's own example, a 36-character GUID
    assert our_create(create.transaction_id, TAG) == OurCreate(7, tagged=True)
    assert our_create("m365sync-crm-event-7", TAG) == OurCreate(7, tagged=False)  # legacy
    assert our_create("m365sync-crm-event-7", "") == OurCreate(7, tagged=False)
    assert our_create(create.transaction_id, "ffff0000") is None  # another CRM's create
    assert our_create(create.transaction_id, "") is None  # a CRM that gives no tag: not ours
    for foreign in (
        None,
        "",
        "7E163156-7762-4BEB-A1C6-729EA81755A7",
        "m365sync-crm-event-x",
        "m365sync-crm-event-",
        "m365sync-1a2b3c4d-crm-event-7 ",
        "m365sync-crm-event-\uff17",
    ):
        assert our_create(foreign, TAG) is None
    assert crm_event_of(create.transaction_id, TAG) == 7
    assert crm_event_of(create.transaction_id, "ffff0000") is None


def test_an_unusable_tag_is_refused_rather_than_written_into_a_create():
    for bad in ("1A2B", "a-b", "x" * 17, " 1a"):
        try:
            transaction_id(CrmEventChange(1, meeting(), 1), bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was taken")


def test_another_crms_create_is_never_the_same_meeting():
    item = replace(meeting(), ical_uid=None, transaction_id="m365sync-ffff0000-crm-event-4")
    assert same_meeting(item, [candidate(4)], crm_tag=TAG) is None
    ours = replace(item, transaction_id=f"m365sync-{TAG}-crm-event-4")
    assert same_meeting(ours, [candidate(4)], crm_tag=TAG).crm_event_id == 4
    legacy = replace(item, transaction_id="m365sync-crm-event-4")
    assert same_meeting(legacy, [candidate(4)], crm_tag=TAG).crm_event_id == 4


def _orphan(graph_id="g9", *, crm_id=4, tag=TAG, organizer=True, **fields) -> CalendarEvent:
    transaction = f"m365sync-{tag}-crm-event-{crm_id}" if tag else f"m365sync-crm-event-{crm_id}"
    return replace(meeting(graph_id), transaction_id=transaction, is_organizer=organizer, **fields)


def test_our_create_of_an_event_the_crm_deleted_is_deleted_from_outlook_not_stored():
    """The daemon killed between Graph's answer and the record, then the meeting deleted in
    the CRM: the pull's copy is deleted from Outlook, never a new CRM meeting."""
    item = _orphan()
    plan = plan_inbound([item], {}, LOOKUPS, POLICY, crm_tag=TAG, last_event_id=10)
    assert plan.outlook_deletes == [DeleteInOutlook("g9", 4, False, "Review")]
    assert plan.upserts == [] and plan.skipped[SKIP_DELETED_IN_CRM] == 1
    # A tombstone still held (the embedded store's) is not the meeting either.
    gone = [candidate(4, deleted=True)]
    plan = plan_inbound([item], {}, LOOKUPS, POLICY, candidates=gone, crm_tag=TAG, last_event_id=4)
    assert [d.crm_event_id for d in plan.outlook_deletes] == [4]


def test_what_the_rule_never_deletes():
    alive = [candidate(4, ical_uid="other")]
    cases = {
        "the CRM holds the event": (_orphan(), alive, 10),
        "a legacy untagged create (maybe another CRM's)": (_orphan(tag=""), [], 10),
        "another CRM's create": (_orphan(tag="ffff0000"), [], 10),
        "an invitee's copy": (_orphan(organizer=False), [], 10),
        "Graph did not say who organizes": (_orphan(organizer=None), [], 10),
        "an id this copy of the database never gave": (_orphan(crm_id=11), [], 10),
        "no transactionId": (replace(_orphan(), transaction_id=None), [], 10),
    }
    for why, (item, candidates, last) in cases.items():
        plan = plan_inbound(
            [item], {}, LOOKUPS, POLICY, candidates=candidates, crm_tag=TAG, last_event_id=last
        )
        assert plan.outlook_deletes == [], why
        assert len(plan.upserts) == 1, why
    # Bound already: the store knows it, whatever its transactionId says.
    assert deleted_in_crm([_orphan()], {"g9": binding()}, [], crm_tag=TAG, last_event_id=10) == []
    # A plan made without the store's tag and figures (the default) deletes nothing.
    assert plan_inbound([_orphan()], {}, LOOKUPS, POLICY).outlook_deletes == []


def test_a_series_we_created_goes_with_its_master_and_its_occurrences_are_not_stored():
    master = _orphan(
        "m1",
        event_type=EventType.SERIES_MASTER,
        recurrence=Recurrence("daily", NOW.date()),
    )
    occurrences = [
        replace(
            meeting(f"m1-{n}"),
            event_type=EventType.OCCURRENCE,
            series_master_id="m1",
            original_start=NOW + timedelta(days=n),
            is_organizer=True,
        )
        for n in range(2)
    ]
    plan = plan_inbound([master, *occurrences], {}, LOOKUPS, POLICY, crm_tag=TAG, last_event_id=10)
    assert plan.outlook_deletes == [DeleteInOutlook("m1", 4, True, "Review")]
    assert plan.upserts == [] and plan.skipped[SKIP_DELETED_IN_CRM] == 3
