"""The mail issue's rules end to end: folders, moves, two mailboxes, 410 mid-round, throttling
storms, malformed items. Emulator over HTTPS -> daemon -> embedded store."""

from __future__ import annotations

import copy
import uuid
from collections import Counter

from m365sync.domain import CursorKind
from m365sync.emulator.mailbox import Mailbox
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from tests.integration.conftest import build_stack


def sync(stack, account):
    return sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))


def stored_inbox_message(stack, account):
    ids = stack.gateway.message_ids_for_account(account.id)
    return next(m for m in stack.emulator.mailbox.messages_in("inbox") if m["id"] in ids)


def test_child_folders_are_walked_and_a_move_keeps_one_copy(tmp_path):
    mailbox = Mailbox.seeded(size=200, seed=5)
    customers = mailbox.add_folder("Customers", "inbox")
    stack = build_stack(tmp_path, mailbox, sync_extra="include_child_folders = true\n")
    try:
        account = connect_account(stack.runtime, browser="follow")
        first = sync(stack, account)
        assert first.error is None
        assert stack.gateway.get_cursor(account.id, customers["id"]).kind is CursorKind.DELTA
        before = stack.gateway.count_messages(account.id)
        message = stored_inbox_message(stack, account)
        mailbox.move_message(message["id"], customers["id"])
        moved = sync(stack, account)
        assert moved.error is None
        assert stack.gateway.count_messages(account.id) == before
        assert message["id"] in stack.gateway.message_ids_for_account(account.id)
    finally:
        stack.runtime.close()
        stack.emulator.stop()


def test_the_same_message_in_two_mailboxes_is_stored_once(tmp_path):
    megan = Mailbox.seeded(size=120, seed=8)
    isaiah = Mailbox(
        {
            "id": str(uuid.uuid4()),
            "displayName": "Isaiah Langer",
            "mail": "IsaiahL@contoso.com",
            "userPrincipalName": "IsaiahL@contoso.com",
        },
        tenant_id=megan.tenant_id,
    )
    shared = copy.deepcopy(next(m for m in megan.messages_in("inbox") if m.get("from")))
    for key in ("id", "changeKey", "@odata.etag", "parentFolderId"):
        shared.pop(key, None)
    isaiah.add_message("inbox", shared)
    one = build_stack(tmp_path / "megan", megan)
    two = build_stack(
        tmp_path / "isaiah",
        isaiah,
        store_path=one.config.store.sqlite_path(),
        keys_path=one.config.keys.keyring_path(),
        seed_partners=False,
    )
    try:
        a = connect_account(one.runtime, browser="follow")
        b = connect_account(two.runtime, browser="follow")
        assert a.id != b.id
        assert sync(one, a).error is None
        total = one.gateway.count_messages()
        run = sync(two, b)
        assert run.error is None and run.imported == 0  # linked, not copied
        assert one.gateway.count_messages() == total
        ids_b = two.gateway.message_ids_for_account(b.id)
        assert shared["internetMessageId"] in ids_b.values()
        ids_a = one.gateway.message_ids_for_account(a.id)
        assert shared["internetMessageId"] in ids_a.values()
    finally:
        for stack in (one, two):
            stack.runtime.close()
            stack.emulator.stop()


def test_410_in_the_middle_of_a_round_restarts_the_folder(stack):
    account = connect_account(stack.runtime, browser="follow")
    # Next links use the rewritten mailFolders('ID') form: this hits a page after the first.
    stack.emulator.faults.gone(r"mailFolders\('", times=1)
    run = sync(stack, account)
    assert run.error is None
    assert any(r.status == 410 for r in stack.emulator.requests)
    ids = stack.gateway.message_ids_for_account(account.id)
    counts = Counter(ids.values())
    assert all(n == 1 for mid, n in counts.items() if mid)  # no duplicate internetMessageId
    reference = build_reference(stack)
    assert set(ids) == reference


def build_reference(stack):
    """What a fault-free sync of the same mailbox stores (through a fresh folder state)."""
    account = stack.gateway.list_accounts()[0]
    for name in ("inbox", "sentitems"):
        stack.gateway.reset_folder(account.id, stack.emulator.mailbox.resolve_folder(name)["id"])
    again = sync(stack, account)
    assert again.imported == 0
    return set(stack.gateway.message_ids_for_account(account.id))


def test_a_429_storm_is_waited_out_as_graph_asks(stack):
    account = connect_account(stack.runtime, browser="follow")
    stack.emulator.faults.throttle(r"/messages/delta", times=6, retry_after="0.05",
                                   code="ApplicationThrottled")
    run = sync(stack, account)
    assert run.error is None
    throttled = [r for r in stack.emulator.requests if r.status == 429]
    assert len(throttled) == 6
    assert stack.gateway.get_account(account.id).status.value == "active"


def test_throttling_past_the_budget_turns_throttled_then_resumes(stack):
    account = connect_account(stack.runtime, browser="follow")
    stack.emulator.faults.throttle(r"/messages/delta", times=1, retry_after="900")
    run = sync(stack, account)
    assert run.error
    status = stack.gateway.get_account(account.id)
    assert status.status.value == "throttled" and status.status_until is not None
    resumed = sync(stack, account)
    assert resumed.error is None and resumed.imported > 0


def test_malformed_items_of_every_kind_leave_the_rest_of_the_page_stored(stack):
    account = connect_account(stack.runtime, browser="follow")
    mailbox = stack.emulator.mailbox
    known = mailbox.messages_in("inbox")[0]
    me = {"emailAddress": {"address": mailbox.user["mail"]}}
    bad = [
        {"subject": "no sender at all", "toRecipients": [me]},  # missing from
        {"subject": ["wrong", "type"], "from": known["from"]},
        {"receivedDateTime": "not a date", "from": known["from"]},
    ]
    odd_but_fine = [
        {"subject": "x" * 20000, "from": known["from"], "toRecipients": [me]},  # huge subject
        {"subject": "unknown fields", "from": known["from"], "toRecipients": [me],
         "futureField": {"nested": [1, 2]}, "@odata.unknown": True},
        {"subject": "broken html", "from": known["from"], "toRecipients": [me],
         "body": {"contentType": "html", "content": "<div><p>unclosed <b>bold <script>x()"}},
        {"subject": "odd recipients", "from": known["from"],
         "toRecipients": [{"emailAddress": {"address": "not-an-address"}}, me]},
    ]
    for item in bad + odd_but_fine:
        mailbox.add_raw_message("inbox", item)
    run = sync(stack, account)
    assert run.error is None
    assert run.skipped.get("malformed item", 0) + run.skipped.get("no valid address", 0) >= 2
    assert run.imported >= len(odd_but_fine)
    partner = stack.gateway.find_partners_by_emails([known["from"]["emailAddress"]["address"]])
    (contact,) = partner.values()
    subjects = {t.subject for t in stack.gateway.threads_for_partner(contact.id)}
    assert "broken html" in subjects and "unknown fields" in subjects
    assert any(s and s.startswith("xxxx") and len(s) < 20000 for s in subjects)  # cut, kept
