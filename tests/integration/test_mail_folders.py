"""Mail folders as salespeople use them (issue #14, point 2), over HTTPS against the emulator.

A folder choice per account (Inbox and Sent Items, all mail folders, or chosen ones by
well-known name, display path or id); a folder that cannot be found fails that folder with a
sentence naming it, never the account; the whole tree is walked (every page of every level);
new folders are picked up at the next cycle, and a folder moved or renamed in Outlook keeps its
delta cursor (keyed by its constant id), so its mail is neither duplicated nor dropped.
"""

from __future__ import annotations

import pytest

from m365sync.domain import AccountStatus, CursorKind, FolderChoice
from m365sync.emulator.mailbox import Mailbox
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from tests.integration.conftest import build_stack
from tests.integration.test_cli import _words, m365sync


def sync(stack, account):
    return sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))


def stored_ids(stack, account) -> set[str]:
    return set(stack.gateway.message_ids_for_account(account.id))


def file_mail(mailbox: Mailbox, folder_id: str, like: dict, subject: str) -> str:
    """A mail from a known correspondent, filed in ``folder_id``; its id."""
    added = mailbox.add_message(
        folder_id,
        {
            "subject": subject,
            "from": like["from"],
            "toRecipients": [{"emailAddress": {"address": mailbox.user["mail"]}}],
            "body": {"contentType": "html", "content": f"<p>{subject}</p>"},
        },
    )
    return added["id"]


def known_mail(stack, account) -> dict:
    """An Inbox mail the CRM stored (its sender is a CRM contact)."""
    ids = stored_ids(stack, account)
    return next(m for m in stack.emulator.mailbox.messages_in("inbox") if m["id"] in ids)


def make_stack(tmp_path, sync_extra: str = "", mailbox: Mailbox | None = None):
    return build_stack(tmp_path, mailbox or Mailbox.seeded(size=300, seed=3), sync_extra=sync_extra)


@pytest.fixture
def closing():
    stacks = []
    yield stacks.append
    for stack in stacks:
        stack.runtime.close()
        stack.emulator.stop()


def test_a_folder_by_display_path_is_synced(tmp_path, closing):
    stack = make_stack(tmp_path, 'mail_folders = ["Inbox/Key accounts", "sentitems"]\n')
    closing(stack)
    mailbox = stack.emulator.mailbox
    key_accounts = next(f for f in mailbox.folders() if f["displayName"] == "Key accounts")
    account = connect_account(stack.runtime, browser="follow")

    run = sync(stack, account)

    assert run.error is None, run.error
    filed = set(mailbox.message_ids_in(key_accounts["id"]))
    assert filed and filed & stored_ids(stack, account)
    assert stack.gateway.get_cursor(account.id, key_accounts["id"]).kind is CursorKind.DELTA
    # Only what was asked for: the Inbox itself is not synced.
    assert stack.gateway.get_cursor(account.id, mailbox.resolve_folder("inbox")["id"]) is None


def test_a_folder_not_found_fails_that_folder_only_and_names_it(tmp_path, closing):
    stack = make_stack(tmp_path, 'mail_folders = ["inbox", "Key acounts", "sentitems"]\n')
    closing(stack)
    mailbox = stack.emulator.mailbox
    account = connect_account(stack.runtime, browser="follow")

    run = sync(stack, account)

    # Inbox and Sent Items synced; the misspelt folder is named, with what to do.
    for name in ("inbox", "sentitems"):
        cursor = stack.gateway.get_cursor(account.id, mailbox.resolve_folder(name)["id"])
        assert cursor is not None and cursor.kind is CursorKind.DELTA
    assert run.imported > 50
    assert list(run.folder_problems) == ["Key acounts"]
    assert "Mail folder 'Key acounts' was not found in the mailbox" in run.error
    account = stack.gateway.get_account(account.id)
    assert account.status is AccountStatus.FAILED
    assert account.status_detail.startswith(
        "Mail needs attention: Mail folder 'Key acounts' was not found"
    ), account.status_detail
    assert "sync.mail_folders" in account.status_detail
    assert "Imported" in account.status_detail  # what did sync is still told
    assert account.last_sync_at is not None
    assert "retr" not in account.status_detail  # no promise of a retry that cannot help


def test_all_mail_folders_walks_every_page_of_every_level(tmp_path, closing):
    mailbox = Mailbox.seeded(size=300, seed=3)
    # Twelve more top-level folders put the last ones on the root's second page (Graph's
    # default page is 10); a folder three levels down has twelve children of its own.
    tops = [mailbox.add_folder(f"Region {n:02d}") for n in range(12)]
    deep = mailbox.add_folder("Deals", tops[-1]["id"])
    deeper = mailbox.add_folder("2026", deep["id"])
    leaves = [mailbox.add_folder(f"Deal {n:02d}", deeper["id"]) for n in range(12)]
    hidden = mailbox.add_folder("Hidden", hidden=True)
    stack = make_stack(tmp_path, 'mail_folder_choice = "all"\n', mailbox)
    closing(stack)
    account = connect_account(stack.runtime, browser="follow")
    sync(stack, account)
    like = known_mail(stack, account)
    wanted = {
        file_mail(mailbox, tops[-1]["id"], like, "On page two"),
        file_mail(mailbox, leaves[-1]["id"], like, "Deep down"),
        file_mail(mailbox, mailbox.resolve_folder("archive")["id"], like, "Archived"),
    }
    unwanted = {
        file_mail(mailbox, hidden["id"], like, "Hidden"),
        *(
            file_mail(mailbox, mailbox.resolve_folder(name)["id"], like, f"In {name}")
            for name in ("deleteditems", "junkemail", "outbox", "conversationhistory")
        ),
    }

    run = sync(stack, account)

    assert run.error is None, run.error
    stored = stored_ids(stack, account)
    assert wanted <= stored
    assert not unwanted & stored
    cursors = {
        f["displayName"]: stack.gateway.get_cursor(account.id, f["id"]) for f in mailbox.folders()
    }
    for name in ("Inbox", "Sent Items", "Archive", "Key accounts", "Region 11", "Deal 11"):
        assert cursors[name] is not None, name
    for name in ("Deleted Items", "Junk Email", "Drafts", "Outbox", "Conversation History"):
        assert cursors[name] is None, name
    assert cursors["Weekly digests"] is None  # a search folder: its mail lives in the Inbox
    assert cursors["Hidden"] is None
    # The tree went to the CRM, with paths and counts (the account form's folder list).
    known = {k.folder.path: k for k in stack.gateway.list_mail_folders(account.id)}
    assert known["Region 11/Deals/2026/Deal 11"].synced
    assert known["Region 11/Deals/2026/Deal 11"].folder.total_items == 1
    assert not known["Deleted Items"].synced and not known["Inbox/Weekly digests"].synced


def test_a_new_folder_is_synced_at_the_next_cycle(tmp_path, closing):
    stack = make_stack(tmp_path, 'mail_folder_choice = "all"\n')
    closing(stack)
    mailbox = stack.emulator.mailbox
    account = connect_account(stack.runtime, browser="follow")
    sync(stack, account)
    like = known_mail(stack, account)
    created = mailbox.add_folder("Tenders", mailbox.resolve_folder("inbox")["id"])
    new_mail = file_mail(mailbox, created["id"], like, "Tender documents")

    run = sync(stack, account)

    assert run.error is None and run.imported == 1
    assert new_mail in stored_ids(stack, account)
    assert "Inbox/Tenders" in {k.folder.path for k in stack.gateway.list_mail_folders(account.id)}


def test_a_folder_moved_and_renamed_in_outlook_keeps_its_mail_once(tmp_path, closing):
    stack = make_stack(tmp_path, 'mail_folder_choice = "all"\n')
    closing(stack)
    mailbox = stack.emulator.mailbox
    account = connect_account(stack.runtime, browser="follow")
    sync(stack, account)
    key_accounts = next(f for f in mailbox.folders() if f["displayName"] == "Key accounts")
    before = stack.gateway.count_messages(account.id)
    cursor = stack.gateway.get_cursor(account.id, key_accounts["id"])
    customers = next(f for f in mailbox.folders() if f["displayName"] == "Customers")

    mailbox.move_folder(key_accounts["id"], customers["id"])
    mailbox.rename_folder(key_accounts["id"], "Strategic accounts")
    moved = sync(stack, account)

    # Nothing re-imported, nothing removed: the same id, the same cursor.
    assert (moved.imported, moved.removed, moved.error) == (0, 0, None)
    assert stack.gateway.count_messages(account.id) == before
    assert stack.gateway.get_cursor(account.id, key_accounts["id"]) is not None
    assert cursor is not None
    paths = {k.folder.graph_id: k.folder.path for k in stack.gateway.list_mail_folders(account.id)}
    assert paths[key_accounts["id"]] == "Customers/Strategic accounts"
    # And it goes on: mail filed there afterwards comes in once.
    later = file_mail(mailbox, key_accounts["id"], known_mail(stack, account), "After the move")
    after = sync(stack, account)
    assert after.imported == 1 and later in stored_ids(stack, account)


def test_a_chosen_folder_deleted_in_outlook_is_named_and_the_others_sync(tmp_path, closing):
    stack = make_stack(
        tmp_path, 'mail_folders = ["inbox", "Inbox/Key accounts", "sentitems"]\n'
    )
    closing(stack)
    mailbox = stack.emulator.mailbox
    account = connect_account(stack.runtime, browser="follow")
    assert sync(stack, account).error is None
    key_accounts = next(f for f in mailbox.folders() if f["displayName"] == "Key accounts")
    like = known_mail(stack, account)
    mailbox.delete_folder(key_accounts["id"])
    fresh = file_mail(mailbox, mailbox.resolve_folder("inbox")["id"], like, "Still coming in")

    run = sync(stack, account)

    assert fresh in stored_ids(stack, account)
    assert list(run.folder_problems) == ["Inbox/Key accounts"]
    detail = stack.gateway.get_account(account.id).status_detail
    assert "Mail folder 'Inbox/Key accounts' was not found" in detail


def test_a_folder_gone_between_listing_and_delta_fails_alone(tmp_path, closing):
    stack = make_stack(tmp_path, 'mail_folder_choice = "all"\n')
    closing(stack)
    mailbox = stack.emulator.mailbox
    key_accounts = next(f for f in mailbox.folders() if f["displayName"] == "Key accounts")
    stack.emulator.faults.error(
        f"/mailFolders/{key_accounts['id']}/messages/delta",
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
        times=None,
    )
    account = connect_account(stack.runtime, browser="follow")

    run = sync(stack, account)

    assert list(run.folder_problems) == ["Inbox/Key accounts"]
    for name in ("inbox", "sentitems", "archive"):
        assert stack.gateway.get_cursor(account.id, mailbox.resolve_folder(name)["id"])


def test_well_known_names_and_ids_choose_folders(tmp_path, closing):
    mailbox = Mailbox.seeded(size=300, seed=3)
    archive = mailbox.resolve_folder("archive")["id"]
    stack = make_stack(tmp_path, f'mail_folders = ["ARCHIVE", "{archive}"]\n', mailbox)
    closing(stack)
    account = connect_account(stack.runtime, browser="follow")

    run = sync(stack, account)

    assert run.error is None
    assert stack.gateway.get_cursor(account.id, archive) is not None
    assert stack.gateway.get_cursor(account.id, mailbox.resolve_folder("inbox")["id"]) is None


def test_the_accounts_own_choice_wins_over_the_configuration(tmp_path, closing):
    stack = make_stack(tmp_path)  # the configuration: Inbox and Sent Items
    closing(stack)
    mailbox = stack.emulator.mailbox
    account = connect_account(stack.runtime, browser="follow")
    key_accounts = next(f for f in mailbox.folders() if f["displayName"] == "Key accounts")
    stack.gateway.set_folder_choice(account.id, FolderChoice.CHOSEN, ["Inbox/Key accounts"])

    sync(stack, account)

    assert stack.gateway.get_cursor(account.id, key_accounts["id"]) is not None
    assert stack.gateway.get_cursor(account.id, mailbox.resolve_folder("inbox")["id"]) is None


def test_cli_folders_lists_the_tree_with_ids_and_counts(tmp_path, closing):
    stack = make_stack(tmp_path)
    closing(stack)
    mailbox = stack.emulator.mailbox
    m365sync(stack, "connect")
    key_accounts = next(f for f in mailbox.folders() if f["displayName"] == "Key accounts")

    listed = m365sync(stack, "folders")

    out = _words(listed.stdout)
    assert "Inbox and Sent Items (the configuration)" in out, out
    assert key_accounts["id"] in listed.stdout
    assert f"{key_accounts['totalItemCount']}" in out
    for name in ("Inbox", "Key accounts", "Weekly digests", "Deleted Items", "Fabrikam"):
        assert name in out

    chosen = m365sync(
        stack, "folders", "--choose", "chosen", "--folder", "Inbox/Key accounts",
        "--folder", "Inbox/Nope", check=False,
    )
    assert chosen.returncode == 1
    out = _words(chosen.stdout)
    assert "chosen folders (this account's choice)" in out, out
    assert "Mail folder 'Inbox/Nope' was not found" in out
    [account] = stack.gateway.list_accounts()
    assert account.folder_choice is FolderChoice.CHOSEN
    assert account.mail_folders == ("Inbox/Key accounts", "Inbox/Nope")
