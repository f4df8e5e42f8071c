"""Domain dataclasses survive the trip to JSON and back (what the Odoo adapter sends)."""

from __future__ import annotations

import base64
import json
import xmlrpc.client
from datetime import UTC, datetime

import pytest

from m365sync.crm.gateway import AccountSpec
from m365sync.crm.wire import from_wire, to_wire
from m365sync.domain import (
    Account,
    AccountStatus,
    Attachment,
    Cursor,
    CursorKind,
    EmailAddress,
    MailMessage,
    OutboxState,
    OutgoingAttachment,
    OutgoingMail,
    PageWrite,
    ParticipantLink,
    Privacy,
    StoredMessage,
    SyncRun,
)

WHEN = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


def round_trip(cls, value):
    return from_wire(cls, json.loads(json.dumps(to_wire(value))))


def test_page_write_round_trip():
    message = MailMessage(
        graph_id="AAkALg==",
        internet_message_id="<a@b>",
        conversation_id="c",
        folder_id="inbox",
        subject="Quote",
        sender=EmailAddress("anna@fabrikam.com", "Anna"),
        to=(EmailAddress("meganb@contoso.com"),),
        received_at=WHEN,
        attachments=(Attachment("q.pdf", 10, "application/pdf"),),
        headers={"List-Id": "x"},
    )
    page = PageWrite(
        account_id=3,
        folder_id="inbox",
        upserts=[
            StoredMessage(message, [ParticipantLink("from", "anna@fabrikam.com", "Anna", 7, 9)])
        ],
        removed_ids=["gone"],
        cursor=Cursor("https://graph/delta?$deltatoken=x", CursorKind.DELTA),
        skipped={"internal only": 2},
        moved={"moved-id": "archive"},
    )
    assert round_trip(PageWrite, page) == page


def test_account_and_run_round_trip():
    account = Account(
        id=1,
        address="a@b.c",
        status=AccountStatus.THROTTLED,
        status_until=WHEN,
        privacy=Privacy.SUBJECT,
        own_domains=("contoso.com",),
    )
    assert round_trip(Account, account) == account
    run = SyncRun(account_id=1, started_at=WHEN, finished_at=WHEN, pages=2, skipped={"x": 1})
    assert round_trip(SyncRun, run) == run
    spec = AccountSpec(address="a@b.c", own_domains=("x.com",))
    assert round_trip(AccountSpec, spec) == spec


def test_naive_datetimes_are_sent_as_utc():
    assert to_wire(datetime(2026, 1, 1, 9, 0)) == "2026-01-01T09:00:00+00:00"


def test_bytes_travel_as_base64_text():
    content = bytes(range(256)) + b"%PDF-1.7\n"
    mail = OutgoingMail(
        id=4,
        account_id=1,
        to=(EmailAddress("anna@fabrikam.com", "Anna"),),
        subject="Quote",
        body_html="<p>attached</p>",
        attachments=(OutgoingAttachment("q.pdf", "application/pdf", content),),
        state=OutboxState.SENDING,
        send_started_at=WHEN,
    )
    wire = to_wire(mail)
    assert wire["attachments"][0]["content"] == base64.b64encode(content).decode("ascii")
    assert round_trip(OutgoingMail, mail) == mail
    assert to_wire(OutgoingAttachment("e.txt", "text/plain", b""))["content"] == ""


def test_base64_from_the_crm_may_be_wrapped_or_binary():
    content = b"x" * 200
    wrapped = base64.encodebytes(content).decode("ascii")  # line breaks every 76 characters
    assert "\n" in wrapped
    read = from_wire(OutgoingAttachment, {"name": "a", "content_type": "b", "content": wrapped})
    assert read.content == content
    binary = {"name": "a", "content_type": "b", "content": xmlrpc.client.Binary(content)}
    assert from_wire(OutgoingAttachment, binary).content == content


def test_text_that_is_not_base64_is_refused():
    with pytest.raises(ValueError, match="not base64"):
        from_wire(OutgoingAttachment, {"name": "a", "content_type": "b", "content": "not b64!"})


def test_false_is_absent_reads_odoos_false_by_the_type():
    """Odoo writes False for every absent value; with ``false_is_absent`` it is None where the
    type allows None, the type's empty value elsewhere, and stays a real False for a bool."""
    run = from_wire(
        SyncRun,
        {"account_id": 3, "started_at": WHEN.isoformat(), "finished_at": False, "error": False},
        false_is_absent=True,
    )
    assert (run.finished_at, run.error) == (None, None)
    mail = from_wire(
        OutgoingMail,
        {
            "id": 1,
            "account_id": 3,
            "to": [{"address": "a@b.example", "name": False}],
            "cc": False,
            "subject": False,
            "body_html": "",
            "attachments": False,
            "state": "queued",
            "attempts": False,
        },
        false_is_absent=True,
    )
    assert (mail.to, mail.cc, mail.subject) == ((EmailAddress("a@b.example", ""),), (), "")
    assert (mail.attachments, mail.attempts) == ((), 0)
    assert from_wire(dict[str, bool], {"x": False}, false_is_absent=True) == {"x": False}
    # Without the flag a False is a value like any other.
    assert (
        from_wire(SyncRun, {"account_id": 3, "started_at": WHEN.isoformat(), "error": False}).error
        is False
    )
