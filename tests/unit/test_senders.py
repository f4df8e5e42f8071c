"""Machine, list and role senders never become person contacts (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365sync.domain import EmailAddress, MailMessage
from m365sync.sync.senders import (
    REASON_AUTO_REPLY,
    REASON_AUTO_SUBMITTED,
    REASON_BULK,
    REASON_DELIVERY_REPORT,
    REASON_DISTRIBUTION_LIST,
    REASON_INVALID,
    REASON_MAIL_SYSTEM,
    REASON_MAILING_LIST,
    REASON_NO_REPLY,
    REASON_NOTIFICATIONS,
    REASON_ROLE,
    address_reason,
    is_automated,
    is_role_address,
    message_reason,
    strip_plus_tag,
)


def message(headers: dict[str, str] | None = None, sender: str = "anna@fabrikam.com"):
    return MailMessage(
        graph_id="id1",
        internet_message_id="<1@x>",
        conversation_id="c1",
        folder_id="inbox",
        subject="Hello",
        sender=EmailAddress(sender),
        to=(EmailAddress("meganb@contoso.com"),),
        headers=headers or {},
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("noreply@fabrikam.com", REASON_NO_REPLY),
        ("No-Reply@Fabrikam.com", REASON_NO_REPLY),
        ("no_reply@fabrikam.com", REASON_NO_REPLY),
        ("donotreply@fabrikam.com", REASON_NO_REPLY),
        ("do-not-reply@fabrikam.com", REASON_NO_REPLY),
        ("calendar-noreply@google.com", REASON_NO_REPLY),
        ("noreply+tracking@fabrikam.com", REASON_NO_REPLY),
        ("MAILER-DAEMON@mx.fabrikam.com", REASON_MAIL_SYSTEM),
        ("postmaster@fabrikam.com", REASON_MAIL_SYSTEM),
        ("bounces@fabrikam.com", REASON_MAIL_SYSTEM),
        ("bounce-mc.us5_1234.567-anna=contoso.com@mail.fabrikam.com", REASON_MAIL_SYSTEM),
        ("bounces+12345-abcd-anna=contoso.com@em.fabrikam.com", REASON_MAIL_SYSTEM),
        ("notifications@github.com", REASON_NOTIFICATIONS),
        ("newsletter@fabrikam.com", REASON_NOTIFICATIONS),
        ("dl-emea-sales@fabrikam.com", REASON_DISTRIBUTION_LIST),
        ("sales.dl@fabrikam.com", REASON_DISTRIBUTION_LIST),
        ("all-staff@fabrikam.com", REASON_DISTRIBUTION_LIST),
        ("everyone@fabrikam.com", REASON_DISTRIBUTION_LIST),
        ("all@fabrikam.com", REASON_DISTRIBUTION_LIST),
        ("info@fabrikam.com", REASON_ROLE),
        ("sales@fabrikam.com", REASON_ROLE),
        ("support@fabrikam.com", REASON_ROLE),
        ("team@fabrikam.com", REASON_ROLE),
        ("hello@fabrikam.com", REASON_ROLE),
        ("contact@fabrikam.com", REASON_ROLE),
        ("billing@fabrikam.com", REASON_ROLE),
        ("admin@fabrikam.com", REASON_ROLE),
        ("customer.service@fabrikam.com", REASON_ROLE),
        ("sales-team@fabrikam.com", REASON_ROLE),
        ("sales-de@fabrikam.com", REASON_ROLE),
        ("info+web@fabrikam.com", REASON_ROLE),
        ("not an address", REASON_INVALID),
        ("", REASON_INVALID),
    ],
)
def test_address_rules(address, reason):
    assert address_reason(address) == reason
    assert is_automated(message(), address) == reason


@pytest.mark.parametrize(
    "address",
    [
        "anna.smith@fabrikam.com",
        "jsmith@fabrikam.com",
        "anna+crm@fabrikam.com",
        "salesforce.admin.anna@fabrikam.com",  # a person whose name holds a role word
        "infante@fabrikam.com",  # role words match whole words, not prefixes
        "allan@fabrikam.com",
        "de@fabrikam.com",  # a qualifier alone is a person's initials, not a role
        "team.lead.bob@fabrikam.com",
        "dlambert@fabrikam.com",
    ],
)
def test_people_are_not_automated(address):
    assert address_reason(address) is None
    assert is_automated(message(), address) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"List-Id": "<announce.lists.fabrikam.com>"}, REASON_MAILING_LIST),
        ({"list-unsubscribe": "<mailto:unsub@fabrikam.com>"}, REASON_MAILING_LIST),
        ({"LIST-POST": "<mailto:dev@lists.fabrikam.com>"}, REASON_MAILING_LIST),
        ({"Precedence": "bulk"}, REASON_BULK),
        ({"precedence": "List"}, REASON_BULK),
        ({"Precedence": "junk"}, REASON_BULK),
        ({"Precedence": "auto_reply"}, REASON_AUTO_REPLY),
        ({"Auto-Submitted": "auto-replied"}, REASON_AUTO_SUBMITTED),
        ({"auto-submitted": "auto-generated"}, REASON_AUTO_SUBMITTED),
        ({"Auto-Submitted": "auto-notified; owner-email=x@y.com"}, REASON_AUTO_SUBMITTED),
        ({"X-Auto-Response-Suppress": "All"}, REASON_AUTO_REPLY),
        ({"X-Auto-Response-Suppress": "DR, OOF, AutoReply"}, REASON_AUTO_REPLY),
        ({"X-Autoreply": "yes"}, REASON_AUTO_REPLY),
        ({"Content-Type": "multipart/report; report-type=delivery-status"}, REASON_DELIVERY_REPORT),
        ({"Return-Path": "<>"}, REASON_DELIVERY_REPORT),
    ],
)
def test_header_rules_apply_to_every_participant(headers, reason):
    mail = message(headers)
    assert message_reason(mail) == reason
    assert is_automated(mail, "anna.smith@fabrikam.com") == reason
    assert is_automated(mail, "meganb@contoso.com") == reason


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Auto-Submitted": "no"},
        {"Precedence": "first-class"},
        {"X-Auto-Response-Suppress": "RN, NRN"},  # read-receipt suppression on human mail
        {"Return-Path": "<anna@fabrikam.com>"},
        {"Content-Type": "multipart/alternative; boundary=x"},
        {"Received": "from mx.fabrikam.com", "Message-ID": "<1@x>"},
    ],
)
def test_human_mail_headers(headers):
    assert message_reason(message(headers)) is None


def test_address_reason_wins_over_header_reason():
    mail = message({"Precedence": "bulk"})
    assert is_automated(mail, "noreply@fabrikam.com") == REASON_NO_REPLY


def test_role_address_helper():
    assert is_role_address("sales@fabrikam.com")
    assert is_role_address("dl-emea@fabrikam.com")
    assert not is_role_address("noreply@fabrikam.com")
    assert not is_role_address("anna@fabrikam.com")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("anna+crm@x.com", "anna@x.com"),
        ("anna+a+b@x.com", "anna@x.com"),
        ("anna@x.com", "anna@x.com"),
        ("+tag@x.com", "+tag@x.com"),  # nothing left of the mailbox: unchanged
        ("not-an-address", "not-an-address"),
        ("a+b", "a+b"),
    ],
)
def test_strip_plus_tag(raw, expected):
    assert strip_plus_tag(raw) == expected


local_parts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-_+", min_size=1, max_size=20)


@given(local_parts, st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5))
def test_never_raises_and_names_a_known_reason(local, headers):
    known = {
        None,
        REASON_AUTO_REPLY,
        REASON_AUTO_SUBMITTED,
        REASON_BULK,
        REASON_DELIVERY_REPORT,
        REASON_DISTRIBUTION_LIST,
        REASON_INVALID,
        REASON_MAIL_SYSTEM,
        REASON_MAILING_LIST,
        REASON_NO_REPLY,
        REASON_NOTIFICATIONS,
        REASON_ROLE,
    }
    assert is_automated(message(headers), f"{local}@fabrikam.com") in known


@given(st.text(max_size=30), st.text(max_size=30))
def test_strip_plus_tag_is_idempotent(local, tag):
    address = f"{local}+{tag}@x.com"
    once = strip_plus_tag(address)
    assert strip_plus_tag(once) == once or "+" in local
