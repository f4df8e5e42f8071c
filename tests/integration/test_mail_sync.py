"""Mail cycles against the emulator over HTTPS into the embedded store: full, incremental,
throttled, 410, crash and resume."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from m365sync.domain import CursorKind
from m365sync.errors import Conflict, CrmUnavailable
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account

DELTA = r"/messages/delta"


@pytest.fixture
def account(stack):
    return connect_account(stack.runtime, browser="follow")


def sync(stack, account):
    return sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))


def folder_ids(stack):
    return [stack.emulator.mailbox.resolve_folder(n)["id"] for n in ("inbox", "sentitems")]


def test_full_then_incremental(stack, account):
    full = sync(stack, account)
    assert full.error is None
    assert full.imported > 50 and full.pages >= 2
    stored = stack.gateway.count_messages(account.id)
    assert stored == full.imported
    for folder in folder_ids(stack):
        assert stack.gateway.get_cursor(account.id, folder).kind is CursorKind.DELTA
    assert sum(full.skipped.values()) > 0  # internal-only and unknown senders are in the seed

    quiet = sync(stack, account)
    assert (quiet.imported, quiet.removed) == (0, 0)

    mailbox = stack.emulator.mailbox
    known = next(m for m in mailbox.messages_in("inbox") if m["id"] in
                 stack.gateway.message_ids_for_account(account.id))
    mailbox.add_message("inbox", {
        "subject": "Follow-up",
        "conversationId": known.get("conversationId"),
        "from": known["from"],
        "toRecipients": [{"emailAddress": {"address": mailbox.user["mail"]}}],
        "body": {"contentType": "html", "content": "<p>One more thing</p>"},
    })
    mailbox.delete_message(known["id"])
    changed = sync(stack, account)
    assert (changed.imported, changed.removed) == (1, 1)
    assert stack.gateway.count_messages(account.id) == stored


def test_delta_paging_reaches_the_delta_link_across_429_and_503(stack, account):
    stack.emulator.faults.throttle(DELTA, times=2, retry_after="0.25")
    stack.emulator.faults.unavailable(DELTA, times=1, retry_after="0.1")
    run = sync(stack, account)
    assert run.error is None
    statuses = Counter(r.status for r in stack.emulator.requests if DELTA in r.path)
    assert statuses[429] == 2 and statuses[503] == 1
    for folder in folder_ids(stack):
        assert stack.gateway.get_cursor(account.id, folder).kind is CursorKind.DELTA
    expected = stack.gateway.count_messages(account.id)
    # The same mailbox synced without faults into a fresh folder state stores the same.
    for folder in folder_ids(stack):
        stack.gateway.reset_folder(account.id, folder)
    again = sync(stack, account)
    assert again.imported == 0 and stack.gateway.count_messages(account.id) == expected


def test_410_restarts_the_folder_without_duplicates(stack, account):
    sync(stack, account)
    before = stack.gateway.count_messages(account.id)
    stack.emulator.mailbox.drop_sync_states()
    run = sync(stack, account)
    assert run.error is None
    assert run.imported == 0
    assert stack.gateway.count_messages(account.id) == before
    assert any(r.status == 410 for r in stack.emulator.requests)


class CrashAfter:
    """A gateway that dies (like a killed process) on its Nth page write of ``folder`` (folders
    sync side by side: the others' pages pass until the cycle stops)."""

    def __init__(self, inner, pages: int, folder: str, error: Exception | None = None) -> None:
        self.inner, self.left, self.folder = inner, pages, folder
        self.error = error or CrmUnavailable("simulated crash between two pages")

    def store_mail_page(self, page, *, lease=None):
        if page.folder_id == self.folder:
            self.left -= 1
            if self.left < 0:
                raise self.error
        return self.inner.store_mail_page(page, lease=lease)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_crash_between_pages_resumes_without_loss_or_duplicate(stack, account, tmp_path):
    reference = sync(stack, account)
    expected = stack.gateway.message_ids_for_account(account.id)
    # Start over on a fresh store file, crash after two pages, then resume.
    from m365sync.crm.sqlite import SqliteGateway
    from m365sync.demo import seed_crm
    from m365sync.service.runtime import Runtime

    gateway = SqliteGateway(tmp_path / "second.sqlite3")
    seed_crm(gateway, stack.emulator.mailbox, share=1.0)
    runtime = Runtime.build(stack.config, gateway)
    second = connect_account(runtime, browser="follow")
    inbox = folder_ids(stack)[0]
    runtime.gateway = CrashAfter(gateway, pages=2, folder=inbox)
    crashed = sync_account_mail(runtime, gateway.get_account(second.id))
    assert crashed.error and "CRM could not be reached" in crashed.error
    assert gateway.get_cursor(second.id, inbox).kind is CursorKind.NEXT
    partial = gateway.count_messages(second.id)
    assert 0 < partial < reference.imported
    runtime.gateway = gateway
    resumed = sync_account_mail(runtime, gateway.get_account(second.id))
    assert resumed.error is None
    assert gateway.message_ids_for_account(second.id) == expected
    runtime.close()


def test_a_conflict_in_the_crm_fails_the_cycle_and_the_next_one_carries_on(stack, account):
    """Odoo's serialization failure it gave up retrying (another writer saved the same
    records) reaches the daemon as `Conflict`: the cycle ends with the account's status saying
    so and nothing lost, and the next cycle stores everything (issue #17)."""
    from m365sync.domain import AccountStatus

    inbox = folder_ids(stack)[0]
    gateway = stack.gateway
    stack.runtime.gateway = CrashAfter(gateway, pages=0, folder=inbox, error=Conflict(
        "Odoo at x: another writer changed the same records first; retry."))  # fmt: skip
    try:
        failed = sync_account_mail(stack.runtime, gateway.get_account(account.id))
    finally:
        stack.runtime.gateway = gateway
    assert failed.error and "nothing was lost" in failed.error
    status = gateway.get_account(account.id)
    assert status.status is AccountStatus.FAILED
    assert "another writer" in (status.status_detail or "")
    assert gateway.get_cursor(account.id, inbox) is None  # the inbox's first page not stored
    again = sync(stack, account)
    assert again.error is None and again.imported > 0
    for folder in folder_ids(stack):
        assert gateway.get_cursor(account.id, folder).kind is CursorKind.DELTA
    assert gateway.get_account(account.id).status is AccountStatus.ACTIVE


def test_malformed_items_are_counted_and_the_page_is_stored(stack, account):
    mailbox = stack.emulator.mailbox
    sender = mailbox.messages_in("inbox")[0]["from"]
    mailbox.add_raw_message("inbox", {"subject": ["not", "a", "string"], "from": 42})
    mailbox.add_raw_message("inbox", {"receivedDateTime": "yesterday-ish", "from": sender})
    run = sync(stack, account)
    assert run.error is None
    assert run.skipped.get("malformed item") == 2
    assert run.imported > 0


class RecordingCrash(CrashAfter):
    """CrashAfter that keeps the cursor of each page write it let through, in order."""

    def __init__(self, inner, pages: int, folder: str) -> None:
        super().__init__(inner, pages, folder)
        self.cursors: list[str] = []

    def store_mail_page(self, page, *, lease=None):
        result = super().store_mail_page(page, lease=lease)
        if page.folder_id == self.folder:
            self.cursors.append(page.cursor.link)
        return result


def test_a_crash_between_prefetch_and_store_stores_no_cursor_early(stack, account, tmp_path):
    """Page N+1 is fetched while page N is stored (service/prefetch.py). The store dies on
    page 3 after page 4 was already read: the cursor is page 2's, nothing of pages 3 and 4
    is stored, and resuming stores exactly what an uninterrupted sync stores."""
    from m365sync.crm.sqlite import SqliteGateway
    from m365sync.demo import seed_crm
    from m365sync.service.runtime import Runtime

    reference = sync(stack, account)
    expected = stack.gateway.message_ids_for_account(account.id)
    gateway = SqliteGateway(tmp_path / "second.sqlite3")
    seed_crm(gateway, stack.emulator.mailbox, share=1.0)
    # Pages of 30: the Inbox spans well over four pages, whichever folders the seed files into.
    config = replace(stack.config, sync=replace(stack.config.sync, page_size=30))
    assert len(stack.emulator.mailbox.messages_in("inbox")) > 4 * 30
    runtime = Runtime.build(config, gateway)
    second = connect_account(runtime, browser="follow")
    inbox = folder_ids(stack)[0]
    crashing = RecordingCrash(gateway, pages=2, folder=inbox)
    runtime.gateway = crashing
    stack.emulator.request_log.clear()
    crashed = sync_account_mail(runtime, gateway.get_account(second.id))
    assert crashed.error and "CRM could not be reached" in crashed.error
    pages_read = [r for r in stack.emulator.requests if DELTA in r.path and inbox in r.path]
    # Pages 1-3 were read for storing, page 4 ahead of the store that failed on page 3.
    assert len(pages_read) == 4
    assert len(crashing.cursors) == 2
    stored = gateway.get_cursor(second.id, inbox)
    assert stored.kind is CursorKind.NEXT and stored.link == crashing.cursors[-1]
    # Page 2's cursor is the link page 3 was read from: nothing beyond page 2 was stored.
    assert pages_read[2].query == urlsplit(stored.link).query
    page_size = config.sync.page_size
    in_inbox = {m["id"] for m in stack.emulator.mailbox.messages_in("inbox")}
    stored_inbox = in_inbox & set(gateway.message_ids_for_account(second.id))
    assert 0 < len(stored_inbox) <= 2 * page_size < reference.imported
    runtime.gateway = gateway
    resumed = sync_account_mail(runtime, gateway.get_account(second.id))
    assert resumed.error is None
    assert gateway.message_ids_for_account(second.id) == expected
    runtime.close()


def test_pages_smaller_than_asked_are_followed(stack, account, monkeypatch):
    """Graph may send fewer messages per page than odata.maxpagesize asks for: the cycle
    follows its links and stores the same as with full pages."""
    import math

    from m365sync.emulator import graph_api

    monkeypatch.setattr(graph_api, "MAX_PREFERRED_PAGE", 17)
    run = sync(stack, account)
    assert run.error is None
    mailbox = stack.emulator.mailbox
    for name, folder in zip(("inbox", "sentitems"), folder_ids(stack), strict=True):
        asked = [r for r in stack.emulator.requests if DELTA in r.path and folder in r.path]
        assert all("odata.maxpagesize=50" in (r.prefer or "") for r in asked)  # asked for 50
        assert len(asked) == math.ceil(len(mailbox.messages_in(name)) / 17)
    monkeypatch.undo()
    for folder in folder_ids(stack):
        stack.gateway.reset_folder(account.id, folder)
    again = sync(stack, account)
    assert again.error is None and again.imported == 0  # full pages: the same messages
    assert stack.gateway.count_messages(account.id) == run.imported
