"""Domain dataclasses survive the trip to JSON and back (what the Odoo adapter sends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

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
