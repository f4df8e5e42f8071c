"""The folder choice as pure decisions on a listed tree (`m365sync.sync.folders`)."""

from __future__ import annotations

from m365sync.config import SyncConfig
from m365sync.domain import FolderChoice, MailFolder
from m365sync.sync.folders import NONE_CHOSEN, path_key, select_folders, with_paths

ROOT = "ROOT"


def tree() -> tuple[list[MailFolder], dict[str, MailFolder]]:
    raw = [
        MailFolder("IN", "Inbox", ROOT, child_folder_count=2),
        MailFolder("KEY", "Key accounts", "IN"),
        MailFolder("DIG", "Weekly digests", "IN", is_search=True),
        MailFolder("SENT", "Sent Items", ROOT),
        MailFolder("DEL", "Deleted Items", ROOT, child_folder_count=1),
        MailFolder("OLD", "Old project", "DEL"),
        MailFolder("JUNK", "Junk Email", ROOT),
        MailFolder("DRAFT", "Drafts", ROOT),
        MailFolder("OUT", "Outbox", ROOT),
        MailFolder("CONV", "Conversation History", ROOT, child_folder_count=1),
        MailFolder("TEAMS", "Team Chat", "CONV"),
        MailFolder("ARCH", "Archive", ROOT),
        MailFolder("CUST", "Customers", ROOT, child_folder_count=1),
        MailFolder("FAB", "Fabrikam", "CUST"),
    ]
    folders = with_paths(raw)
    by_id = {f.graph_id: f for f in folders}
    names = {
        "inbox": "IN", "sentitems": "SENT", "deleteditems": "DEL", "junkemail": "JUNK",
        "drafts": "DRAFT", "outbox": "OUT", "conversationhistory": "CONV", "archive": "ARCH",
    }  # fmt: skip
    return folders, {name: by_id[fid] for name, fid in names.items()}


def ids(selection) -> list[str]:
    return [f.graph_id for f in selection.folders]


def test_paths_follow_the_parents() -> None:
    folders, _ = tree()
    paths = {f.graph_id: f.path for f in folders}
    assert paths["KEY"] == "Inbox/Key accounts"
    assert paths["FAB"] == "Customers/Fabrikam"
    assert paths["OLD"] == "Deleted Items/Old project"
    assert path_key(" inbox / KEY accounts/") == "inbox/key accounts"


def test_all_mail_folders_leave_out_trash_junk_drafts_outbox_chats_and_searches() -> None:
    folders, known = tree()
    chosen = select_folders(folders, known, FolderChoice.ALL)
    assert ids(chosen) == ["IN", "KEY", "SENT", "ARCH", "CUST", "FAB"]
    assert not chosen.problems


def test_inbox_and_sent_items() -> None:
    folders, known = tree()
    assert ids(select_folders(folders, known, FolderChoice.INBOX_SENT)) == ["IN", "SENT"]


def test_chosen_by_name_path_or_id_with_problems_named() -> None:
    folders, known = tree()
    long_id = "AAMkAGI2TAAA" + "x" * 20
    chosen = select_folders(
        folders,
        known,
        FolderChoice.CHOSEN,
        ["Archive", "inbox/key ACCOUNTS", "FAB", "Key acounts", long_id, "Inbox/Nope"],
        labels={long_id: "Inbox/Gone"},
    )
    assert ids(chosen) == ["ARCH", "KEY", "FAB"]
    assert chosen.lookups == [long_id]  # maybe a hidden folder: Graph is asked by id
    assert set(chosen.problems) == {"Key acounts", "Inbox/Nope"}
    assert "Mail folder 'Key acounts' was not found" in chosen.problems["Key acounts"]


def test_chosen_with_children_skips_search_folders() -> None:
    folders, known = tree()
    chosen = select_folders(
        folders, known, FolderChoice.CHOSEN, ["inbox", "Customers"], include_children=True
    )
    assert ids(chosen) == ["IN", "CUST", "KEY", "FAB"]


def test_a_well_known_name_the_mailbox_lacks_is_a_problem() -> None:
    folders, known = tree()
    del known["conversationhistory"]
    chosen = select_folders(folders, known, FolderChoice.CHOSEN, ["conversationhistory"])
    assert not chosen.folders and list(chosen.problems) == ["conversationhistory"]


def test_chosen_without_any_folder_says_so() -> None:
    folders, known = tree()
    chosen = select_folders(folders, known, FolderChoice.CHOSEN, [])
    assert chosen.problems == {"mail folders": NONE_CHOSEN}


def test_the_configurations_choice() -> None:
    assert SyncConfig().folder_choice() is FolderChoice.INBOX_SENT
    assert SyncConfig(mail_folders=("inbox", "archive")).folder_choice() is FolderChoice.CHOSEN
    assert SyncConfig(mail_folder_choice="all").folder_choice() is FolderChoice.ALL
