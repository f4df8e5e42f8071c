"""A full resync reconciles (issue #14): mail deleted while the folder's delta state was lost
goes once the fresh round completes, never before, and skip counts stay one round's.
Emulator over HTTPS -> daemon -> embedded store."""

from __future__ import annotations

from collections import Counter

import pytest

from m365sync.domain import CursorKind
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from m365sync.service.mail_cycle import SKIP_MALFORMED
from m365sync.sync import mail

MAIL_SKIPS = {
    mail.SKIP_DRAFT,
    mail.SKIP_NO_PARTICIPANTS,
    mail.SKIP_INTERNAL,
    mail.SKIP_BLOCKLISTED,
    mail.SKIP_UNMATCHED,
    SKIP_MALFORMED,
}

# The emulator's next links use the rewritten mailFolders('ID') form: a page after the first.
LATER_PAGE = r"mailFolders\('"


@pytest.fixture
def account(stack):
    return connect_account(stack.runtime, browser="follow")


def sync(stack, account, **kwargs):
    return sync_account_mail(stack.runtime, stack.gateway.get_account(account.id), **kwargs)


def mail_skips(run) -> dict[str, int]:
    """The cycle's mail skips (its figures hold the calendar's too)."""
    return {reason: n for reason, n in run.skipped.items() if reason in MAIL_SKIPS}


def inbox(stack) -> str:
    return stack.emulator.mailbox.resolve_folder("inbox")["id"]


def delete_three_stored(stack, account) -> list[str]:
    """Delete, in Outlook, three stored Inbox messages that no other folder holds."""
    ids = stack.gateway.message_ids_for_account(account.id)
    imids = Counter(ids.values())
    doomed = [
        m["id"]
        for m in stack.emulator.mailbox.messages_in("inbox")
        if m["id"] in ids and imids[ids[m["id"]]] == 1
    ][3:6]
    assert len(doomed) == 3
    for graph_id in doomed:
        stack.emulator.mailbox.delete_message(graph_id)
    return doomed


def test_a_resync_after_410_removes_what_was_deleted_meanwhile(stack, account):
    full = sync(stack, account)
    assert full.error is None
    skips = stack.gateway.folder_skips(account.id, inbox(stack))
    assert sum(skips.values()) > 0 and mail_skips(full)
    before = stack.gateway.count_messages(account.id)
    doomed = delete_three_stored(stack, account)
    stack.emulator.mailbox.drop_sync_states()  # every cursor now answers 410

    resync = sync(stack, account)

    assert resync.error is None
    assert any(r.status == 410 for r in stack.emulator.requests)
    stored = stack.gateway.message_ids_for_account(account.id)
    assert not set(doomed) & set(stored)
    assert stack.gateway.count_messages(account.id) == before - 3
    assert resync.removed == 3
    # One round's skips, not two: in the folder's tally and in the cycle's figures.
    assert stack.gateway.folder_skips(account.id, inbox(stack)) == skips
    assert mail_skips(resync) == mail_skips(full)


def test_an_interrupted_resync_removes_nothing_until_a_round_completes(stack, account):
    assert sync(stack, account).error is None
    skips = stack.gateway.folder_skips(account.id, inbox(stack))
    before = stack.gateway.message_ids_for_account(account.id)
    doomed = delete_three_stored(stack, account)
    stack.emulator.mailbox.drop_sync_states()
    faults = stack.emulator.faults

    def refuse_the_rest(progress) -> None:
        """Once the fresh round's first Inbox page is stored, Graph refuses every next link."""
        if progress.folder.graph_id == inbox(stack) and not faults.rules:
            faults.add("error", LATER_PAGE, times=None, status=400, code="BadRequest")

    failed = sync(stack, account, on_page=refuse_the_rest)

    assert failed.error
    assert stack.gateway.get_cursor(account.id, inbox(stack)).full_round
    assert stack.gateway.message_ids_for_account(account.id) == before  # nothing deleted
    # The daemon restarts: the next cycle resumes the round and settles it when it completes.
    stack.emulator.faults.clear()
    again = sync_account_mail(stack.new_runtime(), stack.gateway.get_account(account.id))
    assert again.error is None
    stored = stack.gateway.message_ids_for_account(account.id)
    assert set(stored) == set(before) - set(doomed)
    assert stack.gateway.get_cursor(account.id, inbox(stack)).kind is CursorKind.DELTA
    assert stack.gateway.folder_skips(account.id, inbox(stack)) == skips


def test_a_410_in_the_middle_of_a_round_counts_one_round(stack, account):
    # The first round loses its state after its first page and restarts from scratch.
    stack.emulator.faults.gone(LATER_PAGE, times=1)
    restarted = sync(stack, account)
    assert restarted.error is None
    assert [r.status for r in stack.emulator.requests].count(410) == 1
    tallies = {
        name: stack.gateway.folder_skips(
            account.id, stack.emulator.mailbox.resolve_folder(name)["id"]
        )
        for name in ("inbox", "sentitems")
    }
    # A clean full round of the same mailbox counts the same, in the folders and the cycle.
    stack.emulator.mailbox.drop_sync_states()
    clean = sync(stack, account)
    assert clean.error is None
    assert mail_skips(restarted) == mail_skips(clean)
    for name, tally in tallies.items():
        folder = stack.emulator.mailbox.resolve_folder(name)["id"]
        assert stack.gateway.folder_skips(account.id, folder) == tally


def test_a_second_410_fails_the_cycle_and_the_next_one_completes_the_round(stack, account):
    assert sync(stack, account).error is None
    skips = stack.gateway.folder_skips(account.id, inbox(stack))
    before = stack.gateway.message_ids_for_account(account.id)
    doomed = delete_three_stored(stack, account)
    stack.emulator.mailbox.drop_sync_states()
    faults = stack.emulator.faults

    def lose_it_again(progress) -> None:
        """The fresh Inbox round loses its state after its first page: one restart per cycle
        is all a cycle makes, so this cycle fails with the round open."""
        if progress.folder.graph_id == inbox(stack) and not faults.rules:
            faults.gone(LATER_PAGE, times=1)

    failed = sync(stack, account, on_page=lose_it_again)
    assert failed.error
    assert stack.gateway.message_ids_for_account(account.id) == before

    again = sync(stack, account)
    assert again.error is None
    assert set(stack.gateway.message_ids_for_account(account.id)) == set(before) - set(doomed)
    assert stack.gateway.folder_skips(account.id, inbox(stack)) == skips


def test_mail_archived_while_the_state_was_lost_stays(stack, account):
    assert sync(stack, account).error is None
    ids = stack.gateway.message_ids_for_account(account.id)
    archived = next(m["id"] for m in stack.emulator.mailbox.messages_in("inbox") if m["id"] in ids)
    stack.emulator.mailbox.move_message(archived, "archive")
    stack.emulator.mailbox.drop_sync_states()

    assert sync(stack, account).error is None

    assert archived in stack.gateway.message_ids_for_account(account.id)


def test_mail_deleted_for_good_while_the_state_was_lost_goes(stack, account):
    """A full round settles an unlisted id found in Recoverable Items (Shift+Delete) as
    deleted, not as filed elsewhere."""
    assert sync(stack, account).error is None
    ids = stack.gateway.message_ids_for_account(account.id)
    gone = next(m["id"] for m in stack.emulator.mailbox.messages_in("inbox") if m["id"] in ids)
    stack.emulator.mailbox.move_message(gone, "recoverableitemsdeletions")
    stack.emulator.mailbox.drop_sync_states()

    assert sync(stack, account).error is None

    assert gone not in stack.gateway.message_ids_for_account(account.id)
