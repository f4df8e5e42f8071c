"""The Mailbox data model: folders, what add_message fills, changes, thread safety, JSON files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from m365sync.emulator.mailbox import Mailbox, is_well_formed_id


def msg(subject: str, **extra: object) -> dict[str, object]:
    sender = {
        "emailAddress": {"name": "Nancy Davolio", "address": "nancy.davolio@northwindtraders.com"}
    }
    return {
        "subject": subject,
        "from": sender,
        "body": {"contentType": "html", "content": "<p>Hi &amp; bye</p>"},
        **extra,
    }


def test_empty_mailbox_has_the_standard_folders() -> None:
    mailbox = Mailbox()
    assert mailbox.user["mail"] == "MeganB@contoso.com"
    assert mailbox.own_domains == frozenset({"contoso.com"})
    assert len(mailbox.tenant_id) == 36
    for name in (
        "inbox",
        "SentItems",
        "DRAFTS",
        "deleteditems",
        "archive",
        "junkemail",
        "outbox",
        "msgfolderroot",
    ):
        folder = mailbox.resolve_folder(name)
        assert folder is not None and is_well_formed_id(folder["id"])
    inbox = mailbox.resolve_folder("inbox")
    assert inbox is not None
    assert mailbox.resolve_folder(inbox["id"]) == inbox
    assert mailbox.resolve_folder(inbox["id"].lower()) is None  # ids are case-sensitive
    assert mailbox.resolve_folder("nosuch") is None
    assert mailbox.messages_in("inbox") == []


def test_add_message_fills_what_graph_fills() -> None:
    mailbox = Mailbox()
    stored = mailbox.add_message("inbox", msg("Hello"))
    inbox = mailbox.resolve_folder("inbox")
    assert inbox is not None
    assert stored["parentFolderId"] == inbox["id"]
    assert stored["@odata.etag"] == f'W/"{stored["changeKey"]}"'
    assert stored["internetMessageId"].startswith("<") and stored["internetMessageId"].endswith(
        ".prod.outlook.com>"
    )
    assert stored["conversationId"] and stored["createdDateTime"].endswith("Z")
    assert stored["bodyPreview"] == "Hi & bye"
    assert stored["sender"] == stored["from"]
    assert stored["isRead"] is False and stored["isDraft"] is False
    assert mailbox.get_message(stored["id"]) == stored
    draft = mailbox.add_message("drafts", {"subject": "unsent"})
    assert draft["isDraft"] is True and "from" not in draft
    with pytest.raises(ValueError, match="already exists"):
        mailbox.add_message("inbox", {"id": stored["id"]})
    with pytest.raises(KeyError):
        mailbox.add_message("nosuch", msg("x"))


def test_update_move_delete() -> None:
    mailbox = Mailbox()
    first = mailbox.add_message("inbox", msg("One"))
    updated = mailbox.update_message(
        first["id"], {"isRead": True, "body": {"contentType": "text", "content": "new"}}
    )
    assert updated["changeKey"] != first["changeKey"] and updated["bodyPreview"] == "new"
    assert mailbox.resolve_folder("inbox")["unreadItemCount"] == 0  # type: ignore[index]
    moved = mailbox.move_message(first["id"], "archive")
    assert moved["id"] == first["id"] and moved["changeKey"] != updated["changeKey"]
    assert moved["parentFolderId"] == mailbox.resolve_folder("archive")["id"]  # type: ignore[index]
    assert mailbox.messages_in("inbox") == [] and len(mailbox.messages_in("archive")) == 1
    mailbox.delete_message(first["id"])
    assert mailbox.messages_in("archive") == []
    with pytest.raises(KeyError):
        mailbox.get_message(first["id"])


def test_raw_messages_are_stored_as_given() -> None:
    mailbox = Mailbox()
    mid = mailbox.add_raw_message("inbox", {"subject": ["not", "a", "string"]})
    assert mailbox.get_message(mid) == {"subject": ["not", "a", "string"], "id": mid}
    assert mailbox.is_raw(mid)


def test_child_folders_and_names() -> None:
    mailbox = Mailbox()
    top = mailbox.add_folder("Customers")
    child = mailbox.add_folder("Fabrikam", top["id"])
    assert child["parentFolderId"] == top["id"]
    assert mailbox.resolve_folder(top["id"])["childFolderCount"] == 1  # type: ignore[index]
    assert [f["displayName"] for f in mailbox.child_folders(top["id"])] == ["Fabrikam"]
    with pytest.raises(ValueError):
        mailbox.add_folder("customers")


def test_concurrent_writers_lose_nothing() -> None:
    mailbox = Mailbox()

    def writer(n: int) -> None:
        for i in range(200):
            mailbox.add_message("inbox", msg(f"{n}-{i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(mailbox.message_ids_in("inbox")) == 800
    assert len(mailbox.changed_since(mailbox.resolve_folder("inbox")["id"], 0)) == 800  # type: ignore[index]


def test_change_log_orders_by_latest_change() -> None:
    mailbox = Mailbox()
    inbox = mailbox.resolve_folder("inbox")["id"]  # type: ignore[index]
    a = mailbox.add_message("inbox", msg("a"))["id"]
    b = mailbox.add_message("inbox", msg("b"))["id"]
    mark = mailbox.sequence
    mailbox.update_message(a, {"isRead": True})
    assert mailbox.changed_since(inbox, 0) == [b, a]
    assert mailbox.changed_since(inbox, mark) == [a]


def test_json_round_trip(tmp_path: Path) -> None:
    mailbox = Mailbox.seeded(40, seed=5)
    mailbox.add_folder("Deals", "inbox")
    mailbox.add_raw_message("inbox", {"subject": None, "weird": True})
    path = tmp_path / "mailbox.json"
    mailbox.to_json(path)
    loaded = Mailbox.from_json(path)
    assert loaded.user == mailbox.user and loaded.tenant_id == mailbox.tenant_id
    assert [f["id"] for f in loaded.folders()] == [f["id"] for f in mailbox.folders()]

    # sizeInBytes of a seeded (lazy) message is an estimate, so compare the rest.
    def counts(box: Mailbox) -> list[dict[str, object]]:
        return [{k: v for k, v in f.items() if k != "sizeInBytes"} for f in box.folders()]

    assert counts(loaded) == counts(mailbox)
    for name in ("inbox", "sentitems", "drafts", "archive"):
        assert loaded.messages_in(name) == mailbox.messages_in(name)
    assert loaded.events() == mailbox.events()
    loaded.to_json(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads(path.read_text())


def test_from_json_accepts_a_graph_collection(tmp_path: Path) -> None:
    path = tmp_path / "messages.json"
    path.write_text(
        json.dumps(
            {
                "value": [
                    dict(msg("a"), folder="SentItems"),
                    dict(msg("b"), id="AAMkADgivenidgivenid="),
                ]
            }
        )
    )
    mailbox = Mailbox.from_json(path)
    assert [m["subject"] for m in mailbox.messages_in("sentitems")] == ["a"]
    assert [m["id"] for m in mailbox.messages_in("inbox")] == ["AAMkADgivenidgivenid="]


def test_from_json_keeps_folder_ids(tmp_path: Path) -> None:
    document = {
        "user": {
            "id": "0f6a9a9e-5c2a-4f57-9d0c-2b1d7c1e3a11",
            "displayName": "Adele Vance",
            "mail": "AdeleV@contoso.com",
            "userPrincipalName": "AdeleV@contoso.com",
        },
        "mailFolders": [
            {"id": "AQMkADYAAAIBDAAAAA==", "displayName": "Inbox", "wellKnownName": "inbox"},
            {
                "id": "AAMkADYRAAAZg1yTAAA=",
                "displayName": "Weekly digests",
                "parentFolderId": "AQMkADYAAAIBDAAAAA==",
            },
        ],
        "messages": [dict(msg("x"), parentFolderId="AAMkADYRAAAZg1yTAAA=")],
    }
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    mailbox = Mailbox.from_json(path)
    assert mailbox.resolve_folder("inbox")["id"] == "AQMkADYAAAIBDAAAAA=="  # type: ignore[index]
    assert [f["displayName"] for f in mailbox.child_folders("inbox")] == ["Weekly digests"]
    assert mailbox.messages_in("AAMkADYRAAAZg1yTAAA=")[0]["subject"] == "x"
    assert mailbox.own_domains == frozenset({"contoso.com"})
