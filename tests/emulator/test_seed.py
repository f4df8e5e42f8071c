"""The seeded demo mailbox: deterministic, realistic enough to exercise matching, threading,
filtering and the calendar, and cheap at 100,000 messages."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from m365sync.emulator import seed
from m365sync.emulator.mailbox import Mailbox

ANCHOR = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def box() -> Mailbox:
    return seed.build_mailbox(400, seed=1, anchor=ANCHOR)


def everything(mailbox: Mailbox) -> list[dict]:
    """Every message, the user folders' included (Inbox/Key accounts, Inbox/Newsletters)."""
    return [m for folder in mailbox.folders() for m in mailbox.messages_in(folder["id"])]


def test_same_seed_same_mailbox() -> None:
    a = seed.build_mailbox(150, seed=9, anchor=ANCHOR)
    b = seed.build_mailbox(150, seed=9, anchor=ANCHOR)
    c = seed.build_mailbox(150, seed=10, anchor=ANCHOR)
    assert json.dumps(everything(a)) == json.dumps(everything(b))
    assert a.events() == b.events() and a.user == b.user and a.tenant_id == b.tenant_id
    assert json.dumps(everything(a)) != json.dumps(everything(c))
    assert Mailbox.seeded(30).user == Mailbox.seeded(30).user


@pytest.mark.parametrize("size", [10, 11, 200, 1234])
def test_exact_size(size: int) -> None:
    assert seed.build_mailbox(size, seed=2, anchor=ANCHOR).message_count() == size


def test_threads_replies_and_folders(box: Mailbox) -> None:
    owner = box.user["mail"]
    threads = defaultdict(list)
    for m in everything(box):
        threads[m["conversationId"]].append(m)
    multi = [t for t in threads.values() if len(t) > 1]
    assert len(multi) > 20
    for thread in multi:
        ordered = sorted(thread, key=lambda m: m["receivedDateTime"])
        base = ordered[0]["subject"]
        assert all(m["subject"] == f"RE: {base}" for m in ordered[1:])
        assert all("divRplyFwdMsg" in m["body"]["content"] for m in ordered[1:])
    for m in box.messages_in("sentitems"):
        assert m["from"]["emailAddress"]["address"] == owner and m["isRead"]
    for m in box.messages_in("inbox"):
        assert m["from"]["emailAddress"]["address"] != owner
    drafts = box.messages_in("drafts")
    assert drafts and all(m["isDraft"] for m in drafts)
    assert any(m["hasAttachments"] for m in everything(box))
    assert all(
        m["body"]["contentType"] == "html" and m["body"]["content"].startswith("<html>")
        for m in everything(box)
    )
    assert all(
        re.match(r"^<[^<>@\s]+@[^<>@\s]+>$", m["internetMessageId"]) for m in everything(box)
    )
    assert any(m["internetMessageId"].endswith(".prod.outlook.com>") for m in everything(box))


def test_addresses_cover_the_awkward_cases(box: Mailbox) -> None:
    parties = set()
    for m in everything(box):
        for p in [m["from"], *m["toRecipients"], *m["ccRecipients"]]:
            parties.add((p["emailAddress"]["name"], p["emailAddress"]["address"]))
    addresses = {a for _, a in parties}
    assert any(a.isupper() for a in addresses if "@" in a)
    assert any("+" in a.split("@")[0] for a in addresses)
    assert any(not a.isascii() for a in addresses)  # an IDN domain
    assert any("," in n for n, _ in parties)
    assert any(n == a for n, a in parties)  # no display name
    domains = {a.rpartition("@")[2].lower() for a in addresses}
    assert {"gmail.com", "gmx.de", "fabrikam.com", "contoso.com"} <= domains
    internal = [
        m
        for m in everything(box)
        if all(
            p["emailAddress"]["address"].lower().endswith("@contoso.com")
            for p in [m["from"], *m["toRecipients"], *m["ccRecipients"]]
        )
    ]
    assert internal
    bulk = [m for m in everything(box) if "internetMessageHeaders" in m]
    assert bulk
    names = {h["name"] for m in bulk for h in m["internetMessageHeaders"]}
    assert {"List-Id", "Precedence"} <= names


def test_dates_span_two_years_with_recent_mail(box: Mailbox) -> None:
    received = [
        datetime.fromisoformat(m["receivedDateTime"].replace("Z", "+00:00"))
        for m in everything(box)
    ]
    assert max(received) < ANCHOR
    assert min(received) > ANCHOR - timedelta(days=731)
    assert min(received) < ANCHOR - timedelta(days=600)
    recent = sum(r > ANCHOR - timedelta(days=90) for r in received)
    assert 0.05 * len(received) < recent < 0.5 * len(received)


def test_calendar(box: Mailbox) -> None:
    events = box.events()
    zones = {e["start"]["timeZone"] for e in events}
    assert {
        "UTC",
        "Pacific Standard Time",
        "W. Europe Standard Time",
        "Europe/Paris",
        "New Zealand Standard Time",
    } <= zones
    patterns = {e["recurrence"]["pattern"]["type"] for e in events if e["recurrence"]}
    assert {"weekly", "daily", "absoluteMonthly", "relativeMonthly"} <= patterns
    for e in events:
        if e["recurrence"]:
            assert e["type"] == "seriesMaster"
            assert e["recurrence"]["range"]["startDate"] == e["start"]["dateTime"][:10]
    all_day = [e for e in events if e["isAllDay"]]
    assert len(all_day) == 1 and all_day[0]["start"]["dateTime"].endswith("T00:00:00.0000000")
    assert any(e["sensitivity"] == "private" for e in events)
    known = {a.lower() for c in seed.crm_contacts(box) for a in [c["email"]]}
    attendees = {a["emailAddress"]["address"].lower() for e in events for a in e["attendees"]}
    assert attendees - {"adelev@contoso.com", "alexw@contoso.com", "pattif@contoso.com"} <= known


def test_crm_contacts(box: Mailbox) -> None:
    contacts = seed.crm_contacts(box)
    emails = [c["email"].lower() for c in contacts]
    assert len(emails) == len(set(emails))
    assert not any(e.endswith("@contoso.com") for e in emails)
    assert not any(e.startswith(("noreply", "no-reply", "newsletter")) for e in emails)
    fabrikam = [c for c in contacts if c["company_domain"] == "fabrikam.com"]
    assert fabrikam and all(
        c["company"] == "Fabrikam, Inc." and c["website"] == "https://www.fabrikam.com"
        for c in fabrikam
    )
    gmail = [c for c in contacts if c["email"].endswith("@gmail.com")]
    assert gmail and gmail[0]["company"] is None and gmail[0]["website"] is None


def test_a_hundred_thousand_messages_build_quickly() -> None:
    start = time.monotonic()
    mailbox = Mailbox.seeded(100_000, seed=1)
    assert time.monotonic() - start < 15
    assert mailbox.message_count() == 100_000
    inbox = mailbox.resolve_folder("inbox")
    assert inbox is not None and inbox["totalItemCount"] > 40_000
    last = mailbox.message_ids_in("inbox")[-1]
    assert mailbox.get_message(last)["id"] == last
