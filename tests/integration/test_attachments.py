"""Attachment metadata over real HTTPS: JSON batching against the emulator, with throttling."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from m365sync.domain import Attachment
from m365sync.emulator.mailbox import Mailbox
from m365sync.errors import Throttled
from m365sync.graph.attachments import fetch_attachment_metadata
from m365sync.service.connect import connect_account
from tests.integration.conftest import Stack, build_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A mailbox large enough that Inbox and Sent Items hold well over a batch (20) of
    messages with attachments, whichever folders the seed spreads its mail over."""
    built = build_stack(tmp_path, Mailbox.seeded(size=600, seed=3))
    try:
        yield built
    finally:
        built.runtime.close()
        built.emulator.stop()


@pytest.fixture
def account(stack):
    return connect_account(stack.runtime, browser="follow")


def expected(mailbox, mid: str) -> tuple[Attachment, ...]:
    return tuple(
        Attachment(a["name"], a["size"], a["contentType"] or "")
        for a in mailbox.attachments(mid)
        if not a["isInline"]
    )


def flagged(mailbox) -> list[str]:
    with mailbox.lock:
        return [m["id"] for _f, m, raw in mailbox.iter_messages() if m.get("hasAttachments")]


def test_metadata_of_every_flagged_message_in_few_batches_across_429(stack, account):
    mailbox = stack.emulator.mailbox
    ids = flagged(mailbox)
    assert len(ids) > 20  # more than one batch
    gone = ids[-1]
    mailbox.delete_message(gone)
    stack.emulator.faults.throttle("/attachments", times=3, retry_after="0.2")
    stack.emulator.request_log.clear()

    found = fetch_attachment_metadata(stack.runtime.graph_for(account), ids)

    assert found[gone] == ()  # 404: the message went away since its delta page
    assert {mid: found[mid] for mid in ids[:-1]} == {
        mid: expected(mailbox, mid) for mid in ids[:-1]
    }
    assert any(len(v) > 1 for v in found.values())
    records = stack.emulator.requests
    envelopes = [r for r in records if r.path == "/v1.0/$batch"]
    assert len(envelopes) == math.ceil(len(ids) / 20) + 1  # one more batch for the 3 throttled
    assert all(r.status == 200 for r in envelopes)
    subs = [r for r in records if r.in_batch]
    assert Counter(r.status for r in subs) == {200: len(ids) - 1, 429: 3, 404: 1}
    assert all(r.query == "$select=id,name,size,contentType,isInline" for r in subs)
    assert all(r.prefer == 'IdType="ImmutableId"' for r in subs)
    assert not [r for r in records if not r.in_batch and r.path != "/v1.0/$batch"]


def test_still_throttled_past_the_budget_raises_throttled(stack, account):
    ids = flagged(stack.emulator.mailbox)[:5]
    stack.emulator.faults.throttle("/attachments", times=None, retry_after="0.3")
    with pytest.raises(Throttled) as caught:
        fetch_attachment_metadata(
            stack.runtime.graph_for(account), ids, budget_seconds=0.5, max_rounds=5
        )
    assert caught.value.retry_after == pytest.approx(0.3)
    batches = [r for r in stack.emulator.requests if r.path == "/v1.0/$batch"]
    assert len(batches) == 2  # 0.3 s waited once; a second wait would pass 0.5 s


# --- a first sync reads them in bulk --------------------------------------------------------


def stored_attachments(stack, account) -> dict[str, tuple[Attachment, ...]]:
    """Per stored Graph id, the attachments the embedded store holds for its message."""
    import sqlite3

    with sqlite3.connect(stack.config.store.sqlite_path()) as conn:
        rows = conn.execute(
            "SELECT l.graph_id, a.name, a.size, a.content_type FROM m365_mail_message_link l "
            "JOIN m365_mail_attachment a ON a.message_id = l.message_id "
            "WHERE l.account_id = ? ORDER BY a.id",
            (account.id,),
        ).fetchall()
    found: dict[str, list[Attachment]] = {}
    for graph_id, name, size, kind in rows:
        found.setdefault(graph_id, []).append(Attachment(name, size, kind))
    return {k: tuple(v) for k, v in found.items()}


def test_first_sync_reads_attachment_metadata_per_folder_not_per_message(stack, account):
    from m365sync.graph.attachments import INDEX_PAGE
    from m365sync.service.account_sync import sync_account_mail

    mailbox = stack.emulator.mailbox
    stack.emulator.request_log.clear()
    run = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
    assert run.error is None and run.imported > 50

    stored_ids = set(stack.gateway.message_ids_for_account(account.id))
    with_files = [mid for mid in flagged(mailbox) if mid in stored_ids]
    assert len(with_files) > 20  # more than one batch's worth, had they been asked one by one
    held = stored_attachments(stack, account)
    assert {mid: held.get(mid, ()) for mid in with_files} == {
        mid: expected(mailbox, mid) for mid in with_files
    }
    records = stack.emulator.requests
    assert not [r for r in records if r.in_batch and r.path.endswith("/attachments")]
    listed = [r for r in records if r.path.endswith("/messages") and "expand" in r.query]
    per_folder = Counter(r.path for r in listed)
    for folder in ("inbox", "sentitems"):
        folder_id = mailbox.resolve_folder(folder)["id"]
        total = sum(1 for m in mailbox.messages_in(folder) if m.get("hasAttachments"))
        assert per_folder[f"/v1.0/me/mailFolders/{folder_id}/messages"] == max(
            1, math.ceil(total / INDEX_PAGE)
        )
    assert all(
        "hasAttachments+eq+true" in r.query or "hasAttachments%20eq%20true" in r.query
        for r in listed
    )


def test_later_cycles_ask_only_about_new_mail_and_index_pages_follow_next_links(
    stack, account, monkeypatch
):
    from m365sync.graph import attachments
    from m365sync.service.account_sync import sync_account_mail

    mailbox = stack.emulator.mailbox
    monkeypatch.setattr(attachments, "INDEX_PAGE", 7)
    first = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
    monkeypatch.undo()
    assert first.error is None
    stored_ids = set(stack.gateway.message_ids_for_account(account.id))
    with_files = [mid for mid in flagged(mailbox) if mid in stored_ids]
    held = stored_attachments(stack, account)
    assert {mid: held.get(mid, ()) for mid in with_files} == {
        mid: expected(mailbox, mid) for mid in with_files
    }
    listed = [r for r in stack.emulator.requests if "expand" in r.query]
    assert len(listed) > 2 and all("top=7" in r.query for r in listed)

    known = next(
        m
        for m in mailbox.messages_in("inbox")
        if m["id"] in set(stack.gateway.message_ids_for_account(account.id))
    )
    new = mailbox.add_message(
        "inbox",
        {
            "subject": "The signed contract",
            "from": known["from"],
            "toRecipients": [{"emailAddress": {"address": mailbox.user["mail"]}}],
            "body": {"contentType": "html", "content": "<p>Attached.</p>"},
            "attachments": [
                {"name": "contract.pdf", "contentType": "application/pdf", "size": 4321}
            ],
        },
    )
    stack.emulator.request_log.clear()
    later = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
    assert later.error is None and later.imported == 1
    records = stack.emulator.requests
    assert not [r for r in records if "expand" in r.query]  # no bulk read for one new message
    asked = [r for r in records if r.in_batch and r.path.endswith("/attachments")]
    assert [r.path for r in asked] == [f"/v1.0/me/messages/{new['id']}/attachments"]
    assert stored_attachments(stack, account)[new["id"]] == (
        Attachment("contract.pdf", 4321, "application/pdf"),
    )
